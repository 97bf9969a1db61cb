"""The token-classification PRM's learning curve on the built-in arithmetic task.

Does ``ttc train-prm --prm_kind token_classification`` (the paper's PRM: a one-logit head on the step
separator, BCE on soft labels) learn to find the first wrong step with 10-100x more steps or data
than ``configs/prm.yaml`` gives the demo? Each configuration is one ``ttc train-prm`` run of up to
``--max_steps``, scored at log-spaced steps along the run with ``ttc eval-prm`` itself (step ROC-AUC
against the exact step checker, ProcessBench first-error F1 with the threshold calibrated on separate
problems), so every number is the metric eval-prm reports.

Data, all built with the real stages under ``--out`` (default ``runs/prm_curve``):

* ``train_samples``: ``ttc sample`` of the small policy, problem seed 5000 (768 problems x 8);
* ``train_mc_labels``: ``ttc label`` of it (16 rollouts, 2 solutions per problem: ~2x the demo's);
* ``train_checker.parquet``: the same solutions with exact checker labels (1 before the first wrong
  step, 0 from it on: :func:`~ttcompute.tasks.arithmetic.first_wrong_step`);
* ``big_samples`` -> ``train_checker_big.parquet``: many more solutions (2,000 problems x 8, seed 5000),
  checker-labelled (free);
* ``heldout.parquet`` (seed 6000, 200 x 4) and ``calib.parquet`` (seed 8000, 60 x 4): checker-labelled
  stepwise rows, the held-out set and the threshold's calibration set (gold: the checker).

A configuration is named ``BASE-MODE-LABELS-LR[@STEPS]``: base ``small``/``large`` (the policy the
PRM starts from), mode ``full``/``lora`` (``--use_peft true``), labels ``mc``/``checker``/``big``
(``train_mc_labels``, ``train_checker.parquet``, ``train_checker_big.parquet``), the peak learning
rate, and the run's ``--max_steps`` (cosine schedule over the whole run, as configs/prm.yaml).

Mid-run scoring: a callback (added to the stage's trainer) saves the live model at each curve step as
a plain token-classification checkpoint -- LoRA merged, ``config.ttc_prm`` included, so
``load_prm`` reads it like the final one -- and runs ``ttc eval-prm`` on it. The Trainer's own
``checkpoint-N`` directories are only resume points (a LoRA one holds an adapter, which load_prm
cannot read).

Resumable: a finished data stage, a finished run (``training_log.json``) and a scored point
(``points/step-N/prm_eval.json``) are skipped; an interrupted run resumes from its last checkpoint.

Outputs: ``OUT/learning_curve.json``, ``OUT/learning_curve.md``, ``OUT/learning_curve.png``; bootstrap
intervals (over held-out problems) for the last point of each configuration, and a no-model reference
row: each step scored by the training set's P(prefix correct | number of operations, step index) -- the
bar a PRM must clear to have learned more than where errors tend to sit.

Usage:
    OMP_NUM_THREADS=1 python bench/prm_learning_curve.py [--out runs/prm_curve] [--configs ...]
        [--max_steps N] [--report_only] [--smoke]
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

logger = logging.getLogger("prm_learning_curve")

POLICIES = {"small": "ttcompute/checkpoints/policy_small", "large": "ttcompute/checkpoints/policy_large"}
LABEL_DATA = {"mc": "train_mc_labels", "checker": "train_checker.parquet", "big": "train_checker_big.parquet"}
CURVE_STEPS = (100, 250, 500, 1000, 2500, 5000, 10000, 20000)
# Chosen from the seconds per step measured at one thread of a shared 2-core machine (see
# bench/README.md): small 0.065 full / 0.10 LoRA, large 0.42 full, so that the grid fits about an hour.
# The large base runs to 2,500 steps (10,000 would take 70 min by itself); one small run per label
# source reaches 10,000. Short runs first, so a stopped bench still has them.
DEFAULT_CONFIGS = (
    "small-full-mc-1e-3@2000",
    "small-full-checker-1e-3@2000",
    "small-lora-big-1e-3@1000",
    "large-full-big-1e-4@250",
    "small-full-big-1e-3@10000",
    "large-full-big-1e-4@2500",
    "small-full-mc-1e-3@10000",
    "small-full-big-1e-4@5000",
)
SMOKE_CONFIGS = (
    "small-full-mc-1e-3@12",
    "small-lora-big-1e-3@12",
    "large-full-checker-1e-4@12",
    "large-lora-big-1e-3@12",
)


@dataclass
class Sizes:
    """How much data each stage makes (problems x samples)."""

    train_problems: int = 768
    train_samples: int = 8
    mc_solutions_per_problem: int = 2
    mc_rollouts: int = 16
    big_problems: int = 2000
    big_samples: int = 8
    heldout_problems: int = 200
    heldout_samples: int = 4
    calib_problems: int = 60
    calib_samples: int = 4


SMOKE_SIZES = Sizes(16, 4, 2, 4, 32, 4, 16, 2, 12, 2)


@dataclass
class RunConfig:
    """One row of the grid, parsed from its name."""

    name: str
    base: str
    mode: str
    labels: str
    learning_rate: float
    max_steps: int

    @classmethod
    def parse(cls, spec: str, max_steps: int | None) -> RunConfig:
        match = re.fullmatch(
            r"(small|large)-(full|lora)-(mc|checker|big)-([0-9.]+e-?[0-9]+)(?:@(\d+))?", spec
        )
        if match is None:
            raise SystemExit(
                f"bad config {spec!r}: want BASE-MODE-LABELS-LR[@STEPS], e.g. small-full-big-1e-4@5000"
            )
        base, mode, labels, lr, steps = match.groups()
        steps = int(steps) if steps else 10000
        if max_steps is not None:
            steps = max_steps
        return cls(f"{base}-{mode}-{labels}-{lr}@{steps}", base, mode, labels, float(lr), steps)

    @property
    def dirname(self) -> str:
        return self.name.replace("@", "_steps")


# --- data -----------------------------------------------------------------------------------------


def run_stage(stage: str, argv: list[str]) -> Any:
    from ttcompute.cli import run_stage as ttc_run_stage

    logger.info("ttc %s %s", stage, " ".join(argv))
    return ttc_run_stage(stage, argv)


def stage_done(directory: Path) -> bool:
    return (directory / "stats.json").is_file()


def sample(out: Path, name: str, seed: int, problems: int, samples: int) -> Path:
    target = out / name
    if stage_done(target):
        logger.info("%s: done, skipped", target)
        return target
    run_stage(
        "sample",
        [
            "--config", "configs/sample.yaml", "--model_name_or_path", POLICIES["small"],
            "--problem_seed", str(seed), "--num_problems", str(problems), "--num_samples", str(samples),
            "--output_dir", str(target),
        ],
    )  # fmt: skip
    return target


def checker_rows(question: str, problem_id: str, prompt: str, completions: list[str]) -> list[dict[str, Any]]:
    """Stepwise rows of one problem's solutions, labelled by the exact step checker."""
    from ttcompute.eval.prm_metrics import step_labels_from_first_error
    from ttcompute.tasks.arithmetic import first_wrong_step, split_steps

    rows = []
    for index, text in enumerate(completions):
        steps = split_steps(text)
        if not steps:
            continue
        wrong = first_wrong_step(question, steps)
        labels = step_labels_from_first_error(len(steps), -1 if wrong is None else wrong)
        rows.append(
            {
                "prompt": prompt,
                "completions": steps,
                "labels": [float(v) for v in labels],
                "question": question,
                "problem_id": problem_id,
                "sample_index": index,
                "correct": wrong is None,
            }
        )
    return rows


