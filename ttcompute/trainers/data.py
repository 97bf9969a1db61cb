"""Training data for the trainers: ``ttc`` output directories, files, dataset directories or Hub ids,
and a held-out split by whole problems."""

from __future__ import annotations

from pathlib import Path

import datasets
import numpy as np

from ttcompute.errors import InputError


def load_stepwise_dataset(name: str, split: str) -> datasets.Dataset:
    """Training rows (stepwise supervision, revision trajectories ...) from a ``ttc label`` output, a file, a dataset directory or a Hub id;
    several comma-separated sources are concatenated (e.g. label runs of different problems)."""
    from ttcompute.data_gen.shards import MANIFEST, load_sharded

    if "," in name:
        parts = [load_stepwise_dataset(part.strip(), split) for part in name.split(",") if part.strip()]
        columns = set.intersection(*(set(p.column_names) for p in parts))
        return datasets.concatenate_datasets(
            [p.remove_columns(sorted(set(p.column_names) - columns)) for p in parts]
        )

    path = Path(name)
    if (path / MANIFEST).is_file():
        return load_sharded(path)
    if path.is_file():
        kind = {".parquet": "parquet", ".jsonl": "json", ".json": "json"}.get(path.suffix)
        if kind is None:
            raise InputError(f"{name}: unsupported file type (use .parquet, .jsonl or .json)")
        return datasets.load_dataset(kind, data_files=str(path), split="train")
    if path.is_dir():
        try:
            return datasets.load_from_disk(str(path))
        except FileNotFoundError:
            return datasets.load_dataset(str(path), split=split)
    try:
        return datasets.load_dataset(name, split=split)
    except Exception as err:  # noqa: BLE001 - the Hub raises many types; the user needs one line
        raise InputError(f"{name}: cannot load the training data ({type(err).__name__}: {err})") from None


def split_by_problem(dataset: datasets.Dataset, fraction: float, seed: int):
    """Hold out ``fraction`` of the problems (whole problems, so no solution leaks across)."""
    if "problem_id" in dataset.column_names:
        ids = sorted(set(dataset["problem_id"]))
    else:
        ids = sorted(set(dataset["prompt"]))
    rng = np.random.default_rng(seed)
    held = set(rng.choice(len(ids), size=max(1, round(fraction * len(ids))), replace=False).tolist())
    held_ids = {ids[i] for i in held}
    key = dataset["problem_id"] if "problem_id" in dataset.column_names else dataset["prompt"]
    eval_rows = [i for i, k in enumerate(key) if k in held_ids]
    train_rows = [i for i, k in enumerate(key) if k not in held_ids]
    return dataset.select(train_rows), dataset.select(eval_rows)
