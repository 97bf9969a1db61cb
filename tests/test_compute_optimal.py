"""``ttc compute-optimal``: cross-validated choice per bin, efficiency ratios, the stage's files."""

from __future__ import annotations

import json
from itertools import product

import datasets
import pytest

from ttcompute.cli import run_stage
from ttcompute.core.errors import InputError
from ttcompute.eval.compute_optimal import compute_optimal, headline_ratio
from ttcompute.eval.efficiency import assign_folds, efficiency


def record(problem_id, strategy, budget, correct, flops=1.0, method=None, generations=None):
    return {
        "problem_id": problem_id,
        "strategy": strategy,
        "method": method or strategy.split(" ")[0],
        "budget": budget,
        "generations": generations or budget,
        "correct": correct,
        "policy_flops": 100.0 * budget,
        "total_flops": flops,
    }


def test_each_bin_gets_its_own_best_strategy():
    # Bin 1: A always right, B always wrong; bin 2 the other way round. Each strategy alone: 0.5.
    problems = {f"e{i}": 1 for i in range(6)} | {f"h{i}": 2 for i in range(6)}
    records = [record(p, s, 4, (s == "A") == (b == 1)) for (p, b), s in product(problems.items(), ("A", "B"))]
    result = compute_optimal(records, problems, num_folds=2, seed=0)
    assert result["all"] == {4: 1.0}
    assert result["bins"]["1"][4]["chosen"] == ["A", "A"] and result["bins"]["2"][4]["chosen"] == ["B", "B"]


def test_a_problem_is_scored_with_the_strategy_chosen_on_the_other_fold():
    problems = [f"p{i}" for i in range(4)]
    folds = assign_folds(problems, 2, seed=3)
    fold0 = [p for p in problems if folds[p] == 0]
    fold1 = [p for p in problems if folds[p] == 1]
    records = []
    for p in problems:
        # "lucky" is right exactly on fold 0; "steady" on the first problem of each fold.
        records.append(record(p, "lucky", 8, p in fold0))
        records.append(record(p, "steady", 8, p in (fold0[0], fold1[0])))
    result = compute_optimal(records, dict.fromkeys(problems, 1), num_folds=2, seed=3)
    # Fold 0 is scored by the choice on fold 1 (steady 0.5 > lucky 0.0): 1 of its 2 right. Fold 1 is
    # scored by the choice on fold 0 (lucky 1.0): 0 of 2. In-sample choice would have scored 0.75.
    assert result["bins"]["1"][8]["chosen"] == ["steady", "lucky"]
    assert result["all"][8] == 0.25
    assert result["per_problem"][8] == {p: p == fold0[0] for p in problems}


def test_ties_go_to_the_cheaper_strategy_and_incomplete_strategies_do_not_compete():
    problems = {f"p{i}": 1 for i in range(4)}
    records = [record(p, "costly", 2, True, flops=10.0) for p in problems]
    records += [record(p, "cheap", 2, True, flops=1.0) for p in problems]
    # "partial" is right everywhere it ran but skipped one problem: never chosen.
    records += [record(p, "partial", 2, True, flops=0.1) for p in list(problems)[:3]]
    result = compute_optimal(records, problems)
    assert result["bins"]["1"][2]["chosen"] == ["cheap", "cheap"]


def test_folds_are_balanced_and_seeded():
    ids = [f"q{i}" for i in range(11)]
    folds = assign_folds(ids, 3, seed=1)
    assert sorted(list(folds.values()).count(f) for f in range(3)) == [3, 4, 4]
    assert folds == assign_folds(list(reversed(ids)), 3, seed=1)
    assert folds != assign_folds(ids, 3, seed=2)


def test_efficiency_against_a_brute_force_scan():
    curve = {1: 0.40, 2: 0.55, 4: 0.70, 8: 0.78, 16: 0.81}
    baseline = {1: 0.40, 2: 0.50, 4: 0.60, 8: 0.70, 16: 0.75, 32: 0.80, 64: 0.85}
    table = efficiency(curve, baseline, cost_generations=1.5)
    for budget, accuracy in baseline.items():
        reaching = [b for b in curve if curve[b] >= accuracy]
        expected = min(reaching) if reaching else None
        assert table[budget]["matching_budget"] == expected
        if expected is None:
            assert table[budget]["ratio"] is None
        else:
            assert table[budget]["ratio"] == round(budget / (expected + 1.5), 3)
    # Defined up to B = 32 (0.81 >= 0.80), not at 64.
    assert headline_ratio(table) == (32, round(32 / 17.5, 3))


def _write_select(directory, records):
    directory.mkdir(parents=True)
    datasets.Dataset.from_list(records).to_parquet(str(directory / "selections.parquet"))


def _write_difficulty(directory, problems):
    """A ``ttc difficulty`` table of ``problems`` (id -> bin), 4 samples each."""
    datasets.Dataset.from_dict(
        {"problem_id": list(problems), "pass_at_1": [0.5] * len(problems), "num_samples": [4] * len(problems),
         "bin": list(problems.values())}
    ).to_parquet(str(directory / "difficulty.parquet"))  # fmt: skip


