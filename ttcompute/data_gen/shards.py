"""Crash-safe sharded outputs: finished shards survive a kill, a rerun resumes, configs never mix.

Layout of an output directory::

    manifest.json           stage, config hash, number of shards (written once, first)
    shard-00003.parquet     one finished shard (written as .tmp, then renamed: never half-written)
    ttc_config.yaml         the resolved config of the run
    stats.json              compute spent (tokens, FLOPs), written when every shard is present

Shards are numbered over the whole problem set, so ``--shard i/n`` workers (separate processes or
nodes on a shared filesystem) write disjoint files into one directory and the final dataset is the
shards read in order, whichever worker wrote them.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.parquet as pq

from ttcompute.errors import InputError

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"


def shard_path(output_dir: str | Path, index: int) -> Path:
    return Path(output_dir) / f"shard-{index:05d}.parquet"


def parse_shard_spec(spec: str) -> tuple[int, int]:
    """``"i/n"`` -> (i, n) with 0 <= i < n.

    >>> parse_shard_spec("2/8")
    (2, 8)
    """
    try:
        i, n = (int(x) for x in spec.split("/"))
    except ValueError:
        raise InputError(f"--shard must look like i/n (e.g. 0/4), got {spec!r}") from None
    if not 0 <= i < n:
        raise InputError(f"--shard {spec}: need 0 <= i < n")
    return i, n


def prepare_output(
    output_dir: str | Path, stage: str, config_hash: str, num_shards: int, overwrite: bool
) -> None:
    """Create ``output_dir`` with its manifest, or check that an existing one belongs to this config.

    Raises:
        InputError: the directory holds the output of another stage or another config, and
            ``overwrite`` is off (its finished shards are left untouched).
    """
    out = Path(output_dir)
    manifest_file = out / MANIFEST
    manifest = {"stage": stage, "config_hash": config_hash, "num_shards": num_shards}
    if manifest_file.exists():
        existing = json.loads(manifest_file.read_text())
        if existing != manifest:
            if not overwrite:
                raise InputError(
                    f"{out}: holds output of a different run (manifest {existing}, this run {manifest}); "
                    "pass --overwrite to replace it or choose another output_dir"
                )
            logger.warning("--overwrite: removing the %s shards of a different run in %s", stage, out)
            for old in out.glob("shard-*.parquet"):
                old.unlink()
            (out / "stats.json").unlink(missing_ok=True)
        else:
            return
    elif out.exists() and any(out.glob("shard-*.parquet")) and not overwrite:
        raise InputError(
            f"{out}: has shards but no {MANIFEST}; pass --overwrite or choose another output_dir"
        )
    out.mkdir(parents=True, exist_ok=True)
    _atomic_write_text(manifest_file, json.dumps(manifest, indent=2))


def finished_shards(output_dir: str | Path) -> set[int]:
    return {int(p.stem.split("-")[1]) for p in Path(output_dir).glob("shard-*.parquet")}


def write_shard(
    output_dir: str | Path, index: int, rows: list[dict[str, Any]], schema: pa.Schema | None = None
) -> Path:
    """Write one shard atomically: a kill leaves either the whole shard or none of it.

    ``schema`` fixes the column types, so that a shard with no rows still reads back with the others.
    """
    path = shard_path(output_dir, index)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    table = pa.Table.from_pylist(rows, schema=schema)
    pq.write_table(table, tmp)
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    tmp.replace(path)
    return path


def missing_shards(output_dir: str | Path) -> list[int]:
    manifest = json.loads((Path(output_dir) / MANIFEST).read_text())
    return sorted(set(range(manifest["num_shards"])) - finished_shards(output_dir))


def load_sharded(output_dir: str | Path) -> datasets.Dataset:
    """The full dataset of a finished sharded output, shards in order.

    Raises:
        InputError: not a sharded output, or shards are missing (the message lists them).
    """
    out = Path(output_dir)
    if not (out / MANIFEST).is_file():
        raise InputError(f"{out}: not a ttc output directory (no {MANIFEST})")
    missing = missing_shards(out)
    if missing:
        raise InputError(
            f"{out}: {len(missing)} shard(s) not finished yet (e.g. {missing[:5]}); rerun the stage"
        )
    files = [shard_path(out, i) for i in sorted(finished_shards(out))]
    # A shard may hold no rows (e.g. no labellable solution in its problems): it marks work as done,
    # but `datasets` cannot read a zero-row parquet file alongside the others.
    non_empty = [str(f) for f in files if pq.read_metadata(f).num_rows > 0]
    if not non_empty:
        return datasets.Dataset(pq.read_table(files[0]))
    return datasets.Dataset.from_parquet(non_empty, keep_in_memory=False)


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def write_json(path: str | Path, value: Any) -> None:
    _atomic_write_text(Path(path), json.dumps(value, indent=2, sort_keys=True))
