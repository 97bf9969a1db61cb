"""One rule for the paths a file records: relative to the file, resolved against its directory.

A stage records the paths of its inputs (``ttc_config.yaml``: ``samples_dir``, ``prm``, the policy's
``model_name_or_path`` ...; ``routing_policy.json``: every search, checkpoint and difficulty output).
Recorded as typed, they meant "relative to wherever the stage ran", and broke as soon as a later stage
ran from another directory, or the run was moved or copied to another machine. So:

* **Writing**: a value that names an existing local file or directory is stored relative to the
  directory of the file that records it, and the file lists which values it stored that way
  (:data:`RECORDED_PATHS`: option names, or JSON pointers into a routing policy). Hub ids, and any
  other string, are stored as they are.
* **Reading**: each listed value is resolved against the recording file's directory, giving an
  absolute path, wherever the reader runs. A file written before this rule (no list) keeps the old
  meaning -- relative to the working directory -- with a warning naming the file.

:func:`missing_local_path` is the other half: a name that can only be a local path and does not
exist is reported as a missing directory (where it was looked for), never as a malformed Hub id.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ttcompute.core.recipes import shipped_path

logger = logging.getLogger(__name__)

RECORDED_PATHS = "recorded_paths"
# A Hub id: "name" or "namespace/name" (huggingface_hub's validate_repo_id, without the length rule).
_HUB_ID_RE = re.compile(r"^[\w.-]+(?:/[\w.-]+)?$")
_warned: set[str] = set()
# Where a shipped file's spelling starts in a recorded path, and what core/recipes.py's shipped_path reads.
_SHIPPED_PREFIXES = (
    ("ttcompute/checkpoints/", 0),
    ("ttcompute/recipes/", len("ttcompute/")),
    ("configs/", 0),
)
# Options that take a path (a model, a dataset, an output): ..._dir, ..._path, model_name_or_path ...
_PATH_OPTION_RE = re.compile(
    r"(_dir|_dirs|_path|_file|_name_or_path)$|^(prm|reviser|dataset|dataset_name|eval_dataset_name|policy"
    r"|deepspeed|trained_from|chains_dir|base_model)$"
)


def is_local_path(value: Any) -> bool:
    """Whether ``value`` names an existing local file or directory (relative to the working directory)."""
    return isinstance(value, str) and bool(value) and "\n" not in value and Path(value).exists()


def record(value: str, recording_dir: str | Path) -> str:
    """``value`` (an existing local path) as stored in a file in ``recording_dir``: relative to it.

    >>> record("/runs/demo/prm", "/runs/demo/search")
    '../prm'
    """
    return Path(os.path.relpath(Path(value).resolve(), Path(recording_dir).resolve())).as_posix()


def resolve(value: str, recording_dir: str | Path) -> str:
    """A value stored by :func:`record` in a file in ``recording_dir``, as an absolute path.

    >>> resolve("../prm", "/runs/demo/search")
    '/runs/demo/prm'
    """
    resolved = os.path.normpath(Path(recording_dir).resolve() / value)
    if not Path(resolved).exists():
        # A shipped checkpoint or recipe recorded from one install or clone, read in another (or the
        # run moved away from it): the one installed here (core/recipes.py's clone-relative spelling).
        posix = Path(value).as_posix()
        for prefix, skip in _SHIPPED_PREFIXES:
            at = posix.rfind(prefix)
            shipped = shipped_path(posix[at + skip :]) if at >= 0 else None
            if shipped is not None:
                return str(shipped)
    return resolved


def _names_a_path(key: str, value: Any) -> bool:
    # A bare word that happens to name a file here ("cpu", "none") is a path only for an option
    # whose name says it takes one.
    if not is_local_path(value):
        return False
    return "/" in value or os.sep in value or Path(value).suffix != "" or bool(_PATH_OPTION_RE.search(key))


def comma_parts(key: str, value: Any) -> list[str] | None:
    """The paths of a comma-joined value (``--dataset_name runs/a,runs/b``), or None."""
    if not isinstance(value, str) or "," not in value or is_local_path(value):
        return None
    parts = value.split(",")
    return parts if all(_names_a_path(key, part) for part in parts) else None


def path_options(values: dict[str, Any]) -> list[str]:
    """The options whose value names local paths (a path, a list of paths, or comma-joined paths),
    sorted."""
    return sorted(
        key
        for key, value in values.items()
        if key != RECORDED_PATHS
        and (
            _names_a_path(key, value)
            or (isinstance(value, list) and bool(value) and all(_names_a_path(key, v) for v in value))
            or comma_parts(key, value) is not None
        )
    )


def map_paths(key: str, value: Any, convert: Callable[[str], str]) -> Any:
    """``value`` (a path, a list of paths, or comma-joined paths) with ``convert`` applied to each path."""
    if isinstance(value, list):
        return [convert(v) for v in value]
    parts = comma_parts(key, value)
    return ",".join(convert(part) for part in parts) if parts else convert(value)


def record_options(values: dict[str, Any], recording_dir: str | Path) -> dict[str, Any]:
    """Options to write into a file in ``recording_dir``: local paths (also inside lists) made relative
    to it, and :data:`RECORDED_PATHS` naming the options that hold them."""
    out = dict(values)
    recorded = path_options(values)
    for key in recorded:
        out[key] = map_paths(key, values[key], lambda v: record(v, recording_dir))
    out[RECORDED_PATHS] = recorded
    return out


def resolve_options(values: dict[str, Any], recording_file: str | Path) -> dict[str, Any]:
    """Options read from ``recording_file``: those it lists in :data:`RECORDED_PATHS` resolved against
    its directory (absolute); the list itself removed. A file without the list predates the rule: its
    values are returned as written (relative to the working directory), with a warning."""
    values = dict(values)
    recorded = values.pop(RECORDED_PATHS, None)
    directory = Path(recording_file).parent
    if recorded is None:
        warn_old_layout(recording_file, values.values())
        return values
    for key in recorded:
        value = values.get(key)
        if isinstance(value, str) and "," in value and not (directory / value).exists():
            values[key] = ",".join(resolve(part, directory) for part in value.split(","))
        elif isinstance(value, str):
            values[key] = resolve(value, directory)
        elif isinstance(value, list):
            values[key] = [resolve(v, directory) for v in value]
    return values


def warn_old_layout(recording_file: str | Path, values) -> None:
    """Warn once per file that its relative paths are read from the working directory."""
    relative = [
        v
        for v in values
        if isinstance(v, str) and v and not Path(v).is_absolute() and "/" in v and Path(v).exists()
    ]
    key = str(Path(recording_file).resolve())
    if relative and key not in _warned:
        _warned.add(key)
        logger.warning(
            "%s was written before recorded paths were stored relative to it: its relative paths "
            "(%s) are read from the working directory, %s",
            recording_file,
            ", ".join(relative[:3]) + (" ..." if len(relative) > 3 else ""),
            Path.cwd(),
        )


def looks_local(name: str) -> bool:
    """Whether ``name`` can only be a local path, never a Hub id (``./x``, ``/x``, ``~/x``,
    ``runs/demo/prm/prm``).

    >>> looks_local("runs/demo/prm/prm"), looks_local("Qwen/Qwen2.5-Math-1.5B"), looks_local("./prm")
    (True, False, True)
    """
    name = str(name)
    return name.startswith(("/", "./", "../", "~")) or "\\" in name or not _HUB_ID_RE.match(name)


def missing_local_path(name: str | Path) -> str | None:
    """The message for a name that can only be a local path and does not exist, or None.

    >>> missing_local_path("runs/no/such/prm").startswith("no such directory: runs/no/such/prm (resolved")
    True
    """
    name = str(name)
    if Path(name).expanduser().exists() or not looks_local(name):
        return None
    return f"no such directory: {name} (resolved against {Path.cwd()})"


def _pointer_parts(pointer: str) -> list[str]:
    return [part.replace("~1", "/").replace("~0", "~") for part in pointer.split("/")[1:]]


def _leaves(document: Any, pointer: str = "") -> Iterator[tuple[Any, Any, str, Any]]:
    """``(container, key, JSON pointer, value)`` of every non-container value inside ``document``."""
    items = document.items() if isinstance(document, dict) else enumerate(document)
    for key, value in list(items):
        where = f"{pointer}/{str(key).replace('~', '~0').replace('/', '~1')}"
        if isinstance(value, (dict, list)):
            yield from _leaves(value, where)
        else:
            yield document, key, where, value


def record_tree(document: Any, recording_dir: str | Path) -> list[str]:
    """Every local path inside a JSON ``document`` (absolute, or with a ``/`` and existing) rewritten in
    place relative to ``recording_dir``; returns their JSON pointers (RFC 6901), for
    :data:`RECORDED_PATHS`."""
    found: list[str] = []
    for container, key, pointer, value in _leaves(document):
        if is_local_path(value) and ("/" in value or os.sep in value):
            container[key] = record(value, recording_dir)
            found.append(pointer)
    return found


def resolve_tree(document: dict[str, Any], recording_file: str | Path) -> dict[str, Any]:
    """A JSON document read from ``recording_file``: the values its :data:`RECORDED_PATHS` pointers name
    resolved against the file's directory (in place); a document without them predates the rule
    (warned about, values as written)."""
    pointers = document.pop(RECORDED_PATHS, None)
    if pointers is None:
        warn_old_layout(recording_file, (value for *_, value in _leaves(document)))
        return document
    directory = Path(recording_file).parent
    for pointer in pointers:
        *parents, last = _pointer_parts(pointer)
        node = document
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        key = int(last) if isinstance(node, list) else last
        node[key] = resolve(node[key], directory)
    return document
