"""``ttc merge``: join the shards that workers wrote into separate directories, then write the stats.

Workers on a shared filesystem write into one ``--output_dir`` and need no merge. Without one (a job
array whose nodes each write locally, then copy their directory somewhere), each ``--shard i/n``
worker's directory holds part of the shards; ``ttc merge --inputs dir_0 ... dir_n-1 --output_dir all``
puts them together. A merge that still lacks shards says which; rerunning the stage with the same
config on the merged directory then does only those.
"""

from __future__ import annotations

import glob
import importlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ttcompute.core.errors import InputError

logger = logging.getLogger(__name__)

# stage -> (module, function computing its stats.json from a finished output directory)
STATS_OF: dict[str, tuple[str, str]] = {
    "sample": ("ttcompute.data_gen.sample", "sample_stats"),
    "label": ("ttcompute.data_gen.mc_labels", "label_output_stats"),
    "revisions": ("ttcompute.data_gen.trajectories", "revisions_stats"),
    "search": ("ttcompute.eval.search.stage", "search_output_stats"),
}


@dataclass
class MergeConfig:
    """Options of ``ttc merge``.

    Attributes:
        inputs: Output directories of the workers (glob patterns allowed, e.g. ``'runs/samples_*'``).
        output_dir: Where the merged output goes (a new directory, or an earlier partial merge).
        overwrite: Replace an ``output_dir`` that holds another run.
    """

    inputs: list[str] = field(default_factory=list, metadata={"help": "worker output directories (globs ok)"})
    output_dir: str = field(default="runs/merged", metadata={"help": "where the merged output goes"})
    overwrite: bool = field(default=False, metadata={"help": "replace output of a different run"})


def expand_inputs(patterns: list[str]) -> list[str]:
    """Directories named by ``patterns`` (globs expanded, sorted), each once, in order."""
    found: list[str] = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not matches:
            raise InputError(f"ttc merge: {pattern!r} matches no directory")
        found += [m for m in matches if m not in found]
    for directory in found:
        if not Path(directory).is_dir():
            raise InputError(f"ttc merge: {directory}: no such directory")
    return found


def run_merge(config: MergeConfig) -> dict[str, Any]:
    """The ``ttc merge`` stage."""
    from ttcompute.core.shards import merge_outputs, write_json

    inputs = expand_inputs(config.inputs)
    result = merge_outputs(inputs, config.output_dir, config.overwrite)
    logger.info(
        "Merged %d %s director%s into %s: %d shard(s) copied, %d already there, %d skipped as duplicates",
        len(inputs),
        result["stage"],
        "y" if len(inputs) == 1 else "ies",
        config.output_dir,
        result["copied"],
        result["already_present"],
        result["skipped"],
    )
    if result["missing"]:
        logger.warning(
            "%d of %d shards are still missing (e.g. %s): rerun `ttc %s` with the same config and "
            "--output_dir %s to do only those, or merge the directories that hold them",
            len(result["missing"]),
            result["num_shards"],
            result["missing"][:10],
            result["stage"],
            config.output_dir,
        )
        return {"output_dir": config.output_dir, **result}
    if result["stage"] in STATS_OF:
        module, function = STATS_OF[result["stage"]]
        stats = getattr(importlib.import_module(module), function)(config.output_dir)
        write_json(Path(config.output_dir) / "stats.json", stats)
        result["stats"] = stats
    logger.info("All %d shards present -> %s", result["num_shards"], config.output_dir)
    return {"output_dir": config.output_dir, **result}
