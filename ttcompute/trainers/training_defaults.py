"""Training defaults for the small models train-prm and train-reviser fit on a CPU or one GPU.

A mixin of their configs, placed before ``TrainingArguments`` / ``SFTConfig`` in the bases so that
these defaults replace the base's; every one stays a flag and a YAML key. The learning rate is each
config's own (a verifier and a reviser want different ones).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SmallModelDefaults:
    """Schedule, batch sizes, logging and checkpointing defaults shared by the PRM and reviser configs."""

    lr_scheduler_type: str = field(default="cosine", metadata={"help": "learning-rate schedule"})
    warmup_steps: float = field(default=0.05, metadata={"help": "warm-up steps (or fraction if < 1)"})
    num_train_epochs: float = field(default=1.0, metadata={"help": "passes over the data"})
    per_device_train_batch_size: int = field(default=16, metadata={"help": "batch size per device"})
    per_device_eval_batch_size: int = field(default=32, metadata={"help": "eval batch size per device"})
    logging_steps: float = field(default=10, metadata={"help": "log every N steps"})
    save_steps: float = field(default=500, metadata={"help": "checkpoint every N steps (resume point)"})
    save_total_limit: int | None = field(default=2, metadata={"help": "checkpoints kept"})
    report_to: None | str | list[str] = field(default="none", metadata={"help": "none | wandb | tensorboard"})
    # Typed `str` (TrainingArguments says `str | bool`, which HfArgumentParser reads as a bool flag).
    include_num_input_tokens_seen: str = field(
        default="non_padding", metadata={"help": "count training tokens (for the FLOPs log)"}
    )
    overwrite_output_dir: bool = field(default=False, metadata={"help": "ignore checkpoints in output_dir"})
