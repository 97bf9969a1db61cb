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

import hashlib
import json
import logging
import math
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import datasets
import pyarrow.parquet as pq

from ttcompute.core.errors import InputError
from ttcompute.core.grading import extract_answer
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


def dataset_configs(path_or_id: str, requested: Sequence[str]) -> list[str | None]:
    """The configs of a datasets source to read: ``requested`` checked against the source's own;
    ``["all"]`` is every config, unless the source has one named "all" (lighteval's MATH copy).

    Raises:
        InputError: a requested config the source does not have (the message lists those it has).
    """
    try:
        names = datasets.get_dataset_config_names(path_or_id)
    except (datasets.exceptions.DatasetNotFoundError, OSError, ValueError) as err:
        raise InputError(f"{path_or_id}: cannot list its configs ({err})") from None
    if list(requested) == ["all"] and "all" not in names:
        return list(names)
    unknown = [name for name in requested if name not in names]
    if unknown:
        raise InputError(
            f"{path_or_id}: no config {', '.join(map(repr, unknown))}; it has {', '.join(names)}"
        )
    return list(requested)


def _load_split(path_or_id: str, config: str | None, split: str) -> datasets.Dataset:
    local = Path(path_or_id)
    try:
        if (local / "state.json").is_file() or (local / "dataset_dict.json").is_file():
            # Written by `save_to_disk` (as the trainers accept too): `load_dataset` refuses those.
            dataset = datasets.load_from_disk(str(local))
            if isinstance(dataset, datasets.DatasetDict):
                if split not in dataset:
                    raise ValueError(f"no split {split!r}; it has {sorted(dataset)}")
                dataset = dataset[split]
            return dataset
        return datasets.load_dataset(path_or_id, config or _HUB_CONFIGS.get(path_or_id), split=split)
    except (datasets.exceptions.DatasetNotFoundError, OSError, ValueError) as err:
        # ValueError covers an unknown split or a missing config name; OSError a missing file and
        # an unreachable (or offline) Hub -- ConnectionError is an OSError.
        name = f" of config {config!r}" if config else ""
        raise InputError(f"{path_or_id}: cannot load split {split!r}{name} ({err})") from None


def _read_datasets(
    path_or_id: str, split: str, configs: Sequence[str] | None = None
) -> tuple[list[str], Iterator[tuple[str, Row]]]:
    names = dataset_configs(path_or_id, configs) if configs else [None]
    loaded = [(name, _load_split(path_or_id, name, split)) for name in names]
    columns = list(loaded[0][1].column_names)
    for name, dataset in loaded[1:]:
        if sorted(dataset.column_names) != sorted(columns):
            raise InputError(
                f"{path_or_id}: config {name!r} has columns {dataset.column_names}, config "
                f"{loaded[0][0]!r} {columns}: they cannot be read as one problem set"
            )

    def rows() -> Iterator[tuple[str, Row]]:
        for name, dataset in loaded:
            at = f"{name}/{split}" if name else split
            for index, row in enumerate(dataset):
                yield f"{path_or_id}[{at}]: row {index}", row

    return columns, rows()


def read_rows(
    path_or_id: str, split: str, configs: Sequence[str] | None = None
) -> tuple[list[str], Iterator[tuple[str, Row | MalformedRow]]]:
    """The source's columns and ``(where, row)`` for every row; ``where`` locates it in messages, a
    row that is not even an object comes as the :class:`MalformedRow` that says so. A file's
    columns are the keys of its first row; ``configs`` are a datasets source's configs to read."""
    path = Path(path_or_id).expanduser()
    if _looks_local(path_or_id) and not path.exists():
        raise InputError(f"{path_or_id}: no such file")
    suffix = path.suffix.lower()
    if path.is_file() and configs:
        raise InputError(f"{path_or_id}: --dataset_config names configs of a dataset, not of a file")
    if path.is_file() and suffix == ".jsonl":
        return _with_columns(_read_jsonl(path))
    if path.is_file() and suffix == ".json":
        return _with_columns(_read_json(path))
    if path.is_file() and suffix == ".parquet":
        return _with_columns(_read_parquet(path))
    if path.is_file():
        raise InputError(f"{path_or_id}: unsupported file type {suffix!r} (use .jsonl, .json or .parquet)")
    # A local dataset directory or a Hub id.
    return _read_datasets(str(path) if path.exists() else path_or_id, split, configs)


