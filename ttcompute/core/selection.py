"""Selection rules over one problem's N candidates: majority vote, best-of-N, weighted best-of-N.

Weighted best-of-N (Snell et al., Sec. 5; search-and-learn's ``best_of_n``) groups candidates by
final answer, sums the verifier's scores within each group and picks the group with the largest
sum; majority vote (every score 1) and plain best-of-N (every answer distinct) are its degenerate
cases. Beam search and revisions end with the same rules, so they live here as pure functions.

Pure functions of answers and scores: ``ttc select``, ``ttc eval-prm`` and the searches' own picks
all use these, so every stage selects by one definition.

Every rule is deterministic: ties go to the earliest candidate (for groups: the group whose first
member comes first). A candidate without a final answer (``None``) never shares a group and is never
chosen while a candidate with an answer exists.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from ttcompute.core.grading import is_equivalent, normalize_answer

Equivalence = Callable[[str, str], bool]


def group_equivalent_answers(
    answers: Sequence[str | None], equivalent: Equivalence = is_equivalent
) -> list[int]:
    """A group id per candidate; candidates whose final answers are equivalent share one.

    Ids count from 0 in order of first appearance. Answers with the same :func:`normalize_answer`
    form are grouped without calling ``equivalent`` (the fast path: most samples repeat a few
    answers verbatim); a new form is compared with ``equivalent`` to the first answer of each
    existing group (its representative), so each distinct form costs at most one comparison per
    group. ``None`` -- and an answer that normalizes to nothing, which the grader never accepts --
    gets a group of its own.

    >>> group_equivalent_answers(["1/2", "0.5", "3", None, "\\\\frac{1}{2}", None, "3"])
    [0, 0, 1, 2, 0, 3, 1]
    """
    group_of_form: dict[str, int] = {}
    representatives: list[tuple[int, str]] = []  # (group id, first answer) of groups with an answer
    groups: list[int] = []
    next_group = 0
    for answer in answers:
        form = normalize_answer(answer) if answer is not None else ""
        if not form:
            groups.append(next_group)
            next_group += 1
            continue
        group = group_of_form.get(form)
        if group is None:
            group = next((g for g, rep in representatives if equivalent(answer, rep)), None)
            if group is None:
                group = next_group
                next_group += 1
                representatives.append((group, answer))
            group_of_form[form] = group
        groups.append(group)
    return groups


def _groups(
    answers: Sequence[str | None], equivalent: Equivalence, groups: Sequence[int] | None
) -> Sequence[int]:
    if groups is None:
        return group_equivalent_answers(answers, equivalent)
    if len(groups) != len(answers):
        raise ValueError(f"{len(answers)} answers but {len(groups)} group ids")
    return groups


def has_answer(answer: str | None) -> bool:
    """Whether a candidate's final answer can vote: not None, and not blank once normalized."""
    return answer is not None and bool(normalize_answer(answer))


def _check_scores(scores: Sequence[float]) -> None:
    if not scores:
        raise ValueError("no candidates to select from")
    if any(math.isnan(s) for s in scores):
        raise ValueError("a candidate's score is NaN")


def _check_answers(answers: Sequence[str | None], scores: Sequence[float] | None = None) -> None:
    if not answers:
        raise ValueError("no candidates to select from")
    if scores is not None and len(scores) != len(answers):
        raise ValueError(f"{len(answers)} answers but {len(scores)} scores")


def majority_vote(
    answers: Sequence[str | None],
    equivalent: Equivalence = is_equivalent,
    *,
    groups: Sequence[int] | None = None,
) -> int:
    """Index of the first candidate of the most frequent equivalent answer (self-consistency).

    Ties go to the answer that appears first; if no candidate has an answer, candidate 0. ``groups``:
    :func:`group_equivalent_answers` of ``answers`` when already known (the groups of a prefix are the
    prefix of the groups, so a rule read after every sample groups once).

    >>> majority_vote(["4", "5", "0.5", "1/2", None, None, None])
    2
    """
    _check_answers(answers)
    groups = _groups(answers, equivalent, groups)
    counts: dict[int, int] = {}
    first: dict[int, int] = {}
    for index, (answer, group) in enumerate(zip(answers, groups)):
        if has_answer(answer):
            counts[group] = counts.get(group, 0) + 1
            first.setdefault(group, index)
    if not counts:
        return 0
    winner = max(counts, key=lambda g: (counts[g], -first[g]))
    return first[winner]


def best_of_n(scores: Sequence[float]) -> int:
    """Index of the highest-scoring candidate (the earliest among equal scores).

    >>> best_of_n([0.2, 0.9, 0.5, 0.9])
    1
    """
    _check_scores(scores)
    return max(range(len(scores)), key=lambda i: (scores[i], -i))


def weighted_best_of_n(
    answers: Sequence[str | None],
    scores: Sequence[float],
    equivalent: Equivalence = is_equivalent,
    *,
    groups: Sequence[int] | None = None,
) -> int:
    """Sum the scores of each equivalent-answer group; return the best group's highest-scoring member.

    Candidates without an answer are ignored unless no candidate has one (then: plain best-of-N).
    ``groups``: as for :func:`majority_vote`.

    >>> weighted_best_of_n(["7", "8", "7.0", "8"], [0.5, 0.9, 0.5, 0.05])
    0
    >>> weighted_best_of_n(["7", "8", "7.0", None], [0.3, 0.9, 0.5, 1.0])
    1
    """
    _check_answers(answers, scores)
    _check_scores(scores)
    groups = _groups(answers, equivalent, groups)
    totals: dict[int, float] = {}
    best: dict[int, int] = {}  # group -> its highest-scoring member (earliest on ties)
    first: dict[int, int] = {}
    for index, (answer, group) in enumerate(zip(answers, groups)):
        if not has_answer(answer):
            continue
        totals[group] = totals.get(group, 0.0) + scores[index]
        first.setdefault(group, index)
        if group not in best or scores[index] > scores[best[group]]:
            best[group] = index
    if not totals:
        return best_of_n(scores)
    winner = max(totals, key=lambda g: (totals[g], -first[g]))
    return best[winner]


def hierarchical_best_of_n(
    answers: Sequence[str | None],
    scores: Sequence[float],
    groups: Sequence[int],
    equivalent: Equivalence = is_equivalent,
) -> int:
    """Weighted best-of-N within each group (a revision chain), then across the groups' winners.

    Revision chains (Snell et al., sec. 6.2): a reviser also turns right answers wrong, so one picks
    inside every chain first and lets the chains' picks compete, each weighing its own score.

    >>> # chain 0: x .4, y .3, y .3 -> y (.6); chain 1: x .9 -> x; across: x .9 beats y .3
    >>> hierarchical_best_of_n(["x", "y", "y", "x"], [0.4, 0.3, 0.3, 0.9], [0, 0, 0, 1])
    3
    """
    _check_answers(answers, scores)
    if len(groups) != len(answers):
        raise ValueError(f"{len(answers)} answers but {len(groups)} group ids")
    members: dict[int, list[int]] = {}
    for index, group in enumerate(groups):
        members.setdefault(group, []).append(index)
    winners = []
    for indices in members.values():
        pick = weighted_best_of_n([answers[i] for i in indices], [scores[i] for i in indices], equivalent)
        winners.append(indices[pick])
    pick = weighted_best_of_n([answers[i] for i in winners], [scores[i] for i in winners], equivalent)
    return winners[pick]
