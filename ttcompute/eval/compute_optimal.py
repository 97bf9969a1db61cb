"""``ttc compute-optimal``: the best strategy per difficulty bin and budget, by cross-validation.

Snell et al. (sec. 3.2) pick, for each difficulty bin and each generation budget, the strategy
(search method and its hyperparameters, revision ratio, selection rule) with the best accuracy, and
report its accuracy on held-out questions: the problems of every bin are split into ``num_folds``
folds; each fold is scored with the strategy chosen on the *other* folds, so no problem's own
result picks its strategy. The curve over all problems averages every problem's held-out result.

Input: the ``selections.parquet`` of one or more ``ttc select`` runs (one row per problem, strategy
and budget: whether the selected answer is correct, and the FLOPs spent). Bins: a ``ttc difficulty``
output (``--difficulty_dir``, oracle or predicted), else those ``ttc select`` stored.

Efficiency, for every budget B of the baseline (weighted best-of-N by default): the smallest budget
b at which the compute-optimal curve reaches the baseline's accuracy at B, and the ratio B' / b
("how many times fewer generations"), B' the smallest budget at which the baseline itself reaches
that accuracy (B on a rising curve; less where the curve is flat, which B / b would count as a saving).
The second ratio charges compute-optimal for estimating difficulty too: B' / (b + c), with c the
difficulty estimate's compute per problem in generations (its FLOPs over the FLOPs of one
generation) -- the paper left c out.

Outputs (``output_dir``): ``compute_optimal.json`` (curves, choices per bin/budget/fold, efficiency),
``compute_optimal.md`` and ``compute_optimal_vs_best_of_n.png``.
"""

from __future__ import annotations

import json
import logging
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import datasets

from ttcompute.core.bootstrap import paired_interval
from ttcompute.core.config import save_resolved_config
from ttcompute.core.errors import InputError
from ttcompute.core.recorded_paths import RECORDED_PATHS, is_local_path, record
from ttcompute.core.shards import read_resolved_config, write_json
from ttcompute.eval.allocation import allocation_choices, choose_strategy, realised
from ttcompute.eval.batch_allocation import evaluate_batch
from ttcompute.eval.compute_optimal_config import ComputeOptimalConfig
from ttcompute.eval.efficiency import (
    assign_folds,
    efficiency,
    format_interval,
    iso_accuracy_efficiency,
)
from ttcompute.eval.plots import plot_compute_optimal, plot_spend, plot_spend_by_bin
from ttcompute.eval.policy_bundle import export_bundle
from ttcompute.eval.routing_policy import write_routing_policy
from ttcompute.eval.select import accuracy_by_bin, is_adaptive, load_bins
from ttcompute.eval.spend_optimal import spend_optimal

logger = logging.getLogger(__name__)

COLUMNS = ("problem_id", "strategy", "budget", "correct", "total_flops")


def selection_table(
    records: list[dict[str, Any]], bins: dict[str, Any]
) -> tuple[dict[tuple[int, str], dict[str, tuple[bool, float]]], dict[str, list[str]]]:
    """``(budget, strategy) -> problem -> (correct, flops)`` and each bin's problems (sorted).

    Raises:
        InputError: a problem without a bin.
    """
    table: dict[tuple[int, str], dict[str, tuple[bool, float]]] = defaultdict(dict)
    for r in records:
        table[(int(r["budget"]), r["strategy"])][r["problem_id"]] = (
            bool(r["correct"]),
            float(r["total_flops"]),
        )
    members: dict[str, list[str]] = defaultdict(list)
    for problem_id in sorted({r["problem_id"] for r in records}):
        if problem_id not in bins:
            raise InputError(f"problem {problem_id}: no difficulty bin")
        members[str(bins[problem_id])].append(problem_id)
    return table, dict(members)


def batch_outcomes(
    config: ComputeOptimalConfig, bins: dict[str, Any], budgets: list[int]
) -> dict[int, dict[str, tuple[bool, int]]] | None:
    """Batch allocation of ``B`` samples per problem at every budget B, its folds those of compute-optimal
    within the bins, from the first select output's ``prefixes.parquet`` (None without)."""
    path = Path(config.select_dirs[0]) / "prefixes.parquet"
    if not path.is_file():
        return None
    prefixes = [
        row for row in datasets.Dataset.from_parquet(str(path)).to_list() if row["problem_id"] in bins
    ]
    groups = {p: str(b) for p, b in bins.items()}
    members: dict[str, list[str]] = defaultdict(list)
    for row in prefixes:
        members[groups[row["problem_id"]]].append(row["problem_id"])
    folds = {
        p: f for ps in members.values() for p, f in assign_folds(ps, config.num_folds, config.seed).items()
    }
    top = min((len(row["correct"]) for row in prefixes), default=0)
    return {b: evaluate_batch(prefixes, folds, config.num_folds, b) for b in budgets if b <= top}


