"""The end every training stage shares: resume, train, evaluate, save the final model as a plain
checkpoint, write ``training_log.json``, push once.

A trainer finds its resume point (:func:`resume_point`) and takes the Hub options off its config
(:meth:`~ttcompute.trainers.hub.HubUpload.take_from`) before it builds its Trainer, then hands both to
a :class:`TrainingRun` and calls :func:`finish_training` (or, with a log of its own,
:func:`train_and_save` and :func:`write_log_and_push`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import Trainer, TrainingArguments
from transformers.trainer_utils import TrainOutput

from ttcompute.trainers.hub import HubUpload, push_folder
from ttcompute.trainers.launch import training_summary, without_zero3_init
from ttcompute.trainers.resume import last_complete_checkpoint

TRAINING_LOG = "training_log.json"


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
