"""Options of ``ttc revisions`` (revision trajectories for the reviser)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ttcompute.core.prompts import PromptOptions
from ttcompute.core.tracking import HubDatasetOptions, TrackingOptions
from ttcompute.models.reviser import MAX_ATTEMPTS_IN_CONTEXT

ATTEMPT_ORDERS = ("closest_last", "progressive")
CONTEXT_ATTEMPTS = ("incorrect", "any")


@dataclass
class TrajectoryConfig(PromptOptions, TrackingOptions, HubDatasetOptions):
    """Options of ``ttc revisions``.

    Attributes:
        samples_dir: Output directory of ``ttc sample`` (64 samples per problem in the paper).
        output_dir: Where the trajectory shards, manifest, stats and resolved config go.
        max_previous: Most incorrect attempts in a trajectory (k is drawn from 0..max_previous).
        chains_dir: A ``ttc search`` output with ``revisions`` rows (a reviser's chains on training
            problems): the trajectories are then every correct attempt of every chain, its context the
            chain's attempts before it (ReST^EM with a 0/1 reward) -- the reviser's own contexts, correct
            ones included. ``samples_dir`` is still read for the prompt contract, which must agree.
        attempt_order: ``closest_last`` (the paper's: the incorrect attempt closest to the correct
            completion by edit distance last, the others in random order) or ``progressive`` (all in
            order of decreasing edit distance: each attempt reads as a step closer to the answer).
        correct_context_fraction: Share of the trajectories with attempts whose most recent attempt is
            a correct solution (then k - 1 incorrect ones before it). The paper trains on incorrect
            contexts only, and its reviser turns 38% of correct answers incorrect: it never saw a
            right answer to keep.
        context_attempts: ``incorrect`` (the paper's: the attempts shown are incorrect ones, chosen as
            above) or ``any``: the k attempts shown are drawn uniformly from the problem's other
            non-empty samples as they came -- right and wrong, repeats included, in random order --
            the mix a chain of the reviser's own attempts shows it. The completion is still a correct
            sample. Trained on these, the best a reviser can do with more attempts shown is weigh
            them (a repeated answer is more likely right), which the paper's data never rewards.
        correct_attempt_rate: With ``context_attempts any``: each attempt shown is one of the
            problem's other correct samples with this probability, else one of its incorrect ones
            (whichever exists when the other does not); unset, the samples as they came. The rate sets
            how far a reviser trusts what it is shown: a reviser's chain shows it more correct attempts
            (its own pass@1) than its policy's samples hold.
        copy_attempts: A copying stage instead (0: off): per problem, its first ``copy_attempts``
            distinct non-empty samples in sample order, right or wrong, each as the one attempt and as
            the completion. Not a reviser's data: a first stage that teaches a small base to copy from
            its context (the digits of a wrong attempt can only be predicted by copying them), before
            the trajectories above teach it when to (configs/reviser.yaml).
        prompt_template / use_chat_template / system_prompt: The prompt contract the reviser prompts
            are built with; unset, the one the samples record (a given value must agree with it).
            With the chat template the reviser prompt is one user turn (ttcompute/models/reviser.py).
        tokenizer_name_or_path: The tokenizer whose chat template renders the prompts (only read with
            the chat template); default: the samples' policy.
        seed: Seeds every draw.
        problems_per_shard: Problems per output shard (the unit of resumption).
        shard: ``i/n``: this worker builds every shard ``j`` with ``j % n == i``.
        strict: Stop at a malformed samples row (``completions`` and ``correct`` of different lengths)
            instead of skipping it (skipped rows are logged with their row number and counted).
        overwrite: Replace an output directory written with a different config.
    """

    samples_dir: str = field(default="runs/samples", metadata={"help": "output directory of ttc sample"})
    output_dir: str = field(default="runs/revisions", metadata={"help": "output directory"})
    max_previous: int = field(
        default=MAX_ATTEMPTS_IN_CONTEXT, metadata={"help": "most incorrect attempts per trajectory"}
    )
    chains_dir: str | None = field(
        default=None, metadata={"help": "ttc search output with revisions: train on its correct attempts"}
    )
    attempt_order: str = field(
        default="closest_last",
        metadata={
            "help": "closest_last (the paper's) | progressive (farthest first)",
            "choices": ATTEMPT_ORDERS,
        },
    )
    correct_context_fraction: float = field(
        default=0.0, metadata={"help": "share of trajectories whose most recent attempt is correct"}
    )
    context_attempts: str = field(
        default="incorrect",
        metadata={
            "help": "incorrect (the paper's) | any: attempts drawn from all the problem's samples",
            "choices": CONTEXT_ATTEMPTS,
        },
    )
    correct_attempt_rate: float | None = field(
        default=None,
        metadata={
            "help": "context_attempts any: chance each attempt shown is a correct sample (unset: as sampled)"
        },
    )
    copy_attempts: int = field(
        default=0,
        metadata={"help": "copying stage: N distinct samples per problem, each shown and written again"},
    )
    tokenizer_name_or_path: str | None = field(
        default=None, metadata={"help": "chat template's tokenizer; default: the samples' policy"}
    )
    seed: int = field(default=0, metadata={"help": "seed of every draw"})
    problems_per_shard: int = field(default=256, metadata={"help": "problems per output shard"})
    shard: str = field(default="0/1", metadata={"help": "i/n: this worker's part of the shards"})
    strict: bool = field(default=False, metadata={"help": "stop at a malformed row instead of skipping it"})
    overwrite: bool = field(default=False, metadata={"help": "replace output of a different config"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.max_previous <= MAX_ATTEMPTS_IN_CONTEXT:
            raise ValueError(
                f"max_previous must be in [0, {MAX_ATTEMPTS_IN_CONTEXT}], got {self.max_previous}"
            )
        if self.copy_attempts < 0:
            raise ValueError(f"copy_attempts must be >= 0, got {self.copy_attempts}")
        if self.copy_attempts and (
            self.chains_dir or self.correct_context_fraction or self.attempt_order != "closest_last"
        ):
            raise ValueError(
                "copy_attempts builds a copying stage: it takes none of chains_dir, correct_context_fraction, "
                "attempt_order"
            )
        if self.context_attempts not in CONTEXT_ATTEMPTS:
            raise ValueError(
                f"context_attempts must be one of {CONTEXT_ATTEMPTS}, got {self.context_attempts!r}"
            )
        if self.context_attempts == "any" and (
            self.chains_dir or self.correct_context_fraction or self.attempt_order != "closest_last"
            or self.copy_attempts
        ):  # fmt: skip
            raise ValueError(
                "context_attempts any draws the attempts shown from all the samples: it takes none of "
                "chains_dir, correct_context_fraction, attempt_order, copy_attempts"
            )
        if self.correct_attempt_rate is not None:
            if self.context_attempts != "any":
                raise ValueError("correct_attempt_rate is an option of context_attempts any")
            if not 0 <= self.correct_attempt_rate <= 1:
                raise ValueError(f"correct_attempt_rate must be in [0, 1], got {self.correct_attempt_rate}")
        if self.attempt_order not in ATTEMPT_ORDERS:
            raise ValueError(f"attempt_order must be one of {ATTEMPT_ORDERS}, got {self.attempt_order!r}")
        if not 0 <= self.correct_context_fraction <= 1:
            raise ValueError(
                f"correct_context_fraction must be in [0, 1], got {self.correct_context_fraction}"
            )
        if self.problems_per_shard < 1:
            raise ValueError("problems_per_shard must be >= 1")
        if self.prompt_template is not None and "{question}" not in self.prompt_template:
            raise ValueError("prompt_template must contain {question}")