def per_problem_allocation(
    records: list[dict[str, Any]],
    bins: dict[str, Any],
    per_bin: dict[int, dict[str, bool]],
    baseline: dict[int, dict[str, bool]],
    num_folds: int,
    seed: int,
    num_resamples: int,
    batch: dict[int, dict[str, tuple[bool, int]]] | None = None,
) -> dict[str, Any]:
    """Per-problem allocation (:mod:`ttcompute.eval.allocation`) at every budget B: the total ``N * B``
    spread by predicted difficulty, its held-out accuracy, and its paired-bootstrap differences from
    the baseline and from per-bin compute-optimal at the same total. ``batch``: per B, each problem's
    (verdict, samples drawn) under batch allocation of the same total (:mod:`~ttcompute.eval.
    batch_allocation`), compared with this static allocation and with the baseline."""
    table, members = selection_table(records, bins)
    folds = {group: assign_folds(problems, num_folds, seed) for group, problems in members.items()}
    out: dict[str, Any] = {}
    for budget in sorted(per_bin):
        choices = allocation_choices(table, members, folds, num_folds, budget)
        if not choices or set(choices) != set(per_bin[budget]):
            continue
        result = realised(table, choices)
        problems = sorted(choices)
        outcomes = {"allocation": [result["per_problem"][p] for p in problems]}
        outcomes["per_bin"] = [per_bin[budget][p] for p in problems]
        entry = {
            "accuracy": result["accuracy"],
            "generations": result["generations"],
            "total_allowed": budget * len(problems),
            "budgets_used": sorted(set(result["budgets"].values())),
        }

        def difference(x, other):
            return float(x["allocation"].mean() - x[other].mean())

        entry["vs_per_bin"] = paired_interval(
            outcomes, lambda x: difference(x, "per_bin"), num_resamples=num_resamples, seed=seed
        )
        if budget in baseline and all(p in baseline[budget] for p in problems):
            outcomes["baseline"] = [baseline[budget][p] for p in problems]
            entry["vs_baseline"] = paired_interval(
                outcomes, lambda x: difference(x, "baseline"), num_resamples=num_resamples, seed=seed
            )
        if batch and budget in batch and set(batch[budget]) == set(problems):
            outcomes["batch"] = [batch[budget][p][0] for p in problems]
            drawn = [batch[budget][p][1] for p in problems]
            entry["batch"] = {
                "accuracy": round(sum(outcomes["batch"]) / len(problems), 4),
                "generations": int(sum(drawn)),
                "minus_static": paired_interval(
                    outcomes,
                    lambda x: float(x["batch"].mean() - x["allocation"].mean()),
                    num_resamples=num_resamples,
                    seed=seed,
                ),  # fmt: skip
            }
            if "baseline" in outcomes:
                entry["batch"]["minus_baseline"] = paired_interval(
                    outcomes, lambda x: float(x["batch"].mean() - x["baseline"].mean()),
                    num_resamples=num_resamples, seed=seed,
                )  # fmt: skip
        out[str(budget)] = entry
    return out


def compute_optimal(
    records: list[dict[str, Any]], bins: dict[str, Any], num_folds: int = 2, seed: int = 0
) -> dict[str, Any]:
    """Cross-validated compute-optimal accuracy per bin and budget.

    ``records``: selections (problem_id, strategy, budget, correct, total_flops). A strategy competes
    in a bin at a budget only if it has a result for every problem of the bin there (a method skipped
    at some budget, e.g. lookahead below k + 1, is not chosen on a subset).

    Returns ``{"bins": {bin: {budget: {"accuracy", "num_problems", "chosen": [strategy per fold]}}},
    "all": {budget: accuracy}, "per_problem": {budget: {problem_id: correct}},
    "strategy_per_problem": {budget: {problem_id: the strategy its fold was given}}}``.
    """
    table, members = selection_table(records, bins)
    budgets = sorted({b for b, _ in table})
    out: dict[str, Any] = {"bins": {}, "all": {}, "per_problem": {}, "strategy_per_problem": {}}
    for budget in budgets:
        per_problem: dict[str, bool] = {}
        given: dict[str, str] = {}
        for group in sorted(members, key=lambda g: (len(g), g)):
            problems = members[group]
            strategies = [
                s for (b, s), rows in table.items() if b == budget and all(p in rows for p in problems)
            ]
            if not strategies:
                continue
            folds = assign_folds(problems, num_folds, seed)
            chosen = []
            for fold in range(num_folds):
                train = [p for p in problems if folds[p] != fold]
                test = [p for p in problems if folds[p] == fold]
                if not test:
                    chosen.append(None)
                    continue
                # A bin too small to hold out anything for training: every strategy ties (the cheapest wins).
                accuracy = {
                    s: _mean([table[(budget, s)][p][0] for p in train]) if train else 0.0 for s in strategies
                }
                flops = {s: _mean([table[(budget, s)][p][1] for p in train]) for s in strategies}
                pick = choose_strategy(accuracy, flops)
                chosen.append(pick)
                for p in test:
                    per_problem[p] = table[(budget, pick)][p][0]
                    given[p] = pick
            out["bins"].setdefault(group, {})[budget] = {
                "accuracy": round(_mean([per_problem[p] for p in problems]), 4),
                "num_problems": len(problems),
                "chosen": chosen,
            }
        if per_problem and len(per_problem) == sum(len(v) for v in members.values()):
            out["all"][budget] = round(_mean(list(per_problem.values())), 4)
        out["per_problem"][budget] = per_problem
        out["strategy_per_problem"][budget] = given
    return out


