"""``ttc train-prm``: a process reward model trained on soft Monte Carlo step labels (Snell et al., Sec. 5.1).

Read top to bottom: rows in the stepwise-supervision shape (``prompt``, ``completions`` = steps,
``labels`` = one value per step) -> :meth:`PRMTrainer.tokenize` (each step followed by the separator,
its label on the separator's last token, -100 everywhere else) -> :class:`StepLabelCollator` ->
:meth:`PRMTrainer.compute_loss` (binary cross-entropy of one logit per labelled token against the
soft target: the paper's loss; TRL's removed PRMTrainer only took integer labels).

The saved checkpoint is a plain ``AutoModelForTokenClassification`` (LoRA merged) whose
``config.ttc_prm`` and model card state the separator, the label position and the prompt template,
so any tool can score with it: ``sigmoid(logits[i, label_position])``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
import yaml
from transformers import (
    AutoModelForTokenClassification,
    AutoTokenizer,
    EvalPrediction,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Trainer,
    set_seed,
)

from ttcompute.core.errors import InputError
from ttcompute.trainers.data import load_stepwise_dataset, split_by_problem
from ttcompute.trainers.launch import (
    check_deepspeed_active,
    init_deepspeed_comm,
    launch_command,
    training_summary,
    without_zero3_init,
)
from ttcompute.trainers.prm_config import PRMConfig
from ttcompute.trainers.resume import last_complete_checkpoint

logger = logging.getLogger(__name__)

TRAINING_LOG = "training_log.json"
IGNORE = -100.0


# The columns of a tokenized example, fixed: `Dataset.map` otherwise keeps an input column's feature
# type for an output column of the same name, and bool ``labels`` turned every -100 into True.
TOKENIZED_FEATURES = datasets.Features(
    {
        "input_ids": datasets.Sequence(datasets.Value("int64")),
        "labels": datasets.Sequence(datasets.Value("float32")),
        "truncated": datasets.Value("bool"),
    }
)
_LABEL_TYPES = (bool, int, float, np.bool_, np.integer, np.floating)


def validate_stepwise_rows(dataset: datasets.Dataset, where: str, separator: str) -> None:
    """Reject rows a PRM cannot learn from, naming the row and field; nothing is trained or written.

    Checks: ``prompt`` is text; ``completions`` is a non-empty list of non-empty steps without the
    separator inside them; ``labels`` has one finite value in [0, 1] (bool, int, float or numpy) per
    step.
    """
    missing = {"prompt", "completions", "labels"} - set(dataset.column_names)
    if missing:
        raise InputError(
            f"{where}: missing column(s) {sorted(missing)}; PRM data needs prompt, completions (steps), labels"
        )
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
                    "split it into steps (or set --step_separator)"
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


def with_float_labels(dataset: datasets.Dataset) -> datasets.Dataset:
    """``dataset`` with its ``labels`` column cast to lists of float64, whatever they held (bool,
    int, float): TRL's stepwise datasets and ``ttc orm-data`` store bools, ``ttc label`` floats, and
    every step after this sees one type (a bool column would silently turn soft targets into bools).
    """
    target = datasets.Sequence(datasets.Value("float64"))
    if dataset.features["labels"] == target:
        return dataset
    return dataset.cast_column("labels", target)


class StepLabelCollator:
    """Right-pads ``input_ids`` (pad id) and the float ``labels`` (-100) of a batch."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        longest = max(len(f["input_ids"]) for f in features)
        input_ids = torch.full((len(features), longest), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(features), longest), dtype=torch.long)
        labels = torch.full((len(features), longest), IGNORE, dtype=torch.float32)
        for row, f in enumerate(features):
            n = len(f["input_ids"])
            input_ids[row, :n] = torch.tensor(f["input_ids"])
            attention_mask[row, :n] = 1
            labels[row, :n] = torch.tensor(f["labels"], dtype=torch.float32)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


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
    import pyarrow.compute as pc

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