def test_stage_merges_select_runs_charges_difficulty_and_writes_report(tmp_path):
    problems = {f"p{i}": 1 + i % 2 for i in range(8)}
    bon, tree = [], []
    for p, budget in product(problems, (1, 2, 4, 8)):
        # Weighted best-of-N reaches 0.5 at budget 8 (half the problems right); the tree search is
        # right on every problem from budget 2, wrong at 1.
        bon.append(
            record(p, "best_of_n_weighted", budget, budget == 8 and problems[p] == 1, method="best_of_n")
        )
        tree.append(record(p, "beam_search M=4", budget, budget >= 2, method="beam_search"))
    _write_select(tmp_path / "a", bon + tree)
    # A second run repeating best-of-N (with other results) and adding nothing new: skipped.
    _write_select(tmp_path / "b", [dict(r, correct=True) for r in bon])
    difficulty = tmp_path / "difficulty"
    difficulty.mkdir()
    _write_difficulty(difficulty, problems)
    # 4 samples per problem of 100 FLOPs each: 4 generations per problem.
    (difficulty / "stats.json").write_text(
        json.dumps({"num_problems": 8, "estimation_compute": {"total_flops": 8 * 400}})
    )
    out = tmp_path / "co"
    run_stage(
        "compute-optimal",
        ["--select_dirs", str(tmp_path / "a"), str(tmp_path / "b"), "--difficulty_dir", str(difficulty),
         "--output_dir", str(out)],
    )  # fmt: skip
    summary = json.loads((out / "compute_optimal.json").read_text())
    assert summary["baseline_curve"] == {"1": 0.0, "2": 0.0, "4": 0.0, "8": 0.5}
    assert summary["all"] == {"1": 0.0, "2": 1.0, "4": 1.0, "8": 1.0}
    assert summary["difficulty_cost_generations"] == 4.0
    # Baseline at 8 (0.5) is matched at budget 2: 4x, and 8 / (2 + 4) with the difficulty estimate.
    assert summary["efficiency_vs_best_of_n"] == 4.0
    assert summary["efficiency_vs_best_of_n_with_difficulty_cost"] == round(8 / 6, 3)
    # Every decision carries its paired-bootstrap interval (over the 8 problems).
    intervals = summary["intervals"]
    assert intervals["num_problems"] == 8
    assert intervals["efficiency_vs_best_of_n"]["estimate"] == summary["efficiency_vs_best_of_n"]
    difference = intervals["accuracy_difference"]["8"]
    assert difference["estimate"] == pytest.approx(0.5) and difference["low"] < 0.5 < difference["high"]
    assert (
        intervals["accuracy_difference"]["2"]["low"] == intervals["accuracy_difference"]["2"]["high"] == 1.0
    )
    assert (out / "compute_optimal_vs_best_of_n.png").stat().st_size > 10_000
    assert "| 8 | 0.500 | 8 | 2 | 4.0 | 1.333 |" in (out / "compute_optimal.md").read_text()
    # At 1, 2 and 4 the baseline is flat at 0: it spends 1, compute-optimal 1, no saving claimed.
    assert "| 4 | 0.000 | 1 | 1 | 1.0 |" in (out / "compute_optimal.md").read_text()


def test_stage_errors_name_what_is_wrong(tmp_path):
    with pytest.raises(InputError, match="selections.parquet: no such file"):
        run_stage(
            "compute-optimal", ["--select_dirs", str(tmp_path / "none"), "--output_dir", str(tmp_path / "o")]
        )
    _write_select(tmp_path / "a", [record("p0", "majority", 1, True, method="best_of_n")])
    with pytest.raises(InputError, match="baseline 'best_of_n_weighted' is not among"):
        run_stage(
            "compute-optimal", ["--select_dirs", str(tmp_path / "a"), "--output_dir", str(tmp_path / "o")]
        )
    with pytest.raises(InputError, match="num_folds must be >= 2"):
        run_stage("compute-optimal", ["--select_dirs", str(tmp_path / "a"), "--num_folds", "1"])


def test_a_bin_of_one_problem_takes_the_cheapest_strategy():
    records = [record("solo", "costly", 4, True, flops=9.0), record("solo", "cheap", 4, False, flops=1.0)]
    result = compute_optimal(records, {"solo": 3})
    # Nothing is left to choose on: the cheaper strategy is used, and it is scored honestly.
    assert set(result["bins"]["3"][4]["chosen"]) == {"cheap", None}
    assert result["all"] == {4: 0.0}


