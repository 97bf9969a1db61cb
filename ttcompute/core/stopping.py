"""Stopping rules of adaptive test-time compute: after each round of samples, is the answer settled?

A problem is sampled in rounds up to a cap; after every round a rule reads what the samples so far
reveal -- their final answers, and with a verifier their scores -- and says stop or go on. They are
pure functions of those, so ``ttc select`` evaluates a rule on saved candidates (best-of-N budgets
nest: the first n candidates are what n samples would have given) and ``ttc route`` runs the same
rule while it generates.

Answer agreement (no verifier; rounds of one sample unless said):

* ``beta`` -- Adaptive-Consistency (Aggarwal et al., 2023, sec. 3): with v1, v2 the votes of the two
  most frequent answers, stop once P(p > 1/2) >= tau for p ~ Beta(v1 + 1, v2 + 1), the posterior
  of the leader's share between the two under a uniform prior. One answer seen is compared with an
  unseen one (v2 = 0). For integer votes this is a binomial tail, P(Bin(v1 + v2 + 1, 1/2) <= v1),
  computed exactly (:func:`beta_confidence`).
* ``dirichlet`` -- ibid.: stop once P(p_lead > p_j for every other answer j) >= tau for
  p ~ Dir(v + 1) over the answers seen (one answer: with an unseen one, as for beta -- so the two
  rules agree whenever at most two answers were seen). Computed by quadrature of its Gamma form
  (:func:`dirichlet_confidence`), not by Monte Carlo: the same votes always give the same decision.
* ``esc`` -- Early-Stopping Self-Consistency (Li et al., 2024): samples drawn in windows of ``w``;
  stop once every answer of the latest window is the same (the window's answer entropy is zero).
  ``tau`` plays no part.

Verifier confidence (a PRM's candidate scores, in [0, 1]):

* ``share`` -- the leading answer's PRM-weighted votes per sample drawn: the summed scores of the
  answer weighted best-of-N picks, divided by n. Each sample adds at most one vote, so a lone sample
  counts its own score and disagreement lowers it; the share of the *weighted vote* (the leader's sum
  over every answer's) would be 1 after any first sample, sure or not.
* ``best`` -- the highest candidate score.

A candidate without an answer (None, or blank once normalized) never votes, as in
:mod:`ttcompute.core.selection`: samples without answers settle nothing. When a rule stops, the
answer is majority vote (agreement rules) or weighted best-of-N (verifier rules) over every sample
drawn. Every rule stops at the cap whatever its confidence.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ttcompute.core.selection import has_answer, majority_vote, weighted_best_of_n

AGREEMENT_RULES = ("beta", "dirichlet", "esc")
VERIFIER_RULES = ("share", "best")
RULES = AGREEMENT_RULES + VERIFIER_RULES


@dataclass(frozen=True)
class StoppingRule:
    """One stopping rule: which (``rule``), its threshold ``tau`` in (0, 1] and, for ``esc``, the
    window ``w`` (its round: samples drawn between two decisions)."""

    rule: str
    tau: float = 1.0
    window: int = 1

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ValueError(f"unknown stopping rule {self.rule!r}; choose one of {RULES}")
        if not 0 < self.tau <= 1:
            raise ValueError(f"tau must be in (0, 1], got {self.tau}")
        if self.window < 1:
            raise ValueError(f"the window must be >= 1, got {self.window}")
        if self.rule != "esc" and self.window != 1:
            raise ValueError(f"rule {self.rule} decides after every sample: a window is esc's alone")

    @property
    def needs_verifier(self) -> bool:
        return self.rule in VERIFIER_RULES

    @property
    def round_size(self) -> int:
        return self.window


def beta_confidence(lead: int, second: int) -> float:
    """P(p > 1/2) for p ~ Beta(lead + 1, second + 1), exactly: P(Bin(lead + second + 1, 1/2) <= lead).

    >>> beta_confidence(1, 0), beta_confidence(3, 0), beta_confidence(4, 0), beta_confidence(2, 2)
    (0.75, 0.9375, 0.96875, 0.5)
    """
    if lead < 0 or second < 0:
        raise ValueError(f"votes must be >= 0, got {lead}, {second}")
    trials = lead + second + 1
    return sum(math.comb(trials, k) for k in range(lead + 1)) / 2**trials


_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(256)


def dirichlet_confidence(votes: Sequence[int]) -> float:
    """P(p_lead > p_j for every other j) for p ~ Dir(votes + 1), the leader being the most voted.

    With G_i ~ Gamma(votes_i + 1) independent, p = G / sum(G), so the probability is
    the integral of the leader's Gamma density times every other answer's Gamma CDF; integer shapes give
    those CDFs in closed form, and Gauss-Legendre quadrature over the leader's mass does the rest.
    One answer is compared with an unseen one (votes 0), as Adaptive-Consistency does.

    >>> round(dirichlet_confidence([3, 1]), 6) == round(beta_confidence(3, 1), 6)
    True
    >>> round(dirichlet_confidence([2, 2, 2]), 4)  # three tied answers: each leads a third of the time
    0.3333
    """
    counts = [int(v) for v in votes if v > 0]
    if not counts:
        raise ValueError("no votes")
    counts.sort(reverse=True)
    if len(counts) == 1:
        counts.append(0)
    shapes = np.asarray(counts, dtype=np.float64) + 1
    lead = shapes[0]
    # The leader's Gamma(lead) mass lies well inside [0, lead + 12 sqrt(lead) + 30].
    top = lead + 12 * math.sqrt(lead) + 30
    x = (_NODES + 1) * top / 2
    density = np.exp((lead - 1) * np.log(x) - x - math.lgamma(lead))
    product = np.ones_like(x)
    for shape in shapes[1:]:
        product *= _gamma_cdf(int(shape), x)
    # Rounded: quadrature error (~1e-14) must not decide a threshold that beta, exact, meets.
    return round(float(np.clip(np.sum(_WEIGHTS * density * product) * top / 2, 0.0, 1.0)), 10)


def _gamma_cdf(shape: int, x: np.ndarray) -> np.ndarray:
    """P(Gamma(shape) <= x) for an integer shape: 1 - e^-x sum_{m < shape} x^m / m! (log-space terms)."""
    m = np.arange(shape, dtype=np.float64)
    log_terms = m[None, :] * np.log(x)[:, None] - x[:, None] - np.asarray([math.lgamma(k + 1) for k in m])
    return np.clip(1.0 - np.exp(log_terms).sum(axis=1), 0.0, 1.0)


def confidences(
    rule: StoppingRule, groups: Sequence[int], answered: Sequence[bool], scores: Sequence[float] | None
) -> list[float]:
    """The rule's confidence after each sample: element n - 1 is what it reads after the first n.

    ``groups``: the candidates' equivalent-answer groups (:func:`~ttcompute.core.selection.
    group_equivalent_answers`; a prefix's groups are the prefix of these); ``answered``: which
    candidates have an answer (:func:`~ttcompute.core.selection.has_answer`); ``scores``: their
    verifier scores (verifier rules). ``esc`` reads 1.0 where the last ``w`` samples agree, else 0.

    >>> confidences(StoppingRule("beta"), [0, 1, 0, 0], [True] * 4, None)
    [0.75, 0.5, 0.6875, 0.8125]
    >>> confidences(StoppingRule("share"), [0, 1, 0], [True] * 3, [0.5, 0.75, 0.25])  # a tie: the first
    [0.5, 0.375, 0.25]
    >>> confidences(StoppingRule("esc", window=2), [0, 0, 1, 2], [True, True, True, False], None)
    [0.0, 1.0, 0.0, 0.0]
    """
    if len(groups) != len(answered) or (scores is not None and len(scores) != len(groups)):
        raise ValueError("groups, answered and scores need one entry per candidate")
    if rule.needs_verifier and scores is None:
        raise ValueError(f"rule {rule.rule} reads verifier scores: none given")
    out: list[float] = []
    votes: dict[int, int] = {}
    totals: dict[int, float] = {}
    first: dict[int, int] = {}
    best = 0.0
    for n, (group, has) in enumerate(zip(groups, answered), start=1):
        if has:
            votes[group] = votes.get(group, 0) + 1
            first.setdefault(group, n)
            if scores is not None:
                totals[group] = totals.get(group, 0.0) + float(scores[n - 1])
        if rule.rule == "best":
            best = max(best, float(scores[n - 1]))
            out.append(best)
        elif rule.rule == "share":
            lead = max(totals, key=lambda g: (totals[g], -first[g])) if totals else None
            out.append(totals[lead] / n if lead is not None else 0.0)
        elif rule.rule == "esc":
            window = range(n - rule.window, n)
            agree = n >= rule.window and all(answered[i] for i in window)
            agree = agree and len({groups[i] for i in window}) == 1
            out.append(1.0 if agree else 0.0)
        elif not votes:
            out.append(0.0)
        elif rule.rule == "beta":
            top = sorted(votes.values(), reverse=True)
            out.append(beta_confidence(top[0], top[1] if len(top) > 1 else 0))
        else:
            out.append(dirichlet_confidence(list(votes.values())))
    return out


def stop_point(confidence: Sequence[float], tau: float, cap: int, round_size: int = 1) -> tuple[int, bool]:
    """How many samples a rule draws: it decides after each round of ``round_size`` (the last round cut
    at ``cap``) and stops at the first whose confidence reaches ``tau``; ``(n, settled)``, settled False
    when it ran to the cap without reaching it.

    >>> stop_point([0.75, 0.5, 0.6875, 0.8125], tau=0.8, cap=4), stop_point([0.75, 0.5], 0.8, cap=2)
    ((4, True), (2, False))
    >>> stop_point([0.0, 1.0, 0.0, 0.0, 1.0], tau=1.0, cap=5, round_size=2)
    (2, True)
    """
    if cap < 1 or cap > len(confidence):
        raise ValueError(f"cap {cap} outside the {len(confidence)} candidates read")
    drawn = 0
    while drawn < cap:
        drawn = min(drawn + round_size, cap)
        if confidence[drawn - 1] >= tau:
            return drawn, True
    return cap, False


def stopped_pick(
    rule: StoppingRule,
    answers: Sequence[str | None],
    scores: Sequence[float] | None,
    groups: Sequence[int],
    drawn: int,
) -> int:
    """The candidate a rule answers with after ``drawn`` samples: majority vote (agreement rules) or
    weighted best-of-N (verifier rules) over them.

    >>> stopped_pick(StoppingRule("beta"), ["3", "4", "4"], None, [0, 1, 1], 3)
    1
    """
    head = slice(0, drawn)
    if rule.needs_verifier:
        return weighted_best_of_n(answers[head], scores[head], groups=groups[head])
    return majority_vote(answers[head], groups=groups[head])


def answered(answers: Sequence[str | None]) -> list[bool]:
    """Which candidates have an answer that can vote."""
    return [has_answer(a) for a in answers]