def write_rows(rows: list[dict[str, Any]], path: Path) -> None:
    import datasets

    partial = path.with_suffix(".partial.parquet")
    datasets.Dataset.from_list(rows).to_parquet(str(partial))
    partial.rename(path)
    logger.info("%s: %d solutions, %d steps", path, len(rows), sum(len(r["labels"]) for r in rows))


def checker_dataset(samples_dir: Path, path: Path) -> Path:
    from ttcompute.core.shards import load_sharded

    if path.is_file():
        return path
    rows = []
    for row in load_sharded(samples_dir).to_list():
        rows += checker_rows(row["question"], row["problem_id"], row["prompt"], row["completions"])
    write_rows(rows, path)
    return path


def relabel_with_checker(mc_dir: Path, path: Path) -> Path:
    """The MC-labelled solutions, their labels replaced by the checker's (same solutions, exact labels)."""
    from ttcompute.core.shards import load_sharded
    from ttcompute.eval.prm_metrics import step_labels_from_first_error
    from ttcompute.tasks.arithmetic import first_wrong_step

    if path.is_file():
        return path
    rows = []
    for row in load_sharded(mc_dir).to_list():
        wrong = first_wrong_step(row["question"], row["completions"])
        labels = step_labels_from_first_error(len(row["completions"]), -1 if wrong is None else wrong)
        rows.append(
            {
                "prompt": row["prompt"],
                "completions": row["completions"],
                "labels": [float(v) for v in labels],
                "question": row["question"],
                "problem_id": row["problem_id"],
                "sample_index": row["sample_index"],
                "correct": wrong is None,
            }
        )
    write_rows(rows, path)
    return path


