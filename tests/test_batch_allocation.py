"""Batch allocation (eval/batch_allocation.py): the gain table against a hand count, the allocation
against a plain re-implementation of its greedy, and a problem's own verdicts never steering it."""

from __future__ import annotations

import pytest

from ttcompute.eval.batch_allocation import (
    GainTable,
    allocate_saved,
    count_bucket,
    evaluate_batch,
    gain_table,
)


def test_gains_are_the_mean_change_of_the_verdict_by_state():
    # 5 problems alike: right after 1 sample? no -- wrong at 1, right at 2, right at 3 (gain +1 at n=1, 0 at n=2);
    # 5 others: right at 1, wrong at 2, wrong at 3 (gain -1 at n=1, 0 at n=2). Confidences put them apart.
    rows = [{"correct": [False, True, True], "confidence": [0.1, 0.5, 0.9]} for _ in range(5)]
    rows += [{"correct": [True, False, False], "confidence": [0.8, 0.5, 0.9]} for _ in range(5)]
    table = gain_table(rows)
    assert table.gain(1, 0.1) == 1.0 and table.gain(1, 0.8) == -1.0
    assert table.gain(2, 0.5) == 0.0
    # A state never seen borrows its count bucket's mean: (+1 x 5 - 1 x 5) / 10 = 0 at n = 1.
    assert table.gains[(count_bucket(1), -1)] == 0.0


def greedy_by_hand(rows: dict, table: GainTable, total: float) -> dict[str, int]:
    """One sample each, then repeatedly the first problem of highest positive gain, while it fits."""
    count = dict.fromkeys(rows, 1)
    spent = len(rows)
    cap = min(len(r["correct"]) for r in rows.values())
    while spent + 1 <= total:
        gains = {p: table.gain(count[p], rows[p]["confidence"][count[p] - 1]) for p in rows if count[p] < cap}
        best = max(gains, key=lambda p: (gains[p], -list(rows).index(p)), default=None)
        if best is None or gains[best] <= 0:
            break
        count[best] += 1
        spent += 1
    return count


@pytest.mark.parametrize("total", [4, 5, 7, 9, 30])
def test_the_greedy_gives_each_sample_to_the_highest_expected_gain(total):
    table = GainTable({0: [0.5], 1: [0.5], 2: [0.5]}, {(0, 0): 0.3, (0, 1): 0.05, (1, 0): 0.2, (1, 1): -0.1,
                                                       (2, 0): 0.1, (2, 1): 0.02, (3, -1): 0.01})  # fmt: skip
    rows = {
        "a": {"correct": [False] * 6, "confidence": [0.2, 0.3, 0.9, 0.9, 0.9, 0.9]},
        "b": {"correct": [False] * 6, "confidence": [0.9, 0.9, 0.9, 0.9, 0.9, 0.9]},
        "c": {"correct": [False] * 6, "confidence": [0.1, 0.2, 0.3, 0.1, 0.1, 0.1]},
        "d": {"correct": [False] * 6, "confidence": [0.3, 0.7, 0.2, 0.2, 0.2, 0.2]},
    }
    assert allocate_saved(rows, table, total) == greedy_by_hand(rows, table, total)


def test_a_problems_own_verdicts_never_steer_its_allocation():
    rows = [
        {"problem_id": f"p{i}", "correct": [i % 3 == 0, i % 2 == 0, True, i % 5 == 0],
         "confidence": [(i % 7) / 7, (i % 4) / 4, 0.5, 0.6]}
        for i in range(40)
    ]  # fmt: skip
    folds = {row["problem_id"]: int(row["problem_id"][1:]) % 2 for row in rows}
    flipped = [
        {**row, "correct": [not c for c in row["correct"]]} if folds[row["problem_id"]] == 0 else row
        for row in rows
    ]
    before, after = evaluate_batch(rows, folds, 2, 2.0), evaluate_batch(flipped, folds, 2, 2.0)
    assert all(before[p][1] == after[p][1] for p in folds if folds[p] == 0)
    # ... while the other fold's verdicts do (else nothing here could fail).
    other = [
        {**row, "correct": [not c for c in row["correct"]]} if folds[row["problem_id"]] == 1 else row
        for row in rows
    ]
    assert any(before[p][1] != evaluate_batch(other, folds, 2, 2.0)[p][1] for p in folds if folds[p] == 0)
