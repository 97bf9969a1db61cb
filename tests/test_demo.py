"""``ttc demo``: the whole pipeline at toy size, then a rerun that resumes instead of redoing."""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import arithmetic_answer
from transformers import AutoModelForCausalLM

from ttcompute.cli import run_stage
from ttcompute.core.errors import InputError
from ttcompute.core.recorded_paths import resolve_tree
from ttcompute.demo import CHECKPOINTS
from ttcompute.eval.report import flatten, search_by_family
from ttcompute.eval.select import is_adaptive

REPO = Path(__file__).resolve().parents[1]
COST_STAGES = ("samples", "prm/train_samples", "prm/train_labels", "prm/prm", "prm/prm_token",
               "reviser/train_samples", "reviser/reviser", "search", "search_token", "probe_samples",
               "difficulty_probe", "difficulty_prm", "difficulty_question", "large_greedy")  # fmt: skip
TOY = ["--fast", "true", "--num_problems", "6", "--num_samples", "4", "--budgets", "1", "2",
       "--prm_problems", "6", "--reviser_problems", "12", "--reviser_samples", "8"]  # fmt: skip


def _check_adaptive_headline(out: Path, saved: dict, markdown: str, caplog) -> None:
    """The report leads with the adaptive headline of the declared predictor (question), its interval
    and the compute-optimal output it came from; every predictor (and no bins) has its row."""
    adaptive = saved["adaptive"]
    assert set(adaptive) == {"none", "oracle", "question", "prm", "prm_probe"}
    assert saved["adaptive_headline"] == "question"
    question = json.loads((out / "compute_optimal_question" / "compute_optimal.json").read_text())["spend"]
    assert adaptive["question"]["intervals"] == question["intervals"]
    assert adaptive["question"]["predictor_generations"] > 0 == adaptive["none"]["predictor_generations"]
    assert markdown.index("## Headline") < markdown.index("## Policies")
    assert (
        "averaged over the accuracies both reach" in markdown
        and "The paper's ratio at the largest budget" in markdown
    )
    assert (out / "report" / "spend.png").is_file() and (out / "report" / "spend_by_bin.png").is_file()
    assert saved["ceiling"]["all"]["pass_at_n"]["2"] >= saved["search"]["best_of_n_weighted"]["2"]


def test_demo_runs_end_to_end_and_resumes(tmp_path, monkeypatch, caplog, capsys):
    monkeypatch.chdir(REPO)  # the demo reads configs/
    out = tmp_path / "demo"
    start = time.time()
    report = run_stage("demo", [*TOY, "--output_dir", str(out)])
    elapsed = time.time() - start
    saved = json.loads((out / "report" / "report.json").read_text())
    _check_smoke_test_statement(saved, capsys.readouterr().out, (out / "report" / "report.md").read_text())
    flat = flatten(saved)
    for key in ("policy.small.pass_at_1", "policy.large.pass_at_1", "prm.first_error_f1", "reviser.pass_at_1_by_step",
                "search.best_of_n_weighted.2", "search.beam_search.2", "search.revisions.2", "compute_optimal.2",
                "compute_optimal.efficiency_vs_best_of_n", "flops_matched.22.all.small_ttc", "cost.total_flops",
                "wall_seconds"):  # fmt: skip
        assert key in flat, key
    assert report["policy"] == saved["policy"] and saved["cost"]["total_flops"] > 0
    assert 0 < saved["wall_seconds"] <= elapsed
    _check_report_against_stage_outputs(out, saved)
    _check_token_prm(out, saved)
    markdown = (out / "report" / "report.md").read_text()
    assert "![compute-optimal](compute_optimal_vs_best_of_n.png)" in markdown
    assert (out / "report" / "flops_matched.png").is_file()
    # The headline for every difficulty predictor, and where the time went.
    assert set(saved["compute_optimal_by_predictor"]) == {"oracle", "question", "prm", "prm_probe"}
    for predictor, entry in saved["compute_optimal_by_predictor"].items():
        for key in (
            "efficiency_vs_best_of_n_with_difficulty_cost",
            "iso_accuracy_efficiency_with_difficulty_cost",
        ):
            assert key in entry["intervals"], (predictor, key)
    assert saved["compute_optimal_by_predictor"]["prm_probe"]["difficulty_samples_reused"] is True
    assert "| question |" in markdown and "## Where the time went" in markdown
    _check_adaptive_headline(out, saved, markdown, caplog)
    profile = json.loads((out / "profile.json").read_text())
    assert {"search", "train-reviser", "difficulty: question", "sample: best-of-N (prm_probe: first 4)",
            "train-prm: token classification", "search: token PRM"} <= set(profile)  # fmt: skip
    assert saved["profile_seconds"].items() <= profile.items()

    # A rerun resumes: every sharded stage finds its shards, trained models are reused.
    caplog.set_level(logging.INFO, logger="ttcompute.demo")
    run_stage("demo", [*TOY, "--output_dir", str(out)])
    assert "train-prm: reusing" in caplog.text and "train-reviser: reusing" in caplog.text
    assert json.loads((out / "report" / "report.json").read_text())["search"] == saved["search"]

    with pytest.raises(InputError, match="--trained_from takes a finished demo"):
        run_stage(
            "demo", [*TOY, "--trained_from", str(tmp_path / "none"), "--output_dir", str(tmp_path / "x")]
        )


