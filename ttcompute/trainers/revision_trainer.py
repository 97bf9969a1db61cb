"""``ttc train-reviser``: SFT of a reviser on revision trajectories (Snell et al., sec. 6.1).

Read top to bottom: trajectory rows (``question``, ``previous_attempts`` oldest first, ``completion``
= the correct solution), validated and fitted to ``max_length`` in
:mod:`~ttcompute.trainers.revision_data` (the reviser prompt of ``ttcompute/models/reviser.py``
rebuilt so that prompt + revision + EOS fit: the oldest attempts are dropped first, examples that
cannot fit are skipped; both are counted) -> TRL's ``SFTTrainer`` on plain ``prompt``/``completion``
rows, whose completion-only loss masks every prompt token (-100) and trains on the revision and its
EOS alone -> :func:`train_reviser`.

The saved checkpoint is a plain ``AutoModelForCausalLM`` (LoRA merged) whose ``config.ttc_reviser``
and model card state the prompt format, so any tool can generate revisions with it.
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, set_seed
from trl import SFTTrainer

from ttcompute.core.config import save_resolved_config
from ttcompute.core.errors import InputError
from ttcompute.core.prompts import PromptContract
from ttcompute.models.block_expansion import expand_blocks
from ttcompute.models.context_extension import extend_context
from ttcompute.models.generation import render_turn
from ttcompute.models.reviser import ATTEMPT_MARKER, FORMAT_VERSION, MAX_ATTEMPTS_IN_CONTEXT, REVISION_MARKER
from ttcompute.models.tiny import count_parameters
from ttcompute.models.weights import load_error
from ttcompute.trainers.hub import HubUpload
from ttcompute.trainers.launch import check_deepspeed_active, init_deepspeed_comm, without_zero3_init
from ttcompute.trainers.lora import lora_config, merge_lora_checkpoint
from ttcompute.trainers.model_cards import recorded_provenance, reviser_model_card
from ttcompute.trainers.revision_config import RevisionConfig
from ttcompute.trainers.revision_data import (
    check_reviser_format,
    fit_trajectories,
    tokenize_trajectories,
    validate_revision_rows,
)
from ttcompute.trainers.training_data import load_training_dataset, split_by_problem
from ttcompute.trainers.training_run import (
    TrainingRun,
    finish_training,
    format_metrics,
    match_eval_strategy,
    resume_point,
)

logger = logging.getLogger(__name__)

# A model config without max_position_embeddings: the tiny policies' context.
DEFAULT_MAX_LENGTH = 512


class RevisionTrainer(SFTTrainer):
    """TRL's ``SFTTrainer`` on fitted reviser rows (``prompt``, ``completion``).

    The loss is TRL's completion-only loss: prompt tokens are labelled -100, the revision and its EOS
    are trained; with ``loss_weights`` (``--copied_token_weight``) each revision token's loss is
    weighted. The model card states the reviser's prompt format.

    Args:
        fit_stats: The counts of :func:`fit_trajectories` for the model card.

    Every other argument is ``SFTTrainer``'s.
    """

    _tag_names = ["trl", "sft", "reviser", "ttcompute"]

    def __init__(self, *args, fit_stats: dict[str, int] | None = None, **kwargs) -> None:
        self.fit_stats = dict(fit_stats or {})
        super().__init__(*args, **kwargs)
        if not self.completion_only_loss:
            raise ValueError("a reviser trains on the revision only: completion_only_loss must be true")
        self.data_collator = _WeightsCollator(self.data_collator)

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        if "loss_weights" not in self._signature_columns:
            self._signature_columns = [*self._signature_columns, "loss_weights"]

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """TRL's loss, or with ``loss_weights`` (``--copied_token_weight`` < 1) the token-weighted
        cross-entropy of the revision, normalised by its token count as TRL's is. Evaluation loss is
        always TRL's, unweighted, so runs with and without the weights compare."""
        weights = inputs.pop("loss_weights", None)
        if weights is None or not model.training:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        labels = inputs["labels"]
        outputs = model(**{k: v for k, v in inputs.items() if k != "labels"}, use_cache=False)
        logits = outputs.logits[:, :-1].float()
        target = labels[:, 1:]
        per_token = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.size(-1)), target.reshape(-1), ignore_index=-100, reduction="none"
        ).view_as(target)
        num_tokens = (target != -100).sum() if num_items_in_batch is None else num_items_in_batch
        loss = (per_token * weights[:, 1:].to(per_token.dtype)).sum() / torch.as_tensor(num_tokens).clamp(
            min=1
        )
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes
        return (loss, outputs) if return_outputs else loss

    def create_model_card(self, model_name: str | None = None, **kwargs) -> None:
        """Write README.md stating everything a user needs to generate revisions without our code."""
        if not self.is_world_process_zero():
            return
        # The usage snippet loads the model by the id it will have on the Hub; TRL passes only the
        # last part of it as model_name.
        model_id = self.args.hub_model_id or model_name or Path(self.args.output_dir).name
        card = reviser_model_card(self.args, model_id, self.fit_stats, self.processing_class)
        (Path(self.args.output_dir) / "README.md").write_text(card)


