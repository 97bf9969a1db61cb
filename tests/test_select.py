"""``ttc select`` on search output whose per-candidate lists do not line up: rejected by row."""

from __future__ import annotations

from pathlib import Path

import pytest

from ttcompute.cli import run_stage
from ttcompute.core.errors import InputError
from ttcompute.core.outputs import misaligned_candidates
from ttcompute.core.shards import prepare_output, write_shard


def _row(problem_id: str, **overrides) -> dict:
    row = {
        "problem_id": problem_id,
        "method": "best_of_n",
        "width_setting": None,
        "lookahead": 0,
        "search_aggregation": "last",
        "budget": 2,
        "generations": 2,
        "answers": ["1", "2"],
        "correct": [False, True],
        "step_scores": [[0.1], [0.9]],
        "subtrees": [0, 1],
        "positions": [0, 0],
        "policy_flops": 10,
        "prm_flops": 5,
    }
    row.update(overrides)
    return row


def _search_dir(tmp_path: Path, rows: list[dict]) -> Path:
    out = tmp_path / "search"
    prepare_output(out, "search", "test", 1, False)
    write_shard(out, 0, rows)
    return out


def test_aligned_rows_are_selected(tmp_path: Path) -> None:
    out = _search_dir(tmp_path, [_row("a"), _row("b", correct=[True, False])])
    summary = run_stage("select", ["--search_dir", str(out), "--output_dir", str(tmp_path / "sel")])
    assert summary["accuracy"]["all"]["best_of_n"]["2"] == 0.5  # each row's best scorer is its 2nd answer


@pytest.mark.parametrize(
    ("overrides", "lengths"),
    [
        ({"correct": [True]}, "answers 2, correct 1, step_scores 2"),  # a verdict lost
        ({"correct": [False, True, True]}, "answers 2, correct 3, step_scores 2"),
        ({"step_scores": [[0.9]]}, "answers 2, correct 2, step_scores 1"),
        ({"method": "revisions", "width_setting": "2", "subtrees": [0]}, "subtrees 1, positions 2"),
    ],
)
def test_misaligned_row_is_rejected_by_row_number(tmp_path: Path, overrides: dict, lengths: str) -> None:
    assert lengths in misaligned_candidates(_row("x", **overrides))
    out = _search_dir(tmp_path, [_row("a"), _row("b", **overrides)])
    with pytest.raises(
        InputError, match=rf"search: row 1 \(problem b\): per-candidate lists differ .*{lengths}"
    ):
        run_stage("select", ["--search_dir", str(out), "--output_dir", str(tmp_path / "sel")])
    assert not (tmp_path / "sel" / "accuracy.json").exists()


def test_selections_keep_exact_values_through_parquet(tmp_path: Path) -> None:
    """A 7B-scale FLOPs count (above 2**53, where a float column would round it), a row with no answer
    at all, and search shards whose inferred types differ (shard 0's answers are ``list<null>``): the
    records ``ttc compute-optimal`` reads back are exactly the ones selected."""
    from ttcompute.eval.compute_optimal import load_selections

    big = 3 * 2**55 + 7
    out = tmp_path / "search"
    prepare_output(out, "search", "test", 2, False)
    write_shard(out, 0, [_row("a", answers=[None, None], correct=[False, False], policy_flops=big)])
    write_shard(out, 1, [_row("b", prm_flops=big)])
    run_stage("select", ["--search_dir", str(out), "--output_dir", str(tmp_path / "sel")])
    records = {(r["problem_id"], r["strategy"]): r for r in load_selections([str(tmp_path / "sel")])}
    assert records[("a", "majority")]["answer"] is None and records[("a", "majority")]["correct"] is False
    assert records[("a", "best_of_n_weighted")]["total_flops"] == big + 5
    assert records[("b", "best_of_n_weighted")]["total_flops"] == 10 + big
    assert records[("b", "majority")]["total_flops"] == 10  # majority voting uses no verifier
    assert records[("b", "best_of_n_weighted")]["answer"] == "2" and records[("b", "best_of_n")]["correct"]
    assert all(r["bin"] is None for r in records.values())
