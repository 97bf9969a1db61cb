"""``ttc report``: every documented ``report.json`` key, filled from the stages' own outputs."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.image
import pytest
import yaml
from matplotlib.figure import Figure

from ttcompute.cli import run_stage
from ttcompute.core.errors import InputError
from ttcompute.core.shards import prepare_output, write_shard
from ttcompute.eval.report import flatten

DOCUMENTED_KEYS = [
    "policy.small.pass_at_1",
    "policy.small.params",
    "policy.large.params",
    "policy.large.pass_at_1",
    "prm.first_error_f1",
    "prm.label_agreement",
    "reviser.pass_at_1_by_step",
    "compute_optimal.efficiency_vs_best_of_n",
    "compute_optimal.efficiency_vs_best_of_n_with_difficulty_cost",
    "cost.total_flops",
    "wall_seconds",
]

ACCURACY = {
    "majority": {"1": 0.4, "4": 0.5},
    "best_of_n_weighted": {"1": 0.4, "4": 0.6},
    "beam_search M=4": {"4": 0.7},
    "beam_search M=sqrt": {"4": 0.65},
    "revisions L=1 weighted": {"1": 0.38, "4": 0.55},
    "revisions L=4 weighted": {"4": 0.62},
    "revisions L=4 majority": {"4": 0.5},
}


def _samples(path, correct: list[list[bool]], flops: int):
    prepare_output(path, "sample", "test", 1, overwrite=False)
    write_shard(path, 0, [{"problem_id": f"p{i}", "correct": c} for i, c in enumerate(correct)])
    (path / "stats.json").write_text(json.dumps({"compute": {"total_flops": flops}}))
    return path


@pytest.fixture
def stage_outputs(tmp_path):
    d = {}
    for name, params in (("small", 1000), ("large", 14000)):
        d[name] = tmp_path / name
        d[name].mkdir()
        (d[name] / "training_log.json").write_text(
            json.dumps({"num_parameters": params, "num_train_tokens": 5})
        )
    d["small_samples"] = _samples(tmp_path / "small_samples", [[True, False], [False, False]], flops=300)
    d["large_samples"] = _samples(tmp_path / "large_samples", [[True], [False]], flops=50)
    d["prm_eval"] = tmp_path / "prm_eval"
    d["prm_eval"].mkdir()
    (d["prm_eval"] / "prm_eval.json").write_text(
        json.dumps(
            {"processbench": {"f1": 0.91}, "label_agreement": {"step_agreement": 0.76}, "step_roc_auc": 0.98}
        )
    )
    d["select"] = tmp_path / "select"
    d["select"].mkdir()
    (d["select"] / "accuracy.json").write_text(
        json.dumps(
            {
                "accuracy": {"all": ACCURACY, "1": ACCURACY},
                "problems": {"all": 2, "1": 2},
                "revisions": {
                    "pass_at_1_by_step": [0.5, 0.6],
                    "correct_to_incorrect": 0.2,
                    "incorrect_to_correct": 0.4,
                },
            }
        )
    )
    d["co"] = tmp_path / "co"
    d["co"].mkdir()
    (d["co"] / "compute_optimal.json").write_text(
        json.dumps(
            {
                "all": {"1": 0.45, "4": 0.72},
                "efficiency_vs_best_of_n": 4.0,
                "efficiency_vs_best_of_n_with_difficulty_cost": 0.8,
                "efficiency_at_budget": 4,
                "difficulty_cost_generations": 4.0,
            }
        )
    )
    d["fm"] = tmp_path / "fm"
    d["fm"].mkdir()
    (d["fm"] / "flops_matched.json").write_text(
        json.dumps(
            {
                "ratios": {
                    "0.16": {
                        "matched_generations": 257.75,
                        "bins": {"all": {"small_ttc": 0.72, "large": 0.5}},
                    },
                    "22": {"matched_generations": 15.77, "bins": {"1": {"small_ttc": 0.45, "large": 0.5}}},
                }
            }
        )
    )
    return d


@pytest.fixture
def saved_figures(monkeypatch) -> dict[str, Figure]:
    """Every figure saved during the test, by file name: the plot helpers close their figures, but
    the objects keep the lines they drew."""
    figures: dict[str, Figure] = {}
    savefig = Figure.savefig

    def recording_savefig(self, fname, *args, **kwargs):
        figures[Path(fname).name] = self
        return savefig(self, fname, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", recording_savefig)
    return figures


def _panels(figure: Figure) -> dict[str, dict[str, dict[float, float]]]:
    """``{panel title: {line label: {x: y}}}`` of what the figure drew."""
    return {
        axis.get_title(): {
            line.get_label(): dict(zip(line.get_xdata().tolist(), line.get_ydata().tolist()))
            for line in axis.get_lines()
        }
        for axis in figure.axes
        if axis.get_lines()
    }


def _check_png(path: Path, figure: Figure) -> None:
    """The file is that figure, rendered: its size in pixels, and far from blank."""
    pixels = matplotlib.image.imread(path)
    width, height = figure.get_size_inches() * 120  # the plots' dpi
    assert pixels.shape[:2] == (round(height), round(width))
    ink = (pixels[..., :3] < 0.9).any(axis=-1).mean()  # share of pixels that are not (near) white
    assert 0.01 < ink < 0.5, ink


def test_report_fills_every_documented_key_from_the_stage_outputs(stage_outputs, tmp_path, saved_figures):
    d = stage_outputs
    out = tmp_path / "report"
    run_stage(
        "report",
        ["--output_dir", str(out), "--policy_small", str(d["small"]), "--policy_large", str(d["large"]),
         "--small_samples_dir", str(d["small_samples"]), "--large_samples_dir", str(d["large_samples"]),
         "--prm_eval_dir", str(d["prm_eval"]), "--select_dirs", str(d["select"]), "--compute_optimal_dir",
         str(d["co"]), "--flops_matched_dir", str(d["fm"]), "--cost_dirs", str(d["small_samples"]),
         str(d["large_samples"]), "--wall_seconds", "12.5"],
    )  # fmt: skip
    report = json.loads((out / "report.json").read_text())
    flat = flatten(report)
    assert not [k for k in DOCUMENTED_KEYS if k not in flat]
    assert flat["policy.small.pass_at_1"] == 0.25 and flat["policy.large.pass_at_1"] == 0.5
    assert flat["policy.small.params"] == 1000 and flat["policy.large.params"] == 14000
    assert flat["prm.first_error_f1"] == 0.91 and flat["prm.label_agreement"] == 0.76
    assert flat["reviser.pass_at_1_by_step"] == [0.5, 0.6]
    # The best setting of each family, named; revisions' majority rule competes within revisions.
    assert report["search"]["beam_search"] == {"4": 0.7}
    assert report["search_settings"]["beam_search"] == {"4": "beam_search M=4"}
    assert report["search"]["revisions"] == {"1": 0.38, "4": 0.62}
    assert report["search"]["best_of_n_weighted"] == {"1": 0.4, "4": 0.6}
    assert flat["compute_optimal.4"] == 0.72 and flat["compute_optimal.efficiency_vs_best_of_n"] == 4.0
    assert flat["flops_matched.0.16.all.small_ttc"] == 0.72 and flat["flops_matched.22.1.large"] == 0.5
    assert report["flops_matched"]["0.16"]["all"] == {"small_ttc": 0.72, "large": 0.5, "difference": None}
    assert report["flops_matched"]["22"]["1"] == {"small_ttc": 0.45, "large": 0.5, "difference": None}
    assert flat["cost.total_flops"] == 350 and flat["wall_seconds"] == 12.5

    markdown = (out / "report.md").read_text()
    for image in ("accuracy_vs_budget.png", "revision_ratio.png"):
        assert f"]({image})" in markdown
        _check_png(out / image, saved_figures[image])
    # What the plots draw: the best setting of each family, the numbers of report.json, in one panel
    # for all problems and one for the bin (the same table here) ...
    search = {family: {int(b): a for b, a in curve.items()} for family, curve in report["search"].items()}
    assert set(search) == {"majority", "best_of_n_weighted", "beam_search", "revisions"}
    assert _panels(saved_figures["accuracy_vs_budget.png"]) == {
        "all problems (n=2)": search,
        "bin 1 (n=2)": search,
    }
    # ... and accuracy vs chain length L, one line per budget N, from the weighted revision rule only.
    by_budget: dict[str, dict[int, float]] = {}
    for strategy, curve in ACCURACY.items():
        if strategy.startswith("revisions") and strategy.endswith("weighted"):
            length = int(strategy.split()[1].removeprefix("L="))
            for budget, accuracy in curve.items():
                by_budget.setdefault(f"N = {budget}", {})[length] = accuracy
    assert by_budget == {"N = 1": {1: 0.38}, "N = 4": {1: 0.55, 4: 0.62}}
    assert _panels(saved_figures["revision_ratio.png"]) == {"Sequential / parallel ratio": by_budget}
    assert "**4.000x** fewer generations" in markdown and "| beam_search | - | 0.700 |" in markdown


def test_report_names_a_missing_input(tmp_path):
    with pytest.raises(InputError, match="prm_eval.json: no such file"):
        run_stage("report", ["--output_dir", str(tmp_path / "r"), "--prm_eval_dir", str(tmp_path)])
    with pytest.raises(InputError, match="report_to must be none or wandb"):
        run_stage("report", ["--report_to", "tensorboard"])


def test_report_to_wandb_logs_the_plots_and_the_search_table_offline(stage_outputs, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    wandb = pytest.importorskip("wandb")
    d = stage_outputs
    out = tmp_path / "report"
    try:
        run_stage(
            "report",
            ["--output_dir", str(out), "--select_dirs", str(d["select"]), "--flops_matched_dir", str(d["fm"]),
             "--report_to", "wandb"],
        )  # fmt: skip
    finally:
        # W&B keeps process-wide settings (WANDB_DIR ...) from its first set-up: later tests need a fresh one.
        wandb.teardown()
    (run,) = list((out / "wandb").glob("offline-run-*"))
    media = run / "files" / "media"
    plots = {p.name.rsplit("_", 2)[0] for p in (media / "images" / "plots").glob("*.png")}
    assert plots == {"accuracy_vs_budget", "revision_ratio"}
    (table,) = list((media / "table").glob("search_accuracy_*.table.json"))
    rows = json.loads(table.read_text())["data"]
    assert ["beam_search", 4, 0.7] in rows and ["revisions", 4, 0.62] in rows


def _yaml(directory: Path, options: dict) -> Path:
    """A stage output's recorded options (``ttc_config.yaml``), as read_resolved_config reads them."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "ttc_config.yaml").write_text(yaml.safe_dump(options))
    return directory


