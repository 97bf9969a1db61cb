"""Steps of a solution and one score from its step scores: the two conventions every stage shares.

A solution is text whose steps are separated by a step separator (a blank line for MATH and the
built-in task). ``ttc label`` labels the steps, the PRM scores them, search expands them, and
``ttc select`` / ``ttc eval-prm`` aggregate their scores: all of them split and aggregate here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

AGGREGATIONS = ("last", "min", "prod", "mean")


def split_into_steps(text: str, separator: str) -> list[str]:
    """The non-empty steps of a (partial) solution.

    >>> split_into_steps("1 + 2 = 3\\n\\n3 * 2 = 6\\n\\n", "\\n\\n")
    ['1 + 2 = 3', '3 * 2 = 6']
    """
    return [step for step in text.split(separator) if step.strip()]


def aggregate(step_scores: Sequence[float], how: str = "last") -> float:
    """One solution-level score from its step scores.

    ``"last"`` is the default because Snell et al. (2024, sec. 5.2) found the last step's score, which
    the PRM computes having seen the whole solution, works better than ``"min"`` or ``"prod"``.

    >>> aggregate([0.9, 0.5, 0.8], "min")
    0.5
    """
    if how not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {how!r}; choose one of {AGGREGATIONS}")
    if len(step_scores) == 0:
        raise ValueError("cannot aggregate an empty list of step scores")
    if how == "last":
        return float(step_scores[-1])
    if how == "min":
        return float(min(step_scores))
    if how == "prod":
        return float(math.prod(step_scores))
    return float(sum(step_scores) / len(step_scores))