def build_data(out: Path, sizes: Sizes) -> dict[str, Any]:
    """Every dataset of the bench (skipping finished ones); returns their sizes and the MC labels'
    agreement with the checker."""
    import datasets

    from ttcompute.core.shards import load_sharded
    from ttcompute.eval.prm_metrics import first_error_from_labels

    train = sample(out, "train_samples", 5000, sizes.train_problems, sizes.train_samples)
    mc = out / LABEL_DATA["mc"]
    if stage_done(mc):
        logger.info("%s: done, skipped", mc)
    else:
        run_stage(
            "label",
            [
                "--config", "configs/label.yaml", "--samples_dir", str(train),
                "--num_rollouts", str(sizes.mc_rollouts),
                "--max_solutions_per_problem", str(sizes.mc_solutions_per_problem), "--output_dir", str(mc),
            ],
        )  # fmt: skip
    heldout = sample(out, "heldout_samples", 6000, sizes.heldout_problems, sizes.heldout_samples)
    calib = sample(out, "calib_samples", 8000, sizes.calib_problems, sizes.calib_samples)
    checker_dataset(heldout, out / "heldout.parquet")
    checker_dataset(calib, out / "calib.parquet")
    relabel_with_checker(mc, out / LABEL_DATA["checker"])
    big = sample(out, "big_samples", 5000, sizes.big_problems, sizes.big_samples)
    checker_dataset(big, out / LABEL_DATA["big"])

    summary: dict[str, Any] = {}
    for key, name in (*LABEL_DATA.items(), ("heldout", "heldout.parquet"), ("calib", "calib.parquet")):
        path = out / name
        table = load_sharded(path) if path.is_dir() else datasets.Dataset.from_parquet(str(path))
        summary[key] = {
            "path": str(path),
            "solutions": len(table),
            "problems": len(set(table["problem_id"])),
            "steps": sum(len(c) for c in table["completions"]),
        }
    mc_rows = load_sharded(mc).to_list()
    checker_rows_ = datasets.Dataset.from_parquet(str(out / LABEL_DATA["checker"])).to_list()
    same = [
        # eval-prm's reading of MC labels: the hard labels (correct siblings count as witnesses).
        first_error_from_labels(a["hard_labels"]) == first_error_from_labels(b["labels"])
        for a, b in zip(mc_rows, checker_rows_)
    ]
    summary["mc_first_error_agreement_with_checker"] = sum(same) / max(len(same), 1)
    heldout_questions = set(datasets.Dataset.from_parquet(str(out / "heldout.parquet"))["question"])
    for key in LABEL_DATA:
        path = out / LABEL_DATA[key]
        table = load_sharded(path) if path.is_dir() else datasets.Dataset.from_parquet(str(path))
        summary[key]["heldout_question_overlap"] = sum(q in heldout_questions for q in set(table["question"]))
    return summary


# --- training and the curve -----------------------------------------------------------------------


def curve_steps(max_steps: int, smoke: bool) -> list[int]:
    if smoke:
        return sorted({4, 8, max_steps})
    return sorted({s for s in CURVE_STEPS if s < max_steps} | {max_steps})


