"""The end every training stage shares: resume, train, evaluate, save the final model as a plain
checkpoint, write ``training_log.json``, push once.

A trainer finds its resume point (:func:`resume_point`) and takes the Hub options off its config
(:meth:`~ttcompute.trainers.hub.HubUpload.take_from`) before it builds its Trainer, then hands both to
a :class:`TrainingRun` and calls :func:`finish_training` (or, with a log of its own,
:func:`train_and_save` and :func:`write_log_and_push`). Training reports through ``logging`` and the
progress bar (:func:`report_through_logging`), never as dicts printed to stdout.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import PrinterCallback, ProgressCallback, Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_utils import TrainOutput

from ttcompute.trainers.hub import HubUpload, push_folder
from ttcompute.trainers.launch import training_summary, without_zero3_init
from ttcompute.trainers.resume import last_complete_checkpoint

TRAINING_LOG = "training_log.json"

logger = logging.getLogger(__name__)


class LogLinesCallback(TrainerCallback):
    """Each of the Trainer's logs (loss, learning rate, evaluation metrics, the final summary) as one
    ``logging`` line naming the stage and the step: transformers prints them as raw dicts
    (``PrinterCallback``, or ``ProgressCallback`` under its bar), which landed in the middle of
    ``ttc demo``'s summary on stdout and bypassed ``TTC_LOG_LEVEL``."""

    def __init__(self, stage: str) -> None:
        self.stage = stage

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or not state.is_world_process_zero:
            return
        # total_flos: transformers' FLOPs estimate; ours is in training_log.json.
        values = format_metrics({key: value for key, value in logs.items() if key != "total_flos"})
        logger.info("%s step %d/%d: %s", self.stage, state.global_step, state.max_steps, values)


def format_metrics(metrics: dict[str, Any]) -> str:
    """Metrics as a log line reads them (not a dict's repr, with its 17 digits).

    >>> format_metrics({"eval_loss": 0.69194668, "eval_num_steps": 12})
    'eval_loss 0.6919, eval_num_steps 12'
    """
    if not metrics:
        return "none"
    return ", ".join(
        f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}"
        for key, value in metrics.items()
    )


