"""Compute-optimal over static and adaptive strategies together, on the axis of generations actually spent.

The paper's compute-optimal (:mod:`~ttcompute.eval.compute_optimal`) gives every problem of a bin the
same budget. Here an *option* is any (strategy, budget) ``ttc select`` evaluated -- a static strategy
spends its budget, an adaptive one what its rule drew -- plus *giving up* (no generation, no answer).
For a mean of ``L`` generations per problem, the options are spread over the problems by their bins'
curves: on the other folds each bin's options give points (mean generations spent, accuracy), and the
greedy of :func:`~ttcompute.eval.allocation.allocate` on the upper concave hulls of those points buys,
for the held-out problems, the generations where they gain the most accuracy per generation, within
``L`` times their number. So a bin the verifier settles at one sample gets one, and a bin predicted out of
reach may get none. Each held-out problem is then scored with the option it was given: its own
verdict and its own spend, read from the selections (nothing re-estimated), so thresholds and caps are
chosen on the other fold only.

Every cost is counted on the x-axis: the generations each problem actually spent, plus the difficulty
predictor's cost in generations (its FLOPs over one generation's; 0 without bins). The curve is read
against two static baselines: weighted best-of-N and the strongest fixed strategy at each budget (the
best static strategy there over all problems, chosen in hindsight: a stronger baseline than any one
strategy). Reported, each with a paired bootstrap interval over problems:

* the mean generations spent where the curve first reaches a baseline's accuracy at its largest budget,
  less 0.01 (``spend_at_target``), and the ratio of that budget to it;
* the averaged ratio (:func:`~ttcompute.eval.efficiency.iso_accuracy_efficiency`): generations the
  baseline needs over generations spent, averaged over the accuracies both curves reach.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ttcompute.core.bootstrap import paired_intervals
from ttcompute.eval.allocation import allocate
from ttcompute.eval.efficiency import iso_accuracy_efficiency

GIVE_UP = "give up"
TARGET_SLACK = 0.01


def spend_levels(largest: float, per_octave: int = 8) -> list[float]:
    """Mean generations per problem to allocate: ``per_octave`` points per doubling from 1/4 to ``largest``.

    >>> spend_levels(2, per_octave=1)
    [0.25, 0.5, 1.0, 2.0]
    """
    top = int(np.ceil(np.log2(largest) * per_octave))
    return [round(2 ** (k / per_octave), 4) for k in range(-2 * per_octave, top + 1)]


def option_table(
    records: Sequence[Mapping[str, Any]],
) -> dict[tuple[str, int], dict[str, tuple[bool, float, float]]]:
    """``(strategy, budget) -> problem -> (correct, generations spent, total FLOPs)``."""
    table: dict[tuple[str, int], dict[str, tuple[bool, float, float]]] = defaultdict(dict)
    for r in records:
        table[(r["strategy"], int(r["budget"]))][r["problem_id"]] = (
            bool(r["correct"]),
            float(r["generations"]),
            float(r["total_flops"]),
        )
    return dict(table)


def bin_points(
    table: Mapping[tuple[str, int], Mapping[str, tuple[bool, float, float]]],
    train: Sequence[str],
    complete_for: Sequence[str],
) -> dict[float, tuple[float, tuple[str, int] | None]]:
    """A bin's points on its ``train`` problems: mean generations spent -> (accuracy, the option), the
    best option at each spend (ties to the cheaper in FLOPs, then the name); giving up is the point
    (0, 0). An option competes only with a result for every problem of ``complete_for`` (the bin).

    >>> table = {("a", 2): {"p": (True, 2.0, 9.0), "q": (False, 2.0, 9.0)},
    ...          ("b", 4): {"p": (True, 1.0, 5.0), "q": (True, 3.0, 5.0)}}
    >>> bin_points(table, ["p", "q"], ["p", "q"])
    {0.0: (0.0, None), 2.0: (1.0, ('b', 4))}
    """
    points: dict[float, tuple[float, float, str, tuple[str, int] | None]] = {0.0: (0.0, 0.0, "", None)}
    if not train:
        return {0.0: (0.0, None)}
    for option, rows in table.items():
        if not all(p in rows for p in complete_for):
            continue
        accuracy = sum(rows[p][0] for p in train) / len(train)
        spent = round(sum(rows[p][1] for p in train) / len(train), 6)
        flops = sum(rows[p][2] for p in train) / len(train)
        known = points.get(spent)
        if known is None or (-accuracy, flops, option[0]) < (-known[0], known[1], known[2]):
            points[spent] = (accuracy, flops, option[0], option)
    return {x: (a, option) for x, (a, _, _, option) in sorted(points.items())}


def allocate_held_out(
    table: Mapping[tuple[str, int], Mapping[str, tuple[bool, float, float]]],
    members: Mapping[str, list[str]],
    folds: Mapping[str, int],
    num_folds: int,
    levels: Sequence[float],
) -> dict[float, dict[str, tuple[str, int] | None]]:
    """For every level L, each problem's option: its fold's problems share ``L`` times their number
    of generations, spread over their bins' points as measured on the other folds."""
    out: dict[float, dict[str, tuple[str, int] | None]] = {level: {} for level in levels}
    for fold in range(num_folds):
        curves: dict[str, dict[float, float]] = {}
        options: dict[str, dict[float, tuple[str, int] | None]] = {}
        held: list[str] = []
        for problems in members.values():
            test = [p for p in problems if folds[p] == fold]
            if not test:
                continue
            points = bin_points(table, [p for p in problems if folds[p] != fold], problems)
            curve = {x: a for x, (a, _) in points.items()}
            for p in test:
                curves[p], options[p] = curve, {x: o for x, (_, o) in points.items()}
            held += test
        for level in levels:
            given = allocate(curves, total=level * len(held))
            for p, spent in given.items():
                out[level][p] = options[p][spent]
    return out


