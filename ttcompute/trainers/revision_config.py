"""Config of ``ttc train-reviser``: SFT of a reviser on revision trajectories (Snell et al., sec. 6.1)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trl import SFTConfig

from ttcompute.core.prompts import PromptOptions
from ttcompute.trainers.dataset_options import DatasetOptions
from ttcompute.trainers.launch import CPUDeepSpeedMixin
from ttcompute.trainers.lora import LoraOptions
from ttcompute.trainers.training_defaults import SmallModelDefaults


@dataclass
class RevisionConfig(
    CPUDeepSpeedMixin, LoraOptions, PromptOptions, DatasetOptions, SmallModelDefaults, SFTConfig
):
    r"""Configuration for :func:`~ttcompute.trainers.revision_trainer.train_reviser`.

    Only the reviser-specific knobs are listed; everything else is TRL's [`~trl.SFTConfig`] and
    [`~transformers.TrainingArguments`] (``--deepspeed``, ``--report_to wandb``, ``--push_to_hub``,
    ``--hub_model_id``, ``--trust_remote_code`` ...).

    Parameters that control the model:
        model_name_or_path (`str`): The policy to finetune into a reviser (Hub id or local path),
            loaded with `AutoModelForCausalLM`. ``trust_remote_code`` (SFTConfig's) stays off unless set.
        use_peft (`bool`, defaults to `False`): Train LoRA adapters instead of all weights; the saved
            checkpoint is merged (plain weights) and the adapter is kept in ``lora_adapter/``.
        lora_r / lora_alpha / lora_dropout / lora_target_modules: The LoRA adapters
            (`lora_target_modules` is a comma-separated list or ``all-linear``).
        expand_blocks (`int`, defaults to `0`): Insert this many identity-initialised decoder blocks
            into the base before training (LLaMA Pro block expansion, evenly spaced, the last on top:
            ``ttcompute/models/block_expansion.py``); the saved reviser is the deeper model. 0: the
            base as it is. Llama/Qwen2/Mistral-style bases.
        context_length (`int` or `None`, defaults to `None`): Raise the base's context to this many
            tokens before training (plain RoPE only: attention depends on relative positions, so the
            base computes as before; the trajectories teach it the longer distances;
            ``ttcompute/models/context_extension.py``). The saved reviser declares it, and ``ttc
            search`` fits its attempts to it, so ``max_length`` must reach it (a reviser trained at 512
            tokens and searched at 1024 collapsed). Unset: the base's own context.

    Parameters that control the data preprocessing:
        dataset_name (`str`): A ``ttc revisions`` output directory, a .parquet/.jsonl/.json file, a
            dataset directory or a Hub id (several, comma-separated, are concatenated), with the columns
            ``problem_id``, ``question``, ``previous_attempts`` (list of incorrect solutions, oldest
            first), ``completion`` (the correct solution); ``prompt`` and ``num_previous`` are checked
            when present.
        dataset_split (`str`, defaults to `"train"`): Split to read from a Hub/dataset directory.
        eval_dataset_name (`str` or `None`): Evaluation trajectories in the same shape; without it,
            ``eval_fraction`` of the *problems* (by ``problem_id``) is held out.
        eval_fraction (`float`, defaults to `0.05`): See above; 0 disables evaluation.
        prompt_template / use_chat_template / system_prompt (`PromptOptions`): The prompt contract
            of the trajectories (the policy's: the attempts and the revision marker come before its
            templated question, inside the chat template's user turn when it is on; see
            ``ttcompute/models/reviser.py``). Unset: the contract a ``ttc revisions`` output records,
            else ``"{question}\n"`` without the chat template; a value that contradicts the record is
            an error. Stored in the checkpoint's ``config.ttc_reviser`` and model card.
        copied_token_weight (`float`, defaults to `1.0`): Loss weight of the revision's tokens that
            repeat the most recent attempt in the prompt (their common prefix, in characters); the
            other revision tokens weigh 1. Evaluation loss is always unweighted.
        max_length (`int` or `None`, defaults to the model's context): Tokens of prompt + revision +
            EOS. Prompts are rebuilt to fit, dropping the *oldest* attempts first; an example whose
            question and revision alone do not fit is skipped. Both counts are logged. ``None``: the
            model's ``max_position_embeddings`` (512 when the config does not say).

    Parameters that control the run:
        overwrite_output_dir (`bool`, defaults to `False`): Start from scratch even if ``output_dir``
            holds checkpoints (by default training resumes from the last one).
    """

    model_name_or_path: str | None = field(
        default=None, metadata={"help": "policy to finetune: Hub id or path"}
    )
    # A 2-layer policy's blocks are busy with its arithmetic: new ones give the copying circuit room.
    expand_blocks: int = field(
        default=0, metadata={"help": "identity-initialised decoder blocks to insert before training"}
    )
    # A 512-token policy fits 1-2 of its long attempts; a reviser that weighs several needs room.
    context_length: int | None = field(
        default=None, metadata={"help": "raise the base's context (plain RoPE) to this many tokens first"}
    )
    dataset_name: str | None = field(default=None, metadata={"help": "revision trajectories (ttc revisions)"})
    max_length: int | None = field(
        default=None,
        metadata={
            "help": "tokens of prompt + revision + EOS; oldest attempts dropped to fit (default: model context)"
        },
    )

    # The paper's loss: the revision only. TRL masks the prompt of prompt-completion data; False would
    # also train on the attempts -- the incorrect solutions the reviser must not imitate.
    completion_only_loss: bool = field(
        default=True, metadata={"help": "loss on the revision only (must stay true)"}
    )

    # Most of a revision repeats the attempt before it up to the step it fixes; that copying is easy
    # and dominates the loss. A weight < 1 on it puts the loss on what the revision changes.
    copied_token_weight: float = field(
        default=1.0,
        metadata={"help": "loss weight of the revision tokens that repeat the most recent attempt's start"},
    )

    # The rest of the defaults for a small model: SmallModelDefaults; override any on the command line.
    learning_rate: float = field(default=3e-4, metadata={"help": "peak learning rate"})
    # TRL turns these on for large models on GPUs; a tiny model on CPU only gets slower (bf16 autocast
    # on CPU, recomputed activations): `--activation_checkpointing true --bf16 true` for big runs.
    # gradient_checkpointing is transformers 5's deprecated alias; left unset, it does not warn.
    gradient_checkpointing: bool | None = field(
        default=None, metadata={"help": "deprecated alias of activation_checkpointing"}
    )
    bf16: bool = field(default=False, metadata={"help": "bf16 mixed precision (GPUs: --bf16 true)"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.prompt_template is not None and "{question}" not in self.prompt_template:
            raise ValueError("prompt_template must contain {question}")
        if not 0 <= self.eval_fraction < 1:
            raise ValueError(f"eval_fraction must be in [0, 1), got {self.eval_fraction}")
        if self.expand_blocks < 0:
            raise ValueError(f"expand_blocks must be >= 0, got {self.expand_blocks}")
        if self.context_length is not None and self.context_length < 2:
            raise ValueError(f"context_length must be >= 2, got {self.context_length}")
        if self.max_length is not None and self.max_length < 2:
            raise ValueError("max_length must be >= 2")
        if not 0 <= self.copied_token_weight <= 1:
            raise ValueError(f"copied_token_weight must be in [0, 1], got {self.copied_token_weight}")
        if not self.completion_only_loss:
            raise ValueError(
                "completion_only_loss must be true: a reviser learns the revision, not its incorrect attempts"
            )

    def to_dict(self) -> dict[str, Any]:
        values = super().to_dict()
        # TrainingArguments masks every field named *_token. SFTConfig's eos_token and pad_token are
        # vocabulary entries, not secrets: a placeholder would be read back as a token that does not
        # exist when the saved ttc_config.yaml is rerun. hub_token is a secret: left out, not masked,
        # for the same reason (the rerun takes HF_TOKEN or the login).
        values["eos_token"], values["pad_token"], values["hub_token"] = self.eos_token, self.pad_token, None
        return values
