"""Compute-optimal on the axis of generations actually spent (eval/spend_optimal.py): a problem's own
outcome never chooses its option (a planted leak is caught), and the curve against a hand count."""

from __future__ import annotations

import itertools

import pytest

from ttcompute.eval import spend_optimal
from ttcompute.eval.efficiency import assign_folds
from ttcompute.eval.spend_optimal import allocate_held_out, bin_points, option_table

PROBLEMS = [f"p{i}" for i in range(12)]
BINS = {p: 1 + i % 2 for i, p in enumerate(PROBLEMS)}


def records(flip: set[str] = frozenset()) -> list[dict]:
    """Three options of unlike cost and accuracy per problem (a deterministic pattern); ``flip``: the
    problems whose verdicts are all inverted."""
    out = []
    for i, p in enumerate(PROBLEMS):
        for strategy, budget, spent, hit in (("cheap", 1, 1.0, i % 3 == 0), ("mid", 2, 1.5, i % 2 == 0),
                                             ("dear", 4, 3.0, i % 4 != 3)):  # fmt: skip
            correct = hit != (p in flip)
            out.append({"problem_id": p, "strategy": strategy, "budget": budget, "correct": correct,
                        "generations": spent, "total_flops": 10.0 * spent})  # fmt: skip
    return out


def members() -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for p in PROBLEMS:
        groups.setdefault(str(BINS[p]), []).append(p)
    return groups


def folds() -> dict[str, int]:
    return {p: f for ps in members().values() for p, f in assign_folds(ps, 2, seed=0).items()}


LEVELS = [0.5, 1.0, 1.5, 2.0, 3.0]


def own_outcomes_matter(allocate) -> bool:
    """Whether inverting every verdict of fold 0's problems changes an option fold 0 is given."""
    fold = folds()
    held = {p for p in PROBLEMS if fold[p] == 0}
    before = allocate(option_table(records()), members(), fold, 2, LEVELS)
    after = allocate(option_table(records(flip=held)), members(), fold, 2, LEVELS)
    return any(before[level][p] != after[level][p] for level in LEVELS for p in held)


def test_a_problems_own_outcome_never_chooses_its_option():
    assert not own_outcomes_matter(allocate_held_out)
    # ... while the other fold's outcomes do choose it (else the check could not fail at all).
    fold = folds()
    other = {p for p in PROBLEMS if fold[p] == 1}
    before = allocate_held_out(option_table(records()), members(), fold, 2, LEVELS)
    after = allocate_held_out(option_table(records(flip=other)), members(), fold, 2, LEVELS)
    assert any(before[level][p] != after[level][p] for level in LEVELS for p in PROBLEMS if fold[p] == 0)


def test_a_planted_leak_is_caught(monkeypatch):
    # Points measured on all of a bin's problems, the held-out ones included: the leak the CV prevents.
    real = spend_optimal.bin_points
    monkeypatch.setattr(
        spend_optimal,
        "bin_points",
        lambda table, train, complete_for: real(table, complete_for, complete_for),
    )
    assert own_outcomes_matter(spend_optimal.allocate_held_out)


def test_points_are_each_spends_best_option_and_giving_up_is_free():
    table = option_table(records())
    points = bin_points(table, PROBLEMS, PROBLEMS)
    assert points[0.0] == (0.0, None)
    by_hand = {
        1.0: (sum(i % 3 == 0 for i in range(12)) / 12, ("cheap", 1)),
        1.5: (sum(i % 2 == 0 for i in range(12)) / 12, ("mid", 2)),
        3.0: (sum(i % 4 != 3 for i in range(12)) / 12, ("dear", 4)),
    }
    assert {x: p for x, p in points.items() if x} == by_hand


def test_the_curve_is_what_the_options_given_realise():
    """Every problem's option at each level is one of the points of its bin on the other fold, the
    fold's spend stays within its share of the level (the points' spend, as measured on the other
    fold), and the realised accuracy and spend are the held-out problems' own."""
    fold = folds()
    table = option_table(records())
    given = allocate_held_out(table, members(), fold, 2, LEVELS)
    for level, f in itertools.product(LEVELS, (0, 1)):
        held = [p for p in PROBLEMS if fold[p] == f]
        expected_spend = 0.0
        for p in held:
            group = members()[str(BINS[p])]
            points = bin_points(table, [q for q in group if fold[q] != f], group)
            option = given[level][p]
            (spent,) = [x for x, (_, o) in points.items() if o == option]
            expected_spend += spent
        assert expected_spend <= level * len(held) + 1e-9
    result = spend_optimal.spend_optimal(
        records(), BINS, fold, 2, predictor_generations=0.25, baseline="mid", static={"cheap", "mid", "dear"},
        num_resamples=100,
    )  # fmt: skip
    given = allocate_held_out(table, members(), fold, 2, result["levels"])
    for point in result["curve"]:
        options = given[point["level"]]
        verdicts = [table[options[p]][p][0] if options[p] else False for p in PROBLEMS]
        spends = [table[options[p]][p][1] if options[p] else 0.0 for p in PROBLEMS]
        assert point["accuracy"] == pytest.approx(sum(verdicts) / 12, abs=1e-4)
        assert point["generations"] == pytest.approx(sum(spends) / 12 + 0.25, abs=1e-4)
