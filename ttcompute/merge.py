"""``ttc merge``: join the shards that workers wrote into separate directories, then write the stats.

Workers on a shared filesystem write into one ``--output_dir`` and need no merge. Without one (a job
array whose nodes each write locally, then copy their directory somewhere), each ``--shard i/n``
worker's directory holds part of the shards; ``ttc merge --inputs dir_0 ... dir_n-1 --output_dir all``
puts them together. A merge that still lacks shards says which; rerunning the stage with the same
config on the merged directory then does only those.
"""

from __future__ import annotations

import glob
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ttcompute.core.errors import InputError
from ttcompute.core.shards import merge_outputs, write_json
from ttcompute.data_gen.convert_labels import convert_labels_stats
from ttcompute.data_gen.stage_stats import label_output_stats, sample_stats
from ttcompute.data_gen.trajectories import revisions_stats
from ttcompute.eval.search.search_stats import search_output_stats
from ttcompute.merge_config import MergeConfig
from ttcompute.route_stats import route_stats

logger = logging.getLogger(__name__)

# stage -> the function computing its stats.json from a finished output directory. The merge works on
# the output of every sharded stage, data_gen's and eval's alike: it sits above them, beside the CLI.
STATS_OF: dict[str, Callable[[str], dict[str, Any]]] = {
    "sample": sample_stats,
    "label": label_output_stats,
    "convert-labels": convert_labels_stats,
    "revisions": revisions_stats,
    "search": search_output_stats,
    "route": route_stats,
}


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
        stats = STATS_OF[result["stage"]](config.output_dir)
        write_json(Path(config.output_dir) / "stats.json", stats)
        result["stats"] = stats
    logger.info("All %d shards present -> %s", result["num_shards"], config.output_dir)
    return {"output_dir": config.output_dir, **result}