def _with_columns(
    rows: Iterator[tuple[str, Row | MalformedRow]],
) -> tuple[list[str], Iterator[tuple[str, Row | MalformedRow]]]:
    """A file's columns -- every key of any of its rows, in order of first appearance -- and its rows
    (read into memory: problem files are small; samples are never read through here)."""
    rows = list(rows)
    columns = list(dict.fromkeys(key for _, row in rows if isinstance(row, dict) for key in row))
    return columns, iter(rows)


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
    shuffle_seed: int | None = None,
) -> ProblemList:
    """The problems ``to_problem(index, where, row)`` makes of ``rows``, up to ``limit`` of them
    (after shuffling the rows with ``shuffle_seed``, when given: the same seed, the same subset).

    ``to_problem`` raises :class:`MalformedRow` for a row it cannot use: raised on when ``strict``,
    else the row is skipped, warned about and counted. A later row with an id already loaded is
    malformed too (stages key their outputs on it).
    """
    if limit is not None and limit < 0:
        raise InputError(f"limit must be >= 0, got {limit}")
    problems = ProblemList()
    seen: set[str] = set()
    numbered: Iterable[tuple[int, tuple[str, Row | MalformedRow]]] = enumerate(rows)
    if shuffle_seed is not None:
        numbered = list(numbered)  # each row keeps its index (GSM8K ids), the order is drawn
        random.Random(shuffle_seed).shuffle(numbered)
    for index, (where, row) in numbered:
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


@dataclass(frozen=True)
class Fields:
    """Which columns of a source hold what (``--question_field`` ...), resolved against its columns.

    Attributes:
        question / answer / solution: The columns of the question, the gold answer and the reference
            solution. ``answer`` None: the source has no answer column, and the gold answer is the
            last ``\\boxed{}`` of the solution (EleutherAI/hendrycks_math, lighteval's MATH copy).
        id: The column of a stable problem id; None: ``math-`` + a hash of the question text.
    """

    question: str
    answer: str | None
    solution: str | None
    id: str | None


def resolve_fields(
    columns: Sequence[str],
    source: str,
    *,
    question: str,
    answer: str,
    solution: str,
    id_field: str | None,
    default_id: str | None,
    given: Sequence[str] = (),
) -> Fields:
    """The fields of a source with ``columns``: a field given on the command line (its name in
    ``given``) must be a column; the answer may be derived from the solution; the id falls back to
    a hash.

    Raises:
        InputError: a field that is not a column (the message lists the columns there are).
    """
    have = set(columns)

    def missing(option: str, name: str) -> InputError:
        return InputError(f"{source}: no column {name!r} (--{option}); its columns: {', '.join(columns)}")

    if columns and question not in have:
        raise missing("question_field", question)
    solution_field = solution if solution in have or not columns else None
    if "solution_field" in given and solution_field is None:
        raise missing("solution_field", solution)
    answer_field: str | None = answer
    if columns and answer not in have:
        if "answer_field" in given or solution_field is None:
            raise missing("answer_field", answer)
        answer_field = None
        logger.info("%s: no %r column: gold answers are the last \\boxed{} of %r", source, answer, solution)
    if id_field is not None and columns and id_field not in have:
        raise missing("id_field", id_field)
    if id_field is None and default_id is not None and (default_id in have or not columns):
        id_field = default_id
    return Fields(question, answer_field, solution_field, id_field)


def stable_id(prefix: str, text: str) -> str:
    """An id that only the text decides (the same problem in any copy, config or order of a source).

    >>> stable_id("math", "What is 1+1?")
    'math-31adf3e245f99d7b'
    """
    return f"{prefix}-{hashlib.sha256(text.encode('utf-8')).hexdigest()[:16]}"


