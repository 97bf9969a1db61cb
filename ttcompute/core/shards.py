"""Crash-safe sharded outputs: finished shards survive a kill, a rerun resumes, configs never mix.

Layout of an output directory::

    manifest.json           stage, config hash, number of shards (written once, first); ``info``:
                            what the stats need besides the rows (e.g. the policy's parameter count)
    shard-00003.parquet     one finished shard (written as .tmp, then renamed: never half-written)
    ttc_config.yaml         the resolved config of the run
    stats.json              compute spent (tokens, FLOPs), written when every shard is present

Shards are numbered over the whole problem set, so ``--shard i/n`` workers (separate processes or
nodes on a shared filesystem) write disjoint files into one directory and the final dataset is the
shards read in order, whichever worker wrote them. Workers without a shared filesystem each write
their own directory; `merge_outputs` (``ttc merge``) joins them.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from ttcompute.core.errors import InputError
from ttcompute.core.recorded_paths import RECORDED_PATHS, record_options, resolve_options

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
    output_dir: str | Path,
    stage: str,
    config_hash: str,
    num_shards: int,
    overwrite: bool,
    info: dict[str, Any] | None = None,
    also_accept: Collection[str] = (),
) -> None:
    """Create ``output_dir`` with its manifest, or check that an existing one belongs to this config.

    ``info`` is recorded beside the run's identity (stage, config hash, shard count) for the stats
    (`ttc merge` computes them without loading a model); it is not part of the identity.
    ``also_accept``: other hashes of the same config (as an older version computed it), under which an
    existing output is still this run's; its manifest keeps them.

    Raises:
        InputError: the directory holds the output of another stage or another config, and
            ``overwrite`` is off (its finished shards are left untouched).
    """
    out = Path(output_dir)
    manifest_file = out / MANIFEST
    manifest = {"stage": stage, "config_hash": config_hash, "num_shards": num_shards}
    info = _recorded_info(info, out)
    if manifest_file.exists():
        existing = json.loads(manifest_file.read_text())
        if existing.get("config_hash") in also_accept:
            manifest["config_hash"] = existing["config_hash"]
        if _identity(existing) != manifest:
            if not overwrite:
                raise InputError(
                    f"{out}: holds output of a different run (manifest {_identity(existing)}, this run "
                    f"{manifest}); pass --overwrite to replace it or choose another output_dir"
                )
            logger.warning("--overwrite: removing the %s shards of a different run in %s", stage, out)
            for old in out.glob("shard-*.parquet"):
                old.unlink()
            (out / "stats.json").unlink(missing_ok=True)
        elif info is None or existing.get("info") == info:
            return
    elif out.exists() and any(out.glob("shard-*.parquet")) and not overwrite:
        raise InputError(
            f"{out}: has shards but no {MANIFEST}; pass --overwrite or choose another output_dir"
        )
    out.mkdir(parents=True, exist_ok=True)
    _atomic_write_text(manifest_file, json.dumps({**manifest, "info": info or {}}, indent=2))


def _recorded_info(info: dict[str, Any] | None, out: Path) -> dict[str, Any] | None:
    """``info`` as the manifest keeps it: the inputs it names (``samples_dir`` ...) relative to the
    output (core/recorded_paths.py), so ``ttc merge`` finds them from any directory."""
    if not info:
        return info
    recorded = record_options(info, out)
    if not recorded[RECORDED_PATHS]:
        del recorded[RECORDED_PATHS]
    return recorded


def _identity(manifest: dict[str, Any]) -> dict[str, Any]:
    return {k: manifest.get(k) for k in ("stage", "config_hash", "num_shards")}


def read_resolved_config(output_dir: str | Path) -> dict[str, Any]:
    """The options a stage recorded in ``<output_dir>/ttc_config.yaml`` ({} when there is none): how
    a later stage learns what an earlier one was run with (its policy, its prompt template ...)."""
    path = Path(output_dir) / "ttc_config.yaml"
    if not path.is_file():
        return {}
    # Paths it recorded are relative to it (core/recorded_paths.py): absolute here, wherever we run.
    return resolve_options(yaml.safe_load(path.read_text()) or {}, path)


def read_manifest(output_dir: str | Path) -> dict[str, Any]:
    """The manifest of a sharded output (``info`` is ``{}`` for outputs written before it existed)."""
    path = Path(output_dir) / MANIFEST
    if not path.is_file():
        raise InputError(f"{output_dir}: not a ttc output directory (no {MANIFEST})")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise InputError(f"{path}: not valid JSON ({err})") from None
    info = manifest.get("info") or {}
    if isinstance(info, dict) and RECORDED_PATHS in info:
        manifest["info"] = resolve_options(info, path)
    return {"info": {}, **manifest}


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


def left_for_other_workers(output_dir: str | Path, worker: int, num_workers: int) -> dict[str, Any] | None:
    """The stage's result when this worker is done but shards remain (other ``--shard`` workers'),
    logged; None when every shard is finished and the stats can be written."""
    remaining = missing_shards(output_dir)
    if not remaining:
        return None
    logger.info(
        "Worker %d/%d finished; %d shard(s) remain for other workers", worker, num_workers, len(remaining)
    )
    return {"output_dir": str(output_dir), "remaining_shards": len(remaining)}


def finished_output_files(output_dir: str | Path) -> list[Path]:
    """The shard files of a finished sharded output, in order.

    Raises:
        InputError: not a sharded output, or shards are missing (the message lists some).
    """
    read_manifest(output_dir)
    missing = missing_shards(output_dir)
    if missing:
        raise InputError(
            f"{output_dir}: {len(missing)} shard(s) not finished yet (e.g. {missing[:5]}); rerun the stage"
        )
    return [shard_path(output_dir, i) for i in sorted(finished_shards(output_dir))]


def load_sharded(output_dir: str | Path) -> datasets.Dataset:
    """The full dataset of a finished sharded output, shards in order.

    Raises:
        InputError: not a sharded output, or shards are missing (the message lists them).
    """
    files = finished_output_files(output_dir)
    # A shard may hold no rows (e.g. no labellable solution in its problems): it marks work as done,
    # but `datasets` cannot read a zero-row parquet file alongside the others.
    non_empty = [str(f) for f in files if pq.read_metadata(f).num_rows > 0]
    if not non_empty:
        return datasets.Dataset(pq.read_table(files[0]))
    features = datasets.Features.from_arrow_schema(common_schema(non_empty))
    return datasets.Dataset.from_parquet(non_empty, features=features, keep_in_memory=False)


def common_schema(files: list[str | Path]) -> pa.Schema:
    """The one schema every shard reads back as.

    Outputs written before a stage fixed its schema may hold a shard whose types were inferred from
    its own rows (``list<null>`` where every answer was None, int64 where another shard has double):
    `datasets` would take the first file's types for all of them and fail, or cast values away. Only
    widening promotions are allowed (null to anything, int to float); any other difference is an error.

    Raises:
        InputError: two shards disagree on a column in a way no widening covers.
    """
    schemas = [pq.read_schema(f) for f in files]
    first = schemas[0].remove_metadata()
    if all(s.remove_metadata() == first for s in schemas[1:]):
        return schemas[0]
    try:
        return pa.unify_schemas(schemas, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
        raise InputError(f"{Path(files[0]).parent}: shards disagree on column types ({err})") from None


class ShardReader:
    """The rows of a finished sharded output, read straight from its parquet files a batch or a range
    at a time, so memory grows with one shard, never with the whole output.

    `load_sharded` memory-maps an Arrow copy instead: convenient for random access, but every page
    read stays resident, so reading a million completions through it grows the process to their size.
    """

    def __init__(self, output_dir: str | Path):
        self.output_dir = Path(output_dir)
        self.files = finished_output_files(output_dir)
        self.num_rows = [pq.read_metadata(f).num_rows for f in self.files]
        self.starts = [sum(self.num_rows[:i]) for i in range(len(self.files))]
        self.column_names = pq.read_schema(self.files[0]).names if self.files else []
        non_empty = [f for f, n in zip(self.files, self.num_rows) if n]
        # Every batch comes in one schema, whichever shard it was read from.
        self.schema = common_schema(non_empty) if non_empty else None
        self._cached: tuple[Path, tuple[str, ...] | None, pa.Table] | None = None

    def __len__(self) -> int:
        return sum(self.num_rows)

    def iter_batches(
        self, columns: list[str] | None = None, batch_size: int = 256
    ) -> Iterator[pa.RecordBatch]:
        """Every row, in order, as Arrow record batches of at most ``batch_size`` rows."""
        for path, count in zip(self.files, self.num_rows):
            if count:
                for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_size, columns=columns):
                    yield self._conform(batch)

    def rows(self, start: int, end: int, columns: list[str] | None = None) -> list[dict[str, Any]]:
        """Rows ``start`` to ``end`` (exclusive) as dicts."""
        return list(self.iter_rows(start, end, columns))

    def iter_rows(self, start: int, end: int, columns: list[str] | None = None) -> Iterator[dict[str, Any]]:
        """Rows ``start`` to ``end`` (exclusive) as dicts, made a few at a time: a caller that handles
        one row at a time never holds a whole range of completions as Python strings."""
        for path, first, count in zip(self.files, self.starts, self.num_rows):
            lo, hi = max(start, first), min(end, first + count)
            if lo < hi:
                for batch in (
                    self._table(path, columns).slice(lo - first, hi - lo).to_batches(max_chunksize=8)
                ):
                    yield from batch.to_pylist()

    def _table(self, path: Path, columns: list[str] | None) -> pa.Table:
        # Consecutive ranges usually fall in one input shard: decode it once, keep only that one.
        key = tuple(columns) if columns is not None else None
        if self._cached is None or self._cached[:2] != (path, key):
            self._cached = (path, key, self._conform(pq.read_table(path, columns=columns)))
        return self._cached[2]

    def _conform(self, data: pa.RecordBatch | pa.Table) -> pa.RecordBatch | pa.Table:
        """``data`` in the output's common schema (`common_schema`), its own columns only."""
        if self.schema is None:
            return data
        target = pa.schema([self.schema.field(name) for name in data.schema.names])
        return data if data.schema.remove_metadata() == target else data.cast(target)


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def write_json(path: str | Path, value: Any) -> None:
    _atomic_write_text(Path(path), json.dumps(value, indent=2, sort_keys=True))