# A third demo (~15 s): `make test-slow`. The default suite keeps the first run and its resume.
@pytest.mark.slow
def test_another_draw_reuses_the_trained_prm_and_reviser(tmp_path, monkeypatch):
    """``--trained_from``: another draw of evaluation problems with the same PRM and reviser, nothing
    trained again -- from a copy of the finished demo in another place (a second clone's copy)."""
    import shutil

    monkeypatch.chdir(REPO)
    first = tmp_path / "demo"
    run_stage("demo", [*TOY, "--output_dir", str(first)])
    saved = json.loads((first / "report" / "report.json").read_text())
    out = tmp_path / "clone_b" / "runs" / "demo"
    shutil.copytree(first, out)
    shutil.rmtree(first)  # nothing may still point at the first place
    other = tmp_path / "other"
    run_stage("demo", [*TOY, "--problem_seed", "77", "--trained_from", str(out), "--output_dir", str(other)])
    assert not (other / "prm").exists() and not (other / "reviser").exists()
    again = json.loads((other / "report" / "report.json").read_text())
    assert again["prm"] == saved["prm"] and str(out / "reviser" / "reviser") in again["cost"]["by_stage"]
    token_prm = again["verifiers"]["by_prm"]["token_classification"]
    assert (
        token_prm["first_error_f1"] == saved["verifiers"]["by_prm"]["token_classification"]["first_error_f1"]
    )
    assert token_prm["search_prm"] == str(out / "prm" / "prm_token")
    drawn = {row["problem_id"] for row in _rows(out / "samples")}
    assert drawn.isdisjoint(row["problem_id"] for row in _rows(other / "samples"))


def _check_smoke_test_statement(saved: dict, printed: str, markdown: str) -> None:
    """A --fast run says, in its summary and at the top of its report, that it is a smoke test, what
    that shows and does not, and why its revisions score what they do -- with this run's numbers."""
    smoke = saved["smoke_test"]
    assert "\n== ttc demo --fast: a smoke test ==\n" in printed
    assert printed.index("Its numbers are not results: 6 evaluation problems") < printed.index("policies:")
    assert markdown.index("> **Smoke test** (`ttc demo --fast`). It shows every stage runs end to end") < (
        markdown.index("## Headline")
    )
    step0, policy = saved["reviser"]["pass_at_1_by_step"][0], saved["policy"]["small"]["pass_at_1"]
    note = f"the reviser's first attempts, from the policy's own prompt, score pass@1 {step0:.3f} against "
    assert smoke["reviser"].startswith(note + f"the policy's {policy:.3f}: 3 training steps")
    assert f"Revisions: {smoke['reviser']}." in printed and f"> Revisions: {smoke['reviser']}." in markdown
    assert "'loss'" not in printed  # the trainers' log dicts went to logging