def _math_problem(fields: Fields) -> Callable[[int, str, Row], Problem]:
    def to_problem(index: int, where: str, row: Row) -> Problem:
        solution = row.get(fields.solution) if fields.solution else None
        if solution is not None and not isinstance(solution, str):
            raise MalformedRow(
                where,
                fields.solution,
                f"field {fields.solution!r} must be a string, got {type(solution).__name__}",
            )
        if fields.answer is None:  # no answer column: the reference solution's boxed answer
            boxed = extract_answer(solution or "") if "\\boxed" in (solution or "") else None
            if not boxed:
                raise MalformedRow(
                    where, fields.solution, f"field {fields.solution!r} has no \\boxed{{}} answer"
                )
            answer = boxed
        else:
            if row.get(fields.answer) is None and "\\boxed" in str(solution or ""):
                raise MalformedRow(
                    where,
                    fields.answer,
                    f"missing field {fields.answer!r} (the solution has a \\boxed{{}} answer, but a source "
                    "with an answer column never has one derived: fill it in)",
                )
            answer = _text_field(row, fields.answer, where).strip()
        question = _text_field(row, fields.question, where)
        metadata = {"level": _math_level(row.get("level"), where)}
        subject = row.get("subject", row.get("type"))  # MATH-500 says subject, hendrycks_math type
        if subject is not None:
            metadata["subject"] = str(subject)
        problem_id = _text_field(row, fields.id, where) if fields.id else stable_id("math", question)
        return Problem(
            problem_id=problem_id,
            question=question,
            answer=answer,
            solution=solution if solution and solution.strip() else None,
            metadata=metadata,
        )

    return to_problem


def load_math(
    path_or_id: str,
    split: str = "test",
    limit: int | None = None,
    strict: bool = False,
    *,
    configs: Sequence[str] | None = None,
    shuffle_seed: int | None = None,
    question_field: str | None = None,
    answer_field: str | None = None,
    solution_field: str | None = None,
    id_field: str | None = None,
) -> ProblemList:
    """MATH problems, from any copy's column layout.

    Args:
        path_or_id: A local ``.jsonl``, ``.json`` or ``.parquet`` file, a local dataset directory or
            a Hub dataset id (``HuggingFaceH4/MATH-500``, ``EleutherAI/hendrycks_math`` ...).
        split: The split to load from a directory or Hub id (a single file has just one).
        limit: Load only the first ``limit`` problems (after the shuffle, with ``shuffle_seed``).
        strict: Raise on the first malformed row instead of skipping it (see the module docstring).
        configs: A datasets source's configs to read, one after the other (``["all"]``: every one).
        shuffle_seed: Shuffle the rows first (a seeded subset with ``limit``).
        question_field / answer_field / solution_field / id_field: The columns; defaults
            ``problem``, ``answer``, ``solution`` and ``unique_id`` (MATH-500's layout).

    A source without the answer column (hendrycks_math and lighteval's copy have only
    ``problem, level, type, solution``) takes the gold answer from the solution's last
    ``\\boxed{}``; a source *with* it never has a missing answer derived (a malformed row: a wrong
    gold answer silently corrupts every downstream label). Without the id column, a problem's id is
    a hash of its question (:func:`stable_id`). ``level`` ("Level 3" or 3) and ``subject`` (or
    ``type``) go into the metadata.

    Raises:
        InputError: a missing or unreadable source, a field or config it does not have (listing
            those it has), a source with no usable row, or (``strict``) a malformed row, naming the
            file, line and field.
    """
    columns, rows = read_rows(path_or_id, split, configs)
    given = [
        name for name, value in (("answer_field", answer_field), ("solution_field", solution_field)) if value
    ]
    fields = resolve_fields(
        columns,
        path_or_id,
        question=question_field or "problem",
        answer=answer_field or "answer",
        solution=solution_field or "solution",
        id_field=id_field,
        default_id="unique_id",
        given=given,
    )
    problems = _load_rows(path_or_id, rows, _math_problem(fields), limit, strict, shuffle_seed)
    logger.info("loaded %d MATH problems from %s", len(problems), path_or_id)
    return problems


