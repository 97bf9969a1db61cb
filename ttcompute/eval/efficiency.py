"""Reading budgets off accuracy curves: the folds of cross-validation, the budget at which a curve
reaches an accuracy, and the efficiency ratios between two curves -- at one budget, and averaged over
the accuracies both reach. Pure functions of curves ``{budget: accuracy}``; a budget may be any
positive number (a mean of generations actually spent), not only a whole one.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np


def assign_folds(problem_ids: list[str], num_folds: int, seed: int) -> dict[str, int]:
    """Balanced folds: problems ordered by a seeded hash, then dealt round-robin.

    >>> folds = assign_folds([f"p{i}" for i in range(7)], 2, seed=0)
    >>> sorted(list(folds.values()).count(f) for f in (0, 1))
    [3, 4]
    """
    order = sorted(set(problem_ids), key=lambda p: (zlib.crc32(f"{seed}:{p}".encode()), p))
    return {p: i % num_folds for i, p in enumerate(order)}


def matching_budget(curve: dict[int, float], target: float) -> int | None:
    """The smallest budget at which ``curve`` reaches ``target`` (None if it never does).

    >>> matching_budget({1: 0.3, 4: 0.6, 16: 0.8}, 0.6), matching_budget({1: 0.3}, 0.5)
    (4, None)
    """
    for budget in sorted(curve):
        if curve[budget] >= target - 1e-9:
            return budget
    return None


def efficiency(
    curve: dict[int, float], baseline: dict[int, float], cost_generations: float | dict[int, float] = 0.0
) -> dict[int, dict[str, Any]]:
    """For every baseline budget B: the smallest compute-optimal budget b matching its accuracy, and
    B' / (b + ``cost_generations``) -- None where the curve never matches. ``cost_generations`` may
    depend on b (``{b: cost}``: a probe whose samples the strategies at b reuse costs less there).

    B' is the smallest budget at which the *baseline itself* reaches its accuracy at B (B' = B on a
    rising curve): on a flat or falling stretch the baseline does not need B, and B / b would credit
    compute-optimal with generations the baseline never had to spend (a flat curve at accuracy 0 gave
    "4x fewer generations" at budget 4).

    >>> efficiency({1: 0.5, 2: 0.7, 4: 0.8}, {4: 0.7, 8: 0.9}, cost_generations=2)[4]
    {'baseline_accuracy': 0.7, 'baseline_budget': 4, 'matching_budget': 2, 'ratio': 1.0}
    >>> efficiency({1: 0.0, 2: 0.0}, {1: 0.0, 2: 0.0, 4: 0.0})[4]["ratio"]  # flat: no saving
    1.0
    """
    out = {}
    for budget in sorted(baseline):
        match = matching_budget(curve, baseline[budget])
        spent = matching_budget(baseline, baseline[budget])
        cost = cost_generations.get(match, 0.0) if isinstance(cost_generations, dict) else cost_generations
        ratio = round(spent / (match + cost), 3) if match is not None else None
        out[budget] = {
            "baseline_accuracy": baseline[budget],
            "baseline_budget": spent,
            "matching_budget": match,
            "ratio": ratio,
        }
    return out


def _first_log_budgets(curve: dict[int, float], levels: np.ndarray) -> np.ndarray:
    """log2 of the budget at which ``curve`` -- made non-decreasing (a strategy may spend less) and
    interpolated linearly in log2(budget) -- first reaches each of ``levels``; NaN where it never does."""
    budgets = sorted(curve)
    xs = np.log2(np.asarray(budgets, dtype=np.float64))
    ys = np.maximum.accumulate(np.asarray([curve[b] for b in budgets], dtype=np.float64))
    first = np.searchsorted(ys, levels - 1e-12, side="left")  # first point at or above the level
    out = np.full(len(levels), np.nan)
    out[first == 0] = xs[0]
    inside = (first > 0) & (first < len(xs))
    j = first[inside]
    out[inside] = xs[j - 1] + (levels[inside] - ys[j - 1]) / (ys[j] - ys[j - 1]) * (xs[j] - xs[j - 1])
    return out


def _first_log_budget(curve: dict[int, float], level: float) -> float | None:
    """:func:`_first_log_budgets` of one level (None if never reached)."""
    (value,) = _first_log_budgets(curve, np.asarray([level], dtype=np.float64))
    return None if np.isnan(value) else float(value)


def iso_accuracy_efficiency(
    curve: dict[int, float],
    baseline: dict[int, float],
    cost_generations: float | dict[int, float] = 0.0,
    num_levels: int = 200,
) -> float | None:
    """Compute-optimal's saving averaged over the accuracies both curves reach: the geometric mean,
    over accuracy levels a evenly spaced above the baseline's accuracy at its smallest budget up to
    the highest level both reach, of B_baseline(a) / (B(a) + cost), each B(a) the budget at which that
    curve first reaches a (:func:`_first_log_budgets`: interpolated in log budget, and said so).

    Unlike the ratio at one budget it does not hinge on where a flat curve first crosses a level: a
    plateau spans little accuracy, so it weighs little. ``cost_generations`` per budget is read at the
    smallest budget at or above B(a). None when the range is empty.

    >>> iso_accuracy_efficiency({1: 0.2, 2: 0.4, 4: 0.6}, {2: 0.2, 4: 0.4, 8: 0.6})  # 2x at every level
    2.0
    >>> iso_accuracy_efficiency({1: 0.2, 2: 0.4, 4: 0.6}, {2: 0.2, 4: 0.4, 8: 0.6}, cost_generations=1.0)
    1.312
    >>> iso_accuracy_efficiency({1: 0.5}, {1: 0.5, 2: 0.5}) is None  # nothing above the start
    True
    """
    start = baseline[min(baseline)]
    top = min(max(curve.values()), max(baseline.values()))
    if top <= start:
        return None
    levels = start + (top - start) * np.arange(1, num_levels + 1) / num_levels
    spent = np.exp2(_first_log_budgets(curve, levels))
    theirs = _first_log_budgets(baseline, levels)
    if isinstance(cost_generations, dict):
        known = sorted(cost_generations)
        at = np.minimum(np.searchsorted(np.asarray(known, dtype=np.float64), spent - 1e-9), len(known) - 1)
        cost = np.asarray([cost_generations[b] for b in known])[at]
    else:
        cost = cost_generations
    return round(float(np.exp2(np.mean(theirs - np.log2(spent + cost)))), 3)


def format_interval(interval: dict[str, Any] | None, digits: int = 3) -> str:
    """``"0.123 [0.050, 0.200]"``; ``"-"`` without an estimate.

    >>> format_interval({"estimate": 0.1234, "low": 0.05, "high": 0.2})
    '0.123 [0.050, 0.200]'
    """
    if not interval or interval.get("estimate") is None:
        return "-"
    low, high = interval.get("low"), interval.get("high")
    bounds = f" [{low:.{digits}f}, {high:.{digits}f}]" if low is not None and high is not None else ""
    return f"{interval['estimate']:.{digits}f}{bounds}"