def merge_outputs(
    inputs: list[str | Path], output_dir: str | Path, overwrite: bool = False
) -> dict[str, Any]:
    """Join the shards that several workers wrote into separate directories (one per node, say).

    Every input must hold the same run (stage, config hash, shard count). A shard already in
    ``output_dir`` is kept; one that two inputs both hold is taken from the first (a rerun of the same
    shard may differ in the last bits on another GPU, but either is a valid result). Files are copied
    to a temporary name and renamed, so a killed merge can simply be run again.

    Returns:
        ``{"stage", "num_shards", "copied", "already_present", "skipped", "missing"}``: ``skipped``
        counts input shards not copied because ``output_dir`` already had them.

    Raises:
        InputError: an input is not a ttc output or belongs to another run.
    """
    if not inputs:
        raise InputError("ttc merge: no input directories")
    manifests = [read_manifest(d) for d in inputs]
    first = _identity(manifests[0])
    for directory, manifest in zip(inputs, manifests):
        if _identity(manifest) != first:
            raise InputError(
                f"{directory}: holds another run (manifest {_identity(manifest)}) than {inputs[0]} "
                f"({first}); only shards of one stage and config can be merged"
            )
    out = Path(output_dir)
    if any(out.resolve() == Path(d).resolve() for d in inputs):
        raise InputError(f"ttc merge: {out} is also an input; merge into a new directory")
    info = next((m["info"] for m in manifests if m.get("info")), None)
    prepare_output(out, first["stage"], first["config_hash"], first["num_shards"], overwrite, info)
    config = next(
        (Path(d) / "ttc_config.yaml" for d in inputs if (Path(d) / "ttc_config.yaml").is_file()), None
    )
    if config is not None and not (out / "ttc_config.yaml").is_file():
        # Its recorded paths are relative to the worker's directory: recorded again for this one.
        header = "".join(
            line for line in config.read_text().splitlines(keepends=True) if line.startswith("#")
        )
        values = record_options(read_resolved_config(config.parent), out)
        _atomic_write_text(out / "ttc_config.yaml", header + yaml.safe_dump(values, sort_keys=True))
    present = finished_shards(out)
    copied, already, skipped = 0, len(present), 0
    for directory in inputs:
        for index in sorted(finished_shards(directory)):
            if index >= first["num_shards"]:
                raise InputError(
                    f"{shard_path(directory, index)}: beyond the manifest's {first['num_shards']} shards"
                )
            if index in present:
                skipped += 1
                continue
            _atomic_copy(shard_path(directory, index), shard_path(out, index))
            present.add(index)
            copied += 1
    missing = sorted(set(range(first["num_shards"])) - present)
    return {
        "stage": first["stage"],
        "num_shards": first["num_shards"],
        "copied": copied,
        "already_present": already,
        "skipped": skipped,
        "missing": missing,
    }


def _atomic_copy(source: Path, target: Path) -> None:
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.copyfile(source, tmp)
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    tmp.replace(target)
