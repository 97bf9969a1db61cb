"""Per-problem allocation of a total generation budget (beyond per-bin compute-optimal).

Per-bin compute-optimal gives every problem of a bin the same budget ``B``. Here a problem set gets a
*total* of ``N * B`` generations and each problem its own (strategy, budget), chosen from its bin's
accuracy-vs-budget curve as learned on the *other* fold (the same cross-validation as
:func:`~ttcompute.eval.compute_optimal.compute_optimal`), so that easy problems give generations to
the ones where more compute still buys accuracy.

The choice: maximise the sum of expected accuracies subject to the total. Every problem of a bin has
the same curve, so this is a multiple-choice knapsack with few distinct items; we solve it greedily
on the *upper concave hull* of each curve (start every problem at the cheapest budget, then
repeatedly buy the hull segment with the highest accuracy gained per generation that still fits).
Why greedy and not an exact DP: on concave (hull) curves the greedy is optimal for the fractional
problem and loses at most one segment's gain in total against the integer optimum (one problem
left part-way), while a DP over problems x total generations (here up to 10^5 x 10^7) costs far more
than the curves' own noise is worth. Points below the hull are never chosen: buying them is never
better than mixing the hull points around them.

The realised accuracy is each problem's held-out verdict under the (strategy, budget) it was given,
read from the selections -- nothing is re-estimated -- and is compared with uniform weighted best-of-N
and per-bin compute-optimal at the same total, with paired-bootstrap intervals.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from typing import Any


def choose_strategy(accuracy: dict[str, float], flops: dict[str, float]) -> str:
    """The most accurate strategy; ties go to the cheaper one (mean FLOPs), then to the name.

    >>> choose_strategy({"a": 0.5, "b": 0.7, "c": 0.7}, {"a": 1, "b": 9, "c": 3})
    'c'
    """
    return min(accuracy, key=lambda s: (-accuracy[s], flops.get(s, 0.0), s))


def upper_hull(curve: Mapping[int, float]) -> list[tuple[int, float]]:
    """The upper concave hull of a (budget, accuracy) curve, cheapest first, never falling.

    >>> upper_hull({1: 0.2, 2: 0.25, 4: 0.6, 8: 0.62, 16: 0.61})
    [(1, 0.2), (4, 0.6), (8, 0.62)]
    """
    points = sorted(curve.items())
    hull: list[tuple[int, float]] = []
    for budget, accuracy in points:
        if hull and accuracy <= hull[-1][1]:
            continue  # more compute for no more accuracy: never worth buying
        while len(hull) >= 2:
            (b1, a1), (b2, a2) = hull[-2], hull[-1]
            # Drop the middle point when it lies on or below the chord from b1 to this budget.
            if (a2 - a1) * (budget - b1) <= (accuracy - a1) * (b2 - b1):
                hull.pop()
            else:
                break
        hull.append((budget, accuracy))
    return hull


def allocate(problems: Mapping[str, Mapping[int, float]], total: float) -> dict[str, int]:
    """Each problem's budget, the sum within ``total``: greedy on the hulls of their curves.

    ``problems``: problem id -> its expected accuracy per budget (its bin's curve from the other
    fold). Every problem starts at its curve's cheapest budget (raises if even that exceeds
    ``total``); ties go to the problem that sorts first, so the result is deterministic.

    >>> allocate({"easy": {1: 0.9, 4: 0.92}, "hard": {1: 0.1, 4: 0.7}}, total=5)
    {'easy': 1, 'hard': 4}
    """
    # Problems of one bin share one curve: each distinct curve's hull is computed once (and only read).
    hulls: dict[str, list[tuple[int, float]]] = {}
    by_curve: dict[int, list[tuple[int, float]]] = {}
    for p, curve in problems.items():
        if id(curve) not in by_curve:
            by_curve[id(curve)] = upper_hull(curve)
        hulls[p] = by_curve[id(curve)]
    position = {p: 0 for p in hulls}
    spent = sum(h[0][0] for h in hulls.values())
    if spent > total + 1e-9:
        raise ValueError(f"the cheapest budget of every problem needs {spent} generations, more than {total}")

    def offer(p: str) -> tuple[float, str] | None:
        hull, i = hulls[p], position[p]
        if i + 1 >= len(hull):
            return None
        (b0, a0), (b1, a1) = hull[i], hull[i + 1]
        rate = (a1 - a0) / (b1 - b0)
        # Rounded so that rates equal but for float noise tie, and ties go to the problem sorting first;
        # a gain that is float noise is not bought.
        return (-round(rate, 12), p) if rate > 1e-12 else None

    # Each problem's next hull segment, best rate first. A segment that does not fit now never will
    # (the spend only grows), so its problem is done.
    heap = [entry for entry in (offer(p) for p in hulls) if entry is not None]
    heapq.heapify(heap)
    while heap:
        _, p = heapq.heappop(heap)
        (b0, _), (b1, _) = hulls[p][position[p]], hulls[p][position[p] + 1]
        if spent - b0 + b1 > total + 1e-9:
            continue
        spent += b1 - b0
        position[p] += 1
        entry = offer(p)
        if entry is not None:
            heapq.heappush(heap, entry)
    return {p: hulls[p][position[p]][0] for p in sorted(hulls)}


def allocation_choices(
    table: Mapping[tuple[int, str], Mapping[str, tuple[bool, float]]],
    members: Mapping[str, list[str]],
    folds: Mapping[str, Mapping[str, int]],
    num_folds: int,
    budget: int,
) -> dict[str, tuple[str, int]]:
    """Every problem's (strategy, budget) under a total of ``budget`` generations per problem of its
    fold, from the curves the *other* folds give its bin (the best strategy at each budget, ties to
    the cheaper). ``table``: (budget, strategy) -> problem -> (correct, flops), as compute-optimal's."""
    budgets = sorted({b for b, _ in table})
    choices: dict[str, tuple[str, int]] = {}
    for fold in range(num_folds):
        expected: dict[str, dict[int, float]] = {}
        picks: dict[tuple[str, int], str] = {}
        test = []
        for group, problems in members.items():
            train = [p for p in problems if folds[group][p] != fold]
            held = [p for p in problems if folds[group][p] == fold]
            if not held:
                continue
            curve: dict[int, float] = {}
            for b in budgets:
                strategies = [
                    s for (bb, s), rows in table.items() if bb == b and all(p in rows for p in problems)
                ]
                if not strategies:
                    continue
                scored = {
                    s: (sum(table[(b, s)][p][0] for p in train) / len(train) if train else 0.0)
                    for s in strategies
                }
                cost = {s: sum(table[(b, s)][p][1] for p in train) / max(len(train), 1) for s in strategies}
                pick = min(scored, key=lambda s: (-scored[s], cost[s], s))
                picks[(group, b)] = pick
                curve[b] = scored[pick]
            for p in held:
                expected[p] = curve
                test.append((p, group))
        if not test:
            continue
        given = allocate(expected, total=budget * len(test))
        for p, group in test:
            choices[p] = (picks[(group, given[p])], given[p])
    return choices


def realised(
    table: Mapping[tuple[int, str], Mapping[str, tuple[bool, float]]], choices: Mapping[str, tuple[str, int]]
) -> dict[str, Any]:
    """Each problem's held-out verdict under its allocation, its budget, and the totals."""
    verdicts = {p: bool(table[(b, s)][p][0]) for p, (s, b) in choices.items()}
    return {
        "per_problem": dict(sorted(verdicts.items())),
        "budgets": {p: b for p, (_, b) in sorted(choices.items())},
        "accuracy": round(sum(verdicts.values()) / len(verdicts), 4) if verdicts else None,
        "generations": sum(b for _, b in choices.values()),
    }
