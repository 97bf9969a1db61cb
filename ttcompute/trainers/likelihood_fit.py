"""``ttc train-prm --prm_kind likelihood``: no Trainer; two numbers fitted on the step labels.

The base causal LM's running-minimum token log-probability of the steps is the feature, and
``sigmoid(weight * feature + bias)`` the step score (``ttcompute/models/likelihood_prm.py``); the
saved folder holds only that calibration and the base model's id.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import datasets
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, EvalPrediction

from ttcompute.core.checkpoint_identity import checkpoint_identity
from ttcompute.core.errors import InputError
from ttcompute.core.prompts import PromptContract
from ttcompute.core.recorded_paths import resolve_options
from ttcompute.models.likelihood_prm import LikelihoodPRM, fit_calibration, save_likelihood_prm
from ttcompute.trainers.hub import HubUpload, push_folder
from ttcompute.trainers.launch import launch_command
from ttcompute.trainers.model_cards import likelihood_prm_card
from ttcompute.trainers.prm_config import PRMConfig
from ttcompute.trainers.stepwise_data import step_metrics
from ttcompute.trainers.training_run import TRAINING_LOG, format_metrics

logger = logging.getLogger(__name__)


def fit_likelihood_prm(
    config: PRMConfig, train_dataset: datasets.Dataset, eval_dataset: datasets.Dataset | None, out: Path
) -> dict[str, Any]:
    """``--prm_kind likelihood``: fit the calibration of the base LM's step log-probabilities on the labels."""
    start = time.time()
    tokenizer = AutoTokenizer.from_pretrained(
        config.model_name_or_path, trust_remote_code=config.trust_remote_code
    )
    model = AutoModelForCausalLM.from_pretrained(
        config.model_name_or_path, trust_remote_code=config.trust_remote_code, use_safetensors=True
    )
    # Each training solution is scored once: no point caching prefixes.
    contract = PromptContract(config.prompt_template, config.use_chat_template, config.system_prompt)
    raw = LikelihoodPRM(
        model, tokenizer, step_separator=config.step_separator, contract=contract, reuse_prefixes=False
    )
    questions = _questions(train_dataset, contract)
    features = raw.features(questions, train_dataset["completions"])
    labels = [[float(v) for v in row] for row in train_dataset["labels"]]
    if config.train_on_last_step_only:
        features, labels = [f[-1:] for f in features], [y[-1:] for y in labels]
    weight, bias = fit_calibration(features, labels)
    metrics: dict[str, Any] = {}
    if eval_dataset is not None and len(eval_dataset):
        eval_features = raw.features(
            _questions(eval_dataset, contract),
            eval_dataset["completions"],
        )
        eval_labels = [[float(v) for v in row] for row in eval_dataset["labels"]]
        if config.train_on_last_step_only:  # evaluated on what it was fitted for, as the other kind is
            eval_features, eval_labels = [f[-1:] for f in eval_features], [y[-1:] for y in eval_labels]
        x = torch.tensor([v for row in eval_features for v in row], dtype=torch.float64)
        y = torch.tensor([v for row in eval_labels for v in row], dtype=torch.float64)
        logits = weight * x + bias
        # The same step metrics the token-classification PRM logs during training.
        step = step_metrics(EvalPrediction(predictions=logits.numpy(), label_ids=y.numpy()))
        metrics = {
            "eval_loss": float(torch.nn.functional.binary_cross_entropy_with_logits(logits, y)),
            **{f"eval_{name}": value for name, value in step.items()},
        }
    spec_path = save_likelihood_prm(
        out,
        {
            "base_model": config.model_name_or_path,
            # What it was calibrated over, wherever the base's files go (core/checkpoint_identity.py).
            "base_model_identity": checkpoint_identity(config.model_name_or_path),
            "step_separator": config.step_separator,
            **contract.to_dict(),
            "weight": weight,
            "bias": bias,
            "feature": "running min over steps 0..i of the lowest token log-probability of a step",
            "dataset": config.dataset_name,
        },
    )
    spec = resolve_options(json.loads(spec_path.read_text()), spec_path)  # the card names the base as given
    (out / "README.md").write_text(likelihood_prm_card(config, spec, config.hub_model_id or out.name))
    log = {
        "command": launch_command("train-prm"),
        "prm_kind": "likelihood",
        "num_parameters": raw.num_parameters,
        "num_train_examples": len(train_dataset),
        "weight": weight,
        "bias": bias,
        "feature_tokens": raw.num_tokens_encoded,
        "feature_flops": 2 * raw.num_parameters * raw.num_tokens_encoded,
        "training_flops": 0,  # two numbers fitted; the cost is the feature pass above
        "train_runtime_s": round(time.time() - start, 1),
        "eval": metrics,
    }
    (out / TRAINING_LOG).write_text(json.dumps(log, indent=2))
    if config.push_to_hub:
        push_folder(out, HubUpload.of(config), "ttc train-prm")
    logger.info(
        "Likelihood PRM: sigmoid(%.3f x + %.3f) -> %s (%s)", weight, bias, out, format_metrics(metrics)
    )
    return log


def _questions(dataset: datasets.Dataset, contract: PromptContract) -> list[str]:
    """The questions of stepwise rows: the ``question`` column, else the prompt minus the template."""
    if "question" in dataset.column_names:
        return list(dataset["question"])
    template = contract.prompt_template
    if contract.use_chat_template:
        raise InputError(
            "data without a question column: a chat-template prompt does not give the question back"
        )
    prefix, _, suffix = template.partition("{question}")
    out = []
    for i, prompt in enumerate(dataset["prompt"]):
        if not (prompt.startswith(prefix) and prompt.endswith(suffix)):
            raise InputError(f"row {i}: prompt {prompt!r} does not match --prompt_template {template!r}")
        out.append(prompt[len(prefix) : len(prompt) - len(suffix)] if suffix else prompt[len(prefix) :])
    return out
