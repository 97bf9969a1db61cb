"""Which weight files a checkpoint may be loaded from: safetensors only.

``pytorch_model.bin`` and friends are pickles, and unpickling runs whatever code the file names, so
every loader passes ``use_safetensors=True`` (vLLM: ``load_format="safetensors"``). Transformers
then says only that ``model.safetensors`` is missing; :func:`load_error` adds why a checkpoint that
does hold (pickled) weights is still refused, and how to convert it.
"""

from __future__ import annotations

from pathlib import Path

from ttcompute.core.recorded_paths import missing_local_path

# Weight files that torch.load would unpickle: the names transformers and PEFT write.
PICKLED_WEIGHT_PATTERNS = ("*.bin", "*.pt", "*.pth", "*.ckpt")


def holds_only_pickled_weights(model_name_or_path: str | Path) -> bool:
    """Whether a local checkpoint directory has pickled weight files and no safetensors.

    >>> holds_only_pickled_weights("no/such/dir")
    False
    """
    path = Path(model_name_or_path)
    if not path.is_dir() or any(path.glob("*.safetensors")):
        return False
    # training_args.bin is a pickled config, not weights: its presence alone explains nothing.
    return any(
        p.name != "training_args.bin" for pattern in PICKLED_WEIGHT_PATTERNS for p in path.glob(pattern)
    )


def load_error(model_name_or_path: str | Path, what: str, err: Exception) -> str:
    """A one-line message for a failed load of ``what`` ("the model", "the PRM") from a checkpoint."""
    missing = missing_local_path(model_name_or_path)
    if missing is not None:  # not a malformed Hub id: a directory that is not there
        return f"{model_name_or_path}: cannot load {what}: {missing}"
    text = str(err).strip()
    reason = text.splitlines()[0] if text else type(err).__name__
    message = f"{model_name_or_path}: cannot load {what} ({reason})"
    if holds_only_pickled_weights(model_name_or_path):
        message += (
            "; its weights are pickles (e.g. pytorch_model.bin), which are never loaded because "
            "unpickling can run code: re-save it as safetensors (model.save_pretrained(path)) from a "
            "trusted environment"
        )
    return message
