"""Options of ``ttc convert-labels``."""

from __future__ import annotations

from dataclasses import dataclass, field

from ttcompute.core.prompts import DEFAULT_TEMPLATE
from ttcompute.core.tracking import HubDatasetOptions, TrackingOptions

SOURCES = ("prm800k", "math-shepherd")
# Every value PRM800K's README lists for `label.finish_reason`.
PRM800K_FINISH_REASONS = ("solution", "found_error", "give_up", "bad_problem")


@dataclass
class ConvertLabelsConfig(TrackingOptions, HubDatasetOptions):
    """Options of ``ttc convert-labels`` (the mapping of each source is documented in
    :mod:`ttcompute.data_gen.convert_labels`; ``--report_to wandb`` and ``--push_to_hub`` as for
    ``ttc label``, see :mod:`ttcompute.core.tracking`).

    Attributes:
        source: ``prm800k`` or ``math-shepherd`` (flag ``--from``, or ``--source``).
        input: One or more ``.jsonl`` / ``.parquet`` files, a directory of them, a directory written
            by ``save_to_disk``, or a Hub dataset id (e.g. ``peiyi9979/Math-Shepherd``).
        split: The split to read from a dataset directory or Hub id (a file has just one).
        output_dir: Where the shards, manifest, stats and resolved config go.
        prompt_template: ``prompt`` is this template over the question (the prompt contract recorded
            in the manifest, no chat template; ``ttc train-prm`` reads it from there).
        step_separator: The separator ``ttc train-prm`` will join the steps with (its
            ``--step_separator``): no step may contain it.
        separator_replacement: What replaces the separator inside a step (PRM800K's answer steps
            hold ``"# Answer\\n\\n"``), shorter than the separator; empty, a row with such a step is
            malformed instead.
        neutral_label: PRM800K: the label of a step rated 0 (neutral: "isn't incorrect, but it does
            not make any progress").
        alternatives: PRM800K: also write a row for every rated alternative completion of a step,
            branching from the path's prefix before that step.
        finish_reasons: PRM800K: convert rows that finished so; the others are skipped and counted.
        rows_per_shard: Input rows per output shard: the unit of resumption.
        shard: ``i/n``: this worker's part of the shards.
        strict: Stop at the first malformed row (every row is checked before anything is written)
            instead of skipping it (skipped rows are logged and counted).
        overwrite: Replace an output directory written with a different config.
    """

    # Listed, not argparse choices: __post_init__ refuses another value naming --from.
    source: str | None = field(
        default=None,
        metadata={
            "aliases": ["--from"],
            "help": "the labels' source",
            "metavar": "{" + ",".join(SOURCES) + "}",
        },
    )
    input: list[str] = field(
        default_factory=list, metadata={"help": ".jsonl/.parquet file(s), a directory or a Hub id"}
    )
    split: str = field(default="train", metadata={"help": "split of a dataset directory or Hub id"})
    output_dir: str = field(default="runs/converted_labels", metadata={"help": "output directory"})
    prompt_template: str = field(
        default=DEFAULT_TEMPLATE, metadata={"help": "prompt = this template over {question}"}
    )
    step_separator: str = field(default="\n\n", metadata={"help": "train-prm's step separator"})
    separator_replacement: str = field(
        default="\n",
        metadata={"help": "replaces the separator inside a step; empty: such a row is malformed"},
    )
    neutral_label: float = field(default=1.0, metadata={"help": "PRM800K: label of a step rated 0"})
    alternatives: bool = field(
        default=False, metadata={"help": "PRM800K: a row per rated alternative step too"}
    )
    finish_reasons: list[str] = field(
        default_factory=lambda: ["solution", "found_error"],
        metadata={
            "help": "PRM800K: convert rows with these finish reasons",
            "choices": PRM800K_FINISH_REASONS,
        },
    )
    rows_per_shard: int = field(default=4096, metadata={"help": "input rows per output shard"})
    shard: str = field(default="0/1", metadata={"help": "i/n: this worker's part of the shards"})
    strict: bool = field(default=False, metadata={"help": "stop at a malformed row instead of skipping it"})
    overwrite: bool = field(default=False, metadata={"help": "replace output of a different config"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.source is not None and self.source not in SOURCES:
            raise ValueError(f"--from must be one of {', '.join(SOURCES)}, got {self.source!r}")
        if "{question}" not in self.prompt_template:
            raise ValueError("prompt_template must contain {question}")
        try:
            self.prompt_template.format(question="")
        except (KeyError, IndexError, ValueError) as err:
            raise ValueError(
                f"prompt_template {self.prompt_template!r} must be a format string over {{question}} only ({err!r})"
            ) from None
        if not self.step_separator:
            raise ValueError("step_separator must not be empty")
        if len(self.separator_replacement) >= len(self.step_separator):
            raise ValueError("separator_replacement must be shorter than step_separator")
        if not 0.0 <= self.neutral_label <= 1.0:
            raise ValueError(f"neutral_label must be in [0, 1], got {self.neutral_label}")
        unknown = [r for r in self.finish_reasons if r not in PRM800K_FINISH_REASONS]
        if unknown or not self.finish_reasons:
            raise ValueError(
                f"finish_reasons must be some of {', '.join(PRM800K_FINISH_REASONS)}, got {self.finish_reasons}"
            )
        if self.rows_per_shard < 1:
            raise ValueError("rows_per_shard must be >= 1")
