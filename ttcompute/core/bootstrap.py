"""Paired bootstrap intervals over problems: how far a result computed on a few hundred problems can
be trusted.

Every compared quantity (two methods' accuracies, an efficiency ratio read off two curves) is a
function of per-problem outcomes. A *paired* bootstrap draws problems with replacement -- the same
draw for every method -- and recomputes the quantity on each draw; the percentile interval of those
recomputations is the interval reported. Pairing matters: two methods scored on the same problems are
correlated, and resampling each on its own would widen the interval of their difference.

Seeded (``numpy.random.default_rng(seed)``), so an interval is reproduced exactly by its seed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

DEFAULT_RESAMPLES = 1000
DEFAULT_CONFIDENCE = 0.95


def resample_indices(num_problems: int, num_resamples: int, seed: int) -> np.ndarray:
    """``(num_resamples, num_problems)`` problem indices drawn with replacement."""
    if num_problems < 1:
        raise ValueError("a bootstrap needs at least one problem")
    return np.random.default_rng(seed).integers(0, num_problems, size=(num_resamples, num_problems))


def mean_interval(
    values: Sequence[float],
    *,
    num_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    confidence: float = DEFAULT_CONFIDENCE,
) -> dict[str, Any]:
    """The mean of per-problem ``values`` and its percentile bootstrap interval (vectorized: cheap
    enough for every one of hundreds of strategies).

    >>> out = mean_interval([1, 0, 1, 1], seed=0)
    >>> out["estimate"], out["low"] <= 0.75 <= out["high"]
    (0.75, True)
    """
    array = np.asarray(values, dtype=float)
    means = array[resample_indices(len(array), num_resamples, seed)].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return {
        "estimate": float(array.mean()),
        "low": round(float(low), 4),
        "high": round(float(high), 4),
        "confidence": confidence,
        "resamples": num_resamples,
        "seed": seed,
    }


def paired_interval(
    outcomes: Mapping[str, Sequence[float]],
    statistic: Callable[[Mapping[str, np.ndarray]], float | None],
    *,
    num_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    confidence: float = DEFAULT_CONFIDENCE,
    undefined: float | None = None,
) -> dict[str, Any]:
    """``statistic`` on the problems as they are and its percentile interval over paired resamples.

    Args:
        outcomes: Per name (a method, a budget ...), one value per problem, every list in the same
            problem order.
        statistic: Named per-problem arrays -> a number; None where it is undefined (an efficiency
            ratio whose curve never reaches the target).
        undefined: The value an undefined resample counts as (None: such resamples are left out);
            either way their share is reported as ``undefined_share``.

    Returns:
        ``{"estimate", "low", "high", "confidence", "resamples", "seed", "undefined_share"}`` (``low``
        and ``high`` None when every resample is undefined).

    >>> a, b = [1, 1, 0, 1, 0, 1, 1, 0], [0, 1, 0, 0, 0, 1, 0, 0]
    >>> out = paired_interval({"a": a, "b": b}, lambda x: float(x["a"].mean() - x["b"].mean()), seed=0)
    >>> out["estimate"], out["low"] <= out["estimate"] <= out["high"]
    (0.375, True)
    """
    return paired_intervals(
        outcomes,
        lambda x: {"value": statistic(x)},
        num_resamples=num_resamples,
        seed=seed,
        confidence=confidence,
        undefined=undefined,
    )["value"]


def paired_intervals(
    outcomes: Mapping[str, Sequence[float]],
    statistics: Callable[[Mapping[str, np.ndarray]], Mapping[str, float | None]],
    *,
    num_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    confidence: float = DEFAULT_CONFIDENCE,
    undefined: float | None = None,
) -> dict[str, dict[str, Any]]:
    """:func:`paired_interval` of several statistics computed together on each resample
    (``statistics``: named arrays -> ``{name: value or None}``, the same names every time).

    >>> out = paired_intervals({"a": [1, 0, 1, 1]}, lambda x: {"mean": float(x["a"].mean()), "none": None})
    >>> out["mean"]["estimate"], out["none"]["undefined_share"]
    (0.75, 1.0)
    """
    names = list(outcomes)
    arrays = {name: np.asarray(outcomes[name], dtype=float) for name in names}
    sizes = {len(values) for values in arrays.values()}
    if len(sizes) != 1:
        raise ValueError(f"paired outcomes need one value per problem for every name, got sizes {sizes}")
    (size,) = sizes
    estimates = dict(statistics(arrays))
    draws = resample_indices(size, num_resamples, seed)
    values: dict[str, list[float | None]] = {name: [] for name in estimates}
    for draw in draws:
        found = statistics({name: array[draw] for name, array in arrays.items()})
        for name in estimates:
            values[name].append(found[name])
    tail = (1 - confidence) / 2
    out = {}
    for name, estimate in estimates.items():
        num_undefined = sum(v is None for v in values[name])
        counted = [undefined if v is None else v for v in values[name]]
        kept = np.array([v for v in counted if v is not None], dtype=float)
        low = high = None
        if kept.size:
            low, high = (float(q) for q in np.quantile(kept, [tail, 1 - tail]))
        out[name] = {
            "estimate": None if estimate is None else float(estimate),
            "low": None if low is None else round(low, 4),
            "high": None if high is None else round(high, 4),
            "confidence": confidence,
            "resamples": num_resamples,
            "seed": seed,
            "undefined_share": round(num_undefined / num_resamples, 4),
        }
    return out
