"""Options of ``ttc flops-matched``."""

from __future__ import annotations

from dataclasses import dataclass, field

PAPER_RATIOS = (0.16, 0.79, 22.0)


@dataclass
class FlopsMatchedConfig:
    """Options of ``ttc flops-matched``.

    Attributes:
        compute_optimal_dir: Output of ``ttc compute-optimal`` (the small policy's curves per bin).
        large_samples_dir: ``ttc sample`` output of the large policy, greedy (``--temperature 0
            --num_samples 1``), on the same problems.
        small_model / large_model: Checkpoint directories whose ``training_log.json`` give the
            parameter count and pretraining tokens (or pass the four numbers below).
        difficulty_dir: Bins for the large policy's problems (default: the bins compute-optimal used).
        ratios: R = D_inference / D_pretrain values (the paper's 0.16, 0.79, 22).
        output_dir: Where the table and plot go.
    """

    compute_optimal_dir: str = field(
        default="runs/compute_optimal", metadata={"help": "ttc compute-optimal output"}
    )
    large_samples_dir: str = field(
        default="runs/large_greedy", metadata={"help": "ttc sample of the large policy (greedy)"}
    )
    small_model: str | None = field(default=None, metadata={"help": "small checkpoint (training_log.json)"})
    large_model: str | None = field(default=None, metadata={"help": "large checkpoint (training_log.json)"})
    small_params: int | None = field(default=None, metadata={"help": "small policy's parameter count"})
    large_params: int | None = field(default=None, metadata={"help": "large policy's parameter count"})
    small_pretrain_tokens: int | None = field(default=None, metadata={"help": "small policy's D_pretrain"})
    large_pretrain_tokens: int | None = field(default=None, metadata={"help": "large policy's D_pretrain"})
    difficulty_dir: str | None = field(default=None, metadata={"help": "bins (default: compute-optimal's)"})
    ratios: list[float] = field(
        default_factory=lambda: list(PAPER_RATIOS), metadata={"help": "R = D_inference / D_pretrain values"}
    )
    output_dir: str = field(default="runs/flops_matched", metadata={"help": "output directory"})

    bootstrap_resamples: int = field(
        default=1000, metadata={"help": "paired bootstrap resamples (intervals)"}
    )
    bootstrap_seed: int = field(default=0, metadata={"help": "seed of the bootstrap draws"})

    def __post_init__(self) -> None:
        if not self.ratios or any(r <= 0 for r in self.ratios):
            raise ValueError(f"ratios must be positive, got {self.ratios}")