class _WeightsCollator:
    """TRL's collator, plus ``loss_weights`` padded like the labels (right, with 0) when present."""

    def __init__(self, collator) -> None:
        self.collator = collator

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        weights = (
            [example.pop("loss_weights") for example in examples] if "loss_weights" in examples[0] else None
        )
        batch = self.collator(examples)
        if weights is not None:
            padded = torch.zeros(batch["input_ids"].shape, dtype=torch.float32)
            for row, values in enumerate(weights):
                padded[row, : len(values)] = torch.tensor(values, dtype=torch.float32)
            batch["loss_weights"] = padded
        return batch


def reviser_metadata(config: RevisionConfig, contract: PromptContract) -> dict[str, Any]:
    """The ``ttc_reviser`` dict stored on the checkpoint's config: how to build its prompts (the
    prompt contract of its data and the reviser format's version), read back by ``ttc search``."""
    return {
        "format": "ttcompute",
        "reviser_format": FORMAT_VERSION,
        **contract.to_dict(),
        "attempt_marker": ATTEMPT_MARKER,
        "revision_marker": REVISION_MARKER,
        "max_attempts_in_context": MAX_ATTEMPTS_IN_CONTEXT,
        "drop_rule": "oldest attempts first",
        "max_length": config.max_length,
        **recorded_provenance(config.output_dir, config.model_name_or_path, config.dataset_name),
    }


def model_context(config: RevisionConfig) -> int:
    """The reviser's context: the base model's (``max_position_embeddings``, or
    :data:`DEFAULT_MAX_LENGTH`), or ``--context_length`` where that raises it."""
    model_config = AutoConfig.from_pretrained(
        config.model_name_or_path, trust_remote_code=config.trust_remote_code
    )
    declared = getattr(model_config.get_text_config(), "max_position_embeddings", None)
    context = int(declared) if declared else DEFAULT_MAX_LENGTH
    if config.context_length is not None and config.context_length < context:
        raise InputError(
            f"ttc train-reviser: --context_length {config.context_length} is below the base's context of "
            f"{context} tokens (it only raises it; fit shorter prompts with --max_length)"
        )
    return max(context, config.context_length or 0)


