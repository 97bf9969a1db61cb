"""``ttc eval-prm``: how well a PRM finds the first wrong step, ranks steps, and picks solutions.

Three measurements, each against a ground truth named by ``--gold``:

* **ProcessBench** (Zheng et al. 2024, arXiv 2412.06559): the PRM's predicted first error is the first
  step scored below ``threshold`` (-1: none). ``error_accuracy`` is the fraction of erroneous solutions
  whose first error is found exactly, ``correct_accuracy`` the fraction of correct solutions with no
  error predicted, ``f1`` their harmonic mean.
* **Step ROC-AUC**: step scores against prefix correctness (1 before the gold first error, 0 from it
  on -- what a PRM trained on MC values predicts: whether the prefix can still reach the answer);
  and solution ROC-AUC of every aggregation (last, min, prod, mean) against final correctness.
* **Best-of-N** (with ``samples_dir``, a ``ttc sample`` output): accuracy of PRM-weighted best-of-N,
  plain best-of-N and majority vote at N = 1, 2, 4, ... up to the samples' N, taking each problem's
  first N candidates; plus the oracle (any of the N correct).

When the dataset also has MC ``labels`` (``ttc label`` output) and the gold is independent of them
(the arithmetic task's exact checker, or ProcessBench labels), the stage reports how often the MC
labels agree with that truth -- the check that MC labelling works.

Datasets, detected by their columns:
    ``ttc label`` output (or TRL's stepwise format): ``question`` (or ``prompt``), ``completions``
        (the steps), ``labels`` (MC values in [0, 1]; a step is bad at value 0);
    ProcessBench: ``problem``, ``steps``, ``label`` (index of the earliest wrong step, -1 if none),
        as a local .jsonl/.json/.parquet file, a dataset directory or a Hub id (``Qwen/ProcessBench``,
        whose splits are ``gsm8k``, ``math``, ``olympiadbench`` and ``omnimath``).

Output (``output_dir``): ``prm_eval.json`` (every metric and the PRM compute spent) and
``ttc_config.yaml``, written only once everything has been computed.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ttcompute.core.errors import InputError
from ttcompute.core.steps import AGGREGATIONS

logger = logging.getLogger(__name__)

GOLD_SOURCES = ("auto", "labels", "checker", "processbench")
_PROCESSBENCH_COLUMNS = ("problem", "steps", "label")
_STEPWISE_COLUMNS = ("question", "completions", "labels")
# Rows (or sampled candidates) per PRM call: only sets how often the progress bar moves; the PRM
# batches by tokens itself. Candidates of one problem go in one call so their shared prompt is reused.
_ROWS_PER_CALL = 64
_CANDIDATES_PER_CALL = 256


@dataclass
class EvalPRMConfig:
    """Options of ``ttc eval-prm``.

    Parameters that control the model:
        prm: Path or Hub id of the PRM (required).
        prm_format: ``auto`` or a format known to :func:`ttcompute.models.prm.load_prm`.
        max_batch_tokens: Tokens per PRM forward batch.
        device: ``cpu``, ``cuda``, ``cuda:1`` ...; default: the best available.
        trust_remote_code: Allow custom model code (some public PRMs need it).

    Parameters that control the data:
        dataset: A ``ttc label`` output directory, or a ProcessBench-style file, directory or Hub id.
        split: Split to load from a dataset directory or Hub id (ProcessBench's: ``gsm8k``, ``math``,
            ``olympiadbench``, ``omnimath``); ignored for files and ``ttc label`` output.
        gold: The truth to score against: ``processbench`` (the ``label`` column), ``labels`` (first
            MC value of 0), ``checker`` (the arithmetic task's exact ``first_wrong_step``), or ``auto``:
            ProcessBench labels if present, else the checker if every question is an arithmetic
            problem, else the MC labels.
        limit: Evaluate only the first ``limit`` rows (and the first ``limit`` sampled problems).
        samples_dir: A ``ttc sample`` output for the best-of-N curve (optional).
        step_separator: Splits sampled solutions into steps; default: the PRM's, else a blank line.

    Parameters that control the metrics:
        aggregation: How step scores become a solution score for best-of-N (last, min, prod, mean).
        threshold: A step scored below it is predicted wrong (ProcessBench).
        output_dir: Where ``prm_eval.json`` and the resolved config go.
    """

    prm: str | None = field(default=None, metadata={"help": "PRM path or Hub id (required)"})
    prm_format: str = field(default="auto", metadata={"help": "PRM format (auto-detected by default)"})
    dataset: str | None = field(
        default=None, metadata={"help": "ttc label output dir, or ProcessBench file/dir/Hub id (required)"}
    )
    split: str = field(default="gsm8k", metadata={"help": "split of a dataset dir or Hub id"})
    gold: str = field(default="auto", metadata={"help": "truth: auto, labels, checker or processbench"})
    samples_dir: str | None = field(default=None, metadata={"help": "ttc sample output for best-of-N"})
    aggregation: str = field(
        default="last", metadata={"help": "step-score aggregation: last, min, prod, mean"}
    )
    threshold: float = field(default=0.5, metadata={"help": "a step scored below this is predicted wrong"})
    calibration_dataset: str | None = field(
        default=None,
        metadata={
            "help": "other problems (same format and gold) to pick the ProcessBench threshold on: the one "
            "with the best F1 there replaces --threshold"
        },
    )
    limit: int | None = field(default=None, metadata={"help": "evaluate only the first rows"})
    max_batch_tokens: int = field(default=32768, metadata={"help": "tokens per PRM forward batch"})
    device: str | None = field(default=None, metadata={"help": "torch device (default: best available)"})
    trust_remote_code: bool = field(default=False, metadata={"help": "allow custom model code"})
    step_separator: str | None = field(
        default=None, metadata={"help": "splits sampled solutions into steps (default: the PRM's)"}
    )
    output_dir: str = field(default="runs/eval_prm", metadata={"help": "output directory"})

    def __post_init__(self) -> None:
        if not self.prm:
            raise ValueError("--prm is required (a PRM path or Hub id)")
        if not self.dataset:
            raise ValueError("--dataset is required (a ttc label output dir or a ProcessBench dataset)")
        if self.gold not in GOLD_SOURCES:
            raise ValueError(f"gold must be one of {', '.join(GOLD_SOURCES)}; got {self.gold!r}")
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(
                f"aggregation must be one of {', '.join(AGGREGATIONS)}; got {self.aggregation!r}"
            )
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1, got {self.limit}")
        if self.max_batch_tokens < 1:
            raise ValueError(f"max_batch_tokens must be >= 1, got {self.max_batch_tokens}")
        if self.step_separator == "":
            raise ValueError("step_separator must not be empty")


# --- first errors ------------------------------------------------------------------------------


def first_error_from_scores(step_scores: Sequence[float], threshold: float = 0.5) -> int:
    """Index of the first step scored below ``threshold``; -1 when there is none.

    >>> first_error_from_scores([0.9, 0.7, 0.4, 0.8])
    2
    >>> first_error_from_scores([0.9, 0.5])
    -1
    """
    return next((i for i, score in enumerate(step_scores) if score < threshold), -1)


def first_error_from_labels(labels: Sequence[float | bool]) -> int:
    """Index of the first bad step (label 0 / False: no rollout from it reached the answer); -1 if none.

    >>> first_error_from_labels([1.0, 0.25, 0.0, 0.5])
    2
    >>> first_error_from_labels([True, True])
    -1
    """
    return next((i for i, label in enumerate(labels) if label == 0), -1)


def step_labels_from_first_error(num_steps: int, first_error: int) -> list[int]:
    """Prefix correctness: 1 for steps before the first error, 0 from it on (-1: all correct).

    >>> step_labels_from_first_error(4, 2)
    [1, 1, 0, 0]
    >>> step_labels_from_first_error(2, -1)
    [1, 1]
    """
    if first_error < -1 or first_error >= num_steps:
        raise ValueError(f"first error {first_error} outside a solution of {num_steps} steps")
    cut = num_steps if first_error == -1 else first_error
    return [1] * cut + [0] * (num_steps - cut)


# --- metrics -----------------------------------------------------------------------------------


def _harmonic_mean(a: float, b: float) -> float:
    return 0.0 if a == 0 or b == 0 else 2 * a * b / (a + b)


THRESHOLD_GRID = tuple(round(0.02 * i, 2) for i in range(1, 50))


def processbench_by_threshold(
    step_scores: Sequence[Sequence[float]],
    gold_first_errors: Sequence[int],
    grid: Sequence[float] = THRESHOLD_GRID,
) -> list[dict[str, Any]]:
    """ProcessBench metrics at each threshold of ``grid`` (a value PRM's natural cut-off depends on
    how hard the problems are for its policy, so it is chosen on data, not assumed to be 0.5).

    >>> rows = processbench_by_threshold([[0.9, 0.2], [0.6, 0.5]], [1, -1], grid=(0.3, 0.55))
    >>> [(r["threshold"], r["f1"]) for r in rows]
    [(0.3, 1.0), (0.55, 0.0)]
    """
    return [
        {
            "threshold": t,
            **processbench_metrics([first_error_from_scores(s, t) for s in step_scores], gold_first_errors),
        }
        for t in grid
    ]


def best_threshold(curve: Sequence[dict[str, Any]]) -> float:
    """The threshold of the best F1 (ties: the one nearest 0.5, then the lower)."""
    scored = [row for row in curve if row["f1"] is not None]
    if not scored:
        raise InputError(
            "calibration data: no F1 at any threshold (it needs erroneous and correct solutions)"
        )
    return max(scored, key=lambda row: (row["f1"], -abs(row["threshold"] - 0.5), -row["threshold"]))[
        "threshold"
    ]


def processbench_metrics(
    predicted_first_errors: Sequence[int], gold_first_errors: Sequence[int]
) -> dict[str, Any]:
    """ProcessBench's scores: accuracy on erroneous and on correct solutions, and their F1.

    An erroneous solution (gold first error >= 0) counts as right only when the exact step is
    predicted; a correct one (gold -1) only when no error is predicted. An accuracy over no samples
    is None, and so is the F1 then.

    >>> m = processbench_metrics([2, -1, 0, -1], [2, 1, -1, -1])
    >>> m["error_accuracy"], m["correct_accuracy"], m["f1"]
    (0.5, 0.5, 0.5)
    """
    if len(predicted_first_errors) != len(gold_first_errors):
        raise ValueError(
            f"{len(predicted_first_errors)} predictions but {len(gold_first_errors)} gold labels"
        )
    if not gold_first_errors:
        raise ValueError("no samples to score")
    pairs = list(zip(predicted_first_errors, gold_first_errors))
    erroneous = [pred == gold for pred, gold in pairs if gold >= 0]
    correct = [pred == -1 for pred, gold in pairs if gold == -1]
    error_accuracy = sum(erroneous) / len(erroneous) if erroneous else None
    correct_accuracy = sum(correct) / len(correct) if correct else None
    f1 = (
        _harmonic_mean(error_accuracy, correct_accuracy)
        if error_accuracy is not None and correct_accuracy is not None
        else None
    )
    return {
        "error_accuracy": error_accuracy,
        "correct_accuracy": correct_accuracy,
        "f1": f1,
        "num_erroneous": len(erroneous),
        "num_correct": len(correct),
        "num_error_found": sum(erroneous),
        "num_correct_passed": sum(correct),
    }


def step_roc_auc(scores: Sequence[float], labels: Sequence[int | bool]) -> float:
    """ROC-AUC of ``scores`` for the positive class (label 1): P(positive > negative), ties count half.

    Computed from average ranks (the Mann-Whitney U statistic), O(n log n).

    Raises:
        ValueError: lengths differ, a score is NaN, a label is not 0/1, or only one class is present.

    >>> step_roc_auc([0.9, 0.4, 0.4, 0.1], [1, 1, 0, 0])
    0.875
    """
    if len(scores) != len(labels):
        raise ValueError(f"{len(scores)} scores but {len(labels)} labels")
    values = np.asarray(scores, dtype=float)
    if np.isnan(values).any():
        raise ValueError("a score is NaN")
    if any(label not in (0, 1) for label in labels):
        raise ValueError("labels must be 0/1")
    positive = np.asarray(labels, dtype=bool)
    num_pos, num_neg = int(positive.sum()), int((~positive).sum())
    if num_pos == 0 or num_neg == 0:
        raise ValueError("ROC-AUC needs both classes; only one is present")
    distinct, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    # Tied values share the average of the 1-based ranks they span.
    last_rank = np.cumsum(counts)
    average_rank = last_rank - (counts - 1) / 2.0
    rank_sum = float(average_rank[inverse][positive].sum())
    return (rank_sum - num_pos * (num_pos + 1) / 2.0) / (num_pos * num_neg)


def budget_sizes(max_n: int) -> list[int]:
    """1, 2, 4, ... below ``max_n``, then ``max_n``.

    >>> budget_sizes(6)
    [1, 2, 4, 6]
    """
    if max_n < 1:
        raise ValueError(f"need at least one candidate, got {max_n}")
    sizes = [1 << k for k in range(max_n.bit_length()) if 1 << k < max_n]
    return sizes + [max_n]


def best_of_n_accuracy(
    answers: Sequence[Sequence[str | None]],
    correct: Sequence[Sequence[bool]],
    scores: Sequence[Sequence[float]],
    sizes: Sequence[int] | None = None,
) -> dict[str, list]:
    """Accuracy of each selection rule at each budget, averaged over problems.

    Row ``i`` holds problem ``i``'s candidates: final answers, correctness and (aggregated) PRM
    scores. At budget ``n`` each problem keeps its first ``n`` candidates (all, if it has fewer).
    Returns ``{"n": sizes, "weighted_best_of_n": [...], "best_of_n": [...], "majority_vote": [...],
    "oracle": [...]}`` (oracle: any of the ``n`` is correct); ``sizes`` defaults to
    :func:`budget_sizes` of the largest N.

    >>> r = best_of_n_accuracy([["3", "4", "4"]], [[True, False, False]], [[0.9, 0.2, 0.3]])
    >>> r["n"], r["weighted_best_of_n"], r["best_of_n"], r["majority_vote"], r["oracle"]
    ([1, 2, 3], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0], [1.0, 1.0, 0.0], [1.0, 1.0, 1.0])
    """
    from ttcompute.core.grading import is_equivalent
    from ttcompute.core.selection import best_of_n, majority_vote, weighted_best_of_n

    if not (len(answers) == len(correct) == len(scores)):
        raise ValueError(f"{len(answers)} answer rows, {len(correct)} correct rows, {len(scores)} score rows")
    if not answers:
        raise ValueError("no problems")
    for row, (a, c, s) in enumerate(zip(answers, correct, scores)):
        if not (len(a) == len(c) == len(s)) or not a:
            raise ValueError(f"row {row}: {len(a)} answers, {len(c)} verdicts, {len(s)} scores")
    sizes = list(sizes) if sizes is not None else budget_sizes(max(len(a) for a in answers))
    rules = ("weighted_best_of_n", "best_of_n", "majority_vote", "oracle")
    hits: dict[str, list[int]] = {rule: [0] * len(sizes) for rule in rules}
    for row_answers, row_correct, row_scores in zip(answers, correct, scores):
        verdicts: dict[tuple[str, str], bool] = {}  # each budget regroups the same answers: grade once

        def equivalent(a: str, b: str, verdicts=verdicts) -> bool:
            if (a, b) not in verdicts:
                verdicts[(a, b)] = is_equivalent(a, b)
            return verdicts[(a, b)]

        for k, n in enumerate(sizes):
            a, c, s = row_answers[:n], row_correct[:n], row_scores[:n]
            hits["weighted_best_of_n"][k] += bool(c[weighted_best_of_n(a, s, equivalent)])
            hits["best_of_n"][k] += bool(c[best_of_n(s)])
            hits["majority_vote"][k] += bool(c[majority_vote(a, equivalent)])
            hits["oracle"][k] += any(c)
    return {"n": sizes, **{rule: [h / len(answers) for h in hits[rule]] for rule in rules}}


# --- data --------------------------------------------------------------------------------------


@dataclass
class EvalExample:
    """One solution to evaluate: its steps and whatever truth the dataset carries."""

    where: str  # e.g. "data.jsonl:3" or "runs/labels: row 2", for error messages
    question: str
    steps: list[str]
    processbench_label: int | None = None
    mc_labels: list[float] | None = None


def _read_dataset(dataset: str, split: str, limit: int | None) -> list[tuple[str, dict[str, Any]]]:
    from ttcompute.core.shards import MANIFEST, load_sharded
    from ttcompute.tasks.sources import MalformedRow, _read_rows

    if (Path(dataset) / MANIFEST).is_file():
        table = load_sharded(dataset)
        if limit is not None:
            table = table.select(range(min(limit, len(table))))
        return [(f"{dataset}: row {i}", row) for i, row in enumerate(table.to_list())]
    rows = []
    for where, row in itertools.islice(_read_rows(dataset, split), limit):
        if isinstance(row, MalformedRow):  # not even a JSON object: nothing to evaluate on
            raise row
        rows.append((where, row))
    return rows


def _detect_format(dataset: str, columns: set[str]) -> str:
    if set(_PROCESSBENCH_COLUMNS) <= columns:
        return "processbench"
    if {"completions", "labels"} <= columns and ({"question", "prompt"} & columns):
        return "stepwise"
    missing_pb = [c for c in _PROCESSBENCH_COLUMNS if c not in columns]
    missing_sw = [c for c in _STEPWISE_COLUMNS if c not in columns]
    raise InputError(
        f"{dataset}: neither a ProcessBench dataset (missing column(s) {', '.join(missing_pb)}) nor "
        f"ttc label output (missing column(s) {', '.join(missing_sw)}); found {', '.join(sorted(columns))}"
    )


def _steps_field(row: dict[str, Any], name: str, where: str) -> list[str]:
    steps = row.get(name)
    if steps is None:
        raise InputError(f"{where}: missing field {name!r}")
    if not isinstance(steps, (list, tuple)):
        raise InputError(f"{where}: field {name!r} must be a list of steps, got {type(steps).__name__}")
    steps = list(steps)
    if not steps:
        raise InputError(f"{where}: field {name!r} is empty (a solution needs at least one step)")
    for i, step in enumerate(steps):
        if not isinstance(step, str) or not step.strip():
            raise InputError(f"{where}: field {name!r}: step {i} is empty or not text")
    return steps


def _question_field(row: dict[str, Any], names: tuple[str, ...], where: str) -> str:
    name = next((n for n in names if row.get(n) is not None), names[0])
    question = row.get(name)
    if not isinstance(question, str) or not question.strip():
        raise InputError(f"{where}: field {name!r} is missing or empty")
    return question


def load_eval_examples(
    dataset: str, split: str = "gsm8k", limit: int | None = None
) -> tuple[list[EvalExample], str]:
    """The solutions of ``dataset`` and its format (``processbench`` or ``stepwise``).

    Raises:
        InputError: unknown columns, or a row with a missing or empty field (naming the row).
    """
    rows = _read_dataset(dataset, split, limit)
    if not rows:
        raise InputError(f"{dataset}: no rows")
    kind = _detect_format(dataset, set(rows[0][1]))
    examples = []
    for where, row in rows:
        if kind == "processbench":
            steps = _steps_field(row, "steps", where)
            label = row.get("label")
            if isinstance(label, bool) or not isinstance(label, int):
                raise InputError(f"{where}: field 'label' must be an integer step index or -1, got {label!r}")
            if not -1 <= label < len(steps):
                raise InputError(f"{where}: field 'label' = {label} outside -1..{len(steps) - 1}")
            examples.append(
                EvalExample(
                    where, _question_field(row, ("problem",), where), steps, processbench_label=int(label)
                )
            )
        else:
            steps = _steps_field(row, "completions", where)
            # `ttc label` output: its hard labels count correct siblings as witnesses; elsewhere `labels`.
            labels = row.get("hard_labels") if row.get("hard_labels") is not None else row.get("labels")
            if labels is None:
                raise InputError(f"{where}: missing field 'labels'")
            labels = list(labels)
            if len(labels) != len(steps):
                raise InputError(f"{where}: field 'labels' has {len(labels)} values for {len(steps)} steps")
            if any(not isinstance(v, (int, float)) or not 0 <= v <= 1 for v in labels):
                raise InputError(f"{where}: field 'labels' must hold values in [0, 1]")
            question = _question_field(row, ("question", "prompt"), where)
            examples.append(EvalExample(where, question, steps, mc_labels=[float(v) for v in labels]))
    return examples, kind


def _is_arithmetic(question: str) -> bool:
    from ttcompute.tasks.arithmetic import parse_question

    try:
        parse_question(question)
    except InputError:
        return False
    return True


def resolve_gold(gold: str, examples: Sequence[EvalExample]) -> str:
    """``gold`` with ``auto`` resolved; raises InputError when the dataset cannot provide it."""
    has_processbench = all(e.processbench_label is not None for e in examples)
    has_labels = all(e.mc_labels is not None for e in examples)
    if gold == "auto":
        if has_processbench:
            return "processbench"
        return "checker" if all(_is_arithmetic(e.question) for e in examples) else "labels"
    if gold == "processbench" and not has_processbench:
        raise InputError("--gold processbench: the dataset has no ProcessBench 'label' column")
    if gold == "labels" and not has_labels:
        raise InputError("--gold labels: the dataset has no MC 'labels' column")
    if gold == "checker":
        bad = next((e for e in examples if not _is_arithmetic(e.question)), None)
        if bad is not None:
            raise InputError(
                f"{bad.where}: --gold checker needs arithmetic questions, got {bad.question[:80]!r}"
            )
    return gold


def gold_first_errors(gold: str, examples: Sequence[EvalExample]) -> list[int]:
    """The true first wrong step of every example (-1: none) under a resolved ``gold``."""
    from ttcompute.tasks.arithmetic import first_wrong_step

    if gold == "processbench":
        return [e.processbench_label for e in examples]
    if gold == "labels":
        return [first_error_from_labels(e.mc_labels) for e in examples]
    if gold == "checker":
        wrong = (first_wrong_step(e.question, e.steps) for e in examples)
        return [-1 if w is None else w for w in wrong]
    raise ValueError(f"unresolved gold {gold!r}")


def label_agreement(examples: Sequence[EvalExample], first_errors: Sequence[int]) -> dict[str, Any]:
    """How well the MC labels agree with an independent truth (``first_errors``).

    ``first_error_agreement``: fraction of solutions whose first MC value of 0 is the true first
    error (both -1 counts); ``step_agreement``: fraction of steps whose hard MC label (value > 0)
    equals the true prefix correctness.
    """
    same_first = []
    same_step = []
    for example, first_error in zip(examples, first_errors):
        same_first.append(first_error_from_labels(example.mc_labels) == first_error)
        truth = step_labels_from_first_error(len(example.steps), first_error)
        same_step += [(value > 0) == bool(t) for value, t in zip(example.mc_labels, truth)]
    return {
        "first_error_agreement": sum(same_first) / len(same_first),
        "step_agreement": sum(same_step) / len(same_step),
        "num_solutions": len(same_first),
        "num_steps": len(same_step),
    }


# --- the stage ---------------------------------------------------------------------------------


def _chunks(n: int, size: int) -> list[range]:
    return [range(i, min(i + size, n)) for i in range(0, n, size)]


def _compute(prm, encoded: int, requested: int) -> dict[str, int]:
    from ttcompute.core.budget import ComputeSpent

    spent = ComputeSpent(verifier_parameters=prm.num_parameters, verifier_tokens=encoded)
    return {**spent.to_dict(), "verifier_tokens_requested": requested}


def _score_examples(prm, examples: Sequence[EvalExample]) -> list[list[float]]:
    step_scores: list[list[float]] = []
    progress = tqdm(total=len(examples), desc="Scoring steps", unit="solution")
    for chunk in _chunks(len(examples), _ROWS_PER_CALL):
        batch = prm.score([examples[i].question for i in chunk], [examples[i].steps for i in chunk])
        for i, scores in zip(chunk, batch):
            if len(scores) != len(examples[i].steps):
                raise RuntimeError(
                    f"{examples[i].where}: the PRM returned {len(scores)} scores for {len(examples[i].steps)} steps"
                )
        step_scores += [list(map(float, s)) for s in batch]
        progress.update(len(chunk))
    progress.close()
    return step_scores


def _optional_auc(scores: Sequence[float], labels: Sequence[int], what: str) -> float | None:
    if len(set(labels)) < 2:
        logger.warning("%s ROC-AUC undefined: every %s is in one class", what, what)
        return None
    return step_roc_auc(scores, labels)


def load_samples(samples_dir: str, limit: int | None = None) -> list[dict[str, Any]]:
    """The ``question, completions, answers, correct`` of a ``ttc sample`` output, checked row by row."""
    from ttcompute.core.shards import load_sharded

    columns = ["question", "completions", "answers", "correct"]
    samples = load_sharded(samples_dir)
    for column in columns:
        if column not in samples.column_names:
            raise InputError(f"{samples_dir}: missing column '{column}' (not ttc sample output?)")
    if limit is not None:
        samples = samples.select(range(min(limit, len(samples))))
    rows = samples.select_columns(columns).to_list()
    for index, row in enumerate(rows):
        if not row["completions"]:
            raise InputError(f"{samples_dir}: row {index}: field 'completions' is empty")
        if not len(row["completions"]) == len(row["answers"]) == len(row["correct"]):
            raise InputError(f"{samples_dir}: row {index}: completions, answers, correct differ in length")
    return rows


def _evaluate_best_of_n(prm, rows: list[dict[str, Any]], aggregation: str, separator: str) -> dict[str, Any]:
    from ttcompute.models.prm import score_solutions

    # Flatten every candidate; one with no step at all (an empty generation) is scored 0 unseen.
    flat: list[tuple[int, int, list[str]]] = []
    for r, row in enumerate(rows):
        for c, text in enumerate(row["completions"]):
            flat.append((r, c, [s for s in text.split(separator) if s.strip()]))
    scores = [[0.0] * len(row["completions"]) for row in rows]
    scorable = [item for item in flat if item[2]]
    progress = tqdm(total=len(scorable), desc="Scoring samples", unit="solution")
    for chunk in _chunks(len(scorable), _CANDIDATES_PER_CALL):
        batch = [scorable[i] for i in chunk]
        solution_scores = score_solutions(
            prm,
            [rows[r]["question"] for r, _, _ in batch],
            [steps for _, _, steps in batch],
            aggregation,
        )
        for (r, c, _), score in zip(batch, solution_scores):
            scores[r][c] = float(score)
        progress.update(len(batch))
    progress.close()
    if len(scorable) < len(flat):
        logger.warning(
            "%d of %d sampled solutions have no step; scored 0", len(flat) - len(scorable), len(flat)
        )
    curve = best_of_n_accuracy([row["answers"] for row in rows], [row["correct"] for row in rows], scores)
    return {"num_problems": len(rows), "aggregation": aggregation, **curve}


def _prm_step_separator(prm, prm_path: str) -> str:
    """The separator the PRM was trained with (``ttc_prm`` metadata), else the blank line."""
    from transformers import PretrainedConfig

    from ttcompute.tasks.arithmetic import STEP_SEPARATOR

    separator = getattr(prm, "step_separator", None)
    if separator:
        return separator
    try:
        config_dict, _ = PretrainedConfig.get_config_dict(prm_path)
    except (OSError, ValueError):  # a toy or remote PRM without a readable config
        return STEP_SEPARATOR
    return (config_dict.get("ttc_prm") or {}).get("step_separator") or STEP_SEPARATOR


def run_eval_prm(config: EvalPRMConfig) -> dict[str, Any]:
    """The ``ttc eval-prm`` stage; returns the metrics written to ``prm_eval.json``."""
    from ttcompute.core.config import config_to_dict, save_resolved_config
    from ttcompute.core.shards import write_json
    from ttcompute.core.steps import aggregate
    from ttcompute.models.prm import load_prm

    # Everything that can be wrong with the input is found before the model is loaded.
    examples, kind = load_eval_examples(config.dataset, config.split, config.limit)
    gold = resolve_gold(config.gold, examples)
    first_errors = gold_first_errors(gold, examples)
    samples = load_samples(config.samples_dir, config.limit) if config.samples_dir is not None else None
    calib_examples, calib_first_errors = None, None
    if config.calibration_dataset is not None:
        calib_examples, _ = load_eval_examples(config.calibration_dataset, config.split, None)
        calib_first_errors = gold_first_errors(resolve_gold(config.gold, calib_examples), calib_examples)
    logger.info("Evaluating on %d %s solutions from %s (gold: %s)", len(examples), kind, config.dataset, gold)

    prm = load_prm(
        config.prm,
        config.prm_format,
        device=config.device,
        max_batch_tokens=config.max_batch_tokens,
        trust_remote_code=config.trust_remote_code,
        step_separator=config.step_separator,
    )
    threshold, calibration = config.threshold, None
    if calib_examples is not None:
        curve = processbench_by_threshold(_score_examples(prm, calib_examples), calib_first_errors)
        threshold = best_threshold(curve)
        calibration = {
            "dataset": config.calibration_dataset,
            "num_solutions": len(calib_examples),
            "threshold": threshold,
            "f1": next(row["f1"] for row in curve if row["threshold"] == threshold),
        }
        logger.info("Threshold %.2f: best ProcessBench F1 on %s", threshold, config.calibration_dataset)
    calibration_compute = _compute(prm, prm.num_tokens_encoded, prm.num_tokens_requested)
    step_scores = _score_examples(prm, examples)
    predicted = [first_error_from_scores(s, threshold) for s in step_scores]
    step_truth = [step_labels_from_first_error(len(e.steps), f) for e, f in zip(examples, first_errors)]
    flat_scores = [s for row in step_scores for s in row]
    flat_truth = [t for row in step_truth for t in row]
    solution_correct = [int(f == -1) for f in first_errors]
    eval_compute = _compute(
        prm,
        prm.num_tokens_encoded - calibration_compute["verifier_tokens"],
        prm.num_tokens_requested - calibration_compute["verifier_tokens_requested"],
    )

    metrics: dict[str, Any] = {
        "stage": "eval-prm",
        "prm": config.prm,
        "dataset": config.dataset,
        "dataset_format": kind,
        "gold": gold,
        "threshold": threshold,
        "threshold_calibration": calibration,
        "num_solutions": len(examples),
        "num_steps": len(flat_scores),
        "processbench": processbench_metrics(predicted, first_errors),
        # For plots and honesty about the threshold: every cut-off on this (test) data.
        "processbench_by_threshold": processbench_by_threshold(step_scores, first_errors),
        "step_roc_auc": _optional_auc(flat_scores, flat_truth, "step"),
        "solution_roc_auc": {
            how: _optional_auc([aggregate(s, how) for s in step_scores], solution_correct, "solution")
            for how in AGGREGATIONS
        },
        "label_agreement": None,
        "best_of_n": None,
    }
    if gold != "labels" and all(e.mc_labels is not None for e in examples):
        metrics["label_agreement"] = {"against": gold, **label_agreement(examples, first_errors)}

    metrics["compute"] = {"calibration": calibration_compute, "step_eval": eval_compute}
    if samples is not None:
        separator = config.step_separator or _prm_step_separator(prm, config.prm)
        metrics["best_of_n"] = _evaluate_best_of_n(prm, samples, config.aggregation, separator)
        metrics["compute"]["best_of_n"] = _compute(
            prm,
            prm.num_tokens_encoded - eval_compute["verifier_tokens"] - calibration_compute["verifier_tokens"],
            prm.num_tokens_requested
            - eval_compute["verifier_tokens_requested"]
            - calibration_compute["verifier_tokens_requested"],
        )
    metrics["compute"]["total"] = _compute(prm, prm.num_tokens_encoded, prm.num_tokens_requested)
    metrics["config"] = config_to_dict(config)

    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_resolved_config(out, "eval-prm", config)
    write_json(out / "prm_eval.json", metrics)
    _log_summary(metrics, out)
    return {"output_dir": str(out), **metrics}


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def _log_summary(metrics: dict[str, Any], out: Path) -> None:
    pb = metrics["processbench"]
    logger.info(
        "ProcessBench F1 %s (error acc %s on %d, correct acc %s on %d); step ROC-AUC %s; solution ROC-AUC %s",
        _fmt(pb["f1"]),
        _fmt(pb["error_accuracy"]),
        pb["num_erroneous"],
        _fmt(pb["correct_accuracy"]),
        pb["num_correct"],
        _fmt(metrics["step_roc_auc"]),
        ", ".join(f"{how} {_fmt(v)}" for how, v in metrics["solution_roc_auc"].items()),
    )
    if metrics["label_agreement"]:
        agreement = metrics["label_agreement"]
        logger.info(
            "MC labels vs %s: first bad step agrees on %s of solutions, hard labels on %s of steps",
            agreement["against"],
            _fmt(agreement["first_error_agreement"]),
            _fmt(agreement["step_agreement"]),
        )
    if metrics["best_of_n"]:
        bon = metrics["best_of_n"]
        logger.info(
            "Best-of-N at N=%d: weighted %s, plain %s, majority %s, oracle %s",
            bon["n"][-1],
            _fmt(bon["weighted_best_of_n"][-1]),
            _fmt(bon["best_of_n"][-1]),
            _fmt(bon["majority_vote"][-1]),
            _fmt(bon["oracle"][-1]),
        )
    total = metrics["compute"]["total"]
    logger.info(
        "PRM scored %d tokens (%.3g FLOPs) -> %s", total["verifier_tokens"], total["verifier_flops"], out
    )
