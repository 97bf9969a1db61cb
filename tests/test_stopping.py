"""Stopping rules of adaptive test-time compute against hand computations on short vote sequences:
ties, a single answer, no parseable answer; and the Dirichlet rule against an independent integral."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from ttcompute.core.selection import group_equivalent_answers
from ttcompute.core.stopping import (
    StoppingRule,
    answered,
    beta_confidence,
    confidences,
    dirichlet_confidence,
    stop_point,
    stopped_pick,
)


def read(rule: StoppingRule, answers, scores=None) -> list[float]:
    return confidences(rule, group_equivalent_answers(answers), answered(answers), scores)


def run(rule: StoppingRule, answers, scores=None, cap=None):
    """(samples drawn, settled, the answer given)."""
    groups = group_equivalent_answers(answers)
    drawn, settled = stop_point(read(rule, answers, scores), rule.tau, cap or len(answers), rule.round_size)
    return drawn, settled, answers[stopped_pick(rule, answers, scores, groups, drawn)]


# --- beta: P(p > 1/2), p ~ Beta(v1 + 1, v2 + 1) --------------------------------------------------


def beta_by_hand(lead: int, second: int) -> Fraction:
    """The Beta(a, b) tail above 1/2 for integer a, b: (1/B(a, b)) * integral of x^(a-1)(1-x)^(b-1),
    expanded as a polynomial and integrated term by term (exact rational arithmetic)."""
    a, b = lead + 1, second + 1
    # x^(a-1) (1-x)^(b-1) = sum_k C(b-1, k) (-1)^k x^(a-1+k)
    terms = [(Fraction(math.comb(b - 1, k) * (-1) ** k), a + k) for k in range(b)]
    whole = sum(c / p for c, p in terms)
    upper = sum(c * (1 - Fraction(1, 2) ** p) / p for c, p in terms)
    return upper / whole


@pytest.mark.parametrize("lead, second", [(1, 0), (2, 0), (4, 0), (2, 1), (3, 1), (2, 2), (5, 3), (9, 1)])
def test_beta_is_the_beta_tail_computed_by_hand(lead, second):
    assert beta_confidence(lead, second) == pytest.approx(float(beta_by_hand(lead, second)), abs=1e-15)


def test_beta_unanimous_votes_stop_at_four_for_tau_095():
    # 1 - 2^-(a+1): 0.75, 0.875, 0.9375, 0.96875 -- the fourth agreeing sample crosses 0.95.
    rule = StoppingRule("beta", 0.95)
    assert read(rule, ["7"] * 5) == [0.75, 0.875, 0.9375, 0.96875, 0.984375]
    assert run(rule, ["7"] * 5) == (4, True, "7")


def test_beta_tie_never_settles_and_the_cap_answers_the_first_seen():
    rule = StoppingRule("beta", 0.6)
    # 4, 5, 4, 5: after 2 and 4 samples the two answers tie (P = 1/2); after 1 and 3 the leader has
    # one vote more: Beta(2, 1) -> 3/4 (stop at 0.6 already), Beta(3, 2) -> 11/16.
    assert read(rule, ["4", "5", "4", "5"]) == [0.75, 0.5, 0.6875, 0.5]
    assert run(StoppingRule("beta", 0.8), ["4", "5", "4", "5"]) == (4, False, "4")


def test_equivalent_answers_vote_together():
    assert read(StoppingRule("beta"), ["1/2", "0.5", "\\frac{1}{2}"]) == [0.75, 0.875, 0.9375]


def test_samples_without_an_answer_never_vote():
    rule = StoppingRule("beta", 0.7)
    assert read(rule, [None, "4", None, "   "]) == [0.0, 0.75, 0.75, 0.75]
    assert run(rule, [None, "4", None]) == (2, True, "4")
    # Nothing parseable: no rule settles, the cap is spent, and selection falls back to candidate 0.
    for rule in (StoppingRule("beta", 0.5), StoppingRule("dirichlet", 0.5), StoppingRule("esc", window=1)):
        assert run(rule, [None, None, None]) == (3, False, None)


# --- dirichlet ---------------------------------------------------------------------------------------


def dirichlet_by_grid(votes: list[int], points: int = 1500) -> float:
    """P(p_0 > p_j for all j) under Dir(votes + 1) for three answers, integrated on a grid of the
    simplex (a different method from the Gamma quadrature under test)."""
    alpha = np.asarray(votes, dtype=float) + 1
    step = 1.0 / points
    p1 = (np.arange(points) + 0.5) * step
    x, y = np.meshgrid(p1, p1, indexing="ij")
    z = 1 - x - y
    inside = z > 0
    density = np.where(
        inside, x ** (alpha[0] - 1) * y ** (alpha[1] - 1) * np.clip(z, 0, None) ** (alpha[2] - 1), 0
    )
    lead = inside & (x > y) & (x > z)
    return float(density[lead].sum() / density[inside].sum())


@pytest.mark.parametrize("votes", [[2, 1, 1], [3, 2, 1], [4, 4, 1], [1, 1, 1], [6, 1, 1]])
def test_dirichlet_against_an_integral_over_the_simplex(votes):
    assert dirichlet_confidence(votes) == pytest.approx(dirichlet_by_grid(votes), abs=2e-3)


def test_dirichlet_equals_beta_with_at_most_two_answers():
    for lead, second in [(1, 0), (3, 0), (3, 1), (5, 5), (12, 7)]:
        votes = [lead, second] if second else [lead]
        assert dirichlet_confidence(votes) == pytest.approx(beta_confidence(lead, second), abs=1e-9)
    sequence = ["3", "4", "3", "3", "4", "3"]
    assert read(StoppingRule("dirichlet"), sequence) == pytest.approx(read(StoppingRule("beta"), sequence))


def test_dirichlet_a_third_answer_lowers_the_confidence():
    # 3 of "a" and 1 of "b": Beta(4, 2) = 0.8125; another answer "c" takes mass from the leader's lead too.
    assert read(StoppingRule("dirichlet"), ["a", "b", "a", "a", "c"])[3] == pytest.approx(0.8125)
    assert read(StoppingRule("dirichlet"), ["a", "b", "a", "a", "c"])[4] < 0.8125


# --- esc ------------------------------------------------------------------------------------------------


def test_esc_stops_at_the_first_window_of_one_answer():
    rule = StoppingRule("esc", window=2)
    assert run(rule, ["4", "4", "5", "5"]) == (2, True, "4")
    # Window 1 = (4, 5): go on; window 2 = (5, 5): stop; the majority of the four drawn is 5.
    assert run(rule, ["4", "5", "5", "5", "6", "6"]) == (4, True, "5")
    # A window is judged only at its end: samples 2-3 agree but straddle two windows.
    assert run(rule, ["4", "5", "5", "6", "7", "8"]) == (6, False, "5")
    # An unanswered sample breaks a window's agreement.
    assert run(rule, ["4", None, "4", "4"]) == (4, True, "4")


def test_esc_last_window_is_cut_at_the_cap():
    assert run(StoppingRule("esc", window=4), ["1", "2", "3", "3", "3", "3"], cap=6) == (6, True, "3")
    assert stop_point([0, 0, 0, 0, 0, 0], 1.0, cap=6, round_size=4) == (6, False)


# --- verifier rules ----------------------------------------------------------------------------------


def test_share_is_the_leaders_weighted_votes_per_sample():
    rule = StoppingRule("share", 0.6)
    answers, scores = ["4", "5", "4", None], [0.5, 0.75, 0.5, 0.9]
    # n=1: 0.5/1; n=2: leader 5 (0.75 > 0.5) -> 0.75/2; n=3: 4 (1.0) -> 1/3; n=4: None votes for nothing.
    assert read(rule, answers, scores) == [0.5, 0.375, pytest.approx(1 / 3), 0.25]
    # A lone sure sample settles at once, a lone unsure one does not.
    assert run(StoppingRule("share", 0.8), ["4", "4"], [0.9, 0.9]) == (1, True, "4")
    assert run(StoppingRule("share", 0.8), ["4", "4"], [0.7, 0.95]) == (2, True, "4")
    # Equal weighted votes: the answer seen first leads.
    assert read(rule, ["4", "5"], [0.5, 0.5]) == [0.5, 0.25]


def test_best_is_the_top_score_so_far_and_the_answer_is_the_weighted_vote():
    rule = StoppingRule("best", 0.85)
    answers, scores = ["4", "5", "5", "6"], [0.2, 0.6, 0.7, 0.9]
    assert read(rule, answers, scores) == [0.2, 0.6, 0.7, 0.9]
    # Stops at sample 4 (0.9); weighted best-of-N then picks 5 (0.6 + 0.7 = 1.3 > 0.9).
    assert run(rule, answers, scores) == (4, True, "5")


def test_rules_refuse_what_they_cannot_read():
    with pytest.raises(ValueError, match="tau must be in"):
        StoppingRule("beta", 0.0)
    with pytest.raises(ValueError, match="tau must be in"):
        StoppingRule("share", 1.5)
    with pytest.raises(ValueError, match="unknown stopping rule"):
        StoppingRule("entropy")
    with pytest.raises(ValueError, match="window is esc's alone"):
        StoppingRule("beta", 0.9, window=2)
    with pytest.raises(ValueError, match="reads verifier scores"):
        read(StoppingRule("best", 0.5), ["1"])
    with pytest.raises(ValueError, match="cap 3 outside"):
        stop_point([0.1, 0.2], 0.5, cap=3)