class PRMTrainer(Trainer):
    """A `transformers.Trainer` for token-classification PRMs on soft (or bool) step labels.

    Args:
        model: An ``AutoModelForTokenClassification`` with ``num_labels=1``.
        args: :class:`PRMConfig`.
        train_dataset / eval_dataset: Stepwise-supervision rows (validated, then tokenized here).
        processing_class: The tokenizer.
        peft_config: A ``peft.LoraConfig`` to train adapters; the score head is added to its
            ``modules_to_save`` so it trains in full.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        args: PRMConfig,
        train_dataset: datasets.Dataset,
        processing_class: PreTrainedTokenizerBase,
        eval_dataset: datasets.Dataset | None = None,
        peft_config=None,
        **kwargs,
    ) -> None:
        if peft_config is not None:
            model = _wrap_peft(model, peft_config)
        self.num_truncated = 0
        tokenized = [
            self._prepare(d, processing_class, args, name)
            for d, name in ((train_dataset, "train"), (eval_dataset, "eval"))
        ]
        super().__init__(
            model=model,
            args=args,
            train_dataset=tokenized[0],
            eval_dataset=tokenized[1],
            processing_class=processing_class,
            data_collator=StepLabelCollator(processing_class.pad_token_id),
            compute_metrics=kwargs.pop("compute_metrics", step_metrics),
            **kwargs,
        )

    def _prepare(self, dataset, tokenizer, args: PRMConfig, name: str):
        if dataset is None:
            return None
        validate_stepwise_rows(dataset, name, args.step_separator)
        dataset = with_float_labels(dataset)
        tokenized = dataset.map(
            self.tokenize,
            fn_kwargs={
                "tokenizer": tokenizer,
                "step_separator": args.step_separator,
                "max_length": args.max_length,
                "train_on_last_step_only": args.train_on_last_step_only,
            },
            remove_columns=dataset.column_names,
            features=TOKENIZED_FEATURES,
            desc=f"Tokenizing {name}",
        )
        targets = check_labelled_positions(dataset, tokenized, args.train_on_last_step_only, name)
        truncated = int(sum(tokenized["truncated"]))
        unlabelled = int((targets == 0).sum())
        if truncated:
            logger.warning(
                "%s: %d of %d examples longer than max_length=%d were truncated from the right "
                "(their last steps lose their labels); %d kept no label at all and are dropped",
                name,
                truncated,
                len(tokenized),
                args.max_length,
                unlabelled,
            )
        if name == "train":
            self.num_truncated = truncated
        if unlabelled:
            tokenized = tokenized.select(np.flatnonzero(targets > 0))
        return tokenized.remove_columns("truncated")

    @staticmethod
    def tokenize(
        features: dict[str, Any],
        tokenizer: PreTrainedTokenizerBase,
        step_separator: str,
        max_length: int,
        train_on_last_step_only: bool = False,
    ) -> dict[str, Any]:
        """Token ids of prompt + steps (each followed by the separator); a label on the last token of
        each separator, -100 elsewhere; truncated from the right to ``max_length``.

        >>> from ttcompute.models.tiny import build_char_tokenizer
        >>> row = {"prompt": "Q\\n", "completions": ["1+1=2", "A"], "labels": [True, 0.25]}
        >>> out = PRMTrainer.tokenize(row, build_char_tokenizer(), "\\n\\n", max_length=64)
        >>> [(i, v) for i, v in enumerate(out["labels"]) if v != -100]   # BOS Q \\n 1+1=2 \\n \\n A \\n \\n
        [(9, 1.0), (12, 0.25)]
        """
        from ttcompute.models.prm import encode_steps

        steps = features["completions"]
        input_ids, positions = encode_steps(tokenizer, features["prompt"], steps, step_separator)
        targets = [float(v) for v in features["labels"]]
        if train_on_last_step_only:
            positions, targets = positions[-1:], targets[-1:]
        labels = [IGNORE] * len(input_ids)
        for position, target in zip(positions, targets):
            labels[position] = target
        truncated = len(input_ids) > max_length
        return {
            "input_ids": input_ids[:max_length],
            "labels": labels[:max_length],
            "truncated": truncated,
        }

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        logits = outputs.logits.squeeze(-1).float()  # (batch, seq): one logit per token
        mask = labels != IGNORE
        # Sum over labelled steps, normalised by the labelled steps of the whole (accumulated) batch,
        # so gradient accumulation and uneven step counts weigh every step the same.
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            logits[mask], labels[mask], reduction="sum"
        )
        denominator = mask.sum() if num_items_in_batch is None else num_items_in_batch
        loss = loss / torch.clamp(torch.as_tensor(denominator, device=loss.device, dtype=loss.dtype), min=1)
        if num_items_in_batch is not None and self.args.n_gpu > 1:
            loss = loss * self.args.n_gpu
        return (loss, outputs) if return_outputs else loss

    def _get_num_items_in_batch(self, batch_samples, device):
        # The base class counts labels != -100 the same way; ours are float labels.
        count = sum(int((batch["labels"] != IGNORE).sum()) for batch in batch_samples)
        count = torch.tensor(count, device=device)
        if self.args.average_tokens_across_devices and self.args.world_size > 1:
            count = self.accelerator.gather(count).sum()
        return count

    def create_model_card(self, model_name: str | None = None, **kwargs) -> None:
        """Write README.md stating everything a user needs to score with this PRM without our code."""
        if not self.is_world_process_zero():
            return
        card = prm_model_card(
            self.args,
            getattr(self.model.config, "ttc_prm", {}),
            model_name or Path(self.args.output_dir).name,
        )
        (Path(self.args.output_dir) / "README.md").write_text(card)


def _wrap_peft(model: PreTrainedModel, peft_config):
    from peft import get_peft_model

    head = "score" if hasattr(model, "score") else "classifier"
    modules_to_save = list(peft_config.modules_to_save or [])
    if head not in modules_to_save:
        peft_config.modules_to_save = modules_to_save + [head]
    model = get_peft_model(model, peft_config)
    trainable, total = model.get_nb_trainable_parameters()
    logger.info("LoRA: %d of %d parameters trainable (score head in full)", trainable, total)
    return model


def merge_lora_checkpoint(out: Path, config: PRMConfig, metadata: dict[str, Any]) -> None:
    """Turn ``out`` (a LoRA adapter) into a plain token-classification checkpoint, score head included
    (see :func:`ttcompute.trainers.lora.merge_lora_checkpoint`)."""
    from ttcompute.trainers.lora import merge_lora_checkpoint as merge

    def load_base():
        return AutoModelForTokenClassification.from_pretrained(
            config.model_name_or_path,
            num_labels=1,
            trust_remote_code=config.trust_remote_code,
            use_safetensors=True,
        )

    merge(out, load_base, {"ttc_prm": metadata})


def push_prm(out: Path, config: PRMConfig) -> str:
    """Upload the final checkpoint and its model card (not the intermediate checkpoints) to the Hub;
    the token is never written to a file."""
    from ttcompute.trainers.hub import push_folder

    return push_folder(out, config, "ttc train-prm")


def lora_config(config: PRMConfig):
    """The ``peft.LoraConfig`` that ``--use_peft`` asks for (token classification task)."""
    from ttcompute.trainers.lora import lora_config as build

    return build(config, "TOKEN_CLS")


def prm_model_card(args: PRMConfig, metadata: dict[str, Any], model_name: str) -> str:
    """A Hub model card (YAML header + usage) for a PRM trained here."""
    separator = metadata.get("step_separator", args.step_separator)
    template = metadata.get("prompt_template", args.prompt_template)
    base = args.model_name_or_path
    data = args.dataset_name
    header = {
        "library_name": "transformers",
        "pipeline_tag": "token-classification",
        "tags": ["process-reward-model", "prm", "ttcompute"],
        "base_model": base,
    }
    if data and not Path(data).exists():
        header["datasets"] = [data]
    lines = ["---", yaml.safe_dump(header, sort_keys=False).strip(), "---"]
    kind = "outcome reward model (last step only)" if args.train_on_last_step_only else "process reward model"
    return "\n".join(
        lines
        + [
            "",
            f"# {model_name}",
            "",
            f"A {kind} trained with ttcompute (`ttc train-prm`) on Monte Carlo step",
            "labels (soft targets, binary cross-entropy, as in Snell et al. 2024).",
            "",
            "## How to score a solution (no ttcompute needed)",
            "",
            f"- **Base policy / base model:** `{base}`",
            f"- **Training data:** `{data}`",
            f"- **Prompt:** the question formatted with `{template!r}` (Python `str.format`, field `question`).",
            f"- **Step separator:** `{separator!r}`, appended after *every* step, the last one included.",
            "- **Label token position:** the *last token of each step separator*. Tokenize the prompt with",
            "  special tokens, then each `step + separator` piece separately without special tokens, and",
            "  concatenate (so pieces never merge across a step boundary).",
            "- **Score of step i:** `sigmoid(logits[label_position_i, 0])`: the estimated probability that",
            "  the solution so far leads to a correct answer. Aggregate over steps with the last step's",
            "  score (the paper's choice), or min / product.",
            "",
            "```python",
            "import torch",
            "from transformers import AutoModelForTokenClassification, AutoTokenizer",
            "",
            f'tok = AutoTokenizer.from_pretrained("{model_name}")',
            f'model = AutoModelForTokenClassification.from_pretrained("{model_name}")',
            f"sep = {separator!r}",
            f"ids = tok({template!r}.format(question=question)).input_ids",
            "positions = []",
            "for step in steps:",
            "    ids += tok(step + sep, add_special_tokens=False).input_ids",
            "    positions.append(len(ids) - 1)",
            "logits = model(torch.tensor([ids])).logits[0, :, 0]",
            "step_scores = torch.sigmoid(logits[positions]).tolist()",
            "```",
            "",
            "The same facts are in `config.json` under `ttc_prm`.",
            "",
            "## Training",
            "",
            f"- learning rate {args.learning_rate}, epochs {args.num_train_epochs}, batch size per device "
            f"{args.per_device_train_batch_size}, max length {args.max_length}, LoRA: {args.use_peft}",
            "",
        ]
    )


def check_prompt_template(dataset: datasets.Dataset, template: str, where: str) -> None:
    """The stored template must rebuild the data's prompts, or scoring would see other inputs."""
    if "question" not in dataset.column_names:
        return
    for i, (question, prompt) in enumerate(zip(dataset["question"][:100], dataset["prompt"][:100])):
        if template.format(question=question) != prompt:
            raise InputError(
                f"{where}: row {i}: prompt {prompt!r} is not --prompt_template {template!r} applied to the "
                "question; pass the template the samples were drawn with"
            )