def load_gsm8k(
    path_or_id: str,
    split: str = "test",
    limit: int | None = None,
    strict: bool = False,
    *,
    configs: Sequence[str] | None = None,
    shuffle_seed: int | None = None,
    question_field: str | None = None,
    answer_field: str | None = None,
    id_field: str | None = None,
) -> ProblemList:
    """GSM8K problems (``question, answer`` rows, the answer ending in ``#### N``).

    The gold answer is ``N`` without thousands commas, the solution is the text before ``####``, and
    ``problem_id`` is ``gsm8k-<split>-<row index>`` (the index counted on through several configs;
    malformed rows keep their index, so ids do not depend on them), or the ``id_field`` column. Sources, ``limit``, ``strict``, ``configs``, ``shuffle_seed`` and the field
    names as in :func:`load_math`; ``openai/gsm8k`` is loaded with its ``main`` config by default.

    Raises:
        InputError: as :func:`load_math`; an answer without ``#### N`` is a malformed row.
    """
    columns, rows = read_rows(path_or_id, split, configs)
    fields = resolve_fields(
        columns,
        path_or_id,
        question=question_field or "question",
        answer=answer_field or "answer",
        solution="",
        id_field=id_field,
        default_id=None,
        given=["answer_field"],  # GSM8K's answer column holds the worked solution: it must be there
    )

    def gsm8k_problem(index: int, where: str, row: Row) -> Problem:
        question = _text_field(row, fields.question, where)
        worked = _text_field(row, fields.answer, where)
        if "####" not in worked:
            raise MalformedRow(where, fields.answer, f"field {fields.answer!r} has no '#### <answer>' line")
        solution, _, final = worked.rpartition("####")
        answer = final.strip().replace(",", "")
        if not answer:
            raise MalformedRow(where, fields.answer, f"field {fields.answer!r} has nothing after '####'")
        # The index runs on across several configs, so their ids never collide.
        problem_id = _text_field(row, fields.id, where) if fields.id else f"gsm8k-{split}-{index}"
        return Problem(problem_id=problem_id, question=question, answer=answer, solution=solution.strip())

    problems = _load_rows(path_or_id, rows, gsm8k_problem, limit, strict, shuffle_seed)
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
    dataset: str | None, split: str, limit: int | None, strict: bool = False, *, source=None, **_: Any
) -> ProblemList:
    return load_math(dataset or DEFAULT_DATASETS["math"], split, limit, strict, **(source or {}))


def _load_gsm8k(
    dataset: str | None, split: str, limit: int | None, strict: bool = False, *, source=None, **_: Any
) -> ProblemList:
    options = dict(source or {})
    if options.pop("solution_field", None):
        raise InputError("--solution_field: a GSM8K answer column holds the worked solution itself")
    return load_gsm8k(dataset or DEFAULT_DATASETS["gsm8k"], split, limit, strict, **options)


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
    source: dict[str, Any] | None = None,
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
        source: math/gsm8k: the keyword options of :func:`load_math` / :func:`load_gsm8k` (configs,
            shuffle seed, field names).
        **arithmetic_kwargs: Options of :func:`load_arithmetic`; ignored by the other tasks.

    Raises:
        InputError: an unknown task, or anything the loader reports.
    """
    if task not in TASKS:
        raise InputError(f"unknown task {task!r}; known tasks: {', '.join(TASKS)}")
    if task == "arithmetic":
        if any(v is not None for v in (source or {}).values()):
            raise InputError(
                "the arithmetic task is generated: field, config and shuffle options do not apply"
            )
        return TASKS[task](dataset, split, limit, strict=strict, **arithmetic_kwargs)
    return TASKS[task](dataset, split, limit, strict=strict, source=source)
