"""Online allocation across a batch: a total of generations for a set of problems, each next sample
given to the unsettled problem where one more is expected to gain the most.

Every problem of the set starts with one best-of-N sample. Then, one sample at a time, the problem
whose *state* promises the largest expected gain draws its next candidate, until the total is spent
or no problem is expected to gain (settled ones, and hopeless ones, then stop drawing). A problem's
state after n samples is (n in log buckets, the verifier's confidence in its current answer in
quantile buckets of that count: ``share`` of :mod:`ttcompute.core.stopping`, the agreement rule
``beta`` without a verifier), and the expected gain of a state is measured on the *other* fold: the
mean, over its problems in that state, of whether weighted best-of-N's pick turned right (+1) or wrong
(-1) with the next sample. A state seen fewer than ``MIN_COUNT`` times there borrows its count
bucket's mean. No difficulty predictor enters (measured on the demo: with its bins in the state, a
bin's 40 training problems per fold left most states too noisy to be worth a sample), so there is
none to pay for.

Why a lookup table and not a model: a few hundred problems x 64 samples give tens of thousands of
(state, gain) pairs over a few dozen states -- enough for means, too few for anything that would
need its own cross-validation -- and the table is what a deployment reads (``routing_policy.json``).

Best-of-N candidates nest, so the allocation is evaluated on saved candidates (``ttc select``'s
``prefixes.parquet``: per problem, weighted best-of-N's verdict and the confidence after each n);
``ttc route --allocation batch`` draws the same samples online in the same order
(:func:`allocate_batch` with a drawing callback).
"""

from __future__ import annotations

import heapq
import math
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

MIN_COUNT = 5
CONFIDENCE_BUCKETS = 5


def count_bucket(n: int) -> int:
    """n samples drawn, in buckets 1, 2, 3-4, 5-8, 9-16, ...

    >>> [count_bucket(n) for n in (1, 2, 3, 4, 5, 8, 9, 64)]
    [0, 1, 2, 2, 3, 3, 4, 6]
    """
    return 0 if n <= 1 else math.ceil(math.log2(n))


@dataclass
class GainTable:
    """Expected gain of one more sample by state (count bucket, confidence bucket), and each count
    bucket's confidence edges (the verifier's confidence has another scale after 2 samples than after 40)."""

    edges: dict[int, list[float]]
    gains: dict[tuple[int, int], float]

    def state(self, n: int, confidence: float) -> tuple[int, int]:
        bucket = count_bucket(n)
        return bucket, int(np.searchsorted(self.edges.get(bucket, []), confidence, side="right"))

    def gain(self, n: int, confidence: float) -> float:
        state = self.state(n, confidence)
        for key in (state, (state[0], -1)):  # (count, -1): the count bucket's mean
            if key in self.gains:
                return self.gains[key]
        return 0.0

    def to_dict(self) -> dict:
        return {
            "edges": {str(k): v for k, v in sorted(self.edges.items())},
            "gains": [[list(k), v] for k, v in sorted(self.gains.items())],
        }

    @classmethod
    def from_dict(cls, record: dict) -> GainTable:
        edges = {int(k): [float(e) for e in v] for k, v in record["edges"].items()}
        return cls(edges, {tuple(k): float(v) for k, v in record["gains"]})


def gain_table(prefixes: Sequence[Mapping]) -> GainTable:
    """The table from training problems' prefixes (``correct`` and ``confidence`` after each n).

    >>> rows = [{"correct": [False, True, True], "confidence": [0.1, 0.8, 0.9]} for _ in range(6)]
    >>> table = gain_table(rows)
    >>> table.gain(1, 0.1), table.gain(2, 0.8), table.gain(3, 0.5)
    (1.0, 0.0, 0.0)
    """
    seen: dict[int, list[float]] = defaultdict(list)
    for row in prefixes:
        for n, confidence in enumerate(row["confidence"][:-1], start=1):
            seen[count_bucket(n)].append(confidence)
    quantiles = np.arange(1, CONFIDENCE_BUCKETS) / CONFIDENCE_BUCKETS
    edges = {b: sorted({float(q) for q in np.quantile(v, quantiles)}) for b, v in seen.items()}
    table = GainTable(edges, {})
    sums: dict[tuple[int, int], list[float]] = defaultdict(lambda: [0.0, 0])
    for row in prefixes:
        correct, confidence = row["correct"], row["confidence"]
        for n in range(1, len(correct)):
            state = table.state(n, confidence[n - 1])
            gain = float(correct[n]) - float(correct[n - 1])
            for key in (state, (state[0], -1)):
                sums[key][0] += gain
                sums[key][1] += 1
    table.gains = {key: total / count for key, (total, count) in sums.items() if count >= MIN_COUNT}
    return table


def allocate_batch(
    problems: Sequence[str],
    table: GainTable,
    total: float,
    cap: int,
    draw: Callable[[list[str]], None],
    confidence: Callable[[str], float],
    drawn: Callable[[str], int],
) -> None:
    """Spend ``total`` samples over ``problems``: one each first (``draw`` of them all), then one at a
    time to the problem of highest expected gain (ties: the first in ``problems``) while it is positive
    and below ``cap`` samples. ``draw(ids)`` draws the next sample of each; ``confidence(id)`` and
    ``drawn(id)`` read a problem's state."""
    if total < len(problems):
        raise ValueError(f"a total of {total} cannot give each of {len(problems)} problems a sample")
    draw(list(problems))
    spent = len(problems)
    order = {p: i for i, p in enumerate(problems)}

    def offer(p: str) -> tuple[float, int, str] | None:
        gain = table.gain(drawn(p), confidence(p))
        return (-gain, order[p], p) if gain > 1e-12 and drawn(p) < cap else None

    # Only the problem that drew changes its state: a heap of offers, that one's renewed after each draw.
    heap = [entry for entry in map(offer, problems) if entry is not None]
    heapq.heapify(heap)
    while heap and spent + 1 <= total + 1e-9:
        _, _, best = heapq.heappop(heap)
        draw([best])
        spent += 1
        entry = offer(best)
        if entry is not None:
            heapq.heappush(heap, entry)


def evaluate_batch(
    prefixes: Sequence[Mapping],
    folds: Mapping[str, int],
    num_folds: int,
    per_problem: float,
) -> dict[str, tuple[bool, int]]:
    """Each problem's (verdict, samples drawn) when every fold's problems share ``per_problem`` samples
    each, allocated by the table of the other folds (saved candidates: drawing reads the next one)."""
    by_id = {row["problem_id"]: row for row in prefixes}
    out: dict[str, tuple[bool, int]] = {}
    for fold in range(num_folds):
        test = [p for p in sorted(by_id) if folds[p] == fold]
        if not test:
            continue
        table = gain_table([by_id[p] for p in by_id if folds[p] != fold])
        count = allocate_saved({p: by_id[p] for p in test}, table, per_problem * len(test))
        for p in test:
            out[p] = (bool(by_id[p]["correct"][count[p] - 1]), count[p])
    return out


def allocate_saved(rows: Mapping[str, Mapping], table: GainTable, total: float) -> dict[str, int]:
    """:func:`allocate_batch` over saved candidates (drawing reads the next one): samples per problem."""
    count = dict.fromkeys(rows, 0)

    def draw(ids: list[str]) -> None:
        for p in ids:
            count[p] += 1

    cap = min(len(row["correct"]) for row in rows.values())
    allocate_batch(
        list(rows), table, total, cap, draw,
        confidence=lambda p: rows[p]["confidence"][count[p] - 1], drawn=lambda p: count[p],
    )  # fmt: skip
    return count
