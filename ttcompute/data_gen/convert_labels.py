"""``ttc convert-labels``: public step-labelled data (PRM800K, Math-Shepherd) as the stepwise rows
``ttc train-prm`` reads, the shape ``ttc label`` writes; sharded and resumable like every generating
stage (``--rows_per_shard`` input rows per shard, in input order).

Output columns (one row per labelled solution path; with ``--alternatives`` also one per rated
alternative step of PRM800K)::

    prompt: str (``--prompt_template`` over the question: the prompt contract in the manifest),
    completions: list[str] (the steps), labels: list[float] (one per step, in [0, 1]),
    problem_id: str (source + 16 hex digits of the question's sha256: the same problem in any file
    gets the same id, so ``train-prm`` holds out whole problems), question, gold_answer (PRM800K's
    ``question.ground_truth_answer``; null for Math-Shepherd), source, source_row (``file:line`` or
    ``file: row i``, ``id[split]: row i``), kind (``path`` or ``alternative``), branch_step (the step
    an alternative takes the place of; -1 for a path), first_bad_step (the first step rated -1 / ``-``;
    -1: none), finish_reason (PRM800K; null for Math-Shepherd), task (Math-Shepherd's ``GSM8K`` or
    ``MATH``; null for PRM800K)

**PRM800K** (openai/prm800k ``data/phase{1,2}_{train,test}.jsonl``; the fields as its README documents
them). The *path* of a row is the solution the labeller walked, step by step:

- a step with a ``chosen_completion`` index contributes that completion; one with ``human_completion``
  (phase 1: written by the labeller when every completion was rated -1; a ``{"text": ...}`` object as
  TRL's converter reads it, or plain text as the README's reconstruction reads it) contributes that
  text, rated +1 unless it carries a rating of its own;
- a step with neither is where labelling stopped (phase 2 stops at the first error): the path ends
  with the pre-generated solution's own step there (``question.pre_generated_steps[i]``, found among
  the step's rated completions by its text) when there is one, else just before this step;
- the path ends at its first step rated -1 (PRM800K supervises up to the first mistake; in
  ``found_error`` rows nothing after it is labelled) -- later steps are dropped and counted.

Ratings become labels: +1 -> 1.0, -1 -> 0.0, 0 (neutral, "isn't incorrect, but it does not make any
progress") -> ``--neutral_label`` (default 1.0: not an error; TRL's converter makes it False). The
``flagged`` mark is ignored. Rows whose ``finish_reason`` is not in ``--finish_reasons`` (default
``solution`` and ``found_error``: ``give_up`` and ``bad_problem`` rows are unfinished or broken) are
skipped and counted. With ``--alternatives true``, every other rated completion of a step on the path
(or of the step where it ended) becomes a row of its own: the path's steps before it, then it
(TRL's converter writes these too); unrated or empty ones are skipped and counted.

**Math-Shepherd** (peiyi9979/Math-Shepherd: ``input``, ``label``, ``task``). ``input`` is the question
and the solution, every step followed by the tag ``ки``; ``label`` is the same text with each tag
replaced by ``+`` (good step) or ``-`` (bad). The two must agree character for character apart from
the tags, else the row is malformed. The text before the first tag holds the question and the first
step, which starts at the one ``Step 1:`` (or ``step 1:``) in it, as TRL's converter splits them; the
question is stripped, each step is the text between tags, stripped (its ``Step n:`` kept). Labels:
``+`` -> 1.0, ``-`` -> 0.0, every step (Math-Shepherd labels them all).

A step that holds ``--step_separator`` (train-prm joins steps with it) has each occurrence replaced by
``--separator_replacement`` (counted; PRM800K's answer steps read ``# Answer\\n\\n42``). A row that
cannot be converted -- not a JSON object (its line named), a missing or mistyped field, no steps,
tags and labels that disagree -- is skipped and counted, or stops the stage with ``--strict true``
(every row is then checked before anything is written); the message names the file, the line or row
and the field.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.parquet as pq

from ttcompute.core.errors import InputError
from ttcompute.core.prompts import PromptContract
from ttcompute.core.sharded_stage import is_complete, run_sharded_stage
from ttcompute.core.shards import ShardReader, parse_shard_spec, read_manifest, read_resolved_config
from ttcompute.core.tracking import push_dataset
from ttcompute.data_gen.convert_labels_config import PRM800K_FINISH_REASONS, ConvertLabelsConfig
from ttcompute.models.generation import build_prompt
from ttcompute.tasks.sources import MAX_ROW_WARNINGS, MalformedRow

logger = logging.getLogger(__name__)

# Bumped when the meaning of a column changes, so that a resumed run never mixes two definitions.
CONVERT_RULES_VERSION = 1
# The dataset card's step tag and labels (models/prm_formats.py has the same for the Math-Shepherd PRM;
# not imported from there: that module brings torch, which converting text does not need).
SHEPHERD_TAG, SHEPHERD_GOOD, SHEPHERD_BAD = "ки", "+", "-"
SHEPHERD_FIRST_STEP = re.compile(r"[Ss]tep 1:")
RATINGS = (-1, 0, 1)

CONVERTED_SCHEMA = pa.schema(
    [
        ("prompt", pa.string()),
        ("completions", pa.list_(pa.string())),
        ("labels", pa.list_(pa.float64())),
        ("problem_id", pa.string()),
        ("question", pa.string()),
        ("gold_answer", pa.string()),
        ("source", pa.string()),
        ("source_row", pa.string()),
        ("kind", pa.string()),
        ("branch_step", pa.int64()),
        ("first_bad_step", pa.int64()),
        ("finish_reason", pa.string()),
        ("task", pa.string()),
    ]
)

Row = dict[str, Any]


# --- the mapping: one input row -> output rows ---------------------------------------------------


def problem_id(source: str, question: str) -> str:
    """The id of a problem: the same question gets the same id in any file.

    >>> problem_id("prm800k", "What is 1+1?")
    'prm800k-31adf3e245f99d7b'
    """
    return f"{source}-{hashlib.sha256(question.encode()).hexdigest()[:16]}"


def _output_row(
    question: str,
    steps: list[str],
    labels: list[float],
    first_bad_step: int,
    where: str,
    config: ConvertLabelsConfig,
    contract: PromptContract,
    **provenance: Any,
) -> Row:
    return {
        "prompt": build_prompt(question, contract),
        "completions": steps,
        "labels": labels,
        "problem_id": problem_id(config.source, question),
        "question": question,
        "gold_answer": provenance.get("gold_answer"),
        "source": config.source,
        "source_row": where,
        "kind": provenance.get("kind", "path"),
        "branch_step": provenance.get("branch_step", -1),
        "first_bad_step": first_bad_step,
        "finish_reason": provenance.get("finish_reason"),
        "task": provenance.get("task"),
    }


def _step_text(text: Any, name: str, where: str, config: ConvertLabelsConfig, counts: Counter) -> str:
    """A step's text with the step separator replaced inside it (see the module docstring)."""
    if not isinstance(text, str) or not text.strip():
        raise MalformedRow(where, name, f"field {name!r}: empty step")
    separator, replacement = config.step_separator, config.separator_replacement
    if separator in text:
        if not replacement:
            raise MalformedRow(
                where,
                name,
                f"field {name!r}: holds the step separator {separator!r} (set --separator_replacement)",
            )
        while separator in text:  # the replacement is shorter, so this ends
            text = text.replace(separator, replacement)
        counts["steps_with_separator_replaced"] += 1
    return text