def test_a_probe_whose_samples_the_search_reused_is_charged_only_for_the_rest(tmp_path):
    """prm_probe scored 4 samples per problem (300 policy + 100 PRM FLOPs); best-of-N's first 2
    candidates are 2 of them. Where a reusing rule that reads the verifier is chosen, half the probe
    is already paid for; a majority vote reuses the samples but not their scores; beam search nothing."""
    problems = {f"p{i}": 1 + i % 2 for i in range(8)}
    records = []
    for p, budget in product(problems, (1, 2, 4, 8)):
        reused = min(budget, 2)
        # The one strategy right at each budget: beam at 1 and 2, weighted best-of-N at 4, majority at 8.
        for strategy, method, right in (("beam_search M=4", "beam_search", budget <= 2),
                                        ("best_of_n_weighted", "best_of_n", budget == 4),
                                        ("majority", "best_of_n", budget == 8)):  # fmt: skip
            row = record(p, strategy, budget, right, method=method)
            uses_verifier = strategy != "majority"
            row |= {
                "prm_flops": 10.0 if uses_verifier else 0.0,
                "reused_samples": reused if method == "best_of_n" else 0,
            }
            records.append(row)
    probe, search, select = tmp_path / "probe_samples", tmp_path / "search", tmp_path / "select"
    probe.mkdir()
    search.mkdir()
    _write_select(select, records)
    (select / "ttc_config.yaml").write_text(json.dumps({"search_dir": str(search)}))
    (search / "ttc_config.yaml").write_text(json.dumps({"initial_samples_dir": str(probe)}))
    difficulty = tmp_path / "difficulty"
    difficulty.mkdir()
    _write_difficulty(difficulty, problems)
    (difficulty / "ttc_config.yaml").write_text(
        json.dumps({"predictor": "prm_probe", "samples_dir": str(probe), "probe_samples": 4})
    )
    compute = {"policy_flops": 8 * 300, "verifier_flops": 8 * 100, "total_flops": 8 * 400}
    (difficulty / "stats.json").write_text(json.dumps({"num_problems": 8, "estimation_compute": compute}))
    out = tmp_path / "co"
    run_stage("compute-optimal", ["--select_dirs", str(select), "--difficulty_dir", str(difficulty),
                                  "--bootstrap_resamples", "100", "--output_dir", str(out)])  # fmt: skip
    summary = json.loads((out / "compute_optimal.json").read_text())
    assert summary["all"] == {"1": 1.0, "2": 1.0, "4": 1.0, "8": 1.0}
    # 100 policy FLOPs per generation: the probe is 4 generations; at 4, 400 - 2/4 x 400; at 8, 400 - 2/4 x 300.
    assert summary["difficulty_cost_generations"] == 4.0 and summary["difficulty_samples_reused"] is True
    assert summary["difficulty_cost_generations_charged"] == {"1": 4.0, "2": 4.0, "4": 2.0, "8": 2.5}
    assert "the searches reuse its samples" in (out / "compute_optimal.md").read_text()

    # The same selections without the reuse on record (another samples dir): all of it is charged.
    (search / "ttc_config.yaml").write_text(json.dumps({"initial_samples_dir": str(tmp_path / "elsewhere")}))
    run_stage("compute-optimal", ["--select_dirs", str(select), "--difficulty_dir", str(difficulty),
                                  "--bootstrap_resamples", "100", "--output_dir", str(tmp_path / "co2")])  # fmt: skip
    summary = json.loads((tmp_path / "co2" / "compute_optimal.json").read_text())
    assert summary["difficulty_samples_reused"] is False
    assert set(summary["difficulty_cost_generations_charged"].values()) == {4.0}


def test_the_averaged_efficiency_does_not_swing_on_a_plateau():
    """The demo's curves (seed 2024): the baseline is flat from 32 on. Moving its accuracy at 64 by one
    problem in 400 halves or doubles the ratio at the largest budget, but barely moves the average."""
    from ttcompute.eval.efficiency import iso_accuracy_efficiency

    co = {1: 0.3625, 2: 0.585, 4: 0.6625, 8: 0.655, 16: 0.6675, 32: 0.6725, 64: 0.685}
    base = {1: 0.35, 2: 0.4875, 4: 0.5675, 8: 0.615, 16: 0.63, 32: 0.665, 64: 0.6675}
    ratios, averaged = [], []
    for shift in (-0.0025, 0.0, 0.0025):
        moved = {**base, 64: base[64] + shift}
        ratios.append(headline_ratio(efficiency(co, moved))[1])
        averaged.append(iso_accuracy_efficiency(co, moved))
    assert max(ratios) / min(ratios) >= 2
    assert max(averaged) / min(averaged) < 1.05
    # By hand at one level, 0.5875: the baseline between 4 (0.5675) and 8 (0.615), compute-optimal
    # between 2 (0.585) and 4 (0.6625), each interpolated in log2 budget.
    level = 0.5875
    from ttcompute.eval.efficiency import _first_log_budget

    assert _first_log_budget(base, level) == pytest.approx(2 + (level - 0.5675) / (0.615 - 0.5675))
    assert _first_log_budget(co, level) == pytest.approx(1 + (level - 0.585) / (0.6625 - 0.585))
    # A dip (0.655 at 8 after 0.6625 at 4) does not count as falling back: the curve is made non-decreasing.
    assert _first_log_budget(co, 0.66) == pytest.approx(1 + (0.66 - 0.585) / (0.6625 - 0.585))