def train_prm(config: PRMConfig) -> dict[str, Any]:
    """Train (or resume) a PRM and save a plain token-classification checkpoint with its model card."""
    from ttcompute.core.config import save_resolved_config
    from ttcompute.models.prm import ttc_prm_metadata
    from ttcompute.models.tiny import count_parameters

    if not config.model_name_or_path:
        raise InputError("ttc train-prm: --model_name_or_path (the base model) is required")
    if not config.dataset_name:
        raise InputError("ttc train-prm: --dataset_name (stepwise-supervision data) is required")
    if config.prm_kind == "likelihood" and config.push_to_hub and Path(config.model_name_or_path).exists():
        raise InputError(
            "ttc train-prm: a likelihood PRM refers to its base model, and a local path means nothing on "
            "the Hub; push the base model first and pass its Hub id as --model_name_or_path"
        )
    train_dataset = load_stepwise_dataset(config.dataset_name, config.dataset_split)
    # Validate everything before the first file is written.
    validate_stepwise_rows(train_dataset, config.dataset_name, config.step_separator)
    check_prompt_template(train_dataset, config.prompt_template, config.dataset_name)
    train_dataset = with_float_labels(train_dataset)
    eval_dataset = None
    if config.eval_dataset_name:
        eval_dataset = load_stepwise_dataset(config.eval_dataset_name, config.dataset_split)
        validate_stepwise_rows(eval_dataset, config.eval_dataset_name, config.step_separator)
        eval_dataset = with_float_labels(eval_dataset)
    elif config.eval_fraction > 0:
        train_dataset, eval_dataset = split_by_problem(train_dataset, config.eval_fraction, config.seed)
    if eval_dataset is not None and config.eval_strategy == "no":
        config.eval_strategy = "steps" if config.save_strategy == "steps" else "epoch"
        config.eval_steps = config.eval_steps or config.save_steps

    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_resolved_config(out, "train-prm", config)
    if config.prm_kind == "likelihood":
        return fit_likelihood_prm(config, train_dataset, eval_dataset, out)

    last_checkpoint = None if config.overwrite_output_dir else last_complete_checkpoint(out)
    if last_checkpoint:
        logger.info("Resuming from %s", last_checkpoint)
    init_deepspeed_comm()
    tokenizer = AutoTokenizer.from_pretrained(
        config.model_name_or_path, trust_remote_code=config.trust_remote_code
    )
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    # The score head (and LoRA adapters) are drawn from torch's global RNG here, before the Trainer
    # seeds it: unseeded, the same command gave a different PRM on every run.
    set_seed(config.seed)
    with without_zero3_init(config):
        model = AutoModelForTokenClassification.from_pretrained(
            config.model_name_or_path,
            num_labels=1,
            trust_remote_code=config.trust_remote_code,
            use_safetensors=True,
        )
    model.config.pad_token_id = tokenizer.pad_token_id
    model.config.ttc_prm = ttc_prm_metadata(
        config.step_separator,
        config.prompt_template,
        base_model=config.model_name_or_path,
        dataset=config.dataset_name,
        train_on_last_step_only=config.train_on_last_step_only,
    )
    num_params = count_parameters(model)
    # We push once, at the end, the merged checkpoint and its card; the Trainer's own pushes would
    # upload every intermediate checkpoint (and, with LoRA, only the unmerged adapter).
    push_to_hub, config.push_to_hub = config.push_to_hub, False
    # Checkpoints pickle their arguments (training_args.bin): keep the token out of them.
    hub_token, config.hub_token = config.hub_token, None
    trainer = PRMTrainer(
        model=model,
        args=config,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=lora_config(config) if config.use_peft else None,
    )
    check_deepspeed_active(trainer)
    logger.info(
        "Training a %d-parameter PRM on %d solutions (%d held out)",
        num_params,
        len(trainer.train_dataset),
        0 if trainer.eval_dataset is None else len(trainer.eval_dataset),
    )
    start = time.time()
    result = trainer.train(resume_from_checkpoint=last_checkpoint)
    metrics = trainer.evaluate() if trainer.eval_dataset is not None else {}
    trainer.save_model(str(out))  # gathers ZeRO-3 partitions; with LoRA it writes the adapter
    if trainer.is_world_process_zero():
        if config.use_peft:
            with without_zero3_init(config, always=True):
                merge_lora_checkpoint(out, config, model.config.ttc_prm)
        trainer.create_model_card()
        (out / "training_args.bin").unlink(missing_ok=True)
    log = {
        **training_summary("train-prm", trainer, result, num_params, start),
        "num_train_examples": len(trainer.train_dataset),
        "num_truncated_examples": trainer.num_truncated,
        "eval": metrics,
    }
    if trainer.is_world_process_zero():
        (out / TRAINING_LOG).write_text(json.dumps(log, indent=2))
        if push_to_hub:
            config.hub_token = hub_token
            push_prm(out, config)
    if trainer.is_world_process_zero():
        logger.info("PRM saved to %s (train loss %.4f, eval %s)", out, result.training_loss, metrics)
    return log


