"""Problem sources: MATH and GSM8K from a local file, a local dataset directory or the Hub; ``arithmetic``.

Every loader returns a list of :class:`~ttcompute.tasks.problem.Problem`. Bad input (a missing
file, a malformed row, a missing field) raises :class:`~ttcompute.errors.InputError` saying where:
local ``.jsonl`` files are read line by line here, so a bad row is reported as
``data.jsonl:17: missing field 'answer'`` (lines count from 1); rows of ``.json`` and ``.parquet``
files and of ``datasets`` sources are reported as ``data.parquet: row 3: ...`` (rows count from 0,
as in ``dataset[3]``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

from ttcompute.errors import InputError
from ttcompute.tasks.arithmetic import ArithmeticConfig, generate_problems
from ttcompute.tasks.problem import Problem

logger = logging.getLogger(__name__)

# Used by load_problems when no dataset is given.
DEFAULT_DATASETS = {"math": "HuggingFaceH4/MATH-500", "gsm8k": "openai/gsm8k"}
DEFAULT_NUM_ARITHMETIC_PROBLEMS = 200

# Hub datasets that cannot be loaded without naming a config.
_HUB_CONFIGS = {"openai/gsm8k": "main", "gsm8k": "main"}
_FILE_SUFFIXES = {".json", ".jsonl", ".parquet", ".csv", ".tsv", ".txt", ".arrow", ".gz", ".zst"}

Row = dict[str, Any]


def _looks_local(path_or_id: str) -> bool:
    # A Hub id is `owner/name`; anything shaped like a path must never be sent to the Hub (a typo
    # in a file name would otherwise surface as a confusing network or "dataset not found" error).
    return (
        path_or_id.startswith(("/", ".", "~"))
        or Path(path_or_id).suffix.lower() in _FILE_SUFFIXES
        or Path(path_or_id).exists()
    )


def _read_jsonl(path: Path) -> Iterator[tuple[str, Row]]:
    with open(path, encoding="utf-8") as f:
        for line_number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{line_number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise InputError(f"{where}: invalid JSON ({err.msg} at column {err.colno})") from None
            if not isinstance(row, dict):
                raise InputError(f"{where}: expected a JSON object, got {type(row).__name__}")
            yield where, row


def _read_json(path: Path) -> Iterator[tuple[str, Row]]:
    text = path.read_text(encoding="utf-8")
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as err:
        if err.msg == "Extra data":  # one object per line under a .json name
            yield from _read_jsonl(path)
            return
        raise InputError(f"{path}:{err.lineno}: invalid JSON ({err.msg} at column {err.colno})") from None
    if isinstance(rows, dict):  # a single problem, as in the original MATH release
        rows = [rows]
    if not isinstance(rows, list):
        raise InputError(f"{path}: expected a JSON list of objects, got {type(rows).__name__}")
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise InputError(f"{path}: row {index}: expected a JSON object, got {type(row).__name__}")
        yield f"{path}: row {index}", row


def _read_parquet(path: Path) -> Iterator[tuple[str, Row]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as err:  # pyarrow raises several types for a corrupt or non-parquet file
        raise InputError(f"{path}: cannot read as parquet ({err})") from None
    for index, row in enumerate(table.to_pylist()):
        yield f"{path}: row {index}", row


def _read_datasets(path_or_id: str, split: str) -> Iterator[tuple[str, Row]]:
    import datasets

    try:
        dataset = datasets.load_dataset(path_or_id, _HUB_CONFIGS.get(path_or_id), split=split)
    except (datasets.exceptions.DatasetNotFoundError, OSError, ValueError) as err:
        # ValueError covers an unknown split or a missing config name; OSError a missing file and
        # an unreachable (or offline) Hub -- ConnectionError is an OSError.
        raise InputError(f"{path_or_id}: cannot load split {split!r} ({err})") from None
    for index, row in enumerate(dataset):
        yield f"{path_or_id}[{split}]: row {index}", row


def _read_rows(path_or_id: str, split: str, limit: int | None) -> Iterator[tuple[str, Row]]:
    """``(where, row)`` for the first ``limit`` rows; ``where`` locates the row in error messages."""
    if limit is not None and limit < 0:
        raise InputError(f"limit must be >= 0, got {limit}")
    path = Path(path_or_id).expanduser()
    if _looks_local(path_or_id) and not path.exists():
        raise InputError(f"{path_or_id}: no such file")
    suffix = path.suffix.lower()
    if path.is_file() and suffix == ".jsonl":
        rows = _read_jsonl(path)
    elif path.is_file() and suffix == ".json":
        rows = _read_json(path)
    elif path.is_file() and suffix == ".parquet":
        rows = _read_parquet(path)
    elif path.is_file():
        raise InputError(f"{path_or_id}: unsupported file type {suffix!r} (use .jsonl, .json or .parquet)")
    else:  # a local dataset directory or a Hub id
        rows = _read_datasets(str(path) if path.exists() else path_or_id, split)
    for count, item in enumerate(rows):
        if limit is not None and count >= limit:
            return
        yield item


def _text_field(row: Row, name: str, where: str) -> str:
    value = row.get(name)
    if value is None:
        raise InputError(f"{where}: missing field {name!r}")
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise InputError(f"{where}: field {name!r} must be a string, got {type(value).__name__}")
    text = str(value)
    if not text.strip():
        raise InputError(f"{where}: field {name!r} is empty")
    return text


def _math_level(value: Any, where: str) -> int | None:
    """MATH's level as an int: ``3`` and ``"Level 3"`` both give 3; a few train rows say ``Level ?``."""
    if value is None or value in ("?", "Level ?"):
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        digits = value.strip().removeprefix("Level").strip()
        if digits.isdigit():
            return int(digits)
    raise InputError(f"{where}: field 'level' must be an int or 'Level N', got {value!r}")