def train_reviser(config: RevisionConfig) -> dict[str, Any]:
    """Train (or resume) a reviser and save a plain causal-LM checkpoint with its model card."""
    if not config.model_name_or_path:
        raise InputError("ttc train-reviser: --model_name_or_path (the policy to finetune) is required")
    if not config.dataset_name:
        raise InputError("ttc train-reviser: --dataset_name (ttc revisions output) is required")
    # Validate and fit everything before the first file is written.
    contract = config.resolve_prompt_contract(config.dataset_name, "ttc train-reviser")
    check_reviser_format(config.dataset_name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            config.model_name_or_path, trust_remote_code=config.trust_remote_code
        )
    except (OSError, ValueError) as err:
        hint = ""
        if str(config.model_name_or_path).rstrip("/").endswith("reviser_copy"):
            hint = " -- configs/reviser.yaml is stage 2: train stage 1 (configs/reviser_copy.yaml) first"
        raise InputError(
            f"ttc train-reviser: {load_error(config.model_name_or_path, 'the base', err)}{hint}"
        ) from None
    render_turn("{question}", contract, tokenizer)  # a chat contract on a tokenizer without one: refused
    train_rows = load_training_dataset(config.dataset_name, config.dataset_split)
    validate_revision_rows(train_rows, config.dataset_name, contract, tokenizer)
    eval_rows = None
    if config.eval_dataset_name:
        check_reviser_format(config.eval_dataset_name)
        eval_rows = load_training_dataset(config.eval_dataset_name, config.dataset_split)
        validate_revision_rows(eval_rows, config.eval_dataset_name, contract, tokenizer)
    elif config.eval_fraction > 0:
        train_rows, eval_rows = split_by_problem(
            train_rows, config.eval_fraction, config.seed, config.dataset_name
        )

    context = model_context(config)
    if config.max_length is None:
        config.max_length = context
    elif config.context_length is not None and config.max_length < config.context_length:
        # The reviser would declare a context it never trained at: ttc search would fill it.
        raise InputError(
            f"ttc train-reviser: --context_length {config.context_length} with --max_length "
            f"{config.max_length}: training would not reach the context the reviser declares; pass "
            f"--max_length {config.context_length} (or leave it unset)"
        )
    elif config.max_length > context:
        logger.warning(
            "max_length=%d exceeds the model's context of %d tokens: prompts are fitted to max_length, "
            "so longer ones reach positions the model was never trained on",
            config.max_length,
            context,
        )
    fit_args = (tokenizer, config.max_length, contract, config.eos_token)
    train_dataset, fit_stats = fit_trajectories(train_rows, *fit_args, name="train")
    if not len(train_dataset):
        raise InputError(
            f"{config.dataset_name}: no trajectory fits max_length={config.max_length} tokens even without "
            "previous attempts; raise --max_length"
        )
    eval_dataset, eval_fit_stats = None, {}
    if eval_rows is not None:
        eval_dataset, eval_fit_stats = fit_trajectories(eval_rows, *fit_args, name="eval")
        if not len(eval_dataset):
            logger.warning("No evaluation trajectory fits max_length=%d: not evaluating", config.max_length)
            eval_dataset = None
    match_eval_strategy(config, eval_dataset is not None, logger)

    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_resolved_config(out, "train-reviser", config)
    resume_from = resume_point(config, logger)

    def load_base() -> PreTrainedModel:
        base = AutoModelForCausalLM.from_pretrained(
            config.model_name_or_path, trust_remote_code=config.trust_remote_code, use_safetensors=True
        )
        # Inside load_base: a resumed run and the LoRA merge must see the same (deterministic) expansion.
        return extend_context(expand_blocks(base, config.expand_blocks), config.context_length)

    init_deepspeed_comm()
    set_seed(config.seed)  # LoRA adapters are drawn from torch's global RNG before the Trainer seeds it
    # Expanding copies whole blocks: under ZeRO-3 on GPUs too, load them whole (partitioned at start).
    with without_zero3_init(config, always=config.expand_blocks > 0):
        model = load_base()
    metadata = reviser_metadata(config, contract)
    model.config.ttc_reviser = metadata
    num_params = count_parameters(model)
    hub = HubUpload.take_from(config)
    # Tokenized here, not by TRL: a BOS a chat template wrote must not be doubled (revision_data.sft_example).
    train_dataset = tokenize_trajectories(
        train_dataset, tokenizer, config.eos_token, "train", copied_token_weight=config.copied_token_weight
    )
    if eval_dataset is not None:
        eval_dataset = tokenize_trajectories(eval_dataset, tokenizer, config.eos_token, "eval")
    trainer = RevisionTrainer(
        model=model,
        args=config,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=lora_config(config, "CAUSAL_LM") if config.use_peft else None,
        fit_stats=fit_stats,
    )
    check_deepspeed_active(trainer)
    logger.info(
        "Training a %d-parameter reviser on %d trajectories (%d held out), max_length %d",
        num_params,
        len(trainer.train_dataset),
        0 if trainer.eval_dataset is None else len(trainer.eval_dataset),
        config.max_length,
    )
    merge = partial(merge_lora_checkpoint, out, load_base, {"ttc_reviser": metadata})
    run = TrainingRun(
        "train-reviser",
        trainer,
        resume_from,
        num_params,
        hub=hub,
        merge_lora=merge if config.use_peft else None,
    )
    log = finish_training(
        run,
        {
            "max_length": config.max_length,
            "num_train_examples": fit_stats["num_examples"],
            "num_skipped_examples": fit_stats["num_skipped_examples"],
            "num_dropped_attempts": fit_stats["num_dropped_attempts"],
            "num_attempts_beyond_context": fit_stats["num_attempts_beyond_context"],
            "eval_fit": eval_fit_stats,
        },
    )
    if trainer.is_world_process_zero():
        logger.info(
            "Reviser saved to %s (train loss %.4f; %s)", out, log["train_loss"], format_metrics(log["eval"])
        )
    return log