def realised_outcomes(
    table: Mapping[tuple[str, int], Mapping[str, tuple[bool, float, float]]],
    choices: Mapping[str, tuple[str, int] | None],
    problems: Sequence[str],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per problem (in ``problems`` order): correct, generations spent and FLOPs under its option."""
    correct, spent, flops = [], [], []
    for p in problems:
        option = choices[p]
        verdict, generations, cost = table[option][p] if option is not None else (False, 0.0, 0.0)
        correct.append(float(verdict))
        spent.append(generations)
        flops.append(cost)
    return np.asarray(correct), np.asarray(spent), np.asarray(flops)


def curve_from(points: Mapping[float, np.ndarray | float], spends: Mapping[float, np.ndarray | float]):
    """``{mean spend: accuracy}`` of a curve's levels (each level's means); a level spending nothing
    has no place on a log axis and is left out, as is a level no cheaper than one already as accurate."""
    curve: dict[float, float] = {}
    for level in sorted(points):
        x, y = float(np.mean(spends[level])), float(np.mean(points[level]))
        if x > 0:
            curve[x] = max(curve.get(x, 0.0), y)
    return curve


def family_fronts(
    records: Sequence[Mapping[str, Any]], families: Sequence[str]
) -> dict[str, dict[float, float]]:
    """Each family's front over all problems (in-sample: a picture, not a held-out result): its
    strategies' points (mean generations spent, accuracy), keeping those no cheaper point of the family
    matches in accuracy.

    >>> rows = [{"strategy": "adaptive_vote a", "budget": 4, "problem_id": p, "generations": g, "correct": c}
    ...         for p, g, c in (("x", 2, True), ("y", 4, False))]
    >>> rows += [{"strategy": "adaptive_vote b", "budget": 8, "problem_id": p, "generations": 8, "correct": False}
    ...          for p in ("x", "y")]
    >>> family_fronts(rows, ["adaptive_vote"])
    {'adaptive_vote': {3.0: 0.5}}
    """
    totals: dict[tuple[str, int], list[float]] = defaultdict(lambda: [0.0, 0.0, 0])
    for r in records:
        total = totals[(r["strategy"], int(r["budget"]))]
        total[0] += float(r["generations"])
        total[1] += float(r["correct"])
        total[2] += 1
    out: dict[str, dict[float, float]] = {}
    for family in families:
        points = sorted(
            (spent / n, hits / n)
            for (s, _), (spent, hits, n) in totals.items()
            if s.split(" ", 1)[0] == family
        )
        front: dict[float, float] = {}
        best = -1.0
        for x, y in points:
            if y > best + 1e-12 and x > 0:
                front[round(x, 4)] = round(y, 4)
                best = y
        if front:
            out[family] = front
    return out


def first_spend(curve: Mapping[float, float], target: float) -> float | None:
    """The least spend at which ``curve`` reaches ``target`` (None if it never does).

    >>> first_spend({1.5: 0.6, 2.5: 0.7, 3.0: 0.65}, 0.65), first_spend({1.0: 0.2}, 0.5)
    (2.5, None)
    """
    reached = [x for x, y in curve.items() if y >= target - 1e-12]
    return min(reached) if reached else None


def spend_optimal(
    records: Sequence[Mapping[str, Any]],
    bins: Mapping[str, Any],
    folds: Mapping[str, int],
    num_folds: int,
    predictor_generations: float,
    baseline: str,
    static: set[str],
    num_resamples: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """The spend-axis compute-optimal curve, its comparison with the baselines, and its intervals.

    ``records``: every selection (static and adaptive); ``static``: the static strategies' names (the
    baselines are drawn from them); ``folds``: each problem's fold (within its bin);
    ``predictor_generations``: the difficulty predictor's cost per problem in generations, added to
    every problem's spend.
    """
    table = option_table(records)
    members: dict[str, list[str]] = defaultdict(list)
    for p in sorted({r["problem_id"] for r in records}):
        members[str(bins[p])].append(p)
    problems = [p for group in sorted(members) for p in members[group]]
    largest = max(b for (s, b) in table if s in static)
    levels = spend_levels(largest)
    chosen = allocate_held_out(table, members, folds, num_folds, levels)
    correct, spent, flops = {}, {}, {}
    for level in levels:
        correct[level], spent[level], flops[level] = realised_outcomes(table, chosen[level], problems)
        spent[level] = spent[level] + predictor_generations
    curve = curve_from(correct, spent)

    # The static curves over all problems (x: the budget, which a static strategy spends).
    static_budgets = sorted({b for (s, b) in table if s in static})
    per_strategy = {
        (s, b): np.asarray([float(table[(s, b)][p][0]) for p in problems])
        for (s, b) in table
        if s in static and all(p in table[(s, b)] for p in problems)
    }
    baseline_outcomes = {
        b: per_strategy[(baseline, b)] for b in static_budgets if (baseline, b) in per_strategy
    }

    def strongest(outcomes: Mapping[tuple[str, int], np.ndarray]) -> dict[int, float]:
        best: dict[int, float] = {}
        for (_, b), values in outcomes.items():
            best[b] = max(best.get(b, 0.0), float(values.mean()))
        return best

    def baseline_curve(outcomes: Mapping[int, np.ndarray]) -> dict[int, float]:
        return {b: float(v.mean()) for b, v in outcomes.items()}

    def statistics(corr, spend, base, fixed) -> dict[str, float | None]:
        adaptive = curve_from(corr, spend)
        out: dict[str, float | None] = {}
        for name, reference in (("best_of_n", base), ("strongest_fixed", fixed)):
            if not reference or not adaptive:  # no such baseline here, or nothing spent at any level
                out |= {
                    f"spend_at_target/{name}": None,
                    f"ratio_at_target/{name}": None,
                    f"averaged/{name}": None,
                }
                continue
            top = max(reference)
            target = reference[top] - TARGET_SLACK
            at = first_spend(adaptive, target)
            out[f"spend_at_target/{name}"] = at
            out[f"ratio_at_target/{name}"] = None if at is None else top / at
            out[f"averaged/{name}"] = iso_accuracy_efficiency(adaptive, reference)
        return out

    estimate = statistics(correct, spent, baseline_curve(baseline_outcomes), strongest(per_strategy))
    # Paired bootstrap over problems: each level's verdicts and spends, the baseline's and every static
    # strategy's verdicts, resampled together; the options given stay those chosen on the folds.
    # Levels past the point where the allocation stops changing give the same outcomes: one each.
    distinct = [
        level
        for i, level in enumerate(levels)
        if i == 0
        or not (
            np.array_equal(correct[level], correct[levels[i - 1]])
            and np.array_equal(spent[level], spent[levels[i - 1]])
        )
    ]
    outcomes: dict[str, np.ndarray] = {}
    for i, level in enumerate(distinct):
        outcomes[f"c{i}"], outcomes[f"s{i}"] = correct[level], spent[level]
    keys = list(per_strategy)
    for j, key in enumerate(keys):
        outcomes[f"f{j}"] = per_strategy[key]

    def resampled(x: Mapping[str, np.ndarray]) -> dict[str, float | None]:
        corr = {level: x[f"c{i}"] for i, level in enumerate(distinct)}
        spend = {level: x[f"s{i}"] for i, level in enumerate(distinct)}
        fixed_outcomes = {key: x[f"f{j}"] for j, key in enumerate(keys)}
        base = {b: float(v.mean()) for (s, b), v in fixed_outcomes.items() if s == baseline}
        return statistics(corr, spend, base, strongest(fixed_outcomes))

    intervals = paired_intervals(outcomes, resampled, num_resamples=num_resamples, seed=seed)
    given = chosen[_closest_level(curve, correct, spent, levels, estimate["spend_at_target/best_of_n"])]
    return {
        "predictor_generations": round(predictor_generations, 4),
        "levels": levels,
        "curve": [
            {
                "level": level,
                "generations": round(float(spent[level].mean()), 4),
                "accuracy": round(float(correct[level].mean()), 4),
                "mean_total_flops": float(flops[level].mean()),
            }
            for level in levels
        ],
        "baseline": baseline,
        "baseline_curve": {str(b): round(v, 4) for b, v in baseline_curve(baseline_outcomes).items()},
        "strongest_fixed_curve": {str(b): round(v, 4) for b, v in strongest(per_strategy).items()},
        "strongest_fixed_strategy": _strongest_names(per_strategy),
        "estimates": {k: (None if v is None else round(v, 4)) for k, v in estimate.items()},
        "intervals": intervals,
        "num_problems": len(problems),
        "at_target": _at_target(given, table, bins, problems, predictor_generations),
    }


def _closest_level(curve, correct, spent, levels, at: float | None) -> float:
    """The level whose point is the headline's (where the curve first reaches the target), else the largest."""
    if at is None:
        return levels[-1]
    return min(
        levels, key=lambda level: (abs(float(spent[level].mean()) - at), -float(correct[level].mean()))
    )