def _field(row: Row, name: str, kind: type, where: str, path: str | None = None) -> Any:
    value = row.get(name)
    path = path or name
    if value is None:
        raise MalformedRow(where, path, f"missing field {path!r}")
    if not isinstance(value, kind) or isinstance(value, bool):
        raise MalformedRow(
            where, path, f"field {path!r} must be a {kind.__name__}, got {type(value).__name__}"
        )
    return value


def _rating(value: Any, name: str, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or value not in RATINGS:
        raise MalformedRow(where, name, f"field {name!r}: {value!r} is not a rating (-1, 0 or 1)")
    return int(value)


def _completions(step: Row, at: str, where: str) -> list[tuple[Any, int | None]]:
    """``(text, rating)`` of a PRM800K step's completions (texts checked where they are used)."""
    completions = step.get("completions")
    if completions is None:  # TRL's converter meets this too ("happens sometimes")
        return []
    if not isinstance(completions, list):
        raise MalformedRow(where, f"{at}.completions", f"field '{at}.completions' must be a list")
    out = []
    for j, completion in enumerate(completions):
        if not isinstance(completion, dict):
            raise MalformedRow(
                where, f"{at}.completions[{j}]", f"field '{at}.completions[{j}]' must be an object"
            )
        out.append(
            (
                completion.get("text"),
                _rating(completion.get("rating"), f"{at}.completions[{j}].rating", where),
            )
        )
    return out


def _human_completion(human: Any, at: str, where: str) -> tuple[Any, int]:
    if isinstance(human, str):
        return human, 1
    if not isinstance(human, dict):
        raise MalformedRow(
            where, f"{at}.human_completion", f"field '{at}.human_completion' must be text or an object"
        )
    rating = _rating(human.get("rating"), f"{at}.human_completion.rating", where)
    # "we allowed labelers to write their own +1 step" (PRM800K's README)
    return human.get("text"), 1 if rating is None else rating


def prm800k_rows(
    row: Row, where: str, config: ConvertLabelsConfig, contract: PromptContract, counts: Counter
) -> list[Row]:
    """The rows of one PRM800K line: its path (and with ``alternatives`` its rated alternatives); none
    when its ``finish_reason`` is not converted. The mapping is the module docstring's.

    Raises:
        MalformedRow: naming the field.
    """
    if not isinstance(row, dict):
        raise MalformedRow(where, None, f"expected a JSON object, got {type(row).__name__}")
    info = _field(row, "question", dict, where)
    question = _field(info, "problem", str, where, "question.problem")
    if not question.strip():
        raise MalformedRow(where, "question.problem", "field 'question.problem' is empty")
    label = _field(row, "label", dict, where)
    steps = _field(label, "steps", list, where, "label.steps")
    if not steps:
        raise MalformedRow(where, "label.steps", "field 'label.steps': no steps")
    finish = label.get("finish_reason")
    if finish not in PRM800K_FINISH_REASONS:
        raise MalformedRow(
            where,
            "label.finish_reason",
            f"field 'label.finish_reason': {finish!r} is not one of {', '.join(PRM800K_FINISH_REASONS)}",
        )
    if finish not in config.finish_reasons:
        counts[f"skipped_finish_reason_{finish}"] += 1
        return []
    gold = info.get("ground_truth_answer")
    original = info.get("pre_generated_steps") if isinstance(info.get("pre_generated_steps"), list) else []
    value = {1: 1.0, 0: config.neutral_label, -1: 0.0}

    path: list[str] = []
    ratings: list[int] = []
    branches: list[tuple[int, list[tuple[int, Any, int | None]]]] = []  # (step, its other completions)
    for i, step in enumerate(steps):
        at = f"label.steps[{i}]"
        if not isinstance(step, dict):
            raise MalformedRow(where, at, f"field {at!r} must be an object")
        completions = _completions(step, at, where)
        chosen, human = step.get("chosen_completion"), step.get("human_completion")
        stopped = chosen is None and human is None
        taken = None
        if chosen is not None:
            if isinstance(chosen, bool) or not isinstance(chosen, int) or not 0 <= chosen < len(completions):
                raise MalformedRow(
                    where,
                    f"{at}.chosen_completion",
                    f"field '{at}.chosen_completion': {chosen!r} is no index into its {len(completions)} "
                    "completions",
                )
            taken = chosen
        elif human is not None:
            text, rating = _human_completion(human, at, where)
            text_field = f"{at}.human_completion" + (".text" if isinstance(human, dict) else "")
        else:
            # Labelling stopped here: the path ends with the pre-generated solution's own step, if rated.
            own = original[i] if i < len(original) else None
            matches = (
                j for j, (t, r) in enumerate(completions) if own is not None and t == own and r is not None
            )
            taken = next(matches, None)
        if taken is not None:
            text, rating = completions[taken]
            text_field = f"{at}.completions[{taken}].text"
            if rating is None:
                raise MalformedRow(
                    where,
                    f"{at}.completions[{taken}].rating",
                    f"field '{at}.completions[{taken}].rating': the chosen completion is unrated",
                )
        branches.append((i, [(j, t, r) for j, (t, r) in enumerate(completions) if j != taken]))
        if stopped and taken is None:  # no step of the solution here: the path ends before it
            counts["steps_after_path_end_dropped"] += len(steps) - i - 1
            break
        path.append(_step_text(text, text_field, where, config, counts))
        ratings.append(rating)
        if rating == -1 or stopped:
            counts["steps_after_path_end_dropped"] += len(steps) - i - 1
            break

    provenance = {"gold_answer": None if gold is None else str(gold), "finish_reason": finish}
    labels = [value[r] for r in ratings]
    out = []
    if path:
        first_bad = len(path) - 1 if ratings[-1] == -1 else -1
        out.append(_output_row(question, path, labels, first_bad, where, config, contract, **provenance))
    else:
        counts["rows_without_path"] += 1
    if config.alternatives:
        for i, others in branches:
            for j, text, rating in others:
                if rating is None or not isinstance(text, str) or not text.strip():
                    counts["alternatives_skipped"] += 1
                    continue
                step = _step_text(text, f"label.steps[{i}].completions[{j}].text", where, config, counts)
                out.append(
                    _output_row(
                        question,
                        path[:i] + [step],
                        labels[:i] + [value[rating]],
                        i if rating == -1 else -1,
                        where,
                        config,
                        contract,
                        kind="alternative",
                        branch_step=i,
                        **provenance,
                    )
                )
    return out


def shepherd_steps(text: str, labelled: str, where: str) -> tuple[list[str], list[str]]:
    """Math-Shepherd's ``input`` split at its tags, and the ``+``/``-`` that ``label`` has at each tag
    (the two texts must otherwise be the same).

    >>> shepherd_steps("Q? Step 1: a ки\\nStep 2: b ки", "Q? Step 1: a +\\nStep 2: b -", "x")
    (['Q? Step 1: a ', '\\nStep 2: b ', ''], ['+', '-'])

    Raises:
        MalformedRow: no tag, or ``label`` disagrees with ``input`` (where and how).
    """
    parts = text.split(SHEPHERD_TAG)
    tags = len(parts) - 1
    if tags == 0:
        raise MalformedRow(where, "input", f"field 'input' has no step tag {SHEPHERD_TAG!r}")
    if SHEPHERD_TAG in labelled:
        raise MalformedRow(where, "label", f"field 'label' still holds the step tag {SHEPHERD_TAG!r}")
    marks: list[str] = []
    at = 0
    for i, part in enumerate(parts):
        if not labelled.startswith(part, at):
            same = next(
                (k for k, (a, b) in enumerate(zip(part, labelled[at:])) if a != b),
                min(len(part), len(labelled) - at),
            )
            raise MalformedRow(
                where,
                "label",
                f"fields 'input' and 'label' differ at character {at + same} of 'label' "
                f"({labelled[at + same : at + same + 20]!r} vs {part[same : same + 20]!r}) after {i} of {tags} step tags",
            )
        at += len(part)
        if i == tags:
            break
        mark = labelled[at : at + 1]
        if mark not in (SHEPHERD_GOOD, SHEPHERD_BAD):
            got = "it ends" if not mark else f"it has {mark!r}"
            raise MalformedRow(
                where,
                "label",
                f"field 'label': {tags} step tags in 'input' but no '+'/'-' for tag {i + 1} ({got} there)",
            )
        marks.append(mark)
        at += 1
    if at != len(labelled):
        raise MalformedRow(
            where,
            "label",
            f"field 'label' goes on {len(labelled) - at} characters past 'input' and its {tags} step tags",
        )
    return parts, marks


def math_shepherd_rows(
    row: Row, where: str, config: ConvertLabelsConfig, contract: PromptContract, counts: Counter
) -> list[Row]:
    """The one row of a Math-Shepherd line (the mapping is the module docstring's).

    Raises:
        MalformedRow: naming the field.
    """
    if not isinstance(row, dict):
        raise MalformedRow(where, None, f"expected a JSON object, got {type(row).__name__}")
    text = _field(row, "input", str, where)
    parts, marks = shepherd_steps(text, _field(row, "label", str, where), where)
    starts = [m.start() for m in SHEPHERD_FIRST_STEP.finditer(parts[0])]
    if len(starts) != 1:
        found = "no 'Step 1:'" if not starts else f"'Step 1:' {len(starts)} times"
        raise MalformedRow(
            where,
            "input",
            f"field 'input': {found} before the first step tag (where does the question end?)",
        )
    question = parts[0][: starts[0]].strip()
    if not question:
        raise MalformedRow(where, "input", "field 'input': no question before 'Step 1:'")
    if parts[-1].strip():
        raise MalformedRow(
            where, "input", f"field 'input': text after the last step tag ({parts[-1].strip()[:40]!r})"
        )
    raw_steps = [parts[0][starts[0] :], *parts[1:-1]]
    steps = [
        _step_text(s.strip(), f"input (step {i + 1})", where, config, counts) for i, s in enumerate(raw_steps)
    ]
    labels = [1.0 if m == SHEPHERD_GOOD else 0.0 for m in marks]
    first_bad = marks.index(SHEPHERD_BAD) if SHEPHERD_BAD in marks else -1
    task = row.get("task")
    return [
        _output_row(
            question,
            steps,
            labels,
            first_bad,
            where,
            config,
            contract,
            task=None if task is None else str(task),
        )
    ]


CONVERTERS: dict[str, Callable[[Row, str, ConvertLabelsConfig, PromptContract, Counter], list[Row]]] = {
    "prm800k": prm800k_rows,
    "math-shepherd": math_shepherd_rows,
}


# --- reading the input: files, directories, Hub ids; a shard is a span of one input's rows ----------


@dataclass
class _Input:
    name: str  # as messages name it
    kind: str  # "jsonl" | "parquet" | "dataset"
    num_rows: int  # a .jsonl's lines, blank ones included: shards are cut by line
    identity: Any  # what the config hash records of it (a changed file is another run)
    line_offsets: list[int] = dataclasses.field(default_factory=list)  # jsonl: byte offset of every k-th line
    dataset: Any = None
    num_blank: int = 0


@dataclass(frozen=True)
class _Span:
    """The input rows of one output shard: rows ``start`` to ``stop`` of input ``input_index``."""

    input_index: int
    start: int
    stop: int
    offset: int = 0  # .jsonl: byte offset of line ``start``


def _looks_local(name: str) -> bool:
    # A path-shaped name is never sent to the Hub: a typo would surface as a confusing network error.
    return name.startswith(("/", ".", "~")) or Path(name).suffix.lower() in {".jsonl", ".parquet", ".json"}


def _file_input(path: Path, rows_per_shard: int) -> _Input:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        offsets, offset, lines, blank = [], 0, 0, 0
        with open(path, "rb") as handle:
            for line in handle:  # one pass, nothing kept but an offset per shard
                if lines % rows_per_shard == 0:
                    offsets.append(offset)
                offset += len(line)
                lines += 1
                blank += not line.strip()
        return _Input(str(path), "jsonl", lines, [str(path), offset], offsets, num_blank=blank)
    if suffix == ".parquet":
        try:
            rows = pq.ParquetFile(path).metadata.num_rows
        except Exception as err:  # pyarrow raises several types for a corrupt or non-parquet file
            raise InputError(f"{path}: cannot read as parquet ({err})") from None
        return _Input(str(path), "parquet", rows, [str(path), path.stat().st_size])
    raise InputError(f"{path}: unsupported file type {suffix!r} (use .jsonl or .parquet)")


def _dataset_input(name: str, split: str) -> _Input:
    local = Path(name).expanduser()
    try:
        if local.is_dir():
            dataset = datasets.load_from_disk(str(local))
            if isinstance(dataset, datasets.DatasetDict):
                if split not in dataset:
                    raise ValueError(f"no split {split!r}; it has {sorted(dataset)}")
                dataset = dataset[split]
        else:
            dataset = datasets.load_dataset(name, split=split)
    except (datasets.exceptions.DatasetNotFoundError, OSError, ValueError) as err:
        # OSError covers an unreachable (or offline) Hub: ConnectionError is one.
        raise InputError(f"{name}: cannot load split {split!r} ({err})") from None
    return _Input(f"{name}[{split}]", "dataset", len(dataset), [name, split, len(dataset)], dataset=dataset)


def resolve_inputs(names: list[str], split: str, rows_per_shard: int) -> list[_Input]:
    """Every input the ``--input`` names are: files, the ``.jsonl``/``.parquet`` files of a directory
    (in name order), a ``save_to_disk`` directory, a Hub id.

    Raises:
        InputError: a missing path, an unsupported file, a directory without data, a Hub id that
            does not load.
    """
    inputs = []
    for name in names:
        path = Path(name).expanduser()
        if path.is_file():
            inputs.append(_file_input(path, rows_per_shard))
        elif path.is_dir() and ((path / "state.json").is_file() or (path / "dataset_dict.json").is_file()):
            inputs.append(_dataset_input(name, split))
        elif path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in (".jsonl", ".parquet"))
            if not files:
                raise InputError(f"{name}: a directory without .jsonl or .parquet files")
            logger.info("%s: reading %s", name, ", ".join(p.name for p in files))
            inputs += [_file_input(p, rows_per_shard) for p in files]
        elif _looks_local(name):
            raise InputError(f"{name}: no such file or directory")
        else:
            inputs.append(_dataset_input(name, split))
    return inputs


