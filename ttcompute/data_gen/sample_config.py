"""Options of ``ttc sample``."""

from __future__ import annotations

from dataclasses import dataclass, field

from ttcompute.core.tracking import TrackingOptions


@dataclass
class SampleConfig(TrackingOptions):
    """Options of ``ttc sample`` (besides the problem and generation options).

    Attributes:
        output_dir: Where shards, manifest, resolved config and stats go.
        num_samples: Solutions per problem (N; up to 2048).
        seed: Base seed; shard ``j`` samples with seed ``seed * 1_000_003 + j``, so the output does not
            depend on how shards are spread over workers.
        problems_per_shard: Problems per shard file: the unit of resumption.
        shard: ``i/n``: this worker takes every shard ``j`` with ``j % n == i``.
        overwrite: Replace an output directory written with a different config.
    """

    output_dir: str = field(default="runs/samples", metadata={"help": "output directory"})
    num_samples: int = field(default=16, metadata={"help": "solutions per problem (N)"})
    seed: int = field(default=0, metadata={"help": "base sampling seed"})
    problems_per_shard: int = field(default=64, metadata={"help": "problems per shard file"})
    shard: str = field(default="0/1", metadata={"help": "i/n: this worker's part of the shards"})
    overwrite: bool = field(default=False, metadata={"help": "replace output of a different config"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 1 <= self.num_samples <= 1 << 16:
            raise ValueError(f"num_samples must be in [1, 65536], got {self.num_samples}")
        if self.problems_per_shard < 1:
            raise ValueError("problems_per_shard must be >= 1")
