"""LoRA for the trainers: the ``--use_peft`` / ``--lora_*`` options, the ``peft.LoraConfig`` they ask
for, and the merge into a plain checkpoint (so every saved model loads with the transformers Auto
classes, no peft needed)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peft import LoraConfig, PeftModel, TaskType
from transformers import PreTrainedModel

ADAPTER_DIR = "lora_adapter"


@dataclass
class LoraOptions:
    """The LoRA options of a trainer config (a mixin of its dataclass)."""

    use_peft: bool = field(default=False, metadata={"help": "train LoRA adapters (merged when saved)"})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha"})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout"})
    lora_target_modules: str = field(default="all-linear", metadata={"help": "comma list or all-linear"})


def lora_config(config: LoraOptions, task_type: str) -> LoraConfig:
    """The ``peft.LoraConfig`` of a config's ``lora_*`` fields for ``task_type`` (a ``peft.TaskType``
    name: ``TOKEN_CLS`` for PRMs, ``CAUSAL_LM`` for revisers)."""
    targets = config.lora_target_modules
    return LoraConfig(
        task_type=TaskType[task_type],
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=targets if targets == "all-linear" else [t.strip() for t in targets.split(",")],
    )


def merge_lora_checkpoint(
    out: Path, load_base: Callable[[], PreTrainedModel], config_attributes: dict[str, Any] | None = None
) -> None:
    """Turn ``out`` (a LoRA adapter) into a plain checkpoint: base + adapter merged, heads included.

    Merging from the saved adapter (not the in-memory model) also works after ZeRO-3, where the
    trained weights only exist gathered on disk. The adapter itself moves to ``out/lora_adapter``.
    ``load_base`` loads the base model as it was trained; ``config_attributes`` (e.g. ``ttc_prm``)
    are set on the merged model's config.
    """
    base = load_base()
    merged = PeftModel.from_pretrained(base, str(out)).merge_and_unload()
    adapter_dir = out / ADAPTER_DIR
    adapter_dir.mkdir(exist_ok=True)
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        if (out / name).exists():
            (out / name).replace(adapter_dir / name)
    for key, value in (config_attributes or {}).items():
        setattr(merged.config, key, value)
    merged.config.pad_token_id = base.config.pad_token_id
    merged.save_pretrained(str(out), safe_serialization=True)