def test_only_a_fast_demo_is_reported_as_a_smoke_test(tmp_path):
    from ttcompute.core.config import save_resolved_config
    from ttcompute.demo_config import DemoConfig
    from ttcompute.eval.report import smoke_test_entry
    from ttcompute.eval.report_config import ReportConfig

    for fast in (False, True):
        save_resolved_config(tmp_path, "demo", DemoConfig(output_dir=str(tmp_path), fast=fast))
        config = ReportConfig(profile_file=str(tmp_path / "profile.json"))
        assert (smoke_test_entry(config) is not None) is fast
    assert "24 evaluation problems" in smoke_test_entry(config)["does_not_show"]  # --fast's default
    assert smoke_test_entry(ReportConfig()) is None  # no profile: not a demo's report


def _check_token_prm(out: Path, report: dict) -> None:
    """The token-classification PRM: trained on the same labels, evaluated like the likelihood one,
    searched with on the same problems (best-of-N on the very same candidates), and reported beside
    it with the numbers of its own eval-prm and select outputs."""
    trained = _json(out / "prm" / "prm_token" / "training_log.json")
    assert trained["global_steps"] == 20 and trained["training_flops"] > 0  # --fast: 20 steps
    files = {name: out / "prm" / name / "prm_eval.json" for name in ("eval", "eval_token")}
    assert _json(files["eval_token"])["prm"] == "../prm_token"  # relative to the file (recorded paths)
    evaluation = {name: resolve_tree(_json(path), path) for name, path in files.items()}
    assert evaluation["eval_token"]["prm"] == str(out / "prm" / "prm_token")
    assert evaluation["eval_token"]["dataset"] == evaluation["eval"]["dataset"]  # the same held-out labels
    calibration = [e["config"]["calibration_dataset"] for e in evaluation.values()]
    assert calibration == [str(out / "prm" / "train_labels")] * 2
    token_rows = _rows(out / "search_token")
    assert {(row["method"], row["budget"]) for row in token_rows} == {
        (m, b) for m in ("best_of_n", "beam_search") for b in (1, 2)
    }
    main = {(r["problem_id"], r["budget"]): r for r in _rows(out / "search") if r["method"] == "best_of_n"}
    for row in token_rows:
        if row["method"] == "best_of_n":
            same = main[(row["problem_id"], row["budget"])]
            assert row["completions"] == same["completions"] and row["reused_samples"] == row["budget"]
            assert row["step_scores"] != same["step_scores"]  # ranked by the other PRM

    verifiers = report["verifiers"]
    assert verifiers["headline"] == "likelihood" and set(verifiers["by_prm"]) == {
        "likelihood",
        "token_classification",
    }
    for name, eval_dir, select_dir in (("likelihood", "eval", "select"), ("token_classification", "eval_token",
                                                                           "select_token")):  # fmt: skip
        entry, metrics = verifiers["by_prm"][name], evaluation[eval_dir]
        assert entry["first_error_f1"] == round(metrics["processbench"]["f1"], 4)
        assert entry["step_roc_auc"] == round(metrics["step_roc_auc"], 4)
        accuracy = _json(out / select_dir / "accuracy.json")["accuracy"]["all"]
        assert entry["best_of_n_weighted"] == accuracy["best_of_n_weighted"]
        assert (
            entry["beam_search"]
            == accuracy["beam_search M=4"]
            == search_by_family(accuracy)[0]["beam_search"]
        )
        assert entry["drove_headline"] is (name == "likelihood")
    markdown = (out / "report" / "report.md").read_text()
    token = verifiers["by_prm"]["token_classification"]
    row = (
        f"| token_classification | {token['first_error_f1']:.3f} | {token['step_roc_auc']:.3f} | best_of_n_weighted | "
        + " | ".join(f"{token['best_of_n_weighted'][b]:.3f}" for b in ("1", "2"))
        + " |"
    )
    assert (
        "## Verifiers side by side" in markdown
        and row in markdown
        and "| likelihood (*headline*) |" in markdown
    )