class BarWithoutLogs(ProgressCallback):
    """transformers' progress bar, minus the log dicts it writes under itself (:class:`LogLinesCallback`
    logs them)."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        pass


def report_through_logging(trainer: Trainer, stage: str) -> None:
    """Training progress through ``logging`` and the progress bar only, and no warning a run can do
    nothing about.

    * The bar (unless ``--disable_tqdm``) stays; the log dicts go to :class:`LogLinesCallback`.
    * ``dataloader_pin_memory`` is turned off where no accelerator exists: pinned host memory only
      speeds up copies to a device, and torch warned on every dataloader it made (six in `ttc demo --fast`).
    """
    had_bar = trainer.pop_callback(ProgressCallback) is not None  # BarWithoutLogs too: a rerun is a no-op
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(LogLinesCallback)
    if had_bar:
        trainer.add_callback(BarWithoutLogs)
    trainer.add_callback(LogLinesCallback(stage))
    if trainer.args.dataloader_pin_memory and not has_accelerator():
        trainer.args.dataloader_pin_memory = False


def has_accelerator() -> bool:
    """What torch's DataLoader checks before it warns that pinning is pointless (``torch.accelerator``
    is torch >= 2.6; before it, pinned memory meant CUDA)."""
    accelerator = getattr(torch, "accelerator", None)
    return accelerator.is_available() if accelerator is not None else torch.cuda.is_available()


def match_eval_strategy(config: TrainingArguments, has_eval_data: bool, stage_logger: logging.Logger) -> None:
    """Evaluate exactly when there is evaluation data: held-out data turns evaluation on (at the
    checkpoints), and none turns a recipe's ``eval_strategy`` off (``--eval_fraction 0`` with
    ``eval_strategy: steps`` in the YAML: the Trainer would refuse to start)."""
    if has_eval_data and config.eval_strategy == "no":
        config.eval_strategy = "steps" if config.save_strategy == "steps" else "epoch"
        config.eval_steps = config.eval_steps or config.save_steps
    elif not has_eval_data and config.eval_strategy != "no":
        stage_logger.info(
            "No evaluation data: not evaluating (eval_strategy %s ignored)", config.eval_strategy
        )
        config.eval_strategy = "no"


def resume_point(config: TrainingArguments, stage_logger: logging.Logger) -> str | None:
    """The checkpoint a run resumes from: the newest complete one in ``output_dir``, none with
    ``--overwrite_output_dir``. Logged with ``stage_logger``, so the line names the stage."""
    checkpoint = None if config.overwrite_output_dir else last_complete_checkpoint(config.output_dir)
    if checkpoint:
        stage_logger.info("Resuming from %s", checkpoint)
    return checkpoint


@dataclass
class TrainingRun:
    """A built Trainer and what its stage's finish does beyond training and saving.

    Attributes:
        stage: ``train-prm``, ``train-reviser`` ...: the logged command's stage, the Hub commit message.
        trainer: The built Trainer; its ``args.output_dir`` receives the final model.
        resume_from: What :func:`resume_point` found.
        num_parameters: The model's, counted before LoRA wrapped it.
        hub: The Hub options for the single push at the end; None: the stage never pushes.
        merge_lora: Turns the adapter saved in ``output_dir`` into a plain checkpoint (rank 0 only);
            None: no adapter.
        model_card: Write the Trainer's model card (README.md).
        save_tokenizer: Also save the tokenizer, on every rank, after the model.
    """

    stage: str
    trainer: Trainer
    resume_from: str | None
    num_parameters: int
    hub: HubUpload | None = None
    merge_lora: Callable[[], None] | None = None
    model_card: bool = True
    save_tokenizer: bool = False

    @property
    def out(self) -> Path:
        """The output directory: checkpoints, then the final model and its log."""
        return Path(self.trainer.args.output_dir)


def train_and_save(run: TrainingRun) -> tuple[TrainOutput, dict[str, float], float]:
    """Train (resuming), evaluate when there is evaluation data, and leave the final model in
    ``output_dir``: LoRA merged, model card written, no pickled arguments.

    Returns the training result, the evaluation metrics ({} without evaluation data) and the time
    training started.
    """
    trainer, out = run.trainer, run.out
    report_through_logging(trainer, run.stage)
    started = time.time()
    result = trainer.train(resume_from_checkpoint=run.resume_from)
    metrics = trainer.evaluate() if trainer.eval_dataset is not None else {}
    trainer.save_model(str(out))  # gathers ZeRO-3 partitions; with LoRA it writes the adapter
    if run.save_tokenizer:
        trainer.processing_class.save_pretrained(str(out))
    if trainer.is_world_process_zero():
        if run.merge_lora is not None:
            with without_zero3_init(trainer.args, always=True):
                run.merge_lora()
        if run.model_card:
            trainer.create_model_card()
    # A pickle beside safetensors weights invites torch.load; the resolved config is ttc_config.yaml.
    (out / "training_args.bin").unlink(missing_ok=True)
    return result, metrics, started


def write_log_and_push(run: TrainingRun, log: dict[str, Any]) -> None:
    """On rank 0: write ``training_log.json``, then push the folder when the Hub options ask for it
    (with their token, which no file holds)."""
    if not run.trainer.is_world_process_zero():
        return
    (run.out / TRAINING_LOG).write_text(json.dumps(log, indent=2))
    if run.hub is not None and run.hub.push_to_hub:
        push_folder(run.out, run.hub, f"ttc {run.stage}")


def finish_training(run: TrainingRun, log_extras: dict[str, Any]) -> dict[str, Any]:
    """:func:`train_and_save`, then the log of a stage that evaluates: the run's summary (see
    :func:`~ttcompute.trainers.launch.training_summary`), the stage's ``log_extras``, the evaluation
    metrics under ``eval``; written and pushed by :func:`write_log_and_push`. Returns the log."""
    result, metrics, started = train_and_save(run)
    log = {
        **training_summary(run.stage, run.trainer, result, run.num_parameters, started),
        **log_extras,
        "eval": metrics,
    }
    write_log_and_push(run, log)
    return log
