"""Which checkpoint a rerun resumes from: the newest *complete* ``checkpoint-N`` of the output dir.

transformers (5.x, ``Trainer._save_checkpoint``) writes a checkpoint in place, with no temporary
directory and no rename: the weights and tokenizer, then the optimizer and scheduler (under
DeepSpeed: every rank's ``global_stepN/`` shards, then the ``latest`` tag after a barrier), the RNG
states, and ``trainer_state.json`` last (rank 0). Its ``get_last_checkpoint`` returns the highest N
whatever state that directory is in, so a run killed while saving leaves a checkpoint that the rerun
then dies on: ``Trainer.train`` reads ``trainer_state.json`` unconditionally, and a truncated
``optimizer.pt`` fails ``torch.load``. Here a checkpoint counts only when every file it holds is
whole; otherwise the previous one is used, with a warning naming the directory and what is wrong.

Every rank of a multi-process launch calls this at start-up, before anything is written, so they
all see the same files and agree on the checkpoint.
"""

from __future__ import annotations

import json
import logging
import re
import struct
import zipfile
from pathlib import Path

logger = logging.getLogger(__name__)

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
# What torch.save writes (a zip archive since torch 1.6): optimizer/scheduler/RNG states, DeepSpeed
# shards, pytorch_model.bin, training_args.bin.
_TORCH_SUFFIXES = {".pt", ".pth", ".bin"}
_WEIGHT_PATTERNS = (
    "model*.safetensors",
    "adapter_model.safetensors",
    "pytorch_model*.bin",
    "adapter_model.bin",
)


def last_complete_checkpoint(output_dir: str | Path) -> str | None:
    """The newest ``checkpoint-N`` in ``output_dir`` that a run can resume from, or None.

    Incomplete ones (a run killed while writing them) are skipped with a warning naming them.
    """
    for path in sorted(_checkpoint_dirs(Path(output_dir)), key=_step, reverse=True):
        problem = checkpoint_problem(path)
        if problem is None:
            return str(path)
        logger.warning(
            "Not resuming from %s: %s (left incomplete, most likely by a run stopped while saving it); "
            "trying the previous checkpoint",
            path,
            problem,
        )
    return None


def checkpoint_problem(path: str | Path) -> str | None:
    """Why the checkpoint at ``path`` cannot be resumed from, or None when it is complete.

    Complete: ``trainer_state.json`` (written last) records step N; every JSON file parses; every
    safetensors file is as long as its header says; every torch-saved file ends with its zip
    directory (a truncated archive does not); weights are there (model or adapter files, or a
    DeepSpeed checkpoint whose ``latest`` tag names an existing directory).
    """
    path = Path(path)
    state = path / "trainer_state.json"
    if not state.is_file():
        return "no trainer_state.json"
    for file in sorted(path.glob("*.json")):
        try:
            content = json.loads(file.read_text())
        except (ValueError, UnicodeDecodeError) as error:
            return f"{file.name} does not parse ({error})"
        if file == state and content.get("global_step") != _step(path):
            return f"trainer_state.json records step {content.get('global_step')}, not {_step(path)}"
    for file in sorted(path.glob("*.safetensors")):
        problem = _safetensors_problem(file)
        if problem:
            return problem
    for file in sorted(p for p in path.rglob("*") if p.suffix in _TORCH_SUFFIXES and p.is_file()):
        problem = _torch_file_problem(file)
        if problem:
            return f"{file.relative_to(path)}: {problem}"
    return _weights_problem(path)


def _checkpoint_dirs(output_dir: Path) -> list[Path]:
    if not output_dir.is_dir():
        return []
    return [p for p in output_dir.iterdir() if _CHECKPOINT.match(p.name) and p.is_dir()]


def _step(path: Path) -> int:
    return int(_CHECKPOINT.match(path.name).group(1))


def _safetensors_problem(file: Path) -> str | None:
    """A safetensors file is an 8-byte header length, a JSON header, then the tensors' bytes: its
    size is known from the header, so a truncated file shows without reading the tensors."""
    size = file.stat().st_size
    with file.open("rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            return f"{file.name} is truncated ({size} bytes)"
        (header_length,) = struct.unpack("<Q", prefix)
        if 8 + header_length > size:
            return f"{file.name} is truncated (its header is cut)"
        try:
            header = json.loads(f.read(header_length))
        except ValueError:
            return f"{file.name} has an unreadable header"
    data_end = max(
        (entry["data_offsets"][1] for name, entry in header.items() if name != "__metadata__"), default=0
    )
    if size != 8 + header_length + data_end:
        return f"{file.name} is truncated ({size} of {8 + header_length + data_end} bytes)"
    return None


def _torch_file_problem(file: Path) -> str | None:
    """torch.save writes a zip archive whose directory comes last, so a cut file cannot be opened.
    Files in torch's legacy (non-zip) format are only checked for being non-empty."""
    with file.open("rb") as f:
        magic = f.read(4)
    if not magic:
        return "empty"
    if magic != b"PK\x03\x04":
        return None
    try:
        with zipfile.ZipFile(file):
            return None
    except (zipfile.BadZipFile, OSError):
        return "truncated (no zip directory at its end)"


def _weights_problem(path: Path) -> str | None:
    latest = path / "latest"
    if latest.is_file():
        tag = latest.read_text().strip()
        return (
            None if tag and (path / tag).is_dir() else f"DeepSpeed's latest tag names no directory ({tag!r})"
        )
    if any(path.glob("global_step*")):
        return "DeepSpeed shards without their latest tag"
    if not any(file for pattern in _WEIGHT_PATTERNS for file in path.glob(pattern)):
        return "no model weights"
    return None
