"""A routing policy that deploys: one folder holding ``routing_policy.json``, its question probe and
every local checkpoint it names (policy, PRMs, revisers), copied, each file with its sha256.

``ttc compute-optimal --export_policy DIR`` writes it; ``ttc route --policy DIR/routing_policy.json``
runs it from any directory on any machine that has the folder, and refuses it when a file's checksum
does not match (``routing_policy.verify_bundle``, called by ``load_routing_policy``). Hub ids stay Hub ids: they
are fetched where the bundle runs. What the policy records only as provenance (the search, select,
difficulty and sample directories it was learned from) is not copied: routing never reads it, and the
bundle records it as ``null``.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from ttcompute.core.checkpoint_identity import checkpoint_identity, file_sha256
from ttcompute.core.errors import InputError
from ttcompute.core.recorded_paths import resolve_options
from ttcompute.eval.routing_policy import (
    BUNDLE_KEY,
    POLICY_FILE,
    PROBE_FILE,
    load_routing_policy,
    save_routing_policy,
)
from ttcompute.models.likelihood_prm import LIKELIHOOD_PRM_FILE, save_likelihood_prm

logger = logging.getLogger(__name__)

CHECKPOINTS_DIR = "checkpoints"


def _checkpoint_slots(policy: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    """Every (mapping, key) of the policy that names a model routing loads."""
    slots = [(policy["policy"], "model_name_or_path")]
    for search in policy["searches"]:
        slots.append((search["generator"], "model_name_or_path"))
        slots += [(search["search"], key) for key in ("prm", "reviser")]
    options = policy["predictor"].get("options") or {}
    slots += [(options, key) for key in ("prm", "model_name_or_path")]
    return [(mapping, key) for mapping, key in slots if isinstance(mapping.get(key), str) and mapping[key]]


def _drop_provenance(policy: dict[str, Any]) -> None:
    """Directories the policy was learned from: not part of the bundle, recorded as null."""
    for search in policy["searches"]:
        search["search_dir"] = None
        if search["search"].get("initial_samples_dir"):
            search["search"]["initial_samples_dir"] = None
    predictor = policy["predictor"]
    if predictor.get("difficulty_dir"):
        predictor["difficulty_dir"] = None
    for key, value in list((predictor.get("options") or {}).items()):
        if key.endswith("_dir") and isinstance(value, str):
            predictor["options"][key] = None


def export_bundle(policy_file: str | Path, out: str | Path) -> dict[str, Any]:
    """Write the deployable bundle of ``policy_file`` to ``out`` (a new or empty directory; written
    whole into a temporary sibling first, so a failed export leaves nothing half-done). Returns
    ``{"files": n, "bytes": total, "checkpoints": {name: source}}``."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out}: exists and is not empty; export a routing policy into a new directory")
    policy = load_routing_policy(policy_file)  # paths absolute, the policy checked
    policy.pop(BUNDLE_KEY, None)
    tmp = out.with_name(f".{out.name}.export-tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / CHECKPOINTS_DIR).mkdir(parents=True)
    try:
        copied: dict[str, Path] = {}  # identity -> its copy
        sources: dict[str, str] = {}

        def copy(source: Path) -> Path:
            identity = checkpoint_identity(source)
            if identity not in copied:
                name, n = source.name, 1
                while (tmp / CHECKPOINTS_DIR / name).exists():
                    n += 1
                    name = f"{source.name}-{n}"
                target = tmp / CHECKPOINTS_DIR / name
                shutil.copytree(source, target, ignore=shutil.ignore_patterns("checkpoint-*"))
                copied[identity], sources[name] = target, str(source)
                spec_file = source / LIKELIHOOD_PRM_FILE
                if spec_file.is_file():  # a likelihood PRM names its base model: that goes in too
                    spec = resolve_options(json.loads(spec_file.read_text()), spec_file)
                    if Path(spec["base_model"]).is_dir():
                        spec["base_model"] = str(copy(Path(spec["base_model"])))
                    spec.pop("format", None)
                    save_likelihood_prm(target, spec)
            return copied[identity]

        for mapping, key in _checkpoint_slots(policy):
            if Path(mapping[key]).is_dir():  # else a Hub id: fetched where the bundle runs
                mapping[key] = str(copy(Path(mapping[key])))
        if policy["predictor"]["kind"] == "question":
            shutil.copyfile(policy["predictor"]["probe_file"], tmp / PROBE_FILE)
            policy["predictor"]["probe_file"] = PROBE_FILE
        _drop_provenance(policy)
        files = sorted(p for p in tmp.rglob("*") if p.is_file())
        policy[BUNDLE_KEY] = {"files": {p.relative_to(tmp).as_posix(): file_sha256(p) for p in files}}
        save_routing_policy(policy, tmp / POLICY_FILE)
        if out.exists():
            out.rmdir()  # empty, checked above
        tmp.replace(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    logger.info(
        "Exported the routing policy with %d checkpoint(s) to %s (%.1f MB)", len(copied), out, total / 1e6
    )
    return {"files": len(files) + 1, "bytes": total, "checkpoints": sources}


def bundle_listing(out: str | Path) -> str:
    """The bundle's files and sizes, one per line (for logs and notes)."""
    out = Path(out)
    lines = [
        f"{p.relative_to(out).as_posix()}  {p.stat().st_size:,} B"
        for p in sorted(out.rglob("*"))
        if p.is_file()
    ]
    return "\n".join(lines)