def eval_prm(prm_dir: Path, out: Path, data: Path) -> dict[str, Any]:
    target = out / "prm_eval.json"
    if not target.is_file():
        run_stage(
            "eval-prm",
            [
                "--prm", str(prm_dir), "--dataset", str(data / "heldout.parquet"), "--gold", "checker",
                "--calibration_dataset", str(data / "calib.parquet"), "--output_dir", str(out),
            ],
        )  # fmt: skip
    return json.loads(target.read_text())


def save_scorable(model, tokenizer, directory: Path) -> None:
    """The live model as a plain token-classification checkpoint: LoRA merged into a copy (the
    training model is untouched), ``config.ttc_prm`` carried over from the base's config."""
    from peft import PeftModel

    plain = copy.deepcopy(model).merge_and_unload() if isinstance(model, PeftModel) else model
    plain.save_pretrained(str(directory), safe_serialization=True)
    tokenizer.save_pretrained(str(directory))


def make_curve_trainer(
    base_trainer: type, run_dir: Path, steps: list[int], data: Path, spent: dict[str, float]
):
    """A subclass of the stage's PRMTrainer that scores the model at ``steps`` (a callback)."""
    from transformers import TrainerCallback

    class CurvePoints(TrainerCallback):
        def __init__(self, trainer) -> None:
            self.trainer = trainer

        def on_train_begin(self, args, state, control, **kwargs):
            spent["start"] = time.time()
            spent["eval"] = 0.0
            # Resumed: the seconds of the steps before this process, from the last scored point.
            done = [p for p in load_points(run_dir) if p["step"] <= state.global_step]
            spent["offset"] = max((p["train_seconds"] for p in done), default=0.0)

        def on_step_end(self, args, state, control, **kwargs):
            step = state.global_step
            if step not in steps or (run_dir / "points" / f"step-{step}" / "prm_eval.json").is_file():
                return
            began = time.time()
            train_seconds = spent["offset"] + began - spent["start"] - spent["eval"]
            point_dir = run_dir / "points" / f"step-{step}"
            model_dir = point_dir / "model"
            save_scorable(self.trainer.model, self.trainer.processing_class, model_dir)
            metrics = eval_prm(model_dir, point_dir, data)
            shutil.rmtree(model_dir)
            (point_dir / "point.json").write_text(
                json.dumps({"step": step, "train_seconds": round(train_seconds, 1), **point_metrics(metrics)})
            )
            spent["eval"] += time.time() - began
            logger.info(
                "%s step %d: step AUC %s, F1 %s (%.0f s training)",
                run_dir.name,
                step,
                _fmt(metrics["step_roc_auc"]),
                _fmt(metrics["processbench"]["f1"]),
                train_seconds,
            )

    class CurveTrainer(base_trainer):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.add_callback(CurvePoints(self))

    return CurveTrainer


def point_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    pb = metrics["processbench"]
    return {
        "step_roc_auc": metrics["step_roc_auc"],
        "f1": pb["f1"],
        "error_accuracy": pb["error_accuracy"],
        "correct_accuracy": pb["correct_accuracy"],
        "threshold": metrics["threshold"],
        "solution_roc_auc_min": metrics["solution_roc_auc"]["min"],
    }


def load_points(run_dir: Path) -> list[dict[str, Any]]:
    points = []
    for path in (run_dir / "points").glob("step-*/point.json"):
        point = json.loads(path.read_text())
        # Not a result (the threshold is chosen on the test data): how much of the F1 gap is the
        # calibration's, from eval-prm's F1 at every threshold of the held-out set.
        curve = json.loads((path.parent / "prm_eval.json").read_text())["processbench_by_threshold"]
        point["f1_best_threshold_on_heldout"] = max((row["f1"] or 0.0) for row in curve)
        points.append(point)
    return sorted(points, key=lambda p: p["step"])