def _verifier(
    tmp_path: Path, name: str, kind: str, f1: float, auc: float, accuracy: dict
) -> tuple[Path, Path]:
    """A PRM checkpoint dir, its eval-prm output, a search with it and the select output of that."""
    prm = _yaml(tmp_path / name / "prm", {"prm_kind": kind})
    evaluation = tmp_path / name / "eval"
    evaluation.mkdir()
    (evaluation / "prm_eval.json").write_text(
        json.dumps({"prm": str(prm), "processbench": {"f1": f1}, "step_roc_auc": auc})
    )
    search = _yaml(tmp_path / name / "search", {"prm": str(prm)})
    select = _yaml(tmp_path / name / "select", {"search_dir": str(search)})
    (select / "accuracy.json").write_text(json.dumps({"accuracy": {"all": accuracy}, "problems": {"all": 2}}))
    return evaluation, select


def test_report_puts_the_two_verifiers_side_by_side(tmp_path):
    likelihood_eval, likelihood_select = _verifier(
        tmp_path, "lik", "likelihood", 0.91234, 0.98, {**ACCURACY, "beam_search M=4": {"1": 0.3, "4": 0.7}}
    )
    token_eval, token_select = _verifier(
        tmp_path, "tok", "token_classification", 0.5, 0.75,
        {"best_of_n_weighted": {"1": 0.4, "4": 0.45}, "beam_search M=4": {"1": 0.2, "4": 0.35}, "majority": {"4": 0.5}},
    )  # fmt: skip
    # The headline is compute-optimal's: over the likelihood PRM's selections.
    co = _yaml(tmp_path / "co", {"select_dirs": [str(likelihood_select)]})
    (co / "compute_optimal.json").write_text(
        json.dumps({"all": {"4": 0.72}, "efficiency_vs_best_of_n": 2.0, "efficiency_vs_best_of_n_with_difficulty_cost": 1.0})
    )  # fmt: skip
    out = tmp_path / "report"
    run_stage(
        "report",
        ["--output_dir", str(out), "--prm_eval_dir", str(likelihood_eval), "--select_dirs", str(likelihood_select),
         "--compare_prm_eval_dir", str(token_eval), "--compare_prm_select_dir", str(token_select),
         "--compute_optimal_dir", str(co)],
    )  # fmt: skip
    verifiers = json.loads((out / "report.json").read_text())["verifiers"]
    assert verifiers["headline"] == "likelihood"
    likelihood, token = verifiers["by_prm"]["likelihood"], verifiers["by_prm"]["token_classification"]
    assert (likelihood["first_error_f1"], likelihood["step_roc_auc"]) == (0.9123, 0.98)
    assert likelihood["best_of_n_weighted"] == {"1": 0.4, "4": 0.6}
    assert likelihood["beam_search"] == {"1": 0.3, "4": 0.7}
    assert likelihood["drove_headline"] is True and token["drove_headline"] is False
    assert (token["first_error_f1"], token["step_roc_auc"]) == (0.5, 0.75)
    assert token["best_of_n_weighted"] == {"1": 0.4, "4": 0.45} and token["beam_search"] == {
        "1": 0.2,
        "4": 0.35,
    }
    markdown = (out / "report.md").read_text()
    assert "| verifier | first-error F1 | step ROC-AUC | method | N=1 | N=4 |" in markdown
    assert "| likelihood (*headline*) | 0.912 | 0.980 | best_of_n_weighted | 0.400 | 0.600 |" in markdown
    assert "| | | | beam_search | 0.300 | 0.700 |" in markdown
    assert "| token_classification | 0.500 | 0.750 | best_of_n_weighted | 0.400 | 0.450 |" in markdown

    # Without a second PRM there is no verifiers table, and the one PRM is reported as before.
    run_stage("report", ["--output_dir", str(tmp_path / "one"), "--prm_eval_dir", str(likelihood_eval)])
    alone = json.loads((tmp_path / "one" / "report.json").read_text())
    assert "verifiers" not in alone and alone["prm"]["first_error_f1"] == 0.9123
    assert "Verifiers side by side" not in (tmp_path / "one" / "report.md").read_text()