def plan_spans(inputs: list[_Input], rows_per_shard: int) -> list[_Span]:
    """The shards: each input cut into spans of ``rows_per_shard`` rows (a shard never spans two)."""
    spans = []
    for index, source in enumerate(inputs):
        for k, start in enumerate(range(0, source.num_rows, rows_per_shard)):
            offset = source.line_offsets[k] if source.kind == "jsonl" else 0
            spans.append(_Span(index, start, min(start + rows_per_shard, source.num_rows), offset))
    return spans


def _read_span(source: _Input, span: _Span) -> Iterator[tuple[str, Row | MalformedRow]]:
    """``(where, row)`` for the rows of a span; a line that is no JSON object comes as the
    :class:`MalformedRow` that says so."""
    if source.kind == "jsonl":
        with open(source.name, "rb") as handle:
            handle.seek(span.offset)
            for line_number in range(span.start + 1, span.stop + 1):
                raw = handle.readline()
                where = f"{source.name}:{line_number}"
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as err:
                    yield where, MalformedRow(where, None, f"not UTF-8 text ({err.reason})")
                    continue
                if not text.strip():
                    continue
                try:
                    yield where, json.loads(text.rstrip("\r\n"))
                except json.JSONDecodeError as err:
                    reason = f"invalid JSON ({err.msg.removesuffix(' at')} at column {err.colno})"
                    yield where, MalformedRow(where, None, reason)
    elif source.kind == "parquet":
        handle = pq.ParquetFile(source.name)
        first = 0
        for group in range(handle.num_row_groups):
            count = handle.metadata.row_group(group).num_rows
            lo, hi = max(span.start, first), min(span.stop, first + count)
            if lo < hi:
                rows = handle.read_row_group(group).slice(lo - first, hi - lo).to_pylist()
                for i, row in enumerate(rows, lo):
                    yield f"{source.name}: row {i}", row
            first += count
    else:
        for i, row in enumerate(source.dataset.select(range(span.start, span.stop)), span.start):
            yield f"{source.name}: row {i}", row