def bootstrap_intervals(
    per_problem: dict[int, dict[str, bool]],
    baseline_per_problem: dict[int, dict[str, bool]],
    headline_budget: int | None,
    cost_generations: float | dict[int, float],
    num_resamples: int,
    seed: int,
) -> dict[str, Any]:
    """Paired bootstrap intervals (over problems) of compute-optimal minus the baseline at every
    budget, and of the headline efficiency ratio without and with the difficulty estimate's cost.

    The held-out correctness of each problem is held fixed (each fold's choice made on all problems):
    the intervals say how much the problems drawn move the result. A resample in which the
    compute-optimal curve never reaches the baseline's accuracy at the headline budget counts as
    ratio 0 (no saving shown) -- the conservative reading.
    """
    budgets = sorted(b for b in per_problem if b in baseline_per_problem)
    problems = sorted(
        set.intersection(*(set(per_problem[b]) & set(baseline_per_problem[b]) for b in budgets))
    )
    if not budgets or not problems:
        return {}
    outcomes = {f"co/{b}": [per_problem[b][p] for p in problems] for b in budgets}
    outcomes |= {f"base/{b}": [baseline_per_problem[b][p] for p in problems] for b in budgets}
    options = {"num_resamples": num_resamples, "seed": seed}
    out: dict[str, Any] = {
        "num_problems": len(problems),
        "accuracy_difference": {},
        "compute_optimal_accuracy": {},
        "baseline_accuracy": {},
    }
    for b in budgets:
        for name, key in (("compute_optimal_accuracy", f"co/{b}"), ("baseline_accuracy", f"base/{b}")):
            out[name][str(b)] = paired_interval(outcomes, lambda x, k=key: float(x[k].mean()), **options)
        out["accuracy_difference"][str(b)] = paired_interval(
            outcomes, lambda x, b=b: float(x[f"co/{b}"].mean() - x[f"base/{b}"].mean()), **options
        )

    def ratio_at_headline(x, cost: float | dict[int, float]) -> float | None:
        curve = {b: float(x[f"co/{b}"].mean()) for b in budgets}
        baseline = {b: float(x[f"base/{b}"].mean()) for b in budgets}
        return efficiency(curve, baseline, cost)[headline_budget]["ratio"]

    if headline_budget in budgets:
        for name, cost in (
            ("efficiency_vs_best_of_n", 0.0),
            ("efficiency_vs_best_of_n_with_difficulty_cost", cost_generations),
        ):
            out[name] = paired_interval(
                outcomes, lambda x, c=cost: ratio_at_headline(x, c), undefined=0.0, **options
            )

    def averaged(x, cost: float | dict[int, float]) -> float | None:
        curve = {b: float(x[f"co/{b}"].mean()) for b in budgets}
        baseline = {b: float(x[f"base/{b}"].mean()) for b in budgets}
        return iso_accuracy_efficiency(curve, baseline, cost)

    for name, cost in (
        ("iso_accuracy_efficiency", 0.0),
        ("iso_accuracy_efficiency_with_difficulty_cost", cost_generations),
    ):
        out[name] = paired_interval(outcomes, lambda x, c=cost: averaged(x, c), **options)
    return out


def headline_ratio(table: dict[int, dict[str, Any]]) -> tuple[int | None, float | None]:
    """The ratio at the largest baseline budget where it is defined (and that budget)."""
    defined = [b for b, v in table.items() if v["ratio"] is not None]
    return (max(defined), table[max(defined)]["ratio"]) if defined else (None, None)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def load_selections(select_dirs: list[str]) -> list[dict[str, Any]]:
    """Selection records of several ``ttc select`` runs; a (problem, strategy, budget) already seen in
    an earlier directory is skipped (counted in the log)."""
    records: list[dict[str, Any]] = []
    seen: set[tuple[str, str, int]] = set()
    skipped = 0
    for directory in select_dirs:
        path = Path(directory) / "selections.parquet"
        if not path.is_file():
            raise InputError(f"{path}: no such file (run ttc select first)")
        table = datasets.Dataset.from_parquet(str(path))
        missing = [c for c in COLUMNS if c not in table.column_names]
        if missing:
            raise InputError(f"{path}: missing column(s) {missing} (not ttc select output?)")
        for row in table.to_list():  # in bulk: row by row, datasets decodes each row on its own
            key = (row["problem_id"], row["strategy"], int(row["budget"]))
            if key in seen:
                skipped += 1
                continue
            seen.add(key)
            records.append(row)
    if not records:
        raise InputError(f"{', '.join(select_dirs)}: no selections")
    if skipped:
        logger.info("%d selections already given by an earlier directory were skipped", skipped)
    return records


