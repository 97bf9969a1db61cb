"""``ttc difficulty``: oracle difficulty bins from the base policy's pass@1 (Snell et al., Sec. 3).

Bins are quantiles of per-problem pass@1: bin 1 holds the easiest fifth (highest pass@1), bin 5 the
hardest. Edges are saved, so another problem set (a test split, another run) is binned on the same
scale with ``--bin_edges_file``.

Output (``output_dir``): ``difficulty.parquet`` with columns ``problem_id, pass_at_1, num_samples,
bin``; ``bin_edges.json``; ``stats.json`` (bin sizes, and the sampling compute this estimate cost);
``ttc_config.yaml``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ttcompute.errors import InputError

logger = logging.getLogger(__name__)


@dataclass
class DifficultyConfig:
    """Options of ``ttc difficulty``.

    Attributes:
        samples_dir: Output directory of ``ttc sample``.
        output_dir: Where the bins go.
        num_bins: Number of quantile bins (the paper uses 5).
        bin_edges_file: Reuse the edges of an earlier run (its ``bin_edges.json``) instead of computing
            new ones from these samples.
    """

    samples_dir: str = field(default="runs/samples", metadata={"help": "output directory of ttc sample"})
    output_dir: str = field(default="runs/difficulty", metadata={"help": "output directory"})
    num_bins: int = field(default=5, metadata={"help": "number of quantile bins"})
    bin_edges_file: str | None = field(default=None, metadata={"help": "bin_edges.json to reuse"})

    def __post_init__(self) -> None:
        if self.num_bins < 1:
            raise ValueError(f"num_bins must be >= 1, got {self.num_bins}")


def quantile_edges(pass_at_1: list[float], num_bins: int) -> list[float]:
    """``num_bins - 1`` ascending pass@1 edges at the quantiles ``k / num_bins``.

    >>> quantile_edges([0.0, 0.25, 0.5, 0.75, 1.0], 2)
    [0.5]
    """
    if not pass_at_1:
        raise InputError("no problems to bin")
    qs = [k / num_bins for k in range(1, num_bins)]
    return [float(x) for x in np.quantile(np.asarray(pass_at_1, dtype=float), qs)]


def assign_bins(pass_at_1: list[float], edges: list[float]) -> list[int]:
    """Bin of each problem: 1 = easiest (highest pass@1) ... len(edges) + 1 = hardest.

    A value equal to an edge goes to the harder side, so equal pass@1 always means the same bin
    (deterministic ties, whatever the order of problems).

    >>> assign_bins([1.0, 0.5, 0.0], [0.25, 0.5, 0.75])
    [1, 3, 4]
    """
    below = np.searchsorted(np.asarray(edges, dtype=float), np.asarray(pass_at_1, dtype=float), side="left")
    return [int(len(edges) + 1 - b) for b in below]


def run_difficulty(config: DifficultyConfig) -> dict[str, Any]:
    """The ``ttc difficulty`` stage."""
    import datasets

    from ttcompute.config import save_resolved_config
    from ttcompute.data_gen.shards import load_sharded, write_json

    samples = load_sharded(config.samples_dir)
    for column in ("problem_id", "correct"):
        if column not in samples.column_names:
            raise InputError(f"{config.samples_dir}: missing column '{column}' (not ttc sample output?)")
    out = Path(config.output_dir)

    correct = samples["correct"]
    pass_at_1 = []
    for row, verdicts in enumerate(correct):
        if not verdicts:
            raise InputError(
                f"{config.samples_dir}: row {row} (problem {samples[row]['problem_id']}): no samples"
            )
        pass_at_1.append(sum(verdicts) / len(verdicts))

    if config.bin_edges_file:
        saved = json.loads(Path(config.bin_edges_file).read_text())
        edges = saved["edges"]
        if len(edges) != config.num_bins - 1:
            raise InputError(
                f"{config.bin_edges_file}: has {len(edges) + 1} bins, but --num_bins is {config.num_bins}"
            )
    else:
        edges = quantile_edges(pass_at_1, config.num_bins)
    bins = assign_bins(pass_at_1, edges)
    out.mkdir(parents=True, exist_ok=True)
    save_resolved_config(out, "difficulty", config)

    table = datasets.Dataset.from_dict(
        {
            "problem_id": samples["problem_id"],
            "pass_at_1": pass_at_1,
            "num_samples": [len(v) for v in correct],
            "bin": bins,
        }
    )
    tmp = out / ".difficulty.parquet.tmp"
    table.to_parquet(str(tmp))
    tmp.replace(out / "difficulty.parquet")
    write_json(
        out / "bin_edges.json",
        {"metric": "pass_at_1", "edges": edges, "num_bins": config.num_bins, "bin_1": "easiest"},
    )

    sample_stats_file = Path(config.samples_dir) / "stats.json"
    sample_compute = (
        json.loads(sample_stats_file.read_text()).get("compute") if sample_stats_file.exists() else None
    )
    sizes = {str(b): bins.count(b) for b in range(1, config.num_bins + 1)}
    mean_by_bin = {
        str(b): round(float(np.mean([p for p, q in zip(pass_at_1, bins) if q == b])), 4)
        if sizes[str(b)]
        else None
        for b in range(1, config.num_bins + 1)
    }
    stats = {
        "stage": "difficulty",
        "num_problems": len(pass_at_1),
        "bin_sizes": sizes,
        "mean_pass_at_1_by_bin": mean_by_bin,
        "edges": edges,
        # Oracle difficulty costs the samples it was computed from (the paper did not count this).
        "estimation_compute": sample_compute,
    }
    write_json(out / "stats.json", stats)
    logger.info(
        "Binned %d problems into %d bins (sizes %s, mean pass@1 %s) -> %s",
        len(bins),
        config.num_bins,
        sizes,
        mean_by_bin,
        out,
    )
    return {"output_dir": str(out), **stats}


def load_difficulty(output_dir: str | Path):
    """The ``difficulty.parquet`` of a ``ttc difficulty`` run as a ``datasets.Dataset``."""
    import datasets

    path = Path(output_dir) / "difficulty.parquet"
    if not path.is_file():
        raise InputError(f"{path}: no such file (run ttc difficulty first)")
    return datasets.Dataset.from_parquet(str(path))
