"""``ttc train-prm``: a process reward model trained on soft Monte Carlo step labels (Snell et al., Sec. 5.1).

Read top to bottom: rows in the stepwise-supervision shape (``prompt``, ``completions`` = steps,
``labels`` = one value per step; checked in :mod:`~ttcompute.trainers.stepwise_data`) ->
:meth:`PRMTrainer.tokenize` (each step followed by the separator, its label on the separator's last
token, -100 everywhere else) -> :class:`StepLabelCollator` -> :meth:`PRMTrainer.compute_loss` (binary
cross-entropy of one logit per labelled token against the soft target: the paper's loss; TRL's
removed PRMTrainer only took integer labels) -> :func:`train_prm`.

The saved checkpoint is a plain ``AutoModelForTokenClassification`` (LoRA merged) whose
``config.ttc_prm`` and model card state the separator, the label position and the prompt template,
so any tool can score with it: ``sigmoid(logits[i, label_position])``. ``--prm_kind likelihood``
trains no network: see :mod:`~ttcompute.trainers.likelihood_fit`.
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from peft import LoraConfig, get_peft_model
from transformers import (
    AutoModelForTokenClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Trainer,
    set_seed,
)

from ttcompute.core.config import save_resolved_config
from ttcompute.core.errors import InputError, option
from ttcompute.core.prompts import PromptContract, contract_from_flags
from ttcompute.models.prm import encode_steps, ttc_prm_metadata
from ttcompute.models.tiny import count_parameters
from ttcompute.trainers.hub import HubUpload
from ttcompute.trainers.launch import check_deepspeed_active, init_deepspeed_comm, without_zero3_init
from ttcompute.trainers.likelihood_fit import fit_likelihood_prm
from ttcompute.trainers.lora import lora_config, merge_lora_checkpoint
from ttcompute.trainers.model_cards import prm_model_card, recorded_provenance
from ttcompute.trainers.prm_config import PRMConfig
from ttcompute.trainers.stepwise_data import (
    IGNORE,
    check_labelled_positions,
    check_prompt_template,
    constant_label,
    step_metrics,
    validate_stepwise_rows,
    with_float_labels,
)
from ttcompute.trainers.training_data import load_training_dataset, split_by_problem
from ttcompute.trainers.training_run import (
    TrainingRun,
    finish_training,
    format_metrics,
    has_accelerator,
    match_eval_strategy,
    resume_point,
)

logger = logging.getLogger(__name__)


# The columns of a tokenized example, fixed: `Dataset.map` otherwise keeps an input column's feature
# type for an output column of the same name, and bool ``labels`` turned every -100 into True.
TOKENIZED_FEATURES = datasets.Features(
    {
        "input_ids": datasets.Sequence(datasets.Value("int64")),
        "labels": datasets.Sequence(datasets.Value("float32")),
        "truncated": datasets.Value("bool"),
    }
)


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
        peft_config: LoraConfig | None = None,
        **kwargs,
    ) -> None:
        if getattr(model.config, "num_labels", 1) != 1:
            raise InputError(
                f"model: num_labels={model.config.num_labels}; PRMTrainer trains one logit against each "
                "step's label (binary cross-entropy, soft labels welcome): load it with num_labels=1"
            )
        if not isinstance(getattr(model.config, "ttc_prm", None), dict):
            # Built in Python (not by `ttc train-prm`): record the contract here, so that what
            # `save_model` / `push_to_hub` write loads with `load_prm(path)` and nothing else.
            model.config.ttc_prm = ttc_prm_metadata(
                args.step_separator,
                data_prompt_contract(train_dataset, args, processing_class),
                train_on_last_step_only=args.train_on_last_step_only,
            )
        if args.dataloader_pin_memory and not has_accelerator():
            args.dataloader_pin_memory = (
                False  # pinning only speeds copies to a device; torch warns per loader
            )
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
        if len(tokenized) and unlabelled == len(tokenized):
            raise InputError(
                f"{name}_dataset: every example lost all its labels to truncation at "
                f"{option('max_length')} {args.max_length}; raise it"
            )
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
        # The usage snippet loads the model by the id it will have on the Hub; TRL passes only the
        # last part of it as model_name.
        card = prm_model_card(
            self.args,
            getattr(self.model.config, "ttc_prm", {}),
            self.args.hub_model_id or model_name or Path(self.args.output_dir).name,
        )
        (Path(self.args.output_dir) / "README.md").write_text(card)


def verbatim_contract(dataset: datasets.Dataset) -> PromptContract | None:
    """For rows without a question column (TRL's stepwise datasets: the prompt is the problem text),
    the template that rebuilds their prompts exactly: ``"{question}\n"`` when every prompt ends in a
    newline (the question is the rest), else ``"{question}"``; None for rows with questions."""
    if "question" in dataset.column_names:
        return None
    newline = all(prompt.endswith("\n") for prompt in dataset["prompt"])
    return PromptContract("{question}\n" if newline else "{question}")


def data_prompt_contract(
    dataset: datasets.Dataset, config: PRMConfig, tokenizer: PreTrainedTokenizerBase | None = None
) -> PromptContract:
    """The prompt contract of stepwise rows that carry no record of one (a Python dataset, a file, a
    Hub dataset): ``config``'s prompt options where given, else the rows' own prompts read verbatim
    -- ``"{question}\n"`` when every prompt ends in a newline (the question is the rest), else
    ``"{question}"`` (the question *is* the prompt), as TRL's stepwise datasets are. Checked against
    the rows.

    Raises:
        InputError: the contract does not rebuild the rows' prompts.
    """
    contract = contract_from_flags(
        None, config.given_contract(), "", "PRMTrainer", verbatim_contract(dataset)
    )
    check_prompt_template(dataset, contract, "train_dataset", tokenizer)
    return contract


def _wrap_peft(model: PreTrainedModel, peft_config: LoraConfig) -> PreTrainedModel:
    head = "score" if hasattr(model, "score") else "classifier"
    modules_to_save = list(peft_config.modules_to_save or [])
    if head not in modules_to_save:
        peft_config.modules_to_save = modules_to_save + [head]
    model = get_peft_model(model, peft_config)
    trainable, total = model.get_nb_trainable_parameters()
    logger.info("LoRA: %d of %d parameters trainable (score head in full)", trainable, total)
    return model


def train_prm(config: PRMConfig) -> dict[str, Any]:
    """Train (or resume) a PRM and save a plain token-classification checkpoint with its model card."""
    if not config.model_name_or_path:
        raise InputError("ttc train-prm: --model_name_or_path (the base model) is required")
    if not config.dataset_name:
        raise InputError("ttc train-prm: --dataset_name (stepwise-supervision data) is required")
    if config.prm_kind == "likelihood" and config.push_to_hub and Path(config.model_name_or_path).exists():
        raise InputError(
            "ttc train-prm: a likelihood PRM refers to its base model, and a local path means nothing on "
            "the Hub; push the base model first and pass its Hub id as --model_name_or_path"
        )
    train_dataset = load_training_dataset(config.dataset_name, config.dataset_split)
    # Rows without a question column (TRL's stepwise datasets) were seen as their prompt verbatim:
    # unless a ttc output records otherwise, the PRM records the template that rebuilds exactly that.
    contract = config.resolve_prompt_contract(
        config.dataset_name, "ttc train-prm", default=verbatim_contract(train_dataset)
    )
    # Validate everything before the first file is written.
    validate_stepwise_rows(train_dataset, config.dataset_name, config.step_separator)
    prompt_tokenizer = None
    if contract.use_chat_template:
        prompt_tokenizer = AutoTokenizer.from_pretrained(
            config.model_name_or_path, trust_remote_code=config.trust_remote_code
        )
    check_prompt_template(train_dataset, contract, config.dataset_name, prompt_tokenizer)
    train_dataset = with_float_labels(train_dataset)
    eval_dataset = None
    if config.eval_dataset_name:
        eval_dataset = load_training_dataset(config.eval_dataset_name, config.dataset_split)
        validate_stepwise_rows(eval_dataset, config.eval_dataset_name, config.step_separator)
        eval_dataset = with_float_labels(eval_dataset)
    elif config.eval_fraction > 0:
        train_dataset, eval_dataset = split_by_problem(
            train_dataset, config.eval_fraction, config.seed, config.dataset_name
        )
    constant = constant_label(train_dataset, config.train_on_last_step_only)
    if constant is not None:
        which = "last-step label" if config.train_on_last_step_only else "step label"
        if config.prm_kind == "likelihood":
            # Two numbers fitted to one class have no optimum: Newton walks the bias off towards
            # +-infinity until its iteration cap, and the saved calibration scores every step alike.
            raise InputError(
                f"{config.dataset_name}: field labels: every {which} of the training rows is {constant:g}; "
                "the likelihood calibration needs correct and incorrect steps (use such data, or "
                f"{option('prm_kind')} token_classification)"
            )
        # A network can still learn from it (e.g. one part of a larger mix), but alone it learns a constant.
        logger.warning(
            "%s: every %s of the training rows is %g: the PRM can only learn to score every step alike",
            config.dataset_name,
            which,
            constant,
        )
    match_eval_strategy(config, eval_dataset is not None, logger)

    out = Path(config.output_dir)
    if config.prm_kind == "likelihood":
        out.mkdir(parents=True, exist_ok=True)
        save_resolved_config(out, "train-prm", config)
        return fit_likelihood_prm(config, train_dataset, eval_dataset, out)

    resume_from = resume_point(config, logger)
    init_deepspeed_comm()
    tokenizer = prompt_tokenizer or AutoTokenizer.from_pretrained(
        config.model_name_or_path, trust_remote_code=config.trust_remote_code
    )
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token

    def load_base() -> PreTrainedModel:
        return AutoModelForTokenClassification.from_pretrained(
            config.model_name_or_path,
            num_labels=1,
            trust_remote_code=config.trust_remote_code,
            use_safetensors=True,
        )

    # The score head (and LoRA adapters) are drawn from torch's global RNG here, before the Trainer
    # seeds it: unseeded, the same command gave a different PRM on every run.
    set_seed(config.seed)
    with without_zero3_init(config):
        model = load_base()
    model.config.pad_token_id = tokenizer.pad_token_id
    metadata = ttc_prm_metadata(
        config.step_separator,
        contract,
        **recorded_provenance(config.output_dir, config.model_name_or_path, config.dataset_name),
        train_on_last_step_only=config.train_on_last_step_only,
    )
    model.config.ttc_prm = metadata
    num_params = count_parameters(model)
    hub = HubUpload.take_from(config)
    trainer = PRMTrainer(
        model=model,
        args=config,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=lora_config(config, "TOKEN_CLS") if config.use_peft else None,
    )
    # Written once the trainer has tokenized the data: data it refuses leaves nothing behind.
    out.mkdir(parents=True, exist_ok=True)
    save_resolved_config(out, "train-prm", config)
    check_deepspeed_active(trainer)
    logger.info(
        "Training a %d-parameter PRM on %d solutions (%d held out)",
        num_params,
        len(trainer.train_dataset),
        0 if trainer.eval_dataset is None else len(trainer.eval_dataset),
    )
    merge = partial(merge_lora_checkpoint, out, load_base, {"ttc_prm": metadata})
    run = TrainingRun(
        "train-prm", trainer, resume_from, num_params, hub=hub, merge_lora=merge if config.use_peft else None
    )
    log = finish_training(
        run,
        {"num_train_examples": len(trainer.train_dataset), "num_truncated_examples": trainer.num_truncated},
    )
    if trainer.is_world_process_zero():
        logger.info(
            "PRM saved to %s (train loss %.4f; %s)", out, log["train_loss"], format_metrics(log["eval"])
        )
    return log
