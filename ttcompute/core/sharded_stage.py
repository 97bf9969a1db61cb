"""The one skeleton of every generating stage (``sample``, ``label``, ``revisions``, ``search``, and any
new one): sharded, resumable, split over workers, stats written once every shard is there.

A stage decides what its shards are and how to build one; :func:`run_sharded_stage` does the rest,
the same way for all of them:

1. identity: a hash of every option that changes the output (run options such as ``output_dir``,
   ``--shard`` or ``--strict`` left out; an input path by what it names, not how it is spelled),
   recorded with the shard count in ``manifest.json`` (`~ttcompute.core.shards.prepare_output`), so a
   directory never mixes two configs or two versions of an input;
2. ``ttc_config.yaml``: the resolved options, rerunnable with ``--config``;
3. the shards of this worker (``j % n == i`` for ``--shard i/n``) not yet on disk, each written
   atomically as soon as it is built -- a kill loses only the shards in progress;
4. when no shard is missing (this worker may finish before the others): ``stats.json``.

The stage loads its models *before* calling it, so that a typo in a model path never leaves a
manifest behind.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
from tqdm.auto import tqdm

from ttcompute.core.checkpoint_identity import input_identity
from ttcompute.core.config import config_hash, config_to_dict, save_resolved_config
from ttcompute.core.recorded_paths import map_paths, path_options
from ttcompute.core.shards import (
    finished_shards,
    left_for_other_workers,
    parse_shard_spec,
    prepare_output,
    write_json,
    write_shard,
)
from ttcompute.core.tracking import TRACKING_OPTIONS, StageTracker

logger = logging.getLogger(__name__)

# Options that say where and by whom a run is done, never what it computes: not part of its identity.
RUN_OPTIONS = frozenset({"output_dir", "overwrite", "shard", "strict"})


def run_sharded_stage(
    stage: str,
    configs: Sequence[Any],
    *,
    output_dir: str,
    shard: str,
    overwrite: bool,
    num_shards: int,
    schema: pa.Schema,
    build_shard: Callable[[int], list[dict[str, Any]]],
    stats: Callable[[str], dict[str, Any]],
    info: dict[str, Any] | None = None,
    hash_extra: dict[str, Any] | None = None,
    hash_ignore: Sequence[str] = (),
    progress: str = "Shards",
    progress_unit: str = "shard",
    units_per_shard: Callable[[int], int] | None = None,
    describe_shard: Callable[[int], str] | None = None,
    tracking: Any = None,
    shard_metrics: Callable[[list[dict[str, Any]]], dict[str, Any]] | None = None,
    on_complete: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Build every unfinished shard of this worker, then the stats when the output is complete.

    Args:
        stage: The ``ttc`` stage name (recorded in the manifest and the resolved config).
        configs: The stage's config dataclasses: hashed (with ``hash_extra``, minus
            :data:`RUN_OPTIONS` and ``hash_ignore``) and saved as ``ttc_config.yaml``.
        output_dir / shard / overwrite: Where, which ``i/n`` part, and whether another run's output
            there may be replaced.
        num_shards: Shards of the whole output (all workers).
        schema: The fixed column types of every shard (a shard with no rows still reads back).
        build_shard: Shard index -> its rows.
        stats: Output directory -> the stage's stats, computed from the finished shards (and the
            manifest's ``info``); written to ``stats.json``.
        info: What the stats need besides the rows (model sizes ...), kept in the manifest.
        progress / progress_unit / units_per_shard / describe_shard: The progress bar: its label,
            unit, how far one shard moves it (default 1) and a postfix naming the shard in progress.
        tracking: The config holding :class:`~ttcompute.core.tracking.TrackingOptions`
            (``--report_to wandb``); ``shard_metrics``: a shard's rows -> what it spent (tokens,
            FLOPs), logged after it with the shards done; the stats become the run's summary.
        on_complete: Called with the stats once the output is complete (a Hub push).

    Returns:
        ``{"output_dir", **stats}``, or ``{"output_dir", "remaining_shards"}`` when shards remain
        for other workers.
    """
    worker, num_workers = parse_shard_spec(shard)
    values = {**config_to_dict(*configs), **(hash_extra or {})}
    ignore = RUN_OPTIONS | TRACKING_OPTIONS | set(hash_ignore)
    digest = config_hash(identified_inputs(values), ignore=ignore)
    # An output begun before inputs were hashed by what they are: its hash of the paths as typed.
    as_typed = config_hash(values, ignore=ignore)
    prepare_output(output_dir, stage, digest, num_shards, overwrite, info, also_accept=(as_typed,))
    save_resolved_config(output_dir, stage, *configs)
    tracker = StageTracker(stage, tracking, config_to_dict(*configs), output_dir)

    done = finished_shards(output_dir)
    todo = [j for j in range(num_shards) if j % num_workers == worker and j not in done]
    if done:
        logger.info("Resuming: %d of %d shards already finished in %s", len(done), num_shards, output_dir)
    units = units_per_shard or (lambda j: 1)
    bar = tqdm(total=sum(units(j) for j in todo), desc=progress, unit=progress_unit)
    for done_now, j in enumerate(todo, 1):
        if describe_shard is not None:
            bar.set_postfix_str(describe_shard(j))
        rows = build_shard(j)
        write_shard(output_dir, j, rows, schema)
        bar.update(units(j))
        spent = shard_metrics(rows) if shard_metrics is not None else {}
        tracker.log(
            {"shards_done": len(done) + done_now, "shards_total": num_shards, "rows": len(rows), **spent}
        )
    bar.close()

    pending = left_for_other_workers(output_dir, worker, num_workers)
    if pending is not None:
        tracker.finish(None)
        return pending
    result = stats(output_dir)
    write_json(Path(output_dir) / "stats.json", result)
    tracker.finish(result)
    if on_complete is not None:
        on_complete(result)
    return {"output_dir": output_dir, **result}


def identified_inputs(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with every input path replaced by what it names (core/checkpoint_identity.py's
    :func:`input_identity`): the same run, resumed from another directory, another spelling of a path
    or a copy of its inputs, hashes the same; new weights or samples written at the same path do not."""
    out = dict(values)
    for key in path_options(values):
        out[key] = map_paths(key, values[key], input_identity)
    return out


def is_complete(result: dict[str, Any]) -> bool:
    """Whether a :func:`run_sharded_stage` result holds the stats (no shard left to other workers)."""
    return "remaining_shards" not in result