def fit_likelihood_prm(
    config: PRMConfig, train_dataset: datasets.Dataset, eval_dataset: datasets.Dataset | None, out: Path
) -> dict[str, Any]:
    """``--prm_kind likelihood``: fit the calibration of the base LM's step log-probabilities on the labels."""
    from transformers import AutoModelForCausalLM

    from ttcompute.models.likelihood_prm import LikelihoodPRM, fit_calibration, save_likelihood_prm

    start = time.time()
    tokenizer = AutoTokenizer.from_pretrained(
        config.model_name_or_path, trust_remote_code=config.trust_remote_code
    )
    model = AutoModelForCausalLM.from_pretrained(
        config.model_name_or_path, trust_remote_code=config.trust_remote_code, use_safetensors=True
    )
    # Each training solution is scored once: no point caching prefixes.
    raw = LikelihoodPRM(
        model,
        tokenizer,
        step_separator=config.step_separator,
        prompt_template=config.prompt_template,
        reuse_prefixes=False,
    )
    questions = _questions(train_dataset, config.prompt_template)
    features = raw.features(questions, train_dataset["completions"])
    labels = [[float(v) for v in row] for row in train_dataset["labels"]]
    if config.train_on_last_step_only:
        features, labels = [f[-1:] for f in features], [y[-1:] for y in labels]
    weight, bias = fit_calibration(features, labels)
    metrics: dict[str, Any] = {}
    if eval_dataset is not None and len(eval_dataset):
        eval_features = raw.features(
            _questions(eval_dataset, config.prompt_template), eval_dataset["completions"]
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
    save_likelihood_prm(
        out,
        {
            "base_model": config.model_name_or_path,
            "step_separator": config.step_separator,
            "prompt_template": config.prompt_template,
            "weight": weight,
            "bias": bias,
            "feature": "running min over steps 0..i of the lowest token log-probability of a step",
            "dataset": config.dataset_name,
        },
    )
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
        push_prm(out, config)
    logger.info("Likelihood PRM: sigmoid(%.3f x + %.3f) -> %s (eval %s)", weight, bias, out, metrics)
    return log


def _questions(dataset: datasets.Dataset, template: str) -> list[str]:
    """The questions of stepwise rows: the ``question`` column, else the prompt minus the template."""
    if "question" in dataset.column_names:
        return list(dataset["question"])
    prefix, _, suffix = template.partition("{question}")
    out = []
    for i, prompt in enumerate(dataset["prompt"]):
        if not (prompt.startswith(prefix) and prompt.endswith(suffix)):
            raise InputError(f"row {i}: prompt {prompt!r} does not match --prompt_template {template!r}")
        out.append(prompt[len(prefix) : len(prompt) - len(suffix)] if suffix else prompt[len(prefix) :])
    return out
