"""What a checkpoint *is*, not where it sits: a content hash of a local checkpoint's weights, config
and tokenizer, or a Hub id as it is.

Stages check that two inputs come from "the same policy" (a question probe and the policy it routes,
a probe's training samples and the samples it bins). Compared as paths, a copy of the shipped policy
in a second clone was "another policy", and a different checkpoint written to the same path was "the
same". :func:`checkpoint_identity` hashes what decides a model's outputs: every ``*.safetensors``,
``config.json``, ``generation_config.json`` and the tokenizer's files, by name and content.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

# The files that decide what a checkpoint computes (weights, architecture, tokenizer, chat template).
_IDENTITY_PATTERNS = (
    "*.safetensors", "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
    "special_tokens_map.json", "vocab.json", "vocab.txt", "merges.txt", "tokenizer.model", "added_tokens.json",
    "chat_template.jinja", "chat_template.json",
)  # fmt: skip
_CHUNK = 1 << 22
_cache: dict[tuple[str, tuple[tuple[str, int, int], ...]], str] = {}


def _feed(digest: Any, path: Path) -> None:
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)


def file_sha256(path: str | Path) -> str:
    """The sha256 of one file (hex), read in chunks: a checkpoint's weights may be gigabytes."""
    digest = hashlib.sha256()
    _feed(digest, Path(path))
    return digest.hexdigest()


def _files(directory: Path) -> list[Path]:
    return sorted({p for pattern in _IDENTITY_PATTERNS for p in directory.glob(pattern) if p.is_file()})


def checkpoint_identity(model_name_or_path: str | Path) -> str:
    """``sha256:<hex>`` of a local checkpoint directory's files (name and content), else the Hub id.

    Hashed once per process per unchanged directory (name, size and mtime of each file).
    """
    path = Path(model_name_or_path)
    if not path.is_dir():
        return str(model_name_or_path)
    files = _files(path)
    key = (str(path.resolve()), tuple((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files))
    if key not in _cache:
        digest = hashlib.sha256()
        for file in files:
            digest.update(file.name.encode() + b"\0")
            _feed(digest, file)
            digest.update(b"\0")
        _cache[key] = f"sha256:{digest.hexdigest()}"
    return _cache[key]


def same_checkpoint(recorded: str, model_name_or_path: str | Path) -> bool:
    """Whether ``recorded`` (an identity recorded earlier: a content hash, a Hub id, or -- before
    content identity -- a checkpoint's absolute path) names the checkpoint at ``model_name_or_path``."""
    identity = checkpoint_identity(model_name_or_path)
    if recorded == identity or recorded == str(model_name_or_path):
        return True
    if not recorded.startswith("sha256:") and Path(recorded).is_dir():  # an old record: a path
        return checkpoint_identity(recorded) == identity
    return False
