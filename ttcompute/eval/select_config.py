"""Options of ``ttc select``."""

from __future__ import annotations

from dataclasses import dataclass, field

from ttcompute.core.steps import AGGREGATIONS


@dataclass
class SelectConfig:
    """Options of ``ttc select``.

    Attributes:
        search_dir: Output directory of ``ttc search``.
        output_dir: Where the tables and the plot go (default: ``<search_dir>/select``).
        aggregation: How a candidate's step scores become its score (last / min / prod / mean).
        difficulty_dir: Output of ``ttc difficulty`` for the same problems: accuracy per bin too.
    """

    search_dir: str = field(default="runs/search", metadata={"help": "output directory of ttc search"})
    output_dir: str | None = field(default=None, metadata={"help": "default: <search_dir>/select"})
    aggregation: str = field(default="last", metadata={"help": "step scores -> score: last|min|prod|mean"})
    difficulty_dir: str | None = field(default=None, metadata={"help": "ttc difficulty output (bins)"})

    def __post_init__(self) -> None:
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"unknown aggregation {self.aggregation!r}; choose one of {AGGREGATIONS}")
