"""Config of ``ttc train-prm``: a process reward model finetuned on soft Monte Carlo step labels."""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments

from ttcompute.core.prompts import PromptOptions
from ttcompute.trainers.dataset_options import DatasetOptions
from ttcompute.trainers.launch import CPUDeepSpeedMixin
from ttcompute.trainers.lora import LoraOptions
from ttcompute.trainers.training_defaults import SmallModelDefaults

PRM_KINDS = ("token_classification", "likelihood")


@dataclass
class PRMConfig(
    CPUDeepSpeedMixin, LoraOptions, PromptOptions, DatasetOptions, SmallModelDefaults, TrainingArguments
):
    r"""Configuration for :class:`~ttcompute.trainers.prm_trainer.PRMTrainer`.

    Only the PRM-specific knobs are listed; everything else is [`~transformers.TrainingArguments`]
    (``--deepspeed``, ``--report_to wandb``, ``--push_to_hub``, ``--hub_model_id`` ...).

    Parameters that control the model:
        model_name_or_path (`str`): The base model, usually the policy whose solutions were labelled
            (Hub id or local path). Loaded with `AutoModelForTokenClassification` and a fresh
            one-logit head.
        prm_kind (`str`, defaults to `"token_classification"`): ``likelihood`` fits a two-number
            calibration of the base causal LM's token log-probabilities instead (no Trainer; on the
            arithmetic task the head plateaus at step AUC ~0.81, the likelihood reaches 0.98).
        trust_remote_code (`bool`, defaults to `False`): Allow custom model code.
        use_peft (`bool`, defaults to `False`): Train LoRA adapters instead of all weights; the score
            head is always trained in full (it starts from scratch).
        lora_r / lora_alpha / lora_dropout / lora_target_modules: The LoRA adapters
            (`lora_target_modules` is a comma-separated list or ``all-linear``).

    Parameters that control the data preprocessing:
        dataset_name (`str`): A ``ttc label`` output directory, a .parquet/.jsonl/.json file, a
            dataset directory or a Hub id (several, comma-separated, are concatenated), in the stepwise-supervision shape: ``prompt``,
            ``completions`` (the steps), ``labels`` (one float in [0, 1] or bool per step).
        dataset_split (`str`, defaults to `"train"`): Split to read from a Hub/dataset directory.
        eval_dataset_name (`str` or `None`): Evaluation data in the same shape; without it,
            ``eval_fraction`` of the *problems* (by ``problem_id`` when present) is held out.
        eval_fraction (`float`, defaults to `0.05`): See above; 0 disables evaluation.
        step_separator (`str`, defaults to `"\n\n"`): Appended to every step; the label sits on its
            last token.
        prompt_template / use_chat_template / system_prompt (`PromptOptions`): The prompt contract
            of the data (how a question became the ``prompt`` column), stored in the checkpoint so
            that scoring builds the same input, and checked against the data when it has a
            ``question`` column. Unset: the contract a ``ttc label`` / ``ttc orm-data`` output
            records in its manifest, else ``"{question}\n"`` without the chat template; a value that
            contradicts the record is an error.
        max_length (`int`, defaults to `1024`): Longer examples are truncated from the right (their
            last steps lose their labels); the count is logged.
        train_on_last_step_only (`bool`, defaults to `False`): Label only the last step (an outcome
            reward model, e.g. on reviser samples).

    Parameters that control the run:
        overwrite_output_dir (`bool`, defaults to `False`): Start from scratch even if ``output_dir``
            holds checkpoints (by default training resumes from the last one).
    """

    model_name_or_path: str | None = field(default=None, metadata={"help": "base model: Hub id or path"})
    prm_kind: str = field(
        default="token_classification",
        metadata={
            "help": "token_classification: a head on the separator, trained with Trainer; likelihood: "
            "the base causal LM's token log-probs, calibrated on the labels (models/likelihood_prm.py)",
            "choices": PRM_KINDS,
        },
    )
    trust_remote_code: bool = field(default=False, metadata={"help": "allow custom model code (off)"})
    # LoraOptions' field, with the help that says what a PRM's LoRA also trains.
    use_peft: bool = field(default=False, metadata={"help": "train LoRA adapters (+ the full score head)"})

    dataset_name: str | None = field(default=None, metadata={"help": "stepwise-supervision data"})
    step_separator: str = field(
        default="\n\n", metadata={"help": "appended to each step; label on its last token"}
    )
    max_length: int = field(default=1024, metadata={"help": "truncate longer examples from the right"})
    train_on_last_step_only: bool = field(default=False, metadata={"help": "label only the last step (ORM)"})

    # The rest of the defaults for a small model: SmallModelDefaults; override any on the command line.
    learning_rate: float = field(default=1e-4, metadata={"help": "peak learning rate"})
    # Solutions differ a lot in length; batching similar lengths cuts padding (1.3-1.5x samples/s on
    # the arithmetic task, bench/prm_trainer_throughput.py). Use "random" for i.i.d. batches.
    train_sampling_strategy: str = field(
        default="group_by_length",
        metadata={
            "help": "order of the training examples",
            "choices": TrainingArguments.__dataclass_fields__["train_sampling_strategy"].metadata.get(
                "choices"
            ),
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.step_separator:
            raise ValueError("step_separator must not be empty")
        if self.prm_kind not in PRM_KINDS:
            raise ValueError(f"prm_kind must be one of {', '.join(PRM_KINDS)}, got {self.prm_kind!r}")
        if self.prompt_template is not None and "{question}" not in self.prompt_template:
            raise ValueError("prompt_template must contain {question}")
        if not 0 <= self.eval_fraction < 1:
            raise ValueError(f"eval_fraction must be in [0, 1), got {self.eval_fraction}")
        if self.max_length < 2:
            raise ValueError("max_length must be >= 2")
