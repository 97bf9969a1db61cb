"""The PRM metrics of ``ttc eval-prm``, as pure functions of scores and labels (checked by hand in the
tests): ProcessBench's first-error accuracy and F1 at a threshold, step ROC-AUC, and best-of-N /
weighted best-of-N / majority accuracy at every N.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ttcompute.core.errors import InputError
from ttcompute.core.grading import is_equivalent
from ttcompute.core.selection import best_of_n, majority_vote, weighted_best_of_n

# --- first errors ------------------------------------------------------------------------------


def first_error_from_scores(step_scores: Sequence[float], threshold: float = 0.5) -> int:
    """Index of the first step scored below ``threshold``; -1 when there is none.

    >>> first_error_from_scores([0.9, 0.7, 0.4, 0.8])
    2
    >>> first_error_from_scores([0.9, 0.5])
    -1
    """
    return next((i for i, score in enumerate(step_scores) if score < threshold), -1)


def first_error_from_labels(labels: Sequence[float | bool]) -> int:
    """Index of the first bad step (label 0 / False: no rollout from it reached the answer); -1 if none.

    >>> first_error_from_labels([1.0, 0.25, 0.0, 0.5])
    2
    >>> first_error_from_labels([True, True])
    -1
    """
    return next((i for i, label in enumerate(labels) if label == 0), -1)


def step_labels_from_first_error(num_steps: int, first_error: int) -> list[int]:
    """Prefix correctness: 1 for steps before the first error, 0 from it on (-1: all correct).

    >>> step_labels_from_first_error(4, 2)
    [1, 1, 0, 0]
    >>> step_labels_from_first_error(2, -1)
    [1, 1]
    """
    if first_error < -1 or first_error >= num_steps:
        raise ValueError(f"first error {first_error} outside a solution of {num_steps} steps")
    cut = num_steps if first_error == -1 else first_error
    return [1] * cut + [0] * (num_steps - cut)


# --- metrics -----------------------------------------------------------------------------------


def _harmonic_mean(a: float, b: float) -> float:
    return 0.0 if a == 0 or b == 0 else 2 * a * b / (a + b)


THRESHOLD_GRID = tuple(round(0.02 * i, 2) for i in range(1, 50))


def processbench_by_threshold(
    step_scores: Sequence[Sequence[float]],
    gold_first_errors: Sequence[int],
    grid: Sequence[float] = THRESHOLD_GRID,
) -> list[dict[str, Any]]:
    """ProcessBench metrics at each threshold of ``grid`` (a value PRM's natural cut-off depends on
    how hard the problems are for its policy, so it is chosen on data, not assumed to be 0.5).

    >>> rows = processbench_by_threshold([[0.9, 0.2], [0.6, 0.5]], [1, -1], grid=(0.3, 0.55))
    >>> [(r["threshold"], r["f1"]) for r in rows]
    [(0.3, 1.0), (0.55, 0.0)]
    """
    return [
        {
            "threshold": t,
            **processbench_metrics([first_error_from_scores(s, t) for s in step_scores], gold_first_errors),
        }
        for t in grid
    ]


def best_threshold(curve: Sequence[dict[str, Any]]) -> float:
    """The threshold of the best F1 (ties: the one nearest 0.5, then the lower)."""
    scored = [row for row in curve if row["f1"] is not None]
    if not scored:
        raise InputError(
            "calibration data: no F1 at any threshold (it needs erroneous and correct solutions)"
        )
    return max(scored, key=lambda row: (row["f1"], -abs(row["threshold"] - 0.5), -row["threshold"]))[
        "threshold"
    ]


def processbench_metrics(
    predicted_first_errors: Sequence[int], gold_first_errors: Sequence[int]
) -> dict[str, Any]:
    """ProcessBench's scores: accuracy on erroneous and on correct solutions, and their F1.

    An erroneous solution (gold first error >= 0) counts as right only when the exact step is
    predicted; a correct one (gold -1) only when no error is predicted. An accuracy over no samples
    is None, and so is the F1 then.

    >>> m = processbench_metrics([2, -1, 0, -1], [2, 1, -1, -1])
    >>> m["error_accuracy"], m["correct_accuracy"], m["f1"]
    (0.5, 0.5, 0.5)
    """
    if len(predicted_first_errors) != len(gold_first_errors):
        raise ValueError(
            f"{len(predicted_first_errors)} predictions but {len(gold_first_errors)} gold labels"
        )
    if not gold_first_errors:
        raise ValueError("no samples to score")
    pairs = list(zip(predicted_first_errors, gold_first_errors))
    erroneous = [pred == gold for pred, gold in pairs if gold >= 0]
    correct = [pred == -1 for pred, gold in pairs if gold == -1]
    error_accuracy = sum(erroneous) / len(erroneous) if erroneous else None
    correct_accuracy = sum(correct) / len(correct) if correct else None
    f1 = (
        _harmonic_mean(error_accuracy, correct_accuracy)
        if error_accuracy is not None and correct_accuracy is not None
        else None
    )
    return {
        "error_accuracy": error_accuracy,
        "correct_accuracy": correct_accuracy,
        "f1": f1,
        "num_erroneous": len(erroneous),
        "num_correct": len(correct),
        "num_error_found": sum(erroneous),
        "num_correct_passed": sum(correct),
    }


def step_roc_auc(scores: Sequence[float], labels: Sequence[int | bool]) -> float:
    """ROC-AUC of ``scores`` for the positive class (label 1): P(positive > negative), ties count half.

    Computed from average ranks (the Mann-Whitney U statistic), O(n log n).

    Raises:
        ValueError: lengths differ, a score is NaN, a label is not 0/1, or only one class is present.

    >>> step_roc_auc([0.9, 0.4, 0.4, 0.1], [1, 1, 0, 0])
    0.875
    """
    if len(scores) != len(labels):
        raise ValueError(f"{len(scores)} scores but {len(labels)} labels")
    values = np.asarray(scores, dtype=float)
    if np.isnan(values).any():
        raise ValueError("a score is NaN")
    if any(label not in (0, 1) for label in labels):
        raise ValueError("labels must be 0/1")
    positive = np.asarray(labels, dtype=bool)
    num_pos, num_neg = int(positive.sum()), int((~positive).sum())
    if num_pos == 0 or num_neg == 0:
        raise ValueError("ROC-AUC needs both classes; only one is present")
    distinct, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    # Tied values share the average of the 1-based ranks they span.
    last_rank = np.cumsum(counts)
    average_rank = last_rank - (counts - 1) / 2.0
    rank_sum = float(average_rank[inverse][positive].sum())
    return (rank_sum - num_pos * (num_pos + 1) / 2.0) / (num_pos * num_neg)


def within_problem_ranking(
    scores: Sequence[Sequence[float]], correct: Sequence[Sequence[bool]]
) -> dict[str, float | int | None]:
    """How well a verifier ranks the candidates *of one problem*: what selection needs, and what a
    global step AUC hides (between-problem differences dominate it).

    ``auc``: mean over problems with correct and wrong candidates of P(a correct candidate outscores
    a wrong one of the same problem) (ties count half); ``top1``: among problems with a correct
    candidate, how often the top-scored one (the first on ties) is correct.

    >>> within_problem_ranking([[0.9, 0.2, 0.5], [0.1, 0.3], [0.4]], [[True, False, False], [True, False], [True]])
    {'auc': 0.5, 'top1': 0.6667, 'problems_with_both': 2, 'problems_with_correct': 3}
    """
    aucs, tops = [], []
    for row_scores, row_correct in zip(scores, correct, strict=True):
        if not any(row_correct):
            continue
        top = max(range(len(row_scores)), key=lambda i: (row_scores[i], -i))
        tops.append(bool(row_correct[top]))
        if not all(row_correct):
            aucs.append(step_roc_auc(row_scores, [int(c) for c in row_correct]))
    return {
        "auc": round(float(np.mean(aucs)), 4) if aucs else None,
        "top1": round(float(np.mean(tops)), 4) if tops else None,
        "problems_with_both": len(aucs),
        "problems_with_correct": len(tops),
    }


def budget_sizes(max_n: int) -> list[int]:
    """1, 2, 4, ... below ``max_n``, then ``max_n``.

    >>> budget_sizes(6)
    [1, 2, 4, 6]
    """
    if max_n < 1:
        raise ValueError(f"need at least one candidate, got {max_n}")
    sizes = [1 << k for k in range(max_n.bit_length()) if 1 << k < max_n]
    return sizes + [max_n]


def best_of_n_accuracy(
    answers: Sequence[Sequence[str | None]],
    correct: Sequence[Sequence[bool]],
    scores: Sequence[Sequence[float]],
    sizes: Sequence[int] | None = None,
) -> dict[str, list]:
    """Accuracy of each selection rule at each budget, averaged over problems.

    Row ``i`` holds problem ``i``'s candidates: final answers, correctness and (aggregated) PRM
    scores. At budget ``n`` each problem keeps its first ``n`` candidates (all, if it has fewer).
    Returns ``{"n": sizes, "weighted_best_of_n": [...], "best_of_n": [...], "majority_vote": [...],
    "oracle": [...]}`` (oracle: any of the ``n`` is correct); ``sizes`` defaults to
    :func:`budget_sizes` of the largest N.

    >>> r = best_of_n_accuracy([["3", "4", "4"]], [[True, False, False]], [[0.9, 0.2, 0.3]])
    >>> r["n"], r["weighted_best_of_n"], r["best_of_n"], r["majority_vote"], r["oracle"]
    ([1, 2, 3], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0], [1.0, 1.0, 0.0], [1.0, 1.0, 1.0])
    """
    if not (len(answers) == len(correct) == len(scores)):
        raise ValueError(f"{len(answers)} answer rows, {len(correct)} correct rows, {len(scores)} score rows")
    if not answers:
        raise ValueError("no problems")
    for row, (a, c, s) in enumerate(zip(answers, correct, scores)):
        if not (len(a) == len(c) == len(s)) or not a:
            raise ValueError(f"row {row}: {len(a)} answers, {len(c)} verdicts, {len(s)} scores")
    sizes = list(sizes) if sizes is not None else budget_sizes(max(len(a) for a in answers))
    rules = ("weighted_best_of_n", "best_of_n", "majority_vote", "oracle")
    hits: dict[str, list[int]] = {rule: [0] * len(sizes) for rule in rules}
    for row_answers, row_correct, row_scores in zip(answers, correct, scores):
        verdicts: dict[tuple[str, str], bool] = {}  # each budget regroups the same answers: grade once

        def equivalent(a: str, b: str, verdicts=verdicts) -> bool:
            if (a, b) not in verdicts:
                verdicts[(a, b)] = is_equivalent(a, b)
            return verdicts[(a, b)]

        for k, n in enumerate(sizes):
            a, c, s = row_answers[:n], row_correct[:n], row_scores[:n]
            hits["weighted_best_of_n"][k] += bool(c[weighted_best_of_n(a, s, equivalent)])
            hits["best_of_n"][k] += bool(c[best_of_n(s)])
            hits["majority_vote"][k] += bool(c[majority_vote(a, equivalent)])
            hits["oracle"][k] += any(c)
    return {"n": sizes, **{rule: [h / len(answers) for h in hits[rule]] for rule in rules}}