def convert_span(
    source: _Input,
    span: _Span,
    config: ConvertLabelsConfig,
    contract: PromptContract,
    counts: Counter,
    on_malformed: Callable[[MalformedRow], None],
) -> list[Row]:
    """The output rows of a span; a malformed row goes to ``on_malformed`` (which may raise) and is
    counted, and adds nothing else to ``counts``."""
    converter = CONVERTERS[config.source]
    out = []
    for where, row in _read_span(source, span):
        row_counts: Counter = Counter()
        try:
            if isinstance(row, MalformedRow):
                raise row
            out += converter(row, where, config, contract, row_counts)
        except MalformedRow as err:
            counts["malformed_rows"] += 1
            on_malformed(err)
            continue
        counts.update(row_counts)
    return out


def _count_all(
    inputs: list[_Input], spans: list[_Span], config: ConvertLabelsConfig, on_malformed
) -> Counter:
    counts: Counter = Counter()
    contract = PromptContract(config.prompt_template)
    for span in spans:
        convert_span(inputs[span.input_index], span, config, contract, counts, on_malformed)
    return counts


def _raise(err: MalformedRow) -> None:
    raise err


def _ignore(err: MalformedRow) -> None:
    pass


# --- the stage -------------------------------------------------------------------------------------


def run_convert_labels(config: ConvertLabelsConfig) -> dict[str, Any]:
    """The ``ttc convert-labels`` stage: convert every unfinished shard of this worker, then write stats."""
    if config.source is None:
        raise InputError("ttc convert-labels: --from is required (prm800k or math-shepherd)")
    if not config.input:
        raise InputError("ttc convert-labels: --input is required (files, a directory or a Hub id)")
    parse_shard_spec(config.shard)  # a malformed --shard fails before the input is read
    contract = PromptContract(config.prompt_template)
    inputs = resolve_inputs(config.input, config.split, config.rows_per_shard)
    spans = plan_spans(inputs, config.rows_per_shard)
    if not spans:
        raise InputError(f"{', '.join(config.input)}: no rows")
    # --strict refuses a bad row before anything is written: every row is read once first.
    counted = _count_all(inputs, spans, config, _raise) if config.strict else None
    built: dict[int, Counter] = {}
    skipped = Counter()

    def warn(err: MalformedRow) -> None:
        skipped["rows"] += 1
        if skipped["rows"] <= MAX_ROW_WARNINGS:
            logger.warning("%s; row skipped", err)
            if skipped["rows"] == MAX_ROW_WARNINGS:
                logger.warning("more malformed rows are listed at DEBUG level only (TTC_LOG_LEVEL=DEBUG)")
        else:
            logger.debug("%s; row skipped", err)

    def convert(j: int) -> tuple[list[Row], Counter]:
        counts: Counter = Counter()
        return convert_span(inputs[spans[j].input_index], spans[j], config, contract, counts, warn), counts

    # Input of which no row converts (every row malformed and skipped) is refused before the output
    # exists: shards are converted in turn until one gives rows -- normally the first -- and kept for
    # build_shard, so good input is still read once.
    prebuilt: dict[int, tuple[list[Row], Counter]] = {}
    for j in range(len(spans)):
        prebuilt[j] = convert(j)
        if prebuilt[j][0]:
            break
    else:
        raise InputError(
            f"{', '.join(config.input)}: no row converts to stepwise labels ({skipped['rows']} malformed "
            "rows skipped, see the warnings); nothing to write"
        )

    def build_shard(j: int) -> list[Row]:
        rows, counts = prebuilt.pop(j) if j in prebuilt else convert(j)
        built[j] = counts
        return rows

    def stats(output_dir: str) -> dict[str, Any]:
        counts = counted
        if counts is None and len(built) == len(spans):  # every shard converted by this run: counted
            counts = sum(built.values(), Counter())
        return convert_labels_stats(output_dir, counts)

    result = run_sharded_stage(
        "convert-labels",
        (config,),
        output_dir=config.output_dir,
        shard=config.shard,
        overwrite=config.overwrite,
        num_shards=len(spans),
        schema=CONVERTED_SCHEMA,
        build_shard=build_shard,
        stats=stats,
        # The prompt contract the `prompt` column was built with, for train-prm (core/prompts.py).
        info={
            "source": config.source,
            "inputs": [source.name for source in inputs],
            "num_input_rows": sum(source.num_rows - source.num_blank for source in inputs),
            "prompt_contract": contract.to_dict(),
        },
        hash_extra={
            "convert_rules": CONVERT_RULES_VERSION,
            "inputs": [source.identity for source in inputs],
        },
        progress=f"Converting {config.source}",
        tracking=config,
        shard_metrics=lambda rows: {"rows_written": len(rows), "steps": sum(len(r["labels"]) for r in rows)},
        on_complete=lambda stats: _push(config, contract) if config.push_to_hub else None,
    )
    if skipped["rows"]:
        logger.warning(
            "skipped %d malformed row(s) in this run; --strict true rejects them instead", skipped["rows"]
        )
    if not is_complete(result):
        return result
    logger.info(
        "%d rows (%d paths, %d alternatives, %d steps, %d problems) from %d %s input rows -> %s",
        result["num_rows"],
        result["num_path_rows"],
        result["num_alternative_rows"],
        result["num_steps"],
        result["num_problems"],
        result["num_input_rows"],
        config.source,
        config.output_dir,
    )
    return result