def _strongest_names(per_strategy: Mapping[tuple[str, int], np.ndarray]) -> dict[str, str]:
    best: dict[int, tuple[float, str]] = {}
    for (s, b), values in per_strategy.items():
        if b not in best or values.mean() > best[b][0]:
            best[b] = (float(values.mean()), s)
    return {str(b): s for b, (_, s) in sorted(best.items())}


def _at_target(
    given: Mapping[str, tuple[str, int] | None],
    table,
    bins: Mapping[str, Any],
    problems: Sequence[str],
    predictor_generations: float,
) -> dict[str, Any]:
    """At the headline point: per bin, the problems, mean generations spent, accuracy and the options
    given (with how many problems each), and each problem's spend (the per-bin spend plot)."""
    per_bin: dict[str, dict[str, Any]] = {}
    spend_of: dict[str, float] = {}
    for p in problems:
        option = given[p]
        verdict, generations, _ = table[option][p] if option is not None else (False, 0.0, 0.0)
        spend_of[p] = generations
        entry = per_bin.setdefault(
            str(bins[p]), {"problems": 0, "generations": 0.0, "correct": 0, "options": {}}
        )
        entry["problems"] += 1
        entry["generations"] += generations
        entry["correct"] += verdict
        name = GIVE_UP if option is None else option[0]
        entry["options"][name] = entry["options"].get(name, 0) + 1
    for entry in per_bin.values():
        n = entry["problems"]
        entry["generations"] = round(entry["generations"] / n, 4)
        entry["accuracy"] = round(entry.pop("correct") / n, 4)
    return {
        "predictor_generations": round(predictor_generations, 4),
        "by_bin": dict(sorted(per_bin.items())),
        "generations_per_problem": {p: spend_of[p] for p in problems},
    }