def load_math(path_or_id: str, split: str = "test", limit: int | None = None) -> list[Problem]:
    """MATH problems (``problem, solution, answer, level, subject, unique_id`` rows).

    Args:
        path_or_id: A local ``.jsonl``, ``.json`` or ``.parquet`` file, a local dataset directory or
            a Hub dataset id (e.g. ``HuggingFaceH4/MATH-500``).
        split: The split to load from a directory or Hub id (a single file has just one).
        limit: Load only the first ``limit`` rows.

    ``problem``, ``answer`` and ``unique_id`` are required. An ``answer`` is never derived from the
    solution's ``\\boxed{}``: a source without it is reported, since a wrong gold answer silently
    corrupts every downstream label.

    Raises:
        InputError: a missing file, malformed row or missing field, naming the file, line and field.
    """
    problems = []
    for where, row in _read_rows(path_or_id, split, limit):
        if row.get("answer") is None and "\\boxed" in str(row.get("solution") or ""):
            raise InputError(
                f"{where}: missing field 'answer' (the solution has a \\boxed{{}} answer, but gold "
                "answers are not derived from solutions: add an 'answer' field)"
            )
        metadata = {"level": _math_level(row.get("level"), where)}
        if row.get("subject") is not None:
            metadata["subject"] = str(row["subject"])
        problems.append(
            Problem(
                problem_id=_text_field(row, "unique_id", where),
                question=_text_field(row, "problem", where),
                answer=_text_field(row, "answer", where).strip(),
                solution=None if row.get("solution") is None else str(row["solution"]),
                metadata=metadata,
            )
        )
    logger.info("loaded %d MATH problems from %s", len(problems), path_or_id)
    return problems


