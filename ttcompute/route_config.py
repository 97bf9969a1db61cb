"""Options of ``ttc route``."""

from __future__ import annotations

from dataclasses import dataclass, field

from ttcompute.core.prompts import PromptOptions
from ttcompute.models.generation_config import BACKENDS

ALLOCATIONS = ("per_bin", "per_problem", "spend", "batch")


@dataclass
class RouteConfig(PromptOptions):
    """Options of ``ttc route`` (besides the problem options: which new problems).

    Attributes:
        policy: The ``routing_policy.json`` of a ``ttc compute-optimal`` run.
        budget: Generations per problem. ``per_bin``: one of the policy's budgets, every problem of a
            bin runs that bin's strategy at it. ``per_problem``: the total ``budget x problems`` is
            spread over the problems by their bins' accuracy-vs-budget curves (at least the policy's
            cheapest budget). ``spend``: a mean of generations per problem (any positive number),
            spread over the problems by their bins' static and adaptive strategies, by what each
            actually spends (the policy's ``spend_points``; a problem may get none, and no answer).
            ``batch``: each chunk of ``problems_per_shard`` problems shares ``budget`` best-of-N samples
            per problem, one first for each, then one at a time to the problem whose state promises the
            most (the policy's ``batch`` gain table); it stops early where none is expected to gain.
        allocation: ``per_bin``, ``per_problem``, ``spend`` or ``batch``.
        output_dir: Where the answer shards, manifest, resolved config and stats go.
        model_name_or_path / prompt_template / use_chat_template / system_prompt: Assertions only:
            the policy file names the policy and its prompt contract; a value given must agree.
        backend / device: Where the models run (default: as the search ran them).
        problems_per_shard: Problems per shard: the unit of batching and of resumption.
        shard: ``i/n``: this worker takes every shard ``j`` with ``j % n == i``.
        overwrite: Replace an output directory written with a different config.
    """

    policy: str = field(
        default="runs/compute_optimal/routing_policy.json",
        metadata={"help": "ttc compute-optimal's routing_policy.json"},
    )
    budget: float | None = field(
        default=None,
        metadata={"help": "generations per problem (required; spend: their mean, any positive number)"},
    )
    allocation: str = field(
        default="per_bin", metadata={"help": "how budget is allocated", "choices": ALLOCATIONS}
    )
    output_dir: str = field(default="runs/route", metadata={"help": "output directory"})
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "the policy (default and required: the policy file's)"}
    )
    backend: str | None = field(
        default=None, metadata={"help": "generation backend (default: the search's)", "choices": BACKENDS}
    )
    device: str | None = field(
        default=None, metadata={"help": "device of every model (default: the search's)"}
    )
    problems_per_shard: int = field(default=16, metadata={"help": "problems per shard"})
    shard: str = field(default="0/1", metadata={"help": "i/n: this worker's part of the shards"})
    overwrite: bool = field(default=False, metadata={"help": "replace output of a different config"})

    def __post_init__(self) -> None:
        if self.budget is None or self.budget <= 0 or (self.allocation != "spend" and self.budget < 1):
            raise ValueError(
                f"--budget (generations per problem, >= 1; spend: > 0) is required, got {self.budget}"
            )
        if self.allocation not in ALLOCATIONS:
            raise ValueError(f"allocation must be one of {ALLOCATIONS}, got {self.allocation!r}")
        if self.problems_per_shard < 1:
            raise ValueError(f"problems_per_shard must be >= 1, got {self.problems_per_shard}")
