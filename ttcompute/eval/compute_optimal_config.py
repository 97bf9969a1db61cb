"""Options of ``ttc compute-optimal``."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ComputeOptimalConfig:
    """Options of ``ttc compute-optimal``.

    Attributes:
        select_dirs: ``ttc select`` outputs whose strategies compete (a strategy found in several is
            taken from the first).
        output_dir: Where the curves, tables and plot go.
        difficulty_dir: ``ttc difficulty`` output with the bins to use (default: the bins ``ttc select``
            stored); its ``stats.json`` gives the estimate's compute.
        baseline: The strategy compute-optimal is compared with.
        num_folds: Cross-validation folds within every bin (the paper: 2).
        seed: Seeds the split of each bin into folds.
        difficulty_cost_flops: FLOPs per problem spent estimating difficulty (default: read from the
            difficulty output's ``stats.json``; 0 if unknown).
        bootstrap_resamples / bootstrap_seed: The paired bootstrap over problems behind every
            interval (accuracy differences, efficiency ratios; 95%).
        export_policy: Also write the routing policy as a deployable bundle in this (new or empty)
            directory: the policy file, its question probe and every local checkpoint it names, copied,
            each file with its sha256 (``ttc route`` refuses a bundle that changed).
    """

    select_dirs: list[str] = field(
        default_factory=lambda: ["runs/select"], metadata={"help": "ttc select output directories"}
    )
    output_dir: str = field(default="runs/compute_optimal", metadata={"help": "output directory"})
    difficulty_dir: str | None = field(default=None, metadata={"help": "ttc difficulty output (bins)"})
    baseline: str = field(default="best_of_n_weighted", metadata={"help": "strategy compared against"})
    num_folds: int = field(default=2, metadata={"help": "cross-validation folds per bin"})
    seed: int = field(default=0, metadata={"help": "seed of the fold split"})
    difficulty_cost_flops: float | None = field(
        default=None, metadata={"help": "difficulty estimate FLOPs per problem (default: its stats.json)"}
    )
    bootstrap_resamples: int = field(
        default=1000, metadata={"help": "paired bootstrap resamples (intervals)"}
    )
    bootstrap_seed: int = field(default=0, metadata={"help": "seed of the bootstrap draws"})
    export_policy: str | None = field(
        default=None,
        metadata={
            "help": "also write a deployable bundle here: the routing policy, its probe and checkpoints, checksummed"
        },
    )

    def __post_init__(self) -> None:
        if isinstance(self.select_dirs, str):
            self.select_dirs = [self.select_dirs]
        if not self.select_dirs:
            raise ValueError("select_dirs: name at least one ttc select output")
        if self.bootstrap_resamples < 100:
            raise ValueError(f"bootstrap_resamples must be >= 100, got {self.bootstrap_resamples}")
        if self.num_folds < 2:
            raise ValueError(
                f"num_folds must be >= 2 (choose on some folds, score on another), got {self.num_folds}"
            )
