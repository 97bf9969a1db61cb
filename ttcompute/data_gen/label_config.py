"""Options of ``ttc label``."""

from __future__ import annotations

from dataclasses import dataclass, field

from ttcompute.core.tracking import HubDatasetOptions, TrackingOptions

LABELLERS = ("exhaustive", "binary_search")
LABEL_TYPES = ("soft", "hard")


@dataclass
class LabelConfig(TrackingOptions, HubDatasetOptions):
    """Options of ``ttc label`` (the policy that rolls out comes from the generation options).

    Attributes:
        samples_dir: Output directory of ``ttc sample``. Its policy is used for rollouts unless
            ``--model_name_or_path`` names another.
        output_dir: Where the labelled shards go.
        labeller: ``exhaustive`` (k rollouts at every step) or ``binary_search`` (OmegaPRM-style).
        num_rollouts: k, rollouts per step prefix (the paper uses 16).
        rollout_chunk: binary search draws rollouts for a probe in chunks of this size and stops at the
            first correct one.
        label_type: What goes in ``labels``: ``soft`` (fraction correct) or ``hard`` (any correct).
            Binary search only has hard labels.
        max_solutions_per_problem: Label at most this many (parseable, distinct) samples per problem.
        step_separator: Text between steps.
        seed: Base seed; shard ``j`` rolls out with seeds derived from ``seed`` and ``j`` only.
        problems_per_shard: Problems per shard file: the unit of resumption.
        shard / overwrite: As for ``ttc sample``.
        strict: Stop at a malformed samples row (``completions``, ``answers`` and ``correct`` of
            different lengths) instead of skipping it (skipped rows are logged and counted).
    """

    samples_dir: str = field(default="runs/samples", metadata={"help": "output directory of ttc sample"})
    output_dir: str = field(default="runs/labels", metadata={"help": "output directory"})
    labeller: str = field(
        default="exhaustive", metadata={"help": "how steps are labelled", "choices": LABELLERS}
    )
    num_rollouts: int = field(default=16, metadata={"help": "k rollouts per step prefix"})
    rollout_chunk: int = field(default=4, metadata={"help": "binary search: rollouts per probe round"})
    label_type: str = field(
        default="soft", metadata={"help": "what goes in `labels`", "choices": LABEL_TYPES}
    )
    max_solutions_per_problem: int | None = field(
        default=None, metadata={"help": "label at most this many samples per problem"}
    )
    step_separator: str = field(default="\n\n", metadata={"help": "text between steps"})
    seed: int = field(default=0, metadata={"help": "base rollout seed"})
    problems_per_shard: int = field(default=16, metadata={"help": "problems per shard file"})
    shard: str = field(default="0/1", metadata={"help": "i/n: this worker's part of the shards"})
    strict: bool = field(default=False, metadata={"help": "stop at a malformed row instead of skipping it"})
    overwrite: bool = field(default=False, metadata={"help": "replace output of a different config"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.labeller not in LABELLERS:
            raise ValueError(f"labeller must be one of {LABELLERS}, got {self.labeller!r}")
        if self.label_type not in LABEL_TYPES:
            raise ValueError(f"label_type must be 'soft' or 'hard', got {self.label_type!r}")
        if self.num_rollouts < 1:
            raise ValueError("num_rollouts must be >= 1")
        if self.labeller == "binary_search" and not 1 <= self.rollout_chunk <= self.num_rollouts:
            raise ValueError("rollout_chunk must be in [1, num_rollouts]")
        if self.max_solutions_per_problem is not None and self.max_solutions_per_problem < 1:
            raise ValueError("max_solutions_per_problem must be >= 1")
        if not self.step_separator:
            raise ValueError("step_separator must not be empty")
        if self.problems_per_shard < 1:
            raise ValueError("problems_per_shard must be >= 1")
