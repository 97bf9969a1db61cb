"""Reading one stage's output in another: the checks and readers that cross a stage boundary.

A stage's output is a dataset with documented columns (each stage module's docstring). Where a
later stage of *another* package reads it -- ``ttc select`` and ``ttc orm-data`` read search rows,
``ttc select`` and ``ttc compute-optimal`` read the difficulty table -- the reader lives here, so
neither stage imports the other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import datasets

from ttcompute.core.errors import InputError


def misaligned_candidates(row: dict[str, Any]) -> str | None:
    """Why the per-candidate lists of a search row cannot be paired up; None when they can.

    ``correct[i]`` is the verdict on ``answers[i]``: lists of different lengths would credit a
    selected candidate with another one's verdict.

    >>> misaligned_candidates({"method": "best_of_n", "answers": ["1", "2"], "correct": [True],
    ...                        "step_scores": [[0.5], [0.1]]})
    'per-candidate lists differ in length (answers 2, correct 1, step_scores 2)'
    """
    columns = ["answers", "correct", "step_scores"]
    if row["method"] == "revisions":
        columns += ["subtrees", "positions"]
    lengths = {c: None if row.get(c) is None else len(row[c]) for c in columns}
    if None not in lengths.values() and len(set(lengths.values())) == 1:
        return None
    described = ", ".join(f"{c} {'missing' if n is None else n}" for c, n in lengths.items())
    return f"per-candidate lists differ in length ({described})"


def load_difficulty(output_dir: str | Path):
    """The ``difficulty.parquet`` of a ``ttc difficulty`` run as a ``datasets.Dataset``."""
    path = Path(output_dir) / "difficulty.parquet"
    if not path.is_file():
        raise InputError(f"{path}: no such file (run ttc difficulty first)")
    return datasets.Dataset.from_parquet(str(path))