def _push(config: ConvertLabelsConfig, contract: PromptContract) -> None:
    facts = {
        "source": config.source,
        "input": ", ".join(config.input),
        "neutral label (PRM800K)": config.neutral_label,
        "alternatives (PRM800K)": config.alternatives,
        "finish reasons kept (PRM800K)": ", ".join(config.finish_reasons),
        "step separator": config.step_separator,
        "prompt contract": contract.describe(),
        "columns": "prompt, completions (steps), labels (per step, in [0, 1]) -- TRL's stepwise shape",
    }
    push_dataset("convert-labels", config.output_dir, config, facts)


def convert_labels_stats(output_dir: str, counts: Counter | None = None) -> dict[str, Any]:
    """The stats of a finished ``ttc convert-labels`` output, whichever workers and runs wrote its
    shards: the rows from the shards; what was skipped from ``counts``, or, without them (``ttc
    merge``), by reading the input again with the options in its ``ttc_config.yaml``."""
    info = read_manifest(output_dir)["info"]
    saved = read_resolved_config(output_dir)
    names = {f.name for f in dataclasses.fields(ConvertLabelsConfig)}
    config = ConvertLabelsConfig(**{k: v for k, v in saved.items() if k in names})
    if counts is None:
        inputs = resolve_inputs(config.input, config.split, config.rows_per_shard)
        if sum(source.num_rows - source.num_blank for source in inputs) != info.get("num_input_rows"):
            raise InputError(f"{output_dir}: its input {config.input} changed since it was converted")
        counts = _count_all(inputs, plan_spans(inputs, config.rows_per_shard), config, _ignore)

    kinds: Counter = Counter()
    problems: set[str] = set()
    num_steps, label_sum, with_bad = 0, 0.0, 0
    for batch in ShardReader(output_dir).iter_batches(
        ["labels", "problem_id", "kind", "first_bad_step"], 4096
    ):
        columns = [
            batch.column(name).to_pylist() for name in ("labels", "problem_id", "kind", "first_bad_step")
        ]
        for labels, problem, kind, bad in zip(*columns):
            kinds[kind] += 1
            problems.add(problem)
            num_steps += len(labels)
            label_sum += sum(labels)
            with_bad += bad >= 0
    num_rows = sum(kinds.values())
    skipped = {"malformed": counts["malformed_rows"]}
    if config.source == "prm800k":
        for reason in PRM800K_FINISH_REASONS:
            if reason not in config.finish_reasons:
                skipped[f"finish_reason_{reason}"] = counts[f"skipped_finish_reason_{reason}"]
    return {
        "stage": "convert-labels",
        "source": config.source,
        "num_input_rows": info.get("num_input_rows"),
        "skipped_input_rows": skipped,
        "rows_without_path": counts["rows_without_path"],
        "num_rows": num_rows,
        "num_path_rows": kinds["path"],
        "num_alternative_rows": kinds["alternative"],
        "num_problems": len(problems),
        "num_steps": num_steps,
        "mean_step_label": round(label_sum / max(num_steps, 1), 4),
        "fraction_rows_with_bad_step": round(with_bad / max(num_rows, 1), 4),
        "steps_after_path_end_dropped": counts["steps_after_path_end_dropped"],
        "steps_with_separator_replaced": counts["steps_with_separator_replaced"],
        "alternatives_skipped": counts["alternatives_skipped"],
        "prompt_contract": info.get("prompt_contract"),
    }