def _bins_and_cost(
    config: ComputeOptimalConfig, records: list[dict[str, Any]]
) -> tuple[dict[str, Any], float, str]:
    """Bins per problem, the difficulty estimate's FLOPs per problem, and where the bins came from."""
    problems = {r["problem_id"] for r in records}
    if config.difficulty_dir:
        bins = load_bins(config.difficulty_dir, problems)
        cost = config.difficulty_cost_flops
        if cost is None:
            stats_file = Path(config.difficulty_dir) / "stats.json"
            stats = json.loads(stats_file.read_text()) if stats_file.is_file() else {}
            compute = stats.get("estimation_compute") or {}
            cost = compute.get("total_flops", 0) / max(stats.get("num_problems", 1), 1)
        return bins, float(cost), config.difficulty_dir
    bins = {r["problem_id"]: r.get("bin") for r in records}
    if any(b is None for b in bins.values()):
        logger.warning(
            "No difficulty bins (ttc select ran without --difficulty_dir): one bin of all problems"
        )
        bins = {p: 1 for p in bins}
    return bins, float(config.difficulty_cost_flops or 0.0), "ttc select"


def probe_reuse(config: ComputeOptimalConfig) -> dict[str, float] | None:
    """What the searches reuse of a ``prm_probe`` difficulty estimate: its samples per problem and
    the policy and verifier FLOPs it spent per problem -- None unless the bins are a ``prm_probe``
    estimate whose samples are the searches' ``--initial_samples_dir``."""
    if not config.difficulty_dir or config.difficulty_cost_flops is not None:
        return None
    options = read_resolved_config(config.difficulty_dir)
    if options.get("predictor") != "prm_probe" or not options.get("samples_dir"):
        return None
    probed = Path(options["samples_dir"]).resolve()
    for directory in config.select_dirs:
        search_dir = read_resolved_config(directory).get("search_dir")
        initial = read_resolved_config(search_dir).get("initial_samples_dir") if search_dir else None
        if initial and Path(initial).resolve() == probed:
            break
    else:
        return None
    stats = json.loads((Path(config.difficulty_dir) / "stats.json").read_text())
    compute, n = stats.get("estimation_compute") or {}, max(stats.get("num_problems", 1), 1)
    return {
        "probe_samples": int(options.get("probe_samples", 4)),
        "policy_flops": compute.get("policy_flops", 0) / n,
        "verifier_flops": compute.get("verifier_flops", 0) / n,
    }


def charged_difficulty_cost(
    cost_flops: float,
    reuse: dict[str, float] | None,
    records: list[dict[str, Any]],
    strategy_per_problem: dict[int, dict[str, str]],
) -> dict[int, float]:
    """The difficulty estimate's mean FLOPs per problem still to charge at each budget: all of it,
    less -- where the strategy given to a problem reuses ``r`` of the probe's ``k`` samples as its
    first candidates -- ``min(r, k) / k`` of the probe's sampling, and of its scoring when the
    strategy's rule reads the verifier (its selection spent PRM FLOPs).

    >>> records = [{"problem_id": "p", "strategy": "bon", "budget": 2, "reused_samples": 2, "prm_flops": 1},
    ...            {"problem_id": "p", "strategy": "beam", "budget": 2, "reused_samples": 0, "prm_flops": 1}]
    >>> reuse = {"probe_samples": 4, "policy_flops": 80.0, "verifier_flops": 20.0}
    >>> charged_difficulty_cost(100.0, reuse, records, {2: {"p": "bon"}})
    {2: 50.0}
    >>> charged_difficulty_cost(100.0, reuse, records, {2: {"p": "beam"}})
    {2: 100.0}
    """
    index = {(r["problem_id"], r["strategy"], int(r["budget"])): r for r in records}
    out = {}
    for budget, given in strategy_per_problem.items():
        if not given:
            out[budget] = cost_flops
            continue
        costs = []
        for problem, strategy in given.items():
            record = index[(problem, strategy, budget)]
            reused = min(int(record.get("reused_samples") or 0), reuse["probe_samples"]) if reuse else 0
            saved = 0.0
            if reused:
                share = reused / reuse["probe_samples"]
                saved = share * (
                    reuse["policy_flops"] + (reuse["verifier_flops"] if record["prm_flops"] else 0.0)
                )
            costs.append(max(cost_flops - saved, 0.0))
        out[budget] = sum(costs) / len(costs)
    return out


