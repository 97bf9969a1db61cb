"""Stepwise-supervision rows for ``ttc train-prm`` (``prompt``, ``completions`` = steps, ``labels`` =
one value per step): validation, one label type, the check that tokenized targets are the rows'
labels, and the step metrics both PRM kinds report."""

from __future__ import annotations

import math
from collections.abc import Sequence

import datasets
import numpy as np
import pyarrow.compute as pc
from transformers import EvalPrediction

from ttcompute.core.errors import InputError, option
from ttcompute.core.prompts import PromptContract, contract_options
from ttcompute.models.generation import build_prompt

# The label of a token that is no step's target.
IGNORE = -100.0
_LABEL_TYPES = (bool, int, float, np.bool_, np.integer, np.floating)


def validate_stepwise_rows(dataset: datasets.Dataset, where: str, separator: str) -> None:
    """Reject rows a PRM cannot learn from, naming the row and field; nothing is trained or written.

    Checks: there are rows; ``prompt`` is text; ``completions`` is a non-empty list of non-empty
    steps without the separator inside them; ``labels`` has one finite value in [0, 1] (bool, int,
    float or numpy) per step.
    """
    missing = {"prompt", "completions", "labels"} - set(dataset.column_names)
    if missing:
        raise InputError(
            f"{where}: missing column(s) {sorted(missing)}; PRM data needs prompt, completions (steps), labels"
        )
    if len(dataset) == 0:
        raise InputError(f"{where}: no rows; PRM data needs at least one labelled solution")
    for i, (prompt, steps, labels) in enumerate(
        zip(dataset["prompt"], dataset["completions"], dataset["labels"])
    ):
        at = f"{where}: row {i}"
        if not isinstance(prompt, str):
            raise InputError(f"{at}, field prompt: expected text, got {type(prompt).__name__}")
        if isinstance(steps, str) or not isinstance(steps, (Sequence, np.ndarray)):
            raise InputError(f"{at}, field completions: expected a list of steps, got {type(steps).__name__}")
        if len(steps) == 0:
            raise InputError(f"{at}, field completions: no steps")
        for j, step in enumerate(steps):
            if not isinstance(step, str) or not step.strip():
                raise InputError(f"{at}, field completions[{j}]: empty step")
            if separator in step:
                raise InputError(
                    f"{at}, field completions[{j}]: contains the step separator {separator!r}; "
                    f"split it into steps (or set {option('step_separator')})"
                )
        if isinstance(labels, str) or not isinstance(labels, (Sequence, np.ndarray)):
            raise InputError(f"{at}, field labels: expected a list, got {type(labels).__name__}")
        if len(labels) != len(steps):
            raise InputError(f"{at}, field labels: {len(labels)} labels for {len(steps)} steps")
        for j, label in enumerate(labels):
            if not isinstance(label, _LABEL_TYPES):
                raise InputError(f"{at}, field labels[{j}]: expected a number or bool, got {label!r}")
            if not (math.isfinite(label) and 0 <= label <= 1):
                raise InputError(f"{at}, field labels[{j}]: {label!r} is not a value in [0, 1]")


def check_prompt_template(
    dataset: datasets.Dataset, contract: PromptContract, where: str, tokenizer=None
) -> None:
    """The prompt contract to be stored must rebuild the data's prompts, or scoring would see other
    inputs (``tokenizer``: the base model's, for the chat template)."""
    if "question" not in dataset.column_names:
        if contract.use_chat_template:
            return  # the question cannot be taken back out of a rendered conversation
        # The prompts must still be the template's text around a question: its fixed head and tail.
        head, _, tail = contract.prompt_template.partition("{question}")
        for i, prompt in enumerate(dataset["prompt"][:100]):
            if not (prompt.startswith(head) and prompt.endswith(tail) and len(prompt) >= len(head + tail)):
                raise InputError(
                    f"{where}: row {i}: prompt {prompt[:80]!r} is not {option('prompt_template')} "
                    f"{contract.prompt_template!r} around a question (the data has no question column)"
                )
        return
    for i, (question, prompt) in enumerate(zip(dataset["question"][:100], dataset["prompt"][:100])):
        if build_prompt(question, contract, tokenizer) != prompt:
            raise InputError(
                f"{where}: row {i}: prompt {prompt[:80]!r} is not the question under the prompt contract "
                f"({contract.describe()}); pass the contract the samples were drawn with ({contract_options()})"
            )


