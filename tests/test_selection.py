"""Selection rules of ttcompute.eval.search.best_of_n on hand-computed cases and against brute force."""

from __future__ import annotations

import doctest
import random
from fractions import Fraction

import pytest

from ttcompute.core.selection import (
    best_of_n,
    group_equivalent_answers,
    majority_vote,
    weighted_best_of_n,
)
from ttcompute.eval.search import best_of_n as best_of_n_module


def test_docstring_examples():
    assert doctest.testmod(best_of_n_module).failed == 0


# --- group_equivalent_answers ------------------------------------------------------------------


def test_groups_by_hand():
    answers = ["1/2", "0.5", "\\frac{1}{2}", "$\\dfrac{1}{2}$", "3", "3.0", "\\boxed{3}", "x"]
    assert group_equivalent_answers(answers) == [0, 0, 0, 0, 1, 1, 1, 2]


def test_none_and_blank_answers_never_group():
    assert group_equivalent_answers([None, None, "2", "", "  ", "2", None]) == [0, 1, 2, 3, 4, 2, 5]
    assert group_equivalent_answers([]) == []


def test_equivalence_called_only_between_new_forms_and_representatives():
    calls = []

    def equivalent(a: str, b: str) -> bool:
        calls.append((a, b))
        return Fraction(a) == Fraction(b)

    groups = group_equivalent_answers(["1/2", "2/4", "1/2", "3", "6/2", "2/4", "3"], equivalent)
    assert groups == [0, 0, 0, 1, 1, 0, 1]
    # "2/4" vs rep "1/2"; "3" vs "1/2"; "6/2" vs "1/2" then "3"; repeats of a known form cost nothing.
    assert calls == [("2/4", "1/2"), ("3", "1/2"), ("6/2", "1/2"), ("6/2", "3")]


# --- majority_vote -----------------------------------------------------------------------------


def test_majority_vote_by_hand():
    assert majority_vote(["5", "7", "7", "5", "7"]) == 1
    assert majority_vote(["1/2", "3", "0.5"]) == 0  # "1/2" and "0.5" are one answer with 2 votes
    assert majority_vote(["3", "1/2", "0.5"]) == 1


def test_majority_vote_ties_go_to_the_earliest_answer():
    assert majority_vote(["5", "7", "7", "5"]) == 0
    assert majority_vote(["7", "5", "5", "7"]) == 0
    assert majority_vote(["9", "5", "7", "7", "5"]) == 1


def test_majority_vote_never_picks_none_while_an_answer_exists():
    assert majority_vote([None, None, None, "4"]) == 3
    assert majority_vote([None, None]) == 0


# --- best_of_n ---------------------------------------------------------------------------------


def test_best_of_n_by_hand():
    assert best_of_n([0.1, 0.7, 0.3]) == 1
    assert best_of_n([0.7, 0.1, 0.7]) == 0
    assert best_of_n([0.2]) == 0


# --- weighted_best_of_n ------------------------------------------------------------------------


def test_weighted_best_of_n_by_hand():
    # "6": 0.4 + 0.4 + 0.3 = 1.1 beats "8": 0.9; within "6" the best member is index 1 (0.4, first).
    assert weighted_best_of_n(["8", "6", "6", "6.0"], [0.9, 0.4, 0.4, 0.3]) == 1
    # One vote each: weighted best-of-N is plain best-of-N.
    assert weighted_best_of_n(["1", "2", "3"], [0.2, 0.8, 0.5]) == 1
    # "1/2" and "0.5" pool their scores: 0.3 + 0.3 = 0.6 > 0.5.
    assert weighted_best_of_n(["1/2", "4", "0.5"], [0.3, 0.5, 0.3]) == 0


def test_weighted_best_of_n_ties_and_none():
    # Equal totals (0.5 each): the group that appears first wins.
    assert weighted_best_of_n(["2", "3", "2"], [0.25, 0.5, 0.25]) == 0
    assert weighted_best_of_n(["3", "2", "2"], [0.5, 0.25, 0.25]) == 0
    # A high score without an answer is ignored...
    assert weighted_best_of_n([None, "4", "5"], [1.0, 0.2, 0.3]) == 2
    # ...unless no candidate has an answer.
    assert weighted_best_of_n([None, None, None], [0.1, 0.9, 0.9]) == 1


def _brute_force_weighted(values: list[int | None], scores: list[float]) -> int:
    """Try every candidate: the winner's group total is maximal, then its group appears first, then
    the candidate's own score is maximal, then it comes first."""

    def key(i: int):
        group = [j for j, v in enumerate(values) if v is not None and v == values[i]]
        return (sum(scores[j] for j in group), -group[0], scores[i], -i)

    answered = [i for i, v in enumerate(values) if v is not None]
    if not answered:
        return max(range(len(scores)), key=lambda i: (scores[i], -i))
    return max(answered, key=key)


def test_selection_rules_match_brute_force_on_random_candidates():
    rng = random.Random(0)
    for _ in range(300):
        n = rng.randint(1, 9)
        values = [rng.choice([None, 0, 1, 2, 3]) for _ in range(n)]
        # Answers in varied spellings of the same integer, so grouping must use equivalence.
        spellings = {0: ["0", "0.0"], 1: ["1", "\\boxed{1}"], 2: ["2", "4/2"], 3: ["3", "3.00"]}
        answers = [None if v is None else rng.choice(spellings[v]) for v in values]
        scores = [rng.choice([0.0, 0.25, 0.5, 0.75, 1.0]) for _ in range(n)]  # quarters: exact sums

        assert weighted_best_of_n(answers, scores) == _brute_force_weighted(values, scores)
        assert best_of_n(scores) == max(range(n), key=lambda i: (scores[i], -i))
        expected_majority = _brute_force_weighted(values, [1.0] * n)
        assert majority_vote(answers) == expected_majority


# --- bad input ---------------------------------------------------------------------------------


def test_empty_and_mismatched_input_raise():
    with pytest.raises(ValueError, match="no candidates"):
        majority_vote([])
    with pytest.raises(ValueError, match="no candidates"):
        best_of_n([])
    with pytest.raises(ValueError, match="no candidates"):
        weighted_best_of_n([], [])
    with pytest.raises(ValueError, match="2 answers but 3 scores"):
        weighted_best_of_n(["1", "2"], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="NaN"):
        best_of_n([0.1, float("nan")])
