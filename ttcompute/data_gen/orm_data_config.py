"""Options of ``ttc orm-data``."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class OrmDataConfig:
    """Options of ``ttc orm-data``.

    Attributes:
        search_dir: A ``ttc search`` output with ``revisions`` rows.
        output_dir: Where the rows go (one parquet shard, manifest, stats).
        chain_length: Use only rows of this chain length (default: every length).
        overwrite: Replace an output directory written with a different config.
    """

    search_dir: str = field(default="runs/search", metadata={"help": "ttc search output with revisions rows"})
    output_dir: str = field(default="runs/orm_data", metadata={"help": "output directory"})
    chain_length: int | None = field(default=None, metadata={"help": "only rows of this chain length"})
    overwrite: bool = field(default=False, metadata={"help": "replace output of a different config"})
