"""Options of ``ttc view``."""

from __future__ import annotations

from dataclasses import dataclass, field

from ttcompute.core.steps import AGGREGATIONS
from ttcompute.core.tracking import TrackingOptions


@dataclass
class ViewConfig(TrackingOptions):
    """Options of ``ttc view``: one self-contained HTML page to read a search by.

    Parameters that control the inputs:
        search_dir: Output directory of ``ttc search`` (run with ``--prm``: the page shows its verdicts).
        select_dir: Output of ``ttc select`` on that search: its selection aggregation, and its
            difficulty bins when ``difficulty_dir`` is not given. Its selections must be the ones the
            search rows give (checked: a select output of another search is refused).
        difficulty_dir: Output of ``ttc difficulty`` for the same problems: the problem list filters by bin.
        eval_prm_dataset: Gold step labels (an ``eval-prm`` dataset: a ``ttc label`` output or a
            ProcessBench file, directory or Hub id): a candidate whose question and steps it holds gets
            its first wrong step marked. Without it, the arithmetic task's exact checker marks them.
        eval_prm_split: The split of ``eval_prm_dataset`` when it is a dataset directory or Hub id.

    Parameters that control the page:
        output_dir: Where ``viewer.html`` and the resolved config go (default: ``<search_dir>/view``).
        aggregation: How a candidate's step scores become its score in the weighted vote (last / min /
            prod / mean; default: the select output's, else ``last``).
        threshold: A step scored below it is the PRM's low score (its first low score is marked beside
            the first wrong step); a wrong step scored at or above it is over-rated.
        top_overrated: How many over-rated steps the ranking lists.
        max_mb: The page's size limit in MB: a larger search is sampled by problem (seeded), and the page
            says which were left out; the aggregate views always cover every problem.
        seed: Which problems a sample keeps.
    """

    search_dir: str = field(default="runs/search", metadata={"help": "output directory of ttc search"})
    select_dir: str | None = field(
        default=None, metadata={"help": "ttc select output of that search (aggregation, bins)"}
    )
    difficulty_dir: str | None = field(default=None, metadata={"help": "ttc difficulty output (bins)"})
    eval_prm_dataset: str | None = field(
        default=None,
        metadata={"help": "gold step labels: ttc label output or ProcessBench file/dir/Hub id"},
    )
    eval_prm_split: str = field(default="gsm8k", metadata={"help": "split of a dataset dir or Hub id"})
    output_dir: str | None = field(default=None, metadata={"help": "default: <search_dir>/view"})
    aggregation: str | None = field(
        default=None,
        metadata={
            "help": "step scores -> score (default: the select output's, else last)",
            "choices": AGGREGATIONS,
        },
    )
    threshold: float = field(
        default=0.5, metadata={"help": "a step scored below it is low; a wrong one at or above it over-rated"}
    )
    top_overrated: int = field(default=200, metadata={"help": "over-rated steps listed"})
    max_mb: float = field(
        default=20.0, metadata={"help": "page size limit in MB: larger searches are sampled"}
    )
    seed: int = field(default=0, metadata={"help": "which problems a sample keeps"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.aggregation is not None and self.aggregation not in AGGREGATIONS:
            raise ValueError(f"unknown aggregation {self.aggregation!r}; choose one of {AGGREGATIONS}")
        if self.top_overrated < 0:
            raise ValueError(f"top_overrated must be >= 0, got {self.top_overrated}")
        if self.max_mb <= 0:
            raise ValueError(f"max_mb must be positive, got {self.max_mb}")
