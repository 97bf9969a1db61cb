"""``ttc report``: every documented ``report.json`` key, filled from the stages' own outputs."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.image
import pytest
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