def _rows(directory: Path) -> list[dict]:
    """A stage's shards, read with pyarrow rather than the package's own reader."""
    return [row for f in sorted(directory.glob("shard-*.parquet")) for row in pq.read_table(f).to_pylist()]


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def _parameters(checkpoint: Path) -> int:
    return sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(checkpoint).parameters())


def _check_report_against_stage_outputs(out: Path, report: dict) -> None:
    """Every headline number of the report, recomputed from what the stages wrote (answers regraded
    against the exact arithmetic, compute from token counts and parameters counted here), and the
    numbers consistent with each other."""
    small_params = _parameters(CHECKPOINTS / "policy_small")
    large_params = _parameters(CHECKPOINTS / "policy_large")
    assert report["policy"]["small"]["params"] == small_params
    assert report["policy"]["large"]["params"] == large_params

    def pass_at_1(rows: list[dict], per_problem: int) -> float:
        assert len(rows) == 6 and all(len(row["answers"]) == per_problem for row in rows)
        verdicts = []
        for row in rows:
            truth = arithmetic_answer(row["question"])
            assert row["gold_answer"] == truth and row["correct"] == [a == truth for a in row["answers"]]
            verdicts += row["correct"]
        return round(sum(verdicts) / len(verdicts), 4)

    samples, large_greedy = _rows(out / "samples"), _rows(out / "large_greedy")
    small_pass, large_pass = pass_at_1(samples, 4), pass_at_1(large_greedy, 1)
    assert report["policy"]["small"]["pass_at_1"] == small_pass
    assert report["policy"]["large"]["pass_at_1"] == large_pass
    assert 0 < small_pass < large_pass  # README: 0.38 vs 0.92 at T=1; the large one is greedy here

    # Oracle difficulty: each problem's pass@1 over its samples; harder problems never in easier bins.
    difficulty = pq.read_table(out / "difficulty" / "difficulty.parquet").to_pylist()
    per_problem = {row["problem_id"]: sum(row["correct"]) / len(row["correct"]) for row in samples}
    assert {row["problem_id"]: row["pass_at_1"] for row in difficulty} == per_problem
    bins = {row["problem_id"]: row["bin"] for row in difficulty}
    assert all(bins[a] <= bins[b] for a in bins for b in bins if per_problem[a] > per_problem[b])

    # Search accuracy: every selection is its search row's candidate, regraded; per family the best
    # setting's mean over the problems.
    search = _rows(out / "search")
    gold = {row["problem_id"]: arithmetic_answer(row["question"]) for row in search}
    runs = {(row["problem_id"], row["method"], row["budget"]): row for row in search}
    assert len(runs) == len(search) == 6 * 3 * 2  # best-of-N, beam search, revisions at budgets 1, 2
    for row in search:
        assert len(row["answers"]) == row["budget"] == row["generations"]
        assert row["correct"] == [a == gold[row["problem_id"]] for a in row["answers"]]
    hits = defaultdict(list)
    for selection in pq.read_table(out / "select" / "selections.parquet").to_pylist():
        if is_adaptive(selection["strategy"]):  # a cap, not a run's budget: tests/test_adaptive.py
            continue
        run = runs[(selection["problem_id"], selection["method"], selection["budget"])]
        assert selection["answer"] == run["answers"][selection["selected"]]
        assert selection["correct"] == (selection["answer"] == gold[selection["problem_id"]])
        hits[(selection["strategy"], str(selection["budget"]))].append(selection["correct"])
    best: dict[str, dict[str, float]] = {}
    for (strategy, budget), verdicts in hits.items():
        assert len(verdicts) == 6
        curve = best.setdefault(strategy.split(" ")[0], {})
        curve[budget] = max(curve.get(budget, 0.0), round(sum(verdicts) / 6, 4))
    assert report["search"] == best
    # One candidate leaves every best-of-N rule the same pick.
    assert report["search"]["majority"]["1"] == report["search"]["best_of_n_weighted"]["1"]

    # Compute: each stage's record is 2 N D (inference) or 6 N D (training) of the tokens in its
    # output, and the report's total is their sum.
    for stage, params in (("samples", small_params), ("prm/train_samples", small_params),
                          ("reviser/train_samples", small_params), ("large_greedy", large_params)):  # fmt: skip
        tokens = sum(sum(row["num_tokens"]) for row in _rows(out / stage))
        compute = _json(out / stage / "stats.json")["compute"]
        assert compute["policy_tokens"] == tokens and compute["total_flops"] == 2 * params * tokens, stage
    rollouts = sum(row["rollout_tokens"] for row in _rows(out / "prm" / "train_labels"))
    assert (
        _json(out / "prm" / "train_labels" / "stats.json")["compute"]["total_flops"]
        == 2 * small_params * rollouts
    )
    # Smaller best-of-N and revisions budgets reuse the largest budget's candidates, so search pays
    # for those once; best-of-N's first candidates are the samples the prm_probe estimate scored.
    probe_rows = _rows(out / "probe_samples")
    assert all(
        len(row["completions"]) == 4 for row in probe_rows
    )  # max(4, the largest budget): prm_probe's 4
    probe = {row["problem_id"]: row["completions"] for row in probe_rows}
    probe_tokens = {row["problem_id"]: row["num_tokens"] for row in probe_rows}
    for problem in gold:
        for method in ("best_of_n", "revisions"):
            smaller, largest = runs[(problem, method, 1)], runs[(problem, method, 2)]
            assert smaller["completions"] == largest["completions"][:1]
        best_of_2 = runs[(problem, "best_of_n", 2)]
        assert best_of_2["completions"] == probe[problem][:2] and best_of_2["reused_samples"] == 2
    paid = [row for row in search if row["method"] not in ("best_of_n", "revisions") or row["budget"] == 2]
    compute = _json(out / "search" / "stats.json")["compute"]
    tokens = sum(row["policy_tokens"] for row in paid), sum(row["prm_tokens"] for row in paid)
    assert (compute["policy_tokens"], compute["verifier_tokens"]) == tokens
    assert compute["total_flops"] == 2 * small_params * sum(tokens)  # the likelihood PRM is the small policy
    reviser = _json(out / "reviser" / "reviser" / "training_log.json")
    assert reviser["training_flops"] == 6 * small_params * reviser["num_train_tokens"] > 0
    by_stage = report["cost"]["by_stage"]
    assert set(by_stage) == {str(out / d) for d in COST_STAGES}
    for stage in COST_STAGES:
        path = out / stage
        if (path / "training_log.json").is_file():
            recorded = _json(path / "training_log.json")["training_flops"]
        else:
            stats = _json(path / "stats.json")
            recorded = (stats.get("compute") or stats["estimation_compute"])["total_flops"]
        if stage.startswith("search"):
            # The best-of-N candidates drawn by probe_samples (which counts them) are not charged again.
            top = [r for r in _rows(path) if (r["method"], r["budget"]) == ("best_of_n", 2)]
            reused = sum(sum(probe_tokens[r["problem_id"]][:2]) for r in top)
            recorded -= 2 * small_params * reused
        assert by_stage[str(path)] == recorded, stage
    assert report["cost"]["total_flops"] == sum(by_stage.values())

    # Compute-optimal and FLOPs-matched: accuracies, and the paper's budget X = M + 3 (M - 1) / R
    # (both policies saw the same D_pretrain) with M counted here.
    compute_optimal = report["compute_optimal"]
    assert all(0 <= compute_optimal[b] <= 1 for b in ("1", "2"))
    assert compute_optimal["efficiency_vs_best_of_n"] > 0
    multiple = large_params / small_params
    for ratio, generations in report["flops_matched_generations"].items():
        assert abs(generations - (multiple + 3 * (multiple - 1) / float(ratio))) <= 0.005
        assert generations > 2  # beyond the largest budget searched: the small model gets budget 2
        table = report["flops_matched"][ratio]
        everything = table["all"]
        assert (everything["small_ttc"], everything["large"]) == (compute_optimal["2"], large_pass)
        # The difference, paired over the same problems, with its 95% interval.
        difference = everything["difference"]
        assert difference["estimate"] == pytest.approx(compute_optimal["2"] - large_pass, abs=1e-4)
        assert difference["low"] <= difference["estimate"] <= difference["high"]
        for group, row in table.items():
            problems = [p for p in bins if group == "all" or str(bins[p]) == group]
            large = [answer["correct"][0] for answer in large_greedy if answer["problem_id"] in problems]
            assert problems and row["large"] == round(sum(large) / len(large), 4), (ratio, group)

    assert 0 <= report["prm"]["first_error_f1"] <= 1 and 0 <= report["prm"]["label_agreement"] <= 1
    assert all(0 <= v <= 1 for v in report["reviser"]["pass_at_1_by_step"])


