"""LoRA for the trainers: the ``peft.LoraConfig`` that ``--use_peft`` asks for, and the merge into a
plain checkpoint (so every saved model loads with the transformers Auto classes, no peft needed)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

ADAPTER_DIR = "lora_adapter"


def lora_config(config, task_type: str):
    """The ``peft.LoraConfig`` of a config's ``lora_*`` fields for ``task_type`` (a ``peft.TaskType``
    name: ``TOKEN_CLS`` for PRMs, ``CAUSAL_LM`` for revisers)."""
    from peft import LoraConfig, TaskType

    targets = config.lora_target_modules
    return LoraConfig(
        task_type=TaskType[task_type],
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=targets if targets == "all-linear" else [t.strip() for t in targets.split(",")],
    )


def merge_lora_checkpoint(
    out: Path, load_base: Callable[[], Any], config_attributes: dict[str, Any] | None = None
) -> None:
    """Turn ``out`` (a LoRA adapter) into a plain checkpoint: base + adapter merged, heads included.

    Merging from the saved adapter (not the in-memory model) also works after ZeRO-3, where the
    trained weights only exist gathered on disk. The adapter itself moves to ``out/lora_adapter``.
    ``load_base`` loads the base model as it was trained; ``config_attributes`` (e.g. ``ttc_prm``)
    are set on the merged model's config.
    """
    from peft import PeftModel

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