def flops_per_generation(records: list[dict[str, Any]]) -> float:
    """Mean policy FLOPs of one generation, from the best-of-N selections (N generations each)."""
    values = [
        r["policy_flops"] / r["generations"]
        for r in records
        if r.get("method") == "best_of_n" and r.get("generations") and r.get("policy_flops") is not None
    ]
    if not values:
        raise InputError("no best-of-N selections: cannot express the difficulty cost in generations")
    return sum(values) / len(values)


def _bands(intervals: dict[str, Any]) -> dict[str, dict[int, tuple[float, float]]]:
    """The shaded 95% bands of the plot's two curves."""
    bands: dict[str, dict[int, tuple[float, float]]] = {}
    for key, name in (("compute-optimal", "compute_optimal_accuracy"), ("baseline", "baseline_accuracy")):
        bands[key] = {
            int(b): (v["low"], v["high"]) for b, v in intervals.get(name, {}).items() if v["low"] is not None
        }
    return bands


def _iso_lines(result: dict[str, Any]) -> list[str]:
    intervals = result.get("intervals", {})
    if "iso_accuracy_efficiency" not in intervals:
        return []
    return [
        "Averaged over the accuracies both curves reach (each level's budget ratio, interpolated in log "
        f"budget; geometric mean): **{format_interval(intervals['iso_accuracy_efficiency'], 2)}x**, "
        f"**{format_interval(intervals['iso_accuracy_efficiency_with_difficulty_cost'], 2)}x** with the "
        "difficulty estimate charged.",
        "",
    ]


def _reuse_note(result: dict[str, Any]) -> str:
    if not result.get("difficulty_samples_reused"):
        return ""
    charged = result["difficulty_cost_generations_charged"]
    return "; the searches reuse its samples, so what is charged at budget b is " + ", ".join(
        f"{charged[b]:.2f} (b={b})" for b in sorted(charged, key=int)
    )


def _difference_row(result: dict[str, Any], budgets: list[str]) -> list[str]:
    differences = result.get("intervals", {}).get("accuracy_difference", {})
    if not differences:
        return []
    return [
        "| difference [95% CI] | " + " | ".join(format_interval(differences.get(b)) for b in budgets) + " |"
    ]


def _allocation_lines(result: dict[str, Any]) -> list[str]:
    allocation = result.get("per_problem_allocation") or {}
    if not allocation:
        return []
    lines = [
        "",
        "## Per-problem allocation at the same total (N x B generations)",
        "",
        "Each problem's own budget from its bin's curve on the other fold (greedy on the curves' concave",
        "hulls, ttcompute/eval/allocation.py); differences paired over problems, 95% intervals. Batch",
        "allocation: the same total drawn one best-of-N sample at a time, each to the problem whose state",
        "promises the most (ttcompute/eval/batch_allocation.py, its gains measured on the other fold);",
        "it stops early where no problem is expected to gain.",
        "",
    ]
    return lines + allocation_table(allocation)


def allocation_table(allocation: dict[str, dict[str, Any]]) -> list[str]:
    """The per-problem allocation table of ``compute_optimal.json`` (also in ``ttc report``), with batch
    allocation at the same total beside it when it was evaluated."""
    with_batch = any("batch" in entry for entry in allocation.values())
    head = "| B | allocation | generations used / allowed | budgets used | - per-bin compute-optimal | - baseline |"
    rule = "|---:|---:|---:|---|---:|---:|"
    if with_batch:
        head += " batch allocation | its generations | batch - static allocation | batch - baseline |"
        rule += "---:|---:|---:|---:|"
    lines = [head, rule]
    for b, entry in sorted(allocation.items(), key=lambda item: int(item[0])):
        line = (
            f"| {b} | {entry['accuracy']:.3f} | {entry['generations']} / {entry['total_allowed']} | "
            f"{', '.join(map(str, entry['budgets_used']))} | {format_interval(entry.get('vs_per_bin'))} | "
            f"{format_interval(entry.get('vs_baseline'))} |"
        )
        if with_batch:
            batch = entry.get("batch") or {}
            line += (
                f" {batch['accuracy']:.3f} | {batch['generations']} | {format_interval(batch.get('minus_static'))} | "
                f"{format_interval(batch.get('minus_baseline'))} |"
                if batch
                else " - | - | - | - |"
            )
        lines.append(line)
    return lines


def _headline_lines(result: dict[str, Any]) -> list[str]:
    intervals = result.get("intervals", {})
    if "efficiency_vs_best_of_n" not in intervals:
        return []
    n = intervals["num_problems"]
    return [
        f"Headline at baseline budget {result['efficiency_at_budget']}: "
        f"**{format_interval(intervals['efficiency_vs_best_of_n'], 2)}x** fewer generations, "
        f"**{format_interval(intervals['efficiency_vs_best_of_n_with_difficulty_cost'], 2)}x** with the "
        f"difficulty estimate charged (95% paired bootstrap over {n} problems, "
        f"{intervals['efficiency_vs_best_of_n']['resamples']} resamples; a resample that never matches "
        "counts as 0).",
        "",
    ]


