"""Reading one stage's output in another: the checks and readers that cross a stage boundary.

A stage's output is a dataset with documented columns (each stage module's docstring). Where a
later stage reads it, the checks that its rows line up and the readers live here, so no stage
imports another: ``ttc select`` and ``ttc orm-data`` check search rows, ``ttc label`` and
``ttc revisions`` the samples' per-sample lists, ``ttc difficulty`` and ``ttc flops-matched`` that
problem ids are unique; ``ttc select`` reads the difficulty table; ``ttc view`` opens a search output
a batch at a time.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow.compute as pc

from ttcompute.core.errors import InputError
from ttcompute.core.shards import ShardReader, read_manifest

logger = logging.getLogger(__name__)


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


def distinct_revision_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Search rows of method ``revisions`` holding each attempt once: per problem and chain length
    the row of the largest budget (the rows of smaller budgets are its first chains, ``ttc search``
    writes nested budgets).

    >>> rows = [{"problem_id": "p", "method": "revisions", "chain_length": 2, "budget": b} for b in (2, 8, 4)]
    >>> [r["budget"] for r in distinct_revision_rows(rows)]
    [8]
    """
    top: dict[tuple[Any, ...], dict[str, Any]] = {}
    for index, row in enumerate(rows):
        if row.get("method", "revisions") != "revisions":
            continue
        # A row that does not say its problem or budget is its own.
        known = "problem_id" in row and "budget" in row
        key = (row["problem_id"], row.get("chain_length")) if known else (index,)
        if key not in top or row["budget"] > top[key]["budget"]:
            top[key] = row
    return list(top.values())


def revision_chains_of(row: dict[str, Any]) -> list[list[int]]:
    """A ``revisions`` search row's chains: per chain (in order of first appearance), the indices of
    its attempts in the row's lists, in chain order (by ``positions``).

    >>> revision_chains_of({"subtrees": [0, 0, 1, 1, 0], "positions": [1, 0, 0, 1, 2]})
    [[1, 0, 4], [2, 3]]
    """
    chains: dict[int, list[int]] = {}
    for index, chain in enumerate(row["subtrees"]):
        chains.setdefault(chain, []).append(index)
    return [sorted(indices, key=lambda i: row["positions"][i]) for indices in chains.values()]


def open_search_output(search_dir: str | Path, columns: list[str]) -> ShardReader:
    """The rows of a finished ``ttc search`` output, to read a batch at a time (a search of 10^5 rows
    with its completions does not fit in memory as Python objects).

    Raises:
        InputError: not a ``ttc search`` output (no manifest, another stage's, a column of ``columns``
            missing), shards missing, or no rows -- one line naming the directory.
    """
    stage = read_manifest(search_dir).get("stage")
    if stage != "search":
        raise InputError(f"{search_dir}: a ttc {stage} output, not a ttc search output")
    reader = ShardReader(search_dir)
    missing = [c for c in columns if c not in reader.column_names]
    if missing:
        raise InputError(f"{search_dir}: missing column(s) {missing} (not a ttc search output?)")
    if len(reader) == 0:
        raise InputError(f"{search_dir}: the search output has no rows")
    return reader


def read_sample_solutions(samples_dir: str | Path) -> dict[str, list[tuple[str, int, str]]]:
    """Each problem's solutions in a ``ttc sample`` output: ``problem_id -> [(text, num_tokens,
    finish_reason)]`` in sampling order.

    Raises:
        InputError: not a sample output (a column missing), a repeated problem, lists of unequal length.
    """
    reader = ShardReader(samples_dir)
    columns = ["problem_id", "completions", "num_tokens", "finish_reasons"]
    missing = [c for c in columns if c not in reader.column_names]
    if missing:
        raise InputError(f"{samples_dir}: missing column(s) {missing} (not a ttc sample output?)")
    out: dict[str, list[tuple[str, int, str]]] = {}
    for index, row in enumerate(reader.iter_rows(0, len(reader), columns)):
        problem = row["problem_id"]
        if problem in out:
            raise InputError(f"{samples_dir}: row {index}: problem {problem!r} appears twice")
        texts, tokens, reasons = row["completions"], row["num_tokens"], row["finish_reasons"]
        if not len(texts) == len(tokens) == len(reasons):
            raise InputError(
                f"{samples_dir}: row {index} (problem {problem!r}): per-sample lists differ in length"
            )
        out[problem] = list(zip(texts, tokens, reasons))
    return out


def load_difficulty(output_dir: str | Path):
    """The ``difficulty.parquet`` of a ``ttc difficulty`` run as a ``datasets.Dataset``."""
    path = Path(output_dir) / "difficulty.parquet"
    if not path.is_file():
        raise InputError(f"{path}: no such file (run ttc difficulty first)")
    return datasets.Dataset.from_parquet(str(path))


def length_mismatches(reader: ShardReader, columns: list[str]) -> list[int]:
    """Rows whose list ``columns`` differ in length (or are null), read a batch at a time.

    A ``completions`` list one longer than its ``correct`` list would pair every verdict with the wrong
    text from there on; such rows must be reported and skipped, never used.
    """
    bad: list[int] = []
    offset = 0
    for batch in reader.iter_batches(columns):
        # (columns, rows); a null list counts as length -1, so it never matches
        lengths = np.stack(
            [pc.fill_null(pc.list_value_length(batch.column(c)), -1).to_numpy() for c in columns]
        )
        broken = (lengths != lengths[0]).any(axis=0) | (lengths < 0).any(axis=0)
        bad += (offset + np.flatnonzero(broken)).tolist()
        offset += batch.num_rows
    return bad


def malformed_rows(reader: ShardReader, columns: list[str], strict: bool) -> set[int]:
    """Rows whose list ``columns`` differ in length: each is logged with its row number and skipped
    by the caller, or, with ``strict``, stops the stage with an `InputError` naming the first."""
    bad = length_mismatches(reader, columns)
    source = str(reader.output_dir)
    what = " and ".join(repr(c) for c in columns)
    for index in bad[:20]:
        message = f"{source}: row {index}: {what} differ in length (or are null)"
        if strict:
            raise InputError(message + " (--strict)")
        logger.warning("%s; row skipped", message)
    if len(bad) > 20:
        logger.warning("%s: %d more malformed rows skipped", source, len(bad) - 20)
    return set(bad)


def require_unique_ids(ids: list[str], source: str) -> None:
    """Raise, naming both rows, when a problem id repeats: a lookup by id would silently keep one.

    >>> require_unique_ids(["a", "b", "a"], "runs/samples")
    Traceback (most recent call last):
    ttcompute.core.errors.InputError: runs/samples: rows 0 and 2 are both problem 'a' (problem ids must be unique)
    """
    first: dict[str, int] = {}
    for row, problem_id in enumerate(ids):
        if problem_id in first:
            raise InputError(
                f"{source}: rows {first[problem_id]} and {row} are both problem {problem_id!r} "
                "(problem ids must be unique)"
            )
        first[problem_id] = row
