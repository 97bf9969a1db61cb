"""The paired bootstrap behind every interval, against a direct computation."""

from __future__ import annotations

import numpy as np
import pytest

from ttcompute.core.bootstrap import paired_interval


def test_the_interval_is_the_percentiles_of_the_seeded_resamples():
    rng = np.random.default_rng(7)
    a, b = rng.integers(0, 2, 50).astype(float), rng.integers(0, 2, 50).astype(float)
    out = paired_interval(
        {"a": a, "b": b}, lambda x: float(x["a"].mean() - x["b"].mean()), num_resamples=500, seed=3
    )
    # Independently: the same draws (numpy's generator, seed 3), the difference of means per draw.
    draws = np.random.default_rng(3).integers(0, 50, size=(500, 50))
    diffs = a[draws].mean(axis=1) - b[draws].mean(axis=1)
    assert out["estimate"] == pytest.approx(a.mean() - b.mean())
    assert (out["low"], out["high"]) == pytest.approx(tuple(np.quantile(diffs, [0.025, 0.975])), abs=1e-4)
    assert out == paired_interval(
        {"a": a, "b": b}, lambda x: float(x["a"].mean() - x["b"].mean()), num_resamples=500, seed=3
    )


def test_pairing_keeps_the_correlation_of_methods_scored_on_the_same_problems():
    # b is a with two problems flipped: their difference is certain up to those two problems, while
    # each accuracy alone is uncertain.
    a = np.array([1.0, 0.0] * 20)
    b = a.copy()
    b[:2] = 1 - b[:2]
    diff = paired_interval({"a": a, "b": b}, lambda x: float(x["a"].mean() - x["b"].mean()), seed=0)
    alone = paired_interval({"a": a}, lambda x: float(x["a"].mean()), seed=0)
    assert diff["high"] - diff["low"] < (alone["high"] - alone["low"]) / 2


def test_undefined_resamples_count_as_given_or_are_left_out():
    values = np.array([0.0] * 5 + [1.0] * 5)

    def ratio(x):  # undefined when the draw has no 1
        return None if x["v"].sum() == 0 else float(x["v"].mean())

    kept = paired_interval({"v": values}, ratio, seed=1, num_resamples=200)
    counted = paired_interval({"v": values}, ratio, seed=1, num_resamples=200, undefined=0.0)
    assert kept["undefined_share"] == counted["undefined_share"] > 0.0
    assert counted["low"] <= kept["low"]
    with pytest.raises(ValueError, match="one value per problem"):
        paired_interval({"a": [1, 0], "b": [1]}, lambda x: 0.0)
