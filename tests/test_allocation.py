"""Per-problem allocation: the concave hull and the greedy against brute force on small cases."""

from __future__ import annotations

import itertools
import random

import pytest

from ttcompute.eval.allocation import allocate, upper_hull


def value(curves, given):
    return sum(curves[p][b] for p, b in given.items())


def brute_force(curves, total):
    names = sorted(curves)
    best = None
    for combo in itertools.product(*(sorted(curves[p]) for p in names)):
        if sum(combo) <= total + 1e-9:
            v = sum(curves[p][b] for p, b in zip(names, combo))
            best = v if best is None else max(best, v)
    return best


def hull_by_brute_force(curve):
    """The upper hull from its definition, independently of ``upper_hull``: the points that beat every
    cheaper one (more compute for no more accuracy is never bought), less those on or below the chord
    of any two of them around it."""
    points = sorted(curve.items())
    records = [(b, a) for i, (b, a) in enumerate(points) if all(a > a0 for _, a0 in points[:i])]
    return [
        (b, a)
        for (b, a) in records
        if not any(
            a <= a1 + (a2 - a1) * (b - b1) / (b2 - b1)
            for (b1, a1) in records
            for (b2, a2) in records
            if b1 < b < b2
        )
    ]


def test_the_hull_is_its_definition_on_random_and_tied_curves():
    rng = random.Random(2)
    for _ in range(300):
        # Coarse values make ties and collinear points common, where an off-by-one shows.
        curve = {b: rng.choice([0.0, 0.25, 0.5, 0.75, 1.0, rng.random()]) for b in (1, 2, 4, 6, 8, 16)}
        hull = upper_hull(curve)
        assert all(curve[b] == a for b, a in hull)  # vertices are points of the curve
        assert hull == hull_by_brute_force(curve), curve


def test_the_hull_is_concave_rising_and_on_or_above_every_point():
    rng = random.Random(0)
    for _ in range(200):
        curve = {b: rng.random() for b in (1, 2, 4, 8, 16)}
        hull = upper_hull(curve)
        assert hull[0] == (1, curve[1])
        assert all(a1 < a2 for (_, a1), (_, a2) in zip(hull, hull[1:]))
        slopes = [(a2 - a1) / (b2 - b1) for (b1, a1), (b2, a2) in zip(hull, hull[1:])]
        assert all(s1 >= s2 - 1e-12 for s1, s2 in zip(slopes, slopes[1:]))
        for b, a in curve.items():  # every point lies under the hull's piecewise-linear interpolation
            above = [(b1, a1, b2, a2) for (b1, a1), (b2, a2) in zip(hull, hull[1:]) if b1 <= b <= b2]
            if above:
                b1, a1, b2, a2 = above[0]
                assert a <= a1 + (a2 - a1) * (b - b1) / (b2 - b1) + 1e-12
            else:
                assert b >= hull[-1][0] and a <= hull[-1][1] + 1e-12


def test_greedy_is_within_one_segment_of_the_brute_force_optimum():
    rng = random.Random(1)
    for _ in range(150):
        curves = {}
        for p in ("a", "b", "c"):
            accuracy = sorted(rng.random() for _ in range(4))  # rising accuracy with budget
            curves[p] = dict(zip((1, 2, 4, 8), accuracy))
        total = rng.choice([3, 5, 7, 10, 14, 24])
        given = allocate(curves, total)
        assert sum(given.values()) <= total
        optimum = brute_force(curves, total)
        hulls = [hull_by_brute_force(c) for c in curves.values()]  # not the function under test
        largest_step = max((a2 - a1 for h in hulls for (_, a1), (_, a2) in zip(h, h[1:])), default=0.0)
        assert value(curves, given) >= optimum - largest_step - 1e-9


def test_greedy_gives_compute_to_the_problems_where_it_buys_accuracy():
    curves = {
        "easy": {1: 0.95, 4: 0.96, 16: 0.97},
        "hard": {1: 0.05, 4: 0.4, 16: 0.7},
        "flat": {1: 0.0, 4: 0.0, 16: 0.0},
    }
    # 12 generations: the hard problem's jump to 4 first (0.35 for 3), then what is left buys the
    # easy one's small gain; the flat one never gets more (no gain at any price).
    assert allocate(curves, total=3 * 4) == {"easy": 4, "flat": 1, "hard": 4}
    assert allocate(curves, total=18) == {"easy": 1, "flat": 1, "hard": 16}
    with pytest.raises(ValueError, match="cheapest budget"):
        allocate(curves, total=2)