def train(config: RunConfig, out: Path, smoke: bool) -> Path:
    """One ``ttc train-prm`` run with its curve points; skipped when its training_log.json exists."""
    import ttcompute.trainers.prm_trainer as prm_trainer

    run_dir = out / "runs" / config.dirname
    if (run_dir / "training_log.json").is_file():
        logger.info("%s: done, skipped", run_dir)
        return run_dir
    steps = curve_steps(config.max_steps, smoke)
    label_data = out / LABEL_DATA[config.labels]
    argv = [
        "--config", "configs/prm.yaml", "--model_name_or_path", POLICIES[config.base],
        "--dataset_name", str(label_data), "--output_dir", str(run_dir),
        "--max_steps", str(config.max_steps), "--learning_rate", str(config.learning_rate),
        "--use_peft", str(config.mode == "lora").lower(), "--seed", "0",
        # All the data trains; the curve's held-out set is scored by the callback.
        "--eval_fraction", "0", "--eval_strategy", "no",
        "--save_strategy", "steps", "--save_steps", str(max(config.max_steps // 10, 10)), "--save_total_limit", "1",
        "--logging_steps", str(max(config.max_steps // 50, 5)),
    ]  # fmt: skip
    spent: dict[str, float] = {}
    original = prm_trainer.PRMTrainer
    # train_prm builds its trainer from this module attribute: the subclass adds the curve callback
    # and leaves the stage's data loading, seeding, LoRA and saving exactly as `ttc train-prm` runs them.
    prm_trainer.PRMTrainer = make_curve_trainer(original, run_dir, steps, out, spent)
    try:
        run_stage("train-prm", argv)
    finally:
        prm_trainer.PRMTrainer = original
    return run_dir


# --- bootstrap, report, plot ----------------------------------------------------------------------


def bootstrap_last(run_dir: Path, out: Path, resamples: int) -> dict[str, Any]:
    """95% intervals of the final model's step AUC and F1 over held-out problems (the threshold
    stays the calibrated one, as in eval-prm)."""
    import numpy as np

    from ttcompute.core.bootstrap import paired_interval
    from ttcompute.eval.prm_eval import _score_examples, gold_first_errors, load_eval_examples
    from ttcompute.eval.prm_metrics import (
        first_error_from_scores,
        processbench_metrics,
        step_labels_from_first_error,
        step_roc_auc,
    )
    from ttcompute.models.prm_formats import load_prm

    target = run_dir / "bootstrap.json"
    if target.is_file():
        return json.loads(target.read_text())
    points = load_points(run_dir)
    threshold = points[-1]["threshold"]
    examples, _ = load_eval_examples(str(out / "heldout.parquet"))
    first_errors = gold_first_errors("checker", examples)
    scores = _score_examples(load_prm(str(run_dir)), examples)
    groups: dict[str, list[int]] = {}
    for i, example in enumerate(examples):
        groups.setdefault(example.question, []).append(i)
    problems = list(groups.values())

    def rows_of(draw: np.ndarray) -> list[int]:
        return [i for p in draw.astype(int) for i in problems[p]]

    def auc(x) -> float | None:
        rows = rows_of(x["problem"])
        flat_scores = [s for i in rows for s in scores[i]]
        truth = [t for i in rows for t in step_labels_from_first_error(len(scores[i]), first_errors[i])]
        return None if len(set(truth)) < 2 else step_roc_auc(flat_scores, truth)

    def f1(x) -> float | None:
        rows = rows_of(x["problem"])
        predicted = [first_error_from_scores(scores[i], threshold) for i in rows]
        return processbench_metrics(predicted, [first_errors[i] for i in rows])["f1"]

    outcomes = {"problem": list(range(len(problems)))}
    result = {
        "step": points[-1]["step"],
        "num_problems": len(problems),
        "step_roc_auc": paired_interval(outcomes, auc, num_resamples=resamples, seed=0),
        "f1": paired_interval(outcomes, f1, num_resamples=resamples, seed=0),
    }
    # The estimate is eval-prm's number recomputed: it must be the same.
    for key, metric in (("step_roc_auc", "step_roc_auc"), ("f1", "f1")):
        if points[-1][metric] is not None and not math.isclose(
            result[key]["estimate"], points[-1][metric], abs_tol=1e-6
        ):
            raise RuntimeError(
                f"{run_dir}: bootstrap {key} {result[key]['estimate']} != eval-prm {points[-1][metric]}"
            )
    target.write_text(json.dumps(result, indent=2))
    return result


def prior_baseline(out: Path) -> dict[str, Any]:
    """The bar a PRM must clear to have learned more than where errors tend to be: no model, each
    step scored by the big training set's P(prefix correct | number of operations, step index),
    through the same metrics (threshold calibrated the same way)."""
    import datasets

    from ttcompute.eval.prm_metrics import (
        best_threshold,
        first_error_from_labels,
        first_error_from_scores,
        processbench_by_threshold,
        processbench_metrics,
        step_roc_auc,
    )
    from ttcompute.tasks.arithmetic import parse_question

    def rows(name: str) -> list[dict[str, Any]]:
        return datasets.Dataset.from_parquet(str(out / name)).select_columns(["question", "labels"]).to_list()

    def num_ops(question: str) -> int:
        return len(parse_question(question)[1])

    sums: dict[tuple[int, int], list[float]] = {}
    for row in rows(LABEL_DATA["big"]):
        for i, label in enumerate(row["labels"]):
            total = sums.setdefault((num_ops(row["question"]), i), [0.0, 0.0])
            total[0] += label
            total[1] += 1

    def scores(data: list[dict[str, Any]]) -> list[list[float]]:
        prior = {key: total / count for key, (total, count) in sums.items()}
        return [[prior.get((num_ops(r["question"]), i), 0.0) for i in range(len(r["labels"]))] for r in data]

    heldout, calib = rows("heldout.parquet"), rows("calib.parquet")
    calib_errors = [first_error_from_labels(r["labels"]) for r in calib]
    threshold = best_threshold(processbench_by_threshold(scores(calib), calib_errors))
    heldout_scores = scores(heldout)
    heldout_errors = [first_error_from_labels(r["labels"]) for r in heldout]
    curve = processbench_by_threshold(heldout_scores, heldout_errors)
    return {
        "step_roc_auc": step_roc_auc(
            [s for row in heldout_scores for s in row], [int(v) for r in heldout for v in r["labels"]]
        ),
        "f1": processbench_metrics(
            [first_error_from_scores(s, threshold) for s in heldout_scores], heldout_errors
        )["f1"],
        "threshold": threshold,
        "f1_best_threshold_on_heldout": max((row["f1"] or 0.0) for row in curve),
    }


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _interval(ci: dict[str, Any] | None) -> str:
    return "" if not ci or ci["low"] is None else f" [{ci['low']:.3f}, {ci['high']:.3f}]"


def write_report(
    out: Path, results: list[dict[str, Any]], data: dict[str, Any], prior: dict[str, Any] | None = None
) -> str:
    lines = [
        "| config | base | mode | labels | #train solutions | lr | step | step AUC | F1 | threshold "
        "| F1 at best held-out threshold | train s | s/step |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    if prior is not None:
        lines.append(
            f"| prior P(correct \\| #ops, step index), no model | - | - | big | {data['big']['solutions']} | - | - "
            f"| {_fmt(prior['step_roc_auc'])} | {_fmt(prior['f1'])} | {prior['threshold']:.2f} "
            f"| {_fmt(prior['f1_best_threshold_on_heldout'])} | - | - |"
        )
    for result in results:
        c = result["config"]
        name = c["name"] if result["finished"] else f"{c['name']} (stopped)"
        for point in result["points"]:
            last = point is result["points"][-1]
            ci = result.get("bootstrap") if last else None
            lines.append(
                f"| {name} | {c['base']} | {c['mode']} | {c['labels']} | {result['num_train_solutions']} "
                f"| {c['learning_rate']:g} | {point['step']} "
                f"| {_fmt(point['step_roc_auc'])}{_interval(ci and ci['step_roc_auc'])} "
                f"| {_fmt(point['f1'])}{_interval(ci and ci['f1'])} | {point['threshold']:.2f} "
                f"| {_fmt(point['f1_best_threshold_on_heldout'])} "
                f"| {point['train_seconds']:.0f} | {point['train_seconds'] / point['step']:.3f} |"
            )
    table = "\n".join(lines)
    header = [
        "# Token-classification PRM learning curve (arithmetic task)",
        "",
        "Held-out: "
        f"{data['heldout']['solutions']} solutions of {data['heldout']['problems']} problems (seed 6000); "
        f"threshold calibrated on {data['calib']['solutions']} solutions (seed 8000); gold: the step checker. "
        "Step AUC: step ROC-AUC against prefix correctness; F1: ProcessBench first-error F1 "
        "(both from `ttc eval-prm`). Last point of each config: 95% bootstrap interval over held-out problems. "
        f"MC labels' first error agrees with the checker on {data['mc_first_error_agreement_with_checker']:.3f} "
        "of the MC-labelled solutions. F1 at best held-out threshold: an upper bound, not a result (the cut-off "
        "is chosen on the test data). Train s: training seconds up to the step (scoring excluded), one thread.",
        "",
    ]
    (out / "learning_curve.md").write_text("\n".join(header) + "\n" + table + "\n")
    return table


def plot(out: Path, results: list[dict[str, Any]], prior: dict[str, Any] | None = None) -> Path:
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for result in results:
        points = result["points"]
        style = {"marker": "o", "markersize": 3, "label": result["config"]["name"]}
        style["linestyle"] = "--" if result["config"]["base"] == "large" else "-"
        for axis, metric in zip(axes, ("step_roc_auc", "f1")):
            kept = [p for p in points if p[metric] is not None]
            axis.plot([p["step"] for p in kept], [p[metric] for p in kept], **style)
    for axis, title in zip(axes, ("step ROC-AUC (vs checker)", "ProcessBench first-error F1")):
        axis.set_xscale("log")
        axis.set_xlabel("training step")
        axis.set_title(title)
        axis.grid(alpha=0.3)
    axes[0].axhline(0.5, color="#7f7f7f", linewidth=0.8, linestyle=":")
    if prior is not None:
        for axis, metric in zip(axes, ("step_roc_auc", "f1")):
            axis.axhline(prior[metric], color="black", linewidth=1.0, linestyle="-.", label="prior, no model")
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=8, frameon=False)
    figure.tight_layout(rect=(0, 0.06 + 0.03 * ((len(labels) - 1) // 4), 1, 1))
    path = out / "learning_curve.png"
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", default=None, help="output directory (runs/prm_curve; smoke: runs/prm_curve_smoke)"
    )
    parser.add_argument("--configs", nargs="+", default=None, help="BASE-MODE-LABELS-LR[@STEPS] ...")
    parser.add_argument("--max_steps", type=int, default=None, help="override every config's steps")
    parser.add_argument("--bootstrap_resamples", type=int, default=1000, help="0: no intervals")
    parser.add_argument("--data_only", action="store_true", help="build the data and stop")
    parser.add_argument(
        "--report_only",
        action="store_true",
        help="no training: tabulate the points scored so far (a stopped run too)",
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, 12 steps: checks the wiring")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))

    out = Path(args.out or ("runs/prm_curve_smoke" if args.smoke else "runs/prm_curve"))
    out.mkdir(parents=True, exist_ok=True)
    sizes = SMOKE_SIZES if args.smoke else Sizes()
    specs = args.configs or (SMOKE_CONFIGS if args.smoke else DEFAULT_CONFIGS)
    configs = [RunConfig.parse(spec, args.max_steps) for spec in specs]
    started = time.time()
    data = build_data(out, sizes)
    logger.info("data ready (%.0f s): %s", time.time() - started, json.dumps(data))
    if args.data_only:
        return 0

    results, table = [], ""
    prior = prior_baseline(out)
    logger.info("prior baseline (no model): %s", json.dumps(prior))
    for config in configs:
        run_dir = out / "runs" / config.dirname
        if not args.report_only:
            train(config, out, args.smoke)
        finished = (run_dir / "training_log.json").is_file()
        points = load_points(run_dir)
        if not points:
            continue
        log = json.loads((run_dir / "training_log.json").read_text()) if finished else {}
        result = {
            "config": asdict(config),
            "run_dir": str(run_dir),
            "finished": finished,
            "num_train_solutions": log.get("num_train_examples", data[config.labels]["solutions"]),
            "train_loss": log.get("train_loss"),
            "points": points,
        }
        if args.bootstrap_resamples and finished:
            result["bootstrap"] = bootstrap_last(run_dir, out, args.bootstrap_resamples)
        results.append(result)
        # Written after every run, so a stopped bench still leaves its table.
        (out / "learning_curve.json").write_text(
            json.dumps(
                {"sizes": asdict(sizes), "data": data, "prior_baseline": prior, "results": results}, indent=2
            )
        )
        table = write_report(out, results, data, prior)
        plot(out, results, prior)
    print(table)
    logger.info(
        "done in %.0f s: %s, %s", time.time() - started, out / "learning_curve.md", out / "learning_curve.png"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