def test_demo_outside_the_repository_runs_on_the_shipped_recipes(tmp_path, monkeypatch):
    """From any directory the demo's recipes are the installed ones (CI runs the whole fast demo from
    a wheel, .ci/wheel-check); one that is neither here nor shipped stops it before anything is written."""
    import ttcompute.demo as demo
    from ttcompute.core.recipes import RECIPES_DIR, resolve_config

    monkeypatch.chdir(tmp_path)
    for recipe in demo.DEMO_CONFIGS:
        assert resolve_config(recipe) == RECIPES_DIR / recipe.removeprefix("configs/")
    monkeypatch.setattr(demo, "DEMO_CONFIGS", (*demo.DEMO_CONFIGS, "configs/gone.yaml"))
    with pytest.raises(InputError, match=r"^configs/gone.yaml: no such config file, and no shipped recipe"):
        run_stage("demo", ["--fast", "true", "--output_dir", str(tmp_path / "d")])
    assert not (tmp_path / "d").exists()


@pytest.mark.slow  # a second fast demo (~30 s): the optional ReST^EM round
def test_demo_with_a_rest_em_round_searches_with_the_second_reviser(tmp_path, monkeypatch):
    """``--reviser_rounds 2``: the first reviser's own chains on its training problems become
    trajectories (each correct attempt with the attempts before it), a second reviser is trained on
    them plus the paper's, and the search uses it."""
    from ttcompute.core.outputs import distinct_revision_rows
    from ttcompute.core.shards import load_sharded, read_resolved_config

    monkeypatch.chdir(REPO)
    out = tmp_path / "demo"
    run_stage(
        "demo", [*TOY, "--reviser_rounds", "2", "--token_prm_methods", "best_of_n", "--output_dir", str(out)]
    )
    chains = distinct_revision_rows([dict(r) for r in load_sharded(out / "reviser" / "train_chains")])
    expected = []
    for row in sorted(chains, key=lambda r: r["problem_id"]):
        by_chain: dict[int, list] = {}
        for text, ok, chain, position in zip(
            row["completions"], row["correct"], row["subtrees"], row["positions"]
        ):
            by_chain.setdefault(chain, []).append((position, text, ok))
        for attempts in by_chain.values():
            attempts.sort()
            for t, (_, text, ok) in enumerate(attempts):
                if ok and text.strip():
                    expected.append((row["problem_id"], text, [a for _, a, _ in attempts[max(0, t - 4) : t]]))
    rows = [dict(r) for r in load_sharded(out / "reviser" / "trajectories_restem")]
    # Two empty lists would agree too: the chains must have given the second round something to learn.
    assert expected, "no correct attempt in the first reviser's chains: nothing was compared"
    assert sorted((r["problem_id"], r["completion"], r["previous_attempts"]) for r in rows) == sorted(
        expected
    )
    trained = read_resolved_config(out / "reviser" / "reviser_restem")
    assert trained["dataset_name"].split(",") == [str(out / "reviser" / "trajectories"),
                                                 str(out / "reviser" / "trajectories_restem")]  # fmt: skip
    assert read_resolved_config(out / "search")["reviser"] == str(out / "reviser" / "reviser_restem")
    assert "train-reviser: ReST^EM" in json.loads((out / "profile.json").read_text())