def load_gsm8k(path_or_id: str, split: str = "test", limit: int | None = None) -> list[Problem]:
    """GSM8K problems (``question, answer`` rows, the answer ending in ``#### N``).

    The gold answer is ``N`` without thousands commas, the solution is the text before ``####``, and
    ``problem_id`` is ``gsm8k-<split>-<row index>``. Sources as in :func:`load_math`; ``openai/gsm8k``
    is loaded with its ``main`` config.

    Raises:
        InputError: a missing file, malformed row, missing field or ``####``, naming where.
    """
    problems = []
    for index, (where, row) in enumerate(_read_rows(path_or_id, split, limit)):
        question = _text_field(row, "question", where)
        worked = _text_field(row, "answer", where)
        if "####" not in worked:
            raise InputError(f"{where}: field 'answer' has no '#### <answer>' line")
        solution, _, final = worked.rpartition("####")
        answer = final.strip().replace(",", "")
        if not answer:
            raise InputError(f"{where}: field 'answer' has nothing after '####'")
        problems.append(
            Problem(
                problem_id=f"gsm8k-{split}-{index}",
                question=question,
                answer=answer,
                solution=solution.strip(),
            )
        )
    logger.info("loaded %d GSM8K problems from %s", len(problems), path_or_id)
    return problems


def load_arithmetic(
    dataset: str | None, split: str, limit: int | None, **arithmetic_kwargs: Any
) -> list[Problem]:
    """Generate the built-in arithmetic task's problems.

    ``arithmetic_kwargs`` takes ``num_problems`` (default ``limit``, else
    ``DEFAULT_NUM_ARITHMETIC_PROBLEMS``), ``seed`` (default 0) and the fields of
    :class:`~ttcompute.tasks.arithmetic.ArithmeticConfig`. ``dataset`` and ``split`` are ignored:
    the seed alone decides the problems, so give train and test sets different seeds.
    """
    kwargs = dict(arithmetic_kwargs)
    num_problems = kwargs.pop("num_problems", None)
    seed = kwargs.pop("seed", 0)
    if num_problems is None:
        num_problems = limit if limit is not None else DEFAULT_NUM_ARITHMETIC_PROBLEMS
    known = {f.name for f in fields(ArithmeticConfig)}
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise InputError(
            f"unknown arithmetic option(s) {', '.join(unknown)}; known: num_problems, seed, "
            f"{', '.join(sorted(known))}"
        )
    try:
        cfg = ArithmeticConfig(**kwargs)
        problems = generate_problems(num_problems, seed, cfg)
    except ValueError as err:
        raise InputError(f"arithmetic task: {err}") from None
    return problems[:limit] if limit is not None else problems


def _load_math(dataset: str | None, split: str, limit: int | None, **_: Any) -> list[Problem]:
    return load_math(dataset or DEFAULT_DATASETS["math"], split, limit)


def _load_gsm8k(dataset: str | None, split: str, limit: int | None, **_: Any) -> list[Problem]:
    return load_gsm8k(dataset or DEFAULT_DATASETS["gsm8k"], split, limit)


TASKS: dict[str, Callable[..., list[Problem]]] = {
    "math": _load_math,
    "gsm8k": _load_gsm8k,
    "arithmetic": load_arithmetic,
}


def load_problems(
    task: str, dataset: str | None, split: str, limit: int | None, **arithmetic_kwargs: Any
) -> list[Problem]:
    """The problems of ``task`` (``math``, ``gsm8k`` or ``arithmetic``).

    Args:
        task: Which source; see ``TASKS``.
        dataset: A local file or directory or a Hub id for ``math``/``gsm8k`` (``DEFAULT_DATASETS``
            when None); unused by ``arithmetic``.
        split: The split to load.
        limit: Load only the first ``limit`` problems.
        **arithmetic_kwargs: Options of :func:`load_arithmetic`; ignored by the other tasks.

    Raises:
        InputError: an unknown task, or anything the loader reports.
    """
    if task not in TASKS:
        raise InputError(f"unknown task {task!r}; known tasks: {', '.join(TASKS)}")
    return TASKS[task](dataset, split, limit, **arithmetic_kwargs)