def spend_table(rows: dict[str, dict[str, Any]]) -> list[str]:
    """One row per spend-axis analysis (``{label: spend_optimal result}``): the generations spent where
    its curve reaches each baseline's accuracy at its largest budget (less 0.01), that budget over
    them, and the averaged ratio; 95% paired bootstrap intervals over problems."""
    lines = [
        "| bins (predictor) | predictor cost | generations at weighted best-of-N's top accuracy | "
        "fewer than its budget | averaged over accuracies | generations at the strongest fixed "
        "strategy's | averaged vs it |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, entry in rows.items():
        intervals = entry["intervals"]
        lines.append(
            f"| {label} | {entry['predictor_generations']:.2f} | "
            f"{format_interval(intervals['spend_at_target/best_of_n'], 2)} | "
            f"{format_interval(intervals['ratio_at_target/best_of_n'], 1)}x | "
            f"{format_interval(intervals['averaged/best_of_n'], 2)}x | "
            f"{format_interval(intervals['spend_at_target/strongest_fixed'], 2)} | "
            f"{format_interval(intervals['averaged/strongest_fixed'], 2)}x |"
        )
    return lines


def _spend_lines(result: dict[str, Any]) -> list[str]:
    if "spend" not in result:
        return []
    spend = result["spend"]
    targets = "There is no baseline to compare with (the selections hold no weighted best-of-N)."
    if spend["baseline_curve"]:
        top = max(spend["baseline_curve"], key=int)
        targets = (
            f"Targets: weighted best-of-N's accuracy at budget {top} ({spend['baseline_curve'][top]:.3f}) and the "
            f"strongest fixed strategy's ({spend['strongest_fixed_strategy'][top]}, "
            f"{spend['strongest_fixed_curve'][top]:.3f}), less 0.01."
        )
    lines = [
        "## Static and adaptive strategies, by generations actually spent",
        "",
        "Options: every strategy of the selections at every budget or cap, adaptive ones by what their rule",
        "drew, and giving up; a mean of L generations per problem is spread over each held-out fold by its",
        "bins' points on the other fold (eval/spend_optimal.py). Every cost counted: the generations spent",
        "plus the predictor's. " + targets,
        "",
        *spend_table({f"{result['bins_from']}": spend, "one bin (no predictor)": result["spend_one_bin"]}),
        "",
        "| L | generations (with the predictor) | accuracy |",
        "|---:|---:|---:|",
    ]
    lines += [f"| {p['level']:g} | {p['generations']:.2f} | {p['accuracy']:.3f} |" for p in spend["curve"]]
    by_bin = spend["at_target"]["by_bin"]
    lines += [
        "",
        "Where the curve reaches weighted best-of-N's top accuracy, per bin:",
        "",
        "| bin | problems | generations | accuracy | options given (problems) |",
        "|---|---:|---:|---:|---|",
    ]
    for group, entry in by_bin.items():
        given = ", ".join(
            f"{name} ({n})" for name, n in sorted(entry["options"].items(), key=lambda kv: -kv[1])
        )
        lines.append(
            f"| {group} | {entry['problems']} | {entry['generations']:.2f} | {entry['accuracy']:.3f} | {given} |"
        )
    return [*lines, ""]


def recorded_summary(summary: dict[str, Any], out: Path) -> dict[str, Any]:
    """``compute_optimal.json`` as written: the difficulty output it binned by relative to the file
    (core/recorded_paths.py), so ``ttc report`` finds its stats after the run moves."""
    if not is_local_path(summary.get("bins_from")):
        return summary
    return {**summary, "bins_from": record(summary["bins_from"], out), RECORDED_PATHS: ["/bins_from"]}


def markdown_report(result: dict[str, Any]) -> str:
    """Tables: compute-optimal vs the baseline per bin, the choices, and the efficiency ratios."""
    budgets = sorted(result["all"], key=int)
    lines = [
        "# Compute-optimal test-time compute",
        "",
        f"{result['num_folds']}-fold cross-validation within each bin (bins: {result['bins_from']}); "
        f"baseline `{result['baseline']}`.",
        "",
        "| | " + " | ".join(budgets) + " |",
        "|---|" + "---:|" * len(budgets),
        "| compute-optimal | " + " | ".join(f"{result['all'][b]:.3f}" for b in budgets) + " |",
        f"| {result['baseline']} | "
        + " | ".join(f"{result['baseline_curve'].get(b, math.nan):.3f}" for b in budgets)
        + " |",
        *_difference_row(result, budgets),
        "",
        *_headline_lines(result),
        *_iso_lines(result),
        "## Efficiency (baseline budget B -> smallest compute-optimal budget b with the same accuracy)",
        "",
        f"Difficulty estimate: {result['difficulty_cost_generations']:.2f} generations per problem"
        + _reuse_note(result)
        + ".",
        "",
        "| B | baseline accuracy | B' (baseline's own first budget there) | b | B' / b | B' / (b + difficulty cost) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for b, row in result["efficiency"].items():
        with_cost = result["efficiency_with_difficulty_cost"][b]["ratio"]
        lines.append(
            f"| {b} | {row['baseline_accuracy']:.3f} | {row['baseline_budget']} | {row['matching_budget'] or '-'} | "
            f"{row['ratio'] if row['ratio'] is not None else '-'} | {with_cost if with_cost is not None else '-'} |"
        )
    lines += _allocation_lines(result)
    lines += ["", *_spend_lines(result)]
    lines += ["", "## Per bin: held-out accuracy and the strategy chosen on each fold", ""]
    for group, per_budget in result["bins"].items():
        n = next(iter(per_budget.values()))["num_problems"]
        lines += [
            f"### Bin {group} ({n} problems)",
            "",
            "| budget | accuracy | chosen (per fold) |",
            "|---:|---:|---|",
        ]
        for budget, cell in per_budget.items():
            chosen = ", ".join(c or "-" for c in cell["chosen"])
            lines.append(f"| {budget} | {cell['accuracy']:.3f} | {chosen} |")
        lines.append("")
    return "\n".join(lines)


def _spend_plots(
    out: Path, summary: dict[str, Any], config: ComputeOptimalConfig, bins: dict[str, Any], selections: list
) -> None:
    """``spend.png`` (the spend-axis curves beside the static ones and the verifier's ceiling) and
    ``spend_by_bin.png`` (each problem's generations where the curve reaches the baseline's top)."""
    spend = summary["spend"]
    curves = {}
    for label, entry in ((Path(summary["bins_from"]).name, spend), ("one bin", summary["spend_one_bin"])):
        curves[label] = {p["generations"]: p["accuracy"] for p in entry["curve"] if p["generations"] > 0}
    cost = summary["difficulty_cost_generations"]
    baselines = {
        f"{config.baseline}": spend["baseline_curve"],
        "strongest fixed strategy": spend["strongest_fixed_curve"],
        "static compute-optimal (per bin, predictor charged)": {
            float(b) + cost: a for b, a in summary["all"].items()
        },
    }
    ceiling_file = Path(config.select_dirs[0]) / "accuracy.json"
    ceiling = (
        json.loads(ceiling_file.read_text()).get("ceiling", {}).get("all", {})
        if ceiling_file.is_file()
        else {}
    )
    plot_spend(
        curves, baselines, {int(b): a for b, a in (ceiling.get("pass_at_n") or {}).items()}, out / "spend.png"
    )
    spent: dict[str, list[float]] = defaultdict(list)
    for problem, generations in spend["at_target"]["generations_per_problem"].items():
        spent[str(bins[problem])].append(generations)
    plot_spend_by_bin(
        dict(sorted(spent.items(), key=lambda kv: (len(kv[0]), kv[0]))),
        f"generations per problem where the curve reaches {config.baseline}'s top accuracy "
        f"(+{spend['predictor_generations']:.2f} predictor)",
        out / "spend_by_bin.png",
    )


def run_compute_optimal(config: ComputeOptimalConfig) -> dict[str, Any]:
    """The ``ttc compute-optimal`` stage."""
    selections = load_selections(config.select_dirs)
    # The paper's compute-optimal: static strategies at fixed budgets. Adaptive ones (a cap, not a
    # budget) compete with them on the axis of generations actually spent (spend_optimal).
    records = [r for r in selections if not is_adaptive(r["strategy"])]
    bins, cost_flops, bins_from = _bins_and_cost(config, records)
    strategies = {r["strategy"] for r in records}
    if config.baseline not in strategies:
        raise InputError(f"baseline {config.baseline!r} is not among the strategies: {sorted(strategies)}")
    result = compute_optimal(records, bins, config.num_folds, config.seed)
    baseline_records = (r for r in records if r["strategy"] == config.baseline)
    baseline = accuracy_by_bin(baseline_records)["all"][config.baseline]
    per_generation = flops_per_generation(records) if cost_flops else 1.0
    cost_generations = cost_flops / per_generation
    reuse = probe_reuse(config)
    # Per budget: what is left to charge once the strategies' reuse of the probe's samples is counted.
    charged_cost = {
        b: c / per_generation
        for b, c in charged_difficulty_cost(
            cost_flops, reuse, records, result["strategy_per_problem"]
        ).items()
    }
    plain = efficiency(result["all"], baseline)
    charged = efficiency(result["all"], baseline, charged_cost)
    baseline_per_problem: dict[int, dict[str, bool]] = defaultdict(dict)
    for r in records:
        if r["strategy"] == config.baseline:
            baseline_per_problem[int(r["budget"])][r["problem_id"]] = bool(r["correct"])
    allocation = per_problem_allocation(
        records, bins, result["per_problem"], baseline_per_problem, config.num_folds, config.seed,
        config.bootstrap_resamples, batch_outcomes(config, bins, sorted(result["per_problem"])),
    )  # fmt: skip
    intervals = bootstrap_intervals(
        result["per_problem"],
        baseline_per_problem,
        headline_ratio(plain)[0],
        charged_cost,
        config.bootstrap_resamples,
        config.bootstrap_seed,
    )
    static = {r["strategy"] for r in records}

    def on_spend_axis(problem_bins: dict[str, Any], cost: float) -> dict[str, Any]:
        members: dict[str, list[str]] = defaultdict(list)
        for problem in sorted(problem_bins):
            members[str(problem_bins[problem])].append(problem)
        folds = {
            p: f
            for ps in members.values()
            for p, f in assign_folds(ps, config.num_folds, config.seed).items()
        }
        return spend_optimal(
            selections, problem_bins, folds, config.num_folds, cost, config.baseline, static,
            config.bootstrap_resamples, config.bootstrap_seed,
        )  # fmt: skip

    spend = on_spend_axis(bins, cost_generations)
    # The same without bins: adaptive rules alone, no predictor to pay for.
    spend_one_bin = on_spend_axis({p: 1 for p in bins}, 0.0)
    summary = {
        "baseline": config.baseline,
        "num_folds": config.num_folds,
        "bins_from": bins_from,
        "num_problems": len(bins),
        "problem_bins": {p: str(b) for p, b in sorted(bins.items())},
        "all": {str(b): a for b, a in result["all"].items()},
        "baseline_curve": {str(b): a for b, a in baseline.items()},
        "bins": {g: {str(b): cell for b, cell in v.items()} for g, v in result["bins"].items()},
        "difficulty_cost_flops_per_problem": cost_flops,
        "difficulty_cost_generations": round(cost_generations, 3),
        # Less where the strategies reuse a prm_probe estimate's samples (search --initial_samples_dir).
        "difficulty_cost_generations_charged": {str(b): round(c, 3) for b, c in sorted(charged_cost.items())},
        "difficulty_samples_reused": reuse is not None,
        "efficiency": {str(b): v for b, v in plain.items()},
        "efficiency_with_difficulty_cost": {str(b): v for b, v in charged.items()},
        "efficiency_vs_best_of_n": headline_ratio(plain)[1],
        "efficiency_vs_best_of_n_with_difficulty_cost": headline_ratio(charged)[1],
        "efficiency_at_budget": headline_ratio(plain)[0],
        # The saving averaged over the accuracies both curves reach (well-conditioned on a plateau).
        "iso_accuracy_efficiency": iso_accuracy_efficiency(result["all"], baseline),
        "iso_accuracy_efficiency_with_difficulty_cost": iso_accuracy_efficiency(
            result["all"], baseline, charged_cost
        ),
        # Paired bootstrap over problems, 95% (ttcompute/core/bootstrap.py).
        "intervals": intervals,
        # The total N * B spread per problem by difficulty, vs the baseline and per-bin at that total.
        "per_problem_allocation": allocation,
        # Each problem's held-out verdict per budget: later comparisons pair problems (flops-matched).
        "per_problem": {str(b): dict(sorted(v.items())) for b, v in result["per_problem"].items()},
        # Static and adaptive strategies together, on the axis of generations actually spent: with
        # these bins (their predictor charged), and with one bin (no predictor).
        "spend": spend,
        "spend_one_bin": spend_one_bin,
    }
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_resolved_config(out, "compute-optimal", config)
    write_json(out / "compute_optimal.json", recorded_summary(summary, out))
    (out / "compute_optimal.md").write_text(markdown_report(summary))
    policy_file = write_routing_policy(out, config, selections, bins)  # for ttc route
    if config.export_policy:
        if policy_file is None:
            raise InputError(
                f"--export_policy {config.export_policy}: no routing policy was written (see above)"
            )
        exported = export_bundle(policy_file, config.export_policy)
        summary["exported_policy"] = {"dir": config.export_policy, **exported}
    plot = plot_compute_optimal(
        {int(b): a for b, a in summary["all"].items()},
        baseline,
        {g: {int(b): c["accuracy"] for b, c in v.items()} for g, v in summary["bins"].items()},
        config.baseline,
        out / "compute_optimal_vs_best_of_n.png",
        bands=_bands(intervals),
    )
    _spend_plots(out, summary, config, bins, selections)
    logger.info(
        "Compute-optimal vs %s: %s vs %s; efficiency %s (%s with the difficulty estimate's %.1f generations) "
        "-> %s (plot: %s)",
        config.baseline,
        summary["all"],
        summary["baseline_curve"],
        summary["efficiency_vs_best_of_n"],
        summary["efficiency_vs_best_of_n_with_difficulty_cost"],
        cost_generations,
        out,
        plot.name,
    )
    return {"output_dir": str(out), **{k: summary[k] for k in ("all", "efficiency_vs_best_of_n")}}