def test_report_counts_reused_candidates_once(tmp_path):
    # Two searches whose best-of-N took their first candidates from one sample output: those tokens
    # are the sample output's compute, not each search's again.
    samples = _yaml(_samples(tmp_path / "candidates", [[True, False]], flops=2 * 10 * 30), {})
    searches = []
    for name in ("a", "b"):
        search = tmp_path / name
        prepare_output(search, "search", "test", 1, overwrite=False)
        rows = [
            {"problem_id": "p", "method": "best_of_n", "budget": 1, "num_tokens": [10], "reused_samples": 1},
            {
                "problem_id": "p",
                "method": "best_of_n",
                "budget": 2,
                "num_tokens": [10, 20],
                "reused_samples": 2,
            },
            {
                "problem_id": "p",
                "method": "beam_search",
                "budget": 2,
                "num_tokens": [7, 7],
                "reused_samples": 0,
            },
        ]
        write_shard(search, 0, rows)
        (search / "stats.json").write_text(
            json.dumps({"compute": {"total_flops": 2 * 10 * (30 + 14) + 99, "policy_parameters": 10}})
        )
        searches.append(_yaml(search, {"initial_samples_dir": str(samples)}))
    out = tmp_path / "report"
    run_stage("report", ["--output_dir", str(out), "--cost_dirs", str(samples), *map(str, searches)])
    cost = json.loads((out / "report.json").read_text())["cost"]
    assert cost["reused_by_stage"] == {str(s): 600 for s in searches}
    assert cost["by_stage"] == {str(samples): 600, **{str(s): 2 * 10 * 14 + 99 for s in searches}}
    assert cost["total_flops"] == 600 + 2 * (280 + 99)
    # Without the sample output among the costs, each search is charged all of its candidates.
    run_stage("report", ["--output_dir", str(out), "--cost_dirs", str(searches[0])])
    assert json.loads((out / "report.json").read_text())["cost"]["by_stage"] == {str(searches[0]): 979}
