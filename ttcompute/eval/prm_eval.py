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

import copy
import itertools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm
from transformers import PretrainedConfig

from ttcompute.core.budget import ComputeSpent
from ttcompute.core.config import config_to_dict, save_resolved_config
from ttcompute.core.errors import InputError
from ttcompute.core.recorded_paths import RECORDED_PATHS, record_tree
from ttcompute.core.shards import MANIFEST, load_sharded, write_json
from ttcompute.core.steps import AGGREGATIONS, aggregate
from ttcompute.eval.prm_eval_config import EvalPRMConfig
from ttcompute.eval.prm_metrics import (
    best_of_n_accuracy,
    best_threshold,
    first_error_from_labels,
    first_error_from_scores,
    processbench_by_threshold,
    processbench_metrics,
    step_labels_from_first_error,
    step_roc_auc,
    within_problem_ranking,
)
from ttcompute.models.prm import score_solutions
from ttcompute.models.prm_formats import load_prm
from ttcompute.tasks.arithmetic import STEP_SEPARATOR, first_wrong_step, parse_question
from ttcompute.tasks.sources import MalformedRow, read_rows

logger = logging.getLogger(__name__)

_PROCESSBENCH_COLUMNS = ("problem", "steps", "label")
_STEPWISE_COLUMNS = ("question", "completions", "labels")
# Rows (or sampled candidates) per PRM call: only sets how often the progress bar moves; the PRM
# batches by tokens itself. Candidates of one problem go in one call so their shared prompt is reused.
_ROWS_PER_CALL = 64
_CANDIDATES_PER_CALL = 256


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
    if (Path(dataset) / MANIFEST).is_file():
        table = load_sharded(dataset)
        if limit is not None:
            table = table.select(range(min(limit, len(table))))
        return [(f"{dataset}: row {i}", row) for i, row in enumerate(table.to_list())]
    rows = []
    for where, row in itertools.islice(read_rows(dataset, split)[1], limit):
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
    columns = ["question", "completions", "answers", "correct"]
    samples = load_sharded(samples_dir)
    for column in columns:
        if column not in samples.column_names:
            raise InputError(f"{samples_dir}: missing column '{column}' (not ttc sample output?)")
    if limit is not None:
        samples = samples.select(range(min(limit, len(samples))))
    rows = samples.select_columns(columns).to_list()
    if not rows:
        raise InputError(f"{samples_dir}: no problems; best-of-N needs sampled solutions")
    for index, row in enumerate(rows):
        if not row["completions"]:
            raise InputError(f"{samples_dir}: row {index}: field 'completions' is empty")
        if not len(row["completions"]) == len(row["answers"]) == len(row["correct"]):
            raise InputError(f"{samples_dir}: row {index}: completions, answers, correct differ in length")
    return rows


def _evaluate_best_of_n(prm, rows: list[dict[str, Any]], aggregation: str, separator: str) -> dict[str, Any]:
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
    ranking = within_problem_ranking(scores, [row["correct"] for row in rows])
    return {"num_problems": len(rows), "aggregation": aggregation, **curve, "within_problem": ranking}


def _prm_step_separator(prm, prm_path: str) -> str:
    """The separator the PRM was trained with (``ttc_prm`` metadata), else the blank line."""
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
        # The PRM's own separator; --step_separator (which splits the samples) served before it existed.
        step_separator=config.step_separator
        if config.prm_step_separator is None
        else config.prm_step_separator,
        prompt_contract=config.prm_prompt_contract(),
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
    # The PRM and data it names relative to the file (core/recorded_paths.py): the run can move.
    recorded = copy.deepcopy(metrics)
    recorded[RECORDED_PATHS] = record_tree(recorded, out)
    write_json(out / "prm_eval.json", recorded)
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
        ranking = bon["within_problem"]
        logger.info(
            "Within a problem: correct outscores wrong with AUC %s (%d problems with both); the top-scored "
            "candidate is correct on %s of the %d problems with a correct one",
            _fmt(ranking["auc"]),
            ranking["problems_with_both"],
            _fmt(ranking["top1"]),
            ranking["problems_with_correct"],
        )
    total = metrics["compute"]["total"]
    logger.info(
        "PRM scored %d tokens (%.3g FLOPs) -> %s", total["verifier_tokens"], total["verifier_flops"], out
    )
