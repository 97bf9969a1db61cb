"""Problem sources: MATH and GSM8K from a local file, a local dataset directory or the Hub; ``arithmetic``.

Every loader returns a :class:`ProblemList` (a list of :class:`~ttcompute.tasks.problem.Problem`).
A missing or unreadable source raises :class:`~ttcompute.core.errors.InputError`. A malformed row -- a
line that is not a JSON object, a missing, empty, non-text or non-finite field, a GSM8K answer
without ``#### N``, a duplicate id -- is never loaded with a made-up gold answer: by default it is
skipped, logged as a warning saying where (``data.jsonl:17: missing field 'answer'``; lines of
local ``.jsonl`` files count from 1, rows of ``.json``/``.parquet`` files and of ``datasets``
sources are ``data.parquet: row 3``, counting from 0 as in ``dataset[3]``) and counted in
:attr:`ProblemList.skipped`; with ``strict=True`` (``--strict true``) the first one raises
:class:`MalformedRow`, an ``InputError`` with that same message.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import datasets
import pyarrow.parquet as pq

from ttcompute.core.errors import InputError
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
# Skipped rows warned about one by one; the rest only at DEBUG (a wrong file would print thousands).
MAX_ROW_WARNINGS = 20


class MalformedRow(InputError):
    """A row that cannot become a problem: where it is (file and line or row), the field, why."""

    def __init__(self, where: str, field: str | None, reason: str) -> None:
        super().__init__(f"{where}: {reason}")
        self.where, self.field, self.reason = where, field, reason


@dataclass(frozen=True)
class SkippedRow:
    """A malformed row left out of a problem set (see :class:`MalformedRow`)."""

    where: str
    field: str | None
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


class ProblemList(list):
    """The problems of a source; ``skipped`` lists the malformed rows left out of it."""

    def __init__(self, problems: Iterable[Problem] = (), skipped: Iterable[SkippedRow] = ()) -> None:
        super().__init__(problems)
        self.skipped: list[SkippedRow] = list(skipped)


def _looks_local(path_or_id: str) -> bool:
    # A Hub id is `owner/name`; anything shaped like a path must never be sent to the Hub (a typo
    # in a file name would otherwise surface as a confusing network or "dataset not found" error).
    return (
        path_or_id.startswith(("/", ".", "~"))
        or Path(path_or_id).suffix.lower() in _FILE_SUFFIXES
        or Path(path_or_id).exists()
    )


def _read_jsonl(path: Path) -> Iterator[tuple[str, Row | MalformedRow]]:
    with open(path, encoding="utf-8") as f:
        for line_number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{line_number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                yield where, MalformedRow(where, None, f"invalid JSON ({err.msg} at column {err.colno})")
                continue
            if not isinstance(row, dict):
                row = MalformedRow(where, None, f"expected a JSON object, got {type(row).__name__}")
            yield where, row


def _read_json(path: Path) -> Iterator[tuple[str, Row | MalformedRow]]:
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
        where = f"{path}: row {index}"
        if not isinstance(row, dict):
            row = MalformedRow(where, None, f"expected a JSON object, got {type(row).__name__}")
        yield where, row


def _read_parquet(path: Path) -> Iterator[tuple[str, Row]]:
    try:
        table = pq.read_table(path)
    except Exception as err:  # pyarrow raises several types for a corrupt or non-parquet file
        raise InputError(f"{path}: cannot read as parquet ({err})") from None
    for index, row in enumerate(table.to_pylist()):
        yield f"{path}: row {index}", row


def _read_datasets(path_or_id: str, split: str) -> Iterator[tuple[str, Row]]:
    local = Path(path_or_id)
    try:
        if (local / "state.json").is_file() or (local / "dataset_dict.json").is_file():
            # Written by `save_to_disk` (as the trainers accept too): `load_dataset` refuses those.
            dataset = datasets.load_from_disk(str(local))
            if isinstance(dataset, datasets.DatasetDict):
                if split not in dataset:
                    raise ValueError(f"no split {split!r}; it has {sorted(dataset)}")
                dataset = dataset[split]
        else:
            dataset = datasets.load_dataset(path_or_id, _HUB_CONFIGS.get(path_or_id), split=split)
    except (datasets.exceptions.DatasetNotFoundError, OSError, ValueError) as err:
        # ValueError covers an unknown split or a missing config name; OSError a missing file and
        # an unreachable (or offline) Hub -- ConnectionError is an OSError.
        raise InputError(f"{path_or_id}: cannot load split {split!r} ({err})") from None
    for index, row in enumerate(dataset):
        yield f"{path_or_id}[{split}]: row {index}", row


def _read_rows(path_or_id: str, split: str) -> Iterator[tuple[str, Row | MalformedRow]]:
    """``(where, row)`` for every row; ``where`` locates it in messages, a row that is not even an
    object comes as the :class:`MalformedRow` that says so."""
    path = Path(path_or_id).expanduser()
    if _looks_local(path_or_id) and not path.exists():
        raise InputError(f"{path_or_id}: no such file")
    suffix = path.suffix.lower()
    if path.is_file() and suffix == ".jsonl":
        return _read_jsonl(path)
    if path.is_file() and suffix == ".json":
        return _read_json(path)
    if path.is_file() and suffix == ".parquet":
        return _read_parquet(path)
    if path.is_file():
        raise InputError(f"{path_or_id}: unsupported file type {suffix!r} (use .jsonl, .json or .parquet)")
    # A local dataset directory or a Hub id.
    return _read_datasets(str(path) if path.exists() else path_or_id, split)


def _text_field(row: Row, name: str, where: str) -> str:
    value = row.get(name)
    if value is None:
        raise MalformedRow(where, name, f"missing field {name!r}")
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise MalformedRow(where, name, f"field {name!r} must be a string, got {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        # pandas writes a missing value of a numeric column as NaN: str() would make it "nan".
        raise MalformedRow(where, name, f"field {name!r} is {value}, not a value")
    text = str(value)
    if not text.strip():
        raise MalformedRow(where, name, f"field {name!r} is empty")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:  # a lone surrogate from a JSON escape: no Arrow column holds it
        raise MalformedRow(where, name, f"field {name!r} is not valid text ({err.reason})") from None
    return text


def _load_rows(
    source: str,
    rows: Iterator[tuple[str, Row | MalformedRow]],
    to_problem: Callable[[int, str, Row], Problem],
    limit: int | None,
    strict: bool,
) -> ProblemList:
    """The problems ``to_problem(index, where, row)`` makes of ``rows``, up to ``limit`` of them.

    ``to_problem`` raises :class:`MalformedRow` for a row it cannot use: raised on when ``strict``,
    else the row is skipped, warned about and counted. A later row with an id already loaded is
    malformed too (stages key their outputs on it).
    """
    if limit is not None and limit < 0:
        raise InputError(f"limit must be >= 0, got {limit}")
    problems = ProblemList()
    seen: set[str] = set()
    for index, (where, row) in enumerate(rows):
        if limit is not None and len(problems) >= limit:
            break
        try:
            if isinstance(row, MalformedRow):
                raise row
            problem = to_problem(index, where, row)
            if problem.problem_id in seen:
                raise MalformedRow(where, "problem_id", f"duplicate problem id {problem.problem_id!r}")
        except MalformedRow as err:
            if strict:
                raise
            _skip(problems, err)
            continue
        seen.add(problem.problem_id)
        problems.append(problem)
    if problems.skipped:
        logger.warning(
            "%s: skipped %d malformed row(s), loaded %d problem(s); --strict true rejects them instead",
            source,
            len(problems.skipped),
            len(problems),
        )
        if not problems:
            raise InputError(f"{source}: no usable rows (first: {problems.skipped[0]})")
    return problems


def _skip(problems: ProblemList, err: MalformedRow) -> None:
    problems.skipped.append(SkippedRow(err.where, err.field, err.reason))
    count = len(problems.skipped)
    if count <= MAX_ROW_WARNINGS:
        logger.warning("%s; row skipped", err)
        if count == MAX_ROW_WARNINGS:
            logger.warning("more malformed rows are listed at DEBUG level only (TTC_LOG_LEVEL=DEBUG)")
    else:
        logger.debug("%s; row skipped", err)


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
    raise MalformedRow(where, "level", f"field 'level' must be an int or 'Level N', got {value!r}")


def _math_problem(index: int, where: str, row: Row) -> Problem:
    if row.get("answer") is None and "\\boxed" in str(row.get("solution") or ""):
        raise MalformedRow(
            where,
            "answer",
            "missing field 'answer' (the solution has a \\boxed{} answer, but gold answers are not "
            "derived from solutions: add an 'answer' field)",
        )
    solution = row.get("solution")
    if solution is not None and not isinstance(solution, str):
        raise MalformedRow(
            where, "solution", f"field 'solution' must be a string, got {type(solution).__name__}"
        )
    metadata = {"level": _math_level(row.get("level"), where)}
    if row.get("subject") is not None:
        metadata["subject"] = str(row["subject"])
    return Problem(
        problem_id=_text_field(row, "unique_id", where),
        question=_text_field(row, "problem", where),
        answer=_text_field(row, "answer", where).strip(),
        solution=solution if solution and solution.strip() else None,
        metadata=metadata,
    )


def load_math(
    path_or_id: str, split: str = "test", limit: int | None = None, strict: bool = False
) -> ProblemList:
    """MATH problems (``problem, solution, answer, level, subject, unique_id`` rows).

    Args:
        path_or_id: A local ``.jsonl``, ``.json`` or ``.parquet`` file, a local dataset directory or
            a Hub dataset id (e.g. ``HuggingFaceH4/MATH-500``).
        split: The split to load from a directory or Hub id (a single file has just one).
        limit: Load only the first ``limit`` problems.
        strict: Raise on the first malformed row instead of skipping it (see the module docstring).

    ``problem``, ``answer`` and ``unique_id`` are required, ``solution`` is optional text. An
    ``answer`` is never derived from the solution's ``\\boxed{}``: a row without it is malformed,
    since a wrong gold answer silently corrupts every downstream label.

    Raises:
        InputError: a missing or unreadable source, a source with no usable row, or (``strict``)
            a malformed row, naming the file, line and field.
    """
    problems = _load_rows(path_or_id, _read_rows(path_or_id, split), _math_problem, limit, strict)
    logger.info("loaded %d MATH problems from %s", len(problems), path_or_id)
    return problems


def load_gsm8k(
    path_or_id: str, split: str = "test", limit: int | None = None, strict: bool = False
) -> ProblemList:
    """GSM8K problems (``question, answer`` rows, the answer ending in ``#### N``).

    The gold answer is ``N`` without thousands commas, the solution is the text before ``####``, and
    ``problem_id`` is ``gsm8k-<split>-<row index>`` (malformed rows keep their index, so ids do not
    depend on them). Sources, ``limit`` and ``strict`` as in :func:`load_math`; ``openai/gsm8k`` is
    loaded with its ``main`` config.

    Raises:
        InputError: as :func:`load_math`; an answer without ``#### N`` is a malformed row.
    """

    def gsm8k_problem(index: int, where: str, row: Row) -> Problem:
        question = _text_field(row, "question", where)
        worked = _text_field(row, "answer", where)
        if "####" not in worked:
            raise MalformedRow(where, "answer", "field 'answer' has no '#### <answer>' line")
        solution, _, final = worked.rpartition("####")
        answer = final.strip().replace(",", "")
        if not answer:
            raise MalformedRow(where, "answer", "field 'answer' has nothing after '####'")
        return Problem(
            problem_id=f"gsm8k-{split}-{index}", question=question, answer=answer, solution=solution.strip()
        )

    problems = _load_rows(path_or_id, _read_rows(path_or_id, split), gsm8k_problem, limit, strict)
    logger.info("loaded %d GSM8K problems from %s", len(problems), path_or_id)
    return problems


def load_arithmetic(
    dataset: str | None, split: str, limit: int | None, *, strict: bool = False, **arithmetic_kwargs: Any
) -> ProblemList:
    """Generate the built-in arithmetic task's problems.

    ``arithmetic_kwargs`` takes ``num_problems`` (default ``limit``, else
    ``DEFAULT_NUM_ARITHMETIC_PROBLEMS``), ``seed`` (default 0) and the fields of
    :class:`~ttcompute.tasks.arithmetic.ArithmeticConfig`. ``dataset``, ``split`` and ``strict`` are
    ignored: the seed alone decides the problems (so give train and test sets different seeds), and
    generated problems have no malformed rows.
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
    return ProblemList(problems[:limit] if limit is not None else problems)


def _load_math(
    dataset: str | None, split: str, limit: int | None, strict: bool = False, **_: Any
) -> ProblemList:
    return load_math(dataset or DEFAULT_DATASETS["math"], split, limit, strict)


def _load_gsm8k(
    dataset: str | None, split: str, limit: int | None, strict: bool = False, **_: Any
) -> ProblemList:
    return load_gsm8k(dataset or DEFAULT_DATASETS["gsm8k"], split, limit, strict)


TASKS: dict[str, Callable[..., ProblemList]] = {
    "math": _load_math,
    "gsm8k": _load_gsm8k,
    "arithmetic": load_arithmetic,
}


def load_problems(
    task: str,
    dataset: str | None,
    split: str,
    limit: int | None,
    strict: bool = False,
    **arithmetic_kwargs: Any,
) -> ProblemList:
    """The problems of ``task`` (``math``, ``gsm8k`` or ``arithmetic``).

    Args:
        task: Which source; see ``TASKS``.
        dataset: A local file or directory or a Hub id for ``math``/``gsm8k`` (``DEFAULT_DATASETS``
            when None); unused by ``arithmetic``.
        split: The split to load.
        limit: Load only the first ``limit`` problems.
        strict: Reject a malformed row (raise) instead of skipping and counting it; the skipped
            rows are in the result's ``skipped``.
        **arithmetic_kwargs: Options of :func:`load_arithmetic`; ignored by the other tasks.

    Raises:
        InputError: an unknown task, or anything the loader reports.
    """
    if task not in TASKS:
        raise InputError(f"unknown task {task!r}; known tasks: {', '.join(TASKS)}")
    return TASKS[task](dataset, split, limit, strict=strict, **arithmetic_kwargs)
