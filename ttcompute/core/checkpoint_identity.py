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
import json
import logging
import re
from pathlib import Path
from typing import Any

from ttcompute.core.recorded_paths import RECORDED_PATHS, is_local_path, resolve_options

logger = logging.getLogger(__name__)

# The files that decide what a checkpoint computes (weights, architecture, tokenizer, chat template).
_IDENTITY_PATTERNS = (
    "*.safetensors", "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
    "special_tokens_map.json", "vocab.json", "vocab.txt", "merges.txt", "tokenizer.model", "added_tokens.json",
    "chat_template.jinja", "chat_template.json", "likelihood_prm.json",
)  # fmt: skip
# A checkpoint that is a spec naming another checkpoint (the likelihood PRM: a calibration over a base
# LM): its identity is the spec's content with each recorded path replaced by that checkpoint's identity.
_SPEC_FILES = ("likelihood_prm.json",)
_CHUNK = 1 << 22
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
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


def _content_sha256(file: Path) -> str:
    """The sha256 of a file's content; read from the name of a Hugging Face cache blob (the Hub's
    cache stores an LFS file -- the weights -- under its sha256) without reading gigabytes."""
    if file.is_symlink():
        target = file.resolve()
        if target.parent.name == "blobs" and _SHA256_RE.fullmatch(target.name):
            return target.name
    return file_sha256(file)


def _files(directory: Path) -> list[Path]:
    return sorted({p for pattern in _IDENTITY_PATTERNS for p in directory.glob(pattern) if p.is_file()})


def _files_digest(root: Path, files: list[Path]) -> str:
    """sha256 (hex) over each file's path relative to ``root`` and its content's sha256; computed once
    per process per unchanged set of files (path, size and mtime of each)."""
    key = (str(root.resolve()), tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files))
    if key not in _cache:
        size = sum(f.stat().st_size for f in files)
        if size > 1 << 30:
            logger.info("Hashing %s (%.1f GB): what it is, not where it sits", root, size / 1e9)
        digest = hashlib.sha256()
        for file in files:
            digest.update(f"{file.relative_to(root).as_posix()}\0{_content_sha256(file)}\0".encode())
        _cache[key] = digest.hexdigest()
    return _cache[key]


def checkpoint_identity(model_name_or_path: str | Path) -> str:
    """``sha256:<hex>`` of a local checkpoint directory's files (name and content), else the Hub id
    (a directory holding none of a checkpoint's files: its absolute path).
    """
    path = Path(model_name_or_path)
    if not path.is_dir():
        return str(model_name_or_path)
    files = _files(path)
    if not files:  # no checkpoint here to identify by content: the directory itself
        return str(path.resolve())
    digest = _files_digest(path, [f for f in files if f.name not in _SPEC_FILES])
    specs = [_spec_content(file) for file in files if file.name in _SPEC_FILES]
    if not specs:
        return f"sha256:{digest}"
    # Not cached: what a spec names may change while the spec does not.
    return f"sha256:{hashlib.sha256(digest.encode() + b''.join(specs)).hexdigest()}"


def _spec_content(file: Path) -> bytes:
    try:
        spec = json.loads(file.read_text())
        recorded = set(spec.get(RECORDED_PATHS) or [])
        spec = resolve_options(spec, file)
    except (ValueError, AttributeError):
        return file.read_bytes()  # not a spec we read: its bytes, as any other file
    return json.dumps(
        {k: checkpoint_identity(v) if k in recorded else v for k, v in spec.items()}, sort_keys=True
    ).encode()


def input_identity(value: Any) -> Any:
    """What an input option's value *is*, for the config hash that decides whether a run may resume:
    a sharded output by its manifest's identity, a checkpoint by :func:`checkpoint_identity`, any other
    local file or directory by the sha256 of its files; a value that names nothing here, as it is.

    So a path spelled another way, or read from another directory, or a copy of the input elsewhere,
    resumes the same run; new weights (or samples) written where the old ones were do not.
    """
    if not is_local_path(value):
        return value
    path = Path(value)
    manifest = path / "manifest.json"
    if manifest.is_file():
        try:
            recorded = json.loads(manifest.read_text())
            return "output:" + json.dumps(
                {k: recorded.get(k) for k in ("stage", "config_hash", "num_shards")}, sort_keys=True
            )
        except ValueError:
            pass  # not one of ours: hashed by content below
    if not path.is_dir():
        return f"sha256:{_files_digest(path, [path])}"
    identity = checkpoint_identity(path)
    if identity.startswith("sha256:"):
        return identity
    return f"sha256:{_files_digest(path, sorted(p for p in path.rglob('*') if p.is_file()))}"


def same_checkpoint(recorded: str, model_name_or_path: str | Path) -> bool:
    """Whether ``recorded`` (an identity recorded earlier: a content hash, a Hub id, or -- before
    content identity -- a checkpoint's absolute path) names the checkpoint at ``model_name_or_path``."""
    identity = checkpoint_identity(model_name_or_path)
    if recorded == identity or recorded == str(model_name_or_path):
        return True
    if not recorded.startswith("sha256:") and Path(recorded).is_dir():  # an old record: a path
        return checkpoint_identity(recorded) == identity
    return False