def with_float_labels(dataset: datasets.Dataset) -> datasets.Dataset:
    """``dataset`` with its ``labels`` column cast to lists of float64, whatever they held (bool,
    int, float): TRL's stepwise datasets and ``ttc orm-data`` store bools, ``ttc label`` floats, and
    every step after this sees one type (a bool column would silently turn soft targets into bools).
    """
    target = datasets.Sequence(datasets.Value("float64"))
    if dataset.features["labels"] == target:
        return dataset
    return dataset.cast_column("labels", target)


def constant_label(dataset: datasets.Dataset, last_step_only: bool = False) -> float | None:
    """The one value every step label of ``dataset`` holds (every last step's, with
    ``last_step_only``: what training sees), or None when they differ. Labels as
    :func:`with_float_labels` leaves them.

    >>> rows = datasets.Dataset.from_dict({"labels": [[1.0, 0.0], [1.0, 0.0]]})
    >>> constant_label(rows), constant_label(rows, last_step_only=True)
    (None, 0.0)
    """
    labels = dataset.with_format("arrow")[:]["labels"]
    values = np.asarray(pc.list_flatten(labels), dtype=np.float64)
    if last_step_only:
        values = values[np.cumsum(pc.list_value_length(labels).to_numpy()) - 1]
    if values.size == 0 or values.min() != values.max():
        return None
    return float(values[0])


def check_labelled_positions(
    rows: datasets.Dataset, tokenized: datasets.Dataset, last_step_only: bool, name: str
) -> np.ndarray:
    """Every untruncated example carries exactly one target per step (one with ``last_step_only``),
    in order, each equal to that step's label. Returns each example's number of targets.

    A guard against silent type changes on the way to the trainer: when ``Dataset.map`` kept a bool
    feature type, every token became a positive target and training went on, diluted.

    Raises:
        RuntimeError: naming the first example whose targets are not its labels.
    """
    got = tokenized.with_format("arrow")[:]
    want = rows.with_format("arrow")[:]["labels"]
    lengths = pc.list_value_length(got["labels"]).to_numpy()
    flat = np.asarray(pc.list_flatten(got["labels"]))
    row = np.repeat(np.arange(len(lengths)), lengths)
    is_target = flat != IGNORE
    counts = np.bincount(row[is_target], minlength=len(lengths))
    want_lengths = pc.list_value_length(want).to_numpy()
    want_flat = np.asarray(pc.list_flatten(want), dtype=np.float64)
    if last_step_only:
        want_flat, want_lengths = want_flat[np.cumsum(want_lengths) - 1], np.ones_like(want_lengths)
    whole = ~np.asarray(got["truncated"])
    wrong = np.flatnonzero(whole & (counts != want_lengths))
    if wrong.size:
        i = int(wrong[0])
        raise RuntimeError(
            f"{name}: example {i} has {counts[i]} labelled tokens for {want_lengths[i]} labelled steps "
            f"({wrong.size} examples like it): the labels changed type on the way to the trainer"
        )
    got_values = flat[is_target][whole[row[is_target]]]
    want_values = want_flat[whole[np.repeat(np.arange(len(want_lengths)), want_lengths)]]
    if not np.array_equal(got_values, want_values.astype(np.float32)):
        raise RuntimeError(f"{name}: the targets on the labelled tokens are not the step labels")
    return counts


def step_metrics(eval_pred: EvalPrediction) -> dict[str, float]:
    """Step-level metrics at the labelled positions: accuracy of (p > 0.5) against (target > 0.5),
    mean squared error of p against the soft target, and the fraction predicted positive."""
    logits, labels = eval_pred.predictions, eval_pred.label_ids
    logits = np.asarray(logits, dtype=np.float64).reshape(labels.shape)
    mask = labels != IGNORE
    probs = 1 / (1 + np.exp(-logits[mask]))
    targets = labels[mask]
    return {
        "step_accuracy": float(np.mean((probs > 0.5) == (targets > 0.5))),
        "step_mse": float(np.mean((probs - targets) ** 2)),
        "step_predicted_positive": float(np.mean(probs > 0.5)),
        "num_steps": int(mask.sum()),
    }
