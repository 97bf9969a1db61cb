"""The tiny policies shipped inside the package (``ttcompute/checkpoints``): the arithmetic task's
base models, so that the demo, the docs' quickstart and tests need no download."""

from __future__ import annotations

from pathlib import Path

from ttcompute.core.errors import InputError

CHECKPOINTS = Path(__file__).resolve().parent.parent / "checkpoints"
SHIPPED_POLICIES = ("policy_small", "policy_large")


def shipped_policy(name: str = "policy_small") -> Path:
    """The local directory of a shipped policy checkpoint, to pass as ``model_name_or_path``.

    ``policy_small`` (~138k parameters) and ``policy_large`` (~14x) were pretrained on the built-in
    arithmetic task (recipes ``policy_small.yaml`` / ``policy_large.yaml`` reproduce them).

    >>> shipped_policy().name
    'policy_small'
    """
    if name not in SHIPPED_POLICIES:
        raise InputError(f"unknown shipped policy {name!r}; choose one of {', '.join(SHIPPED_POLICIES)}")
    path = CHECKPOINTS / name
    if not (path / "model.safetensors").is_file():
        raise InputError(
            f"{path}: shipped checkpoint missing; reinstall ttcompute or run `ttc demo --retrain`"
        )
    return path
