"""``ttc select`` on search output whose per-candidate lists do not line up: rejected by row."""

from __future__ import annotations

from pathlib import Path

import pytest

from ttcompute.cli import run_stage
from ttcompute.data_gen.shards import prepare_output, write_shard
from ttcompute.errors import InputError
from ttcompute.eval.select import misaligned_candidates


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
