"""Training data for the trainers: ``ttc`` output directories, files, dataset directories or Hub ids,
and a held-out split by whole problems."""

from __future__ import annotations

from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from datasets.exceptions import DatasetGenerationError

from ttcompute.core.errors import InputError, option
from ttcompute.core.shards import MANIFEST, load_sharded


def load_training_dataset(name: str, split: str) -> datasets.Dataset:
    """Training rows (stepwise supervision, revision trajectories ...) from a ``ttc`` output directory,
    a file, a dataset directory or a Hub id; several comma-separated sources are concatenated (e.g.
    label runs of different problems)."""
    if "," in name:
        names = [part.strip() for part in name.split(",") if part.strip()]
        parts = [load_training_dataset(part, split) for part in names]
        columns = set.intersection(*(set(p.column_names) for p in parts))
        parts = [p.remove_columns(sorted(set(p.column_names) - columns)) for p in parts]
        features = _common_features(parts, names)
        return datasets.concatenate_datasets(
            [p if p.features == features else p.cast(features) for p in parts]
        )

    path = Path(name)
    if (path / MANIFEST).is_file():
        return load_sharded(path)
    if path.is_file():
        kind = {".parquet": "parquet", ".jsonl": "json", ".json": "json"}.get(path.suffix)
        if kind is None:
            raise InputError(f"{name}: unsupported file type (use .parquet, .jsonl or .json)")
        # `datasets` cannot build a dataset from a file without rows (a DatasetGenerationError ten frames
        # deep): a parquet file keeps its columns, so its rows are checked like any others'; JSON has none.
        if kind == "parquet" and pq.read_metadata(path).num_rows == 0:
            return datasets.Dataset(pq.read_table(path))
        if kind == "json" and _blank(path):
            raise InputError(f"{name}: no rows")
        try:
            return datasets.load_dataset(kind, data_files=str(path), split="train")
        except DatasetGenerationError as err:
            raise InputError(f"{name}: cannot read it as {kind} ({err.__cause__ or err})") from None
    if path.is_dir():
        try:
            saved = datasets.load_from_disk(str(path))
        except FileNotFoundError:
            return datasets.load_dataset(str(path), split=split)
        if isinstance(saved, datasets.DatasetDict):
            if split not in saved:
                raise InputError(f"{name}: no split {split!r} (it has {', '.join(sorted(saved))})")
            return saved[split]
        return saved
    try:
        return datasets.load_dataset(name, split=split)
    except Exception as err:  # noqa: BLE001 - the Hub raises many types; the user needs one line
        raise InputError(f"{name}: cannot load the training data ({type(err).__name__}: {err})") from None


def _blank(path: Path) -> bool:
    """Whether a text file holds nothing but whitespace (read up to its first other character)."""
    with path.open(encoding="utf-8", errors="replace") as lines:
        return not any(line.strip() for line in lines)


def _common_features(parts: list[datasets.Dataset], names: list[str]) -> datasets.Features:
    """The features several sources share: a column stored as bool in one (TRL's stepwise labels)
    and as numbers in another (``ttc label``'s soft labels) becomes float64, never the first
    source's type (a bool column would turn 0.25 into True)."""
    schemas = [p.features.arrow_schema for p in parts]
    fields = []
    for field in schemas[0]:
        types = [s.field(field.name).type for s in schemas]
        if all(t == types[0] for t in types):
            fields.append(field)
        elif all(_is_number(t) for t in types):
            fields.append(pa.field(field.name, pa.float64()))
        elif all(pa.types.is_list(t) and _is_number(t.value_type) for t in types):
            fields.append(pa.field(field.name, pa.list_(pa.float64())))
        else:
            kinds = ", ".join(f"{n}: {t}" for n, t in zip(names, types))
            raise InputError(f"column {field.name!r} has different types in the sources ({kinds})")
    return datasets.Features.from_arrow_schema(pa.schema(fields))


def _is_number(kind: pa.DataType) -> bool:
    return pa.types.is_boolean(kind) or pa.types.is_integer(kind) or pa.types.is_floating(kind)


def split_by_problem(
    dataset: datasets.Dataset, fraction: float, seed: int, name: str = "the training data"
) -> tuple[datasets.Dataset, datasets.Dataset]:
    """Hold out ``fraction`` of the problems (whole problems, so no solution leaks across); at least
    one problem, so a fraction > 0 always evaluates.

    Raises:
        InputError: the split would leave nothing to train on (one problem, or a fraction that rounds
            to all of them), naming ``name`` (the data) and the options that fix it.
    """
    if "problem_id" in dataset.column_names:
        ids = sorted(set(dataset["problem_id"]))
    else:
        ids = sorted(set(dataset["prompt"]))
    num_held = max(1, round(fraction * len(ids)))
    if num_held >= len(ids):
        # Found here, before any output exists: the Trainer would fail on an empty training set deep
        # inside `datasets` (a KeyError on the labels column) after ttc_config.yaml was written.
        problems = f"{len(ids)} problem{'s' if len(ids) != 1 else ''}"
        flag = option("eval_fraction")
        raise InputError(
            f"{name}: {num_held} of {problems} held out for evaluation ({flag} {fraction}), none left to "
            f"train on; pass {flag} 0 (or {option('eval_dataset_name')}) or use data with more problems"
        )
    rng = np.random.default_rng(seed)
    held = set(rng.choice(len(ids), size=num_held, replace=False).tolist())
    held_ids = {ids[i] for i in held}
    key = dataset["problem_id"] if "problem_id" in dataset.column_names else dataset["prompt"]
    eval_rows = [i for i, k in enumerate(key) if k in held_ids]
    train_rows = [i for i, k in enumerate(key) if k not in held_ids]
    return dataset.select(train_rows), dataset.select(eval_rows)
