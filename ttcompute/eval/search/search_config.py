"""Options of ``ttc search``."""

from __future__ import annotations

from dataclasses import dataclass, field

from ttcompute.core.budget import resolve_beam_width
from ttcompute.core.prm_format_names import PRM_FORMAT_CHOICES
from ttcompute.core.prompts import PRMPromptOptions
from ttcompute.core.steps import AGGREGATIONS
from ttcompute.core.tracking import TrackingOptions

SEARCH_METHODS = ("best_of_n", "beam_search", "lookahead", "dvts", "revisions")
# Methods that select with majority vote alone when there is no verifier.
VERIFIER_FREE_METHODS = ("best_of_n", "revisions")
VERIFIER_CONTEXTS = ("question", "history")
DEFAULT_BUDGETS = [1, 2, 4, 8, 16, 32, 64, 128, 256]


@dataclass
class SearchConfig(PRMPromptOptions, TrackingOptions):
    """Options of ``ttc search`` (besides the problem and policy generation options).

    Attributes:
        output_dir: Where shards, manifest, resolved config and stats go.
        prm: The verifier: a PRM checkpoint (Hub id or directory) in any format ``load_prm`` reads.
            Without one only best-of-N runs, and only majority vote can select.
        prm_format / prm_max_batch_tokens / prm_device / prm_dtype: How the PRM is loaded and batched.
        prm_prompt_template / prm_use_chat_template (``PRMPromptOptions``): the prompt of a PRM
            checkpoint that records none; one that records it must agree.
        prm_cache_tokens: Tokens of scored prefixes the PRM keeps (least recently used dropped first);
            default: what a quarter of the device memory free after loading holds at the PRM's size per
            token. Scores never depend on it; the recorded ``prm_tokens`` do once prefixes are dropped,
            so give a number when that cost must not depend on the machine.
        methods: Any of ``best_of_n``, ``beam_search``, ``lookahead``, ``dvts`` (the default: all four)
            and ``revisions`` (with ``--reviser``).
        budgets: Budgets in generations (the paper's N).
        beam_widths: Width settings M of beam and lookahead search: integers or ``sqrt`` (M = sqrt N).
        lookahead_steps: The k values of lookahead search.
        dvts_widths: Width settings M of DVTS (N / M subtrees of width M).
        reviser: The revision model (``ttc train-reviser`` output) for ``revisions``. The prompt
            contract it records (``config.ttc_reviser``) must be this search's (the policy options'
            ``prompt_template`` / ``use_chat_template`` / ``system_prompt``): every method sees one
            question prompt. A reviser recording none follows this search's (logged).
        revision_lengths: Chain lengths L of ``revisions``: budget N runs N / L chains of L attempts
            for every L here that divides N (1: fully parallel; N: fully sequential).
        revision_temperature: The sampling temperature of a chain's revisions (its attempts after the
            first); unset, ``temperature``. The first attempt is always sampled at ``temperature``.
        verifier_context: What the verifier sees of a revision attempt: ``question`` (a PRM trained on
            policy samples) or ``history`` (an ORM trained on reviser samples, previous attempts in
            context).
        search_aggregations: How beams are ranked by their step scores (last / min / prod / mean);
            each value is a separate run (the final selection's aggregation is ``ttc select``'s).
        max_rounds: Most step rounds of a tree search (the paper: 40).
        max_step_tokens: Most tokens of one step; a step hitting it ends its beam and is counted.
        step_separator: The text that ends a step.
        filter_duplicates: Tree searches rank each distinct prefix once (search-and-learn's option).
        initial_samples_dir: Best-of-N: a ``ttc sample`` output of these problems, drawn from this
            policy with these sampling options and prompts (checked), whose solutions are each
            problem's first candidates -- e.g. the samples a ``prm_probe`` difficulty estimate
            scored, so that the estimate's samples are not drawn twice. Rows record how many of their
            candidates are such reused samples (``reused_samples``); ``ttc compute-optimal`` then
            charges only the part of the estimate the search did not reuse.
        initial_samples: How many of each problem's samples to reuse (default: all; the same number
            for every problem).
        seed: Base seed; each (run, chunk of problems) gets its own seed derived from it.
        problems_per_shard: Problems per shard: the unit of batching and of resumption.
        shard: ``i/n``: this worker takes every shard ``j`` with ``j % n == i``.
        overwrite: Replace an output directory written with a different config.
    """

    output_dir: str = field(default="runs/search", metadata={"help": "output directory"})
    prm: str | None = field(default=None, metadata={"help": "PRM checkpoint (Hub id or directory)"})
    prm_format: str = field(
        default="auto",
        metadata={"help": "PRM format; auto: what it says it is", "choices": PRM_FORMAT_CHOICES},
    )
    prm_max_batch_tokens: int = field(default=32768, metadata={"help": "PRM tokens per forward batch"})
    prm_cache_tokens: int | None = field(
        default=None,
        metadata={"help": "PRM prefix-cache size in tokens (default: a quarter of free memory's worth)"},
    )
    prm_device: str | None = field(default=None, metadata={"help": "PRM device (default: the policy's)"})
    prm_dtype: str = field(default="auto", metadata={"help": "PRM dtype"})
    methods: list[str] = field(
        default_factory=lambda: ["best_of_n", "beam_search", "lookahead", "dvts"],
        metadata={"help": "search methods (revisions needs --reviser)", "choices": SEARCH_METHODS},
    )
    budgets: list[int] = field(
        default_factory=lambda: list(DEFAULT_BUDGETS), metadata={"help": "budgets in generations (N)"}
    )
    beam_widths: list[str] = field(
        default_factory=lambda: ["4", "sqrt"], metadata={"help": "beam/lookahead widths: integers or sqrt"}
    )
    lookahead_steps: list[int] = field(default_factory=lambda: [3], metadata={"help": "lookahead k values"})
    dvts_widths: list[str] = field(default_factory=lambda: ["4"], metadata={"help": "DVTS subtree widths"})
    reviser: str | None = field(default=None, metadata={"help": "revision model (Hub id or directory)"})
    revision_lengths: list[int] = field(
        default_factory=lambda: list(DEFAULT_BUDGETS), metadata={"help": "revision chain lengths L"}
    )
    # A revision edits an attempt: sampled cooler than the first attempt, it keeps more of what it
    # reads (docs: research/reviser_study.md).
    revision_temperature: float | None = field(
        default=None,
        metadata={"help": "revisions after a chain's first attempt: temperature (default --temperature)"},
    )
    verifier_context: str = field(
        default="question",
        metadata={"help": "what the verifier of revisions sees", "choices": VERIFIER_CONTEXTS},
    )
    search_aggregations: list[str] = field(
        default_factory=lambda: ["last"], metadata={"help": "how beams are ranked", "choices": AGGREGATIONS}
    )
    max_rounds: int = field(default=40, metadata={"help": "most step rounds of a tree search"})
    max_step_tokens: int = field(default=128, metadata={"help": "most tokens of one step"})
    step_separator: str = field(default="\n\n", metadata={"help": "text between steps"})
    filter_duplicates: bool = field(default=False, metadata={"help": "rank each distinct prefix once"})
    initial_samples_dir: str | None = field(
        default=None, metadata={"help": "best_of_n: ttc sample output whose samples are the first candidates"}
    )
    initial_samples: int | None = field(
        default=None, metadata={"help": "samples per problem reused from --initial_samples_dir (default all)"}
    )
    seed: int = field(default=0, metadata={"help": "base seed"})
    problems_per_shard: int = field(default=16, metadata={"help": "problems per shard"})
    shard: str = field(default="0/1", metadata={"help": "i/n: this worker's part of the shards"})
    overwrite: bool = field(default=False, metadata={"help": "replace output of a different config"})

    def __post_init__(self) -> None:
        super().__post_init__()
        unknown = [m for m in self.methods if m not in SEARCH_METHODS]
        if unknown or not self.methods:
            raise ValueError(f"unknown search method(s) {unknown}; choose from {SEARCH_METHODS}")
        if not self.budgets or any(b < 1 for b in self.budgets):
            raise ValueError(f"budgets must be positive integers, got {self.budgets}")
        self.budgets = sorted(set(self.budgets))
        for width in [*self.beam_widths, *self.dvts_widths]:
            resolve_beam_width(1, width)  # raises ValueError naming a bad setting
        if any(k < 0 for k in self.lookahead_steps):
            raise ValueError(f"lookahead_steps must be >= 0, got {self.lookahead_steps}")
        bad = [a for a in self.search_aggregations if a not in AGGREGATIONS]
        if bad or not self.search_aggregations:
            raise ValueError(f"unknown search aggregation(s) {bad}; choose from {AGGREGATIONS}")
        if self.max_rounds < 1 or self.max_step_tokens < 1 or self.problems_per_shard < 1:
            raise ValueError("max_rounds, max_step_tokens and problems_per_shard must be >= 1")
        if self.revision_temperature is not None and self.revision_temperature < 0:
            raise ValueError(f"revision_temperature must be >= 0, got {self.revision_temperature}")
        if not self.step_separator:
            raise ValueError("step_separator must not be empty")
        if self.prm is None and not set(self.methods) <= set(VERIFIER_FREE_METHODS):
            raise ValueError(
                f"methods {self.methods} need a verifier: pass --prm (without one only best_of_n and "
                "revisions run, selected by majority vote)"
            )
        if "revisions" in self.methods and not self.reviser:
            raise ValueError("method revisions needs --reviser (a ttc train-reviser checkpoint)")
        if any(length < 1 for length in self.revision_lengths):
            raise ValueError(f"revision_lengths must be >= 1, got {self.revision_lengths}")
        if self.initial_samples is not None and self.initial_samples < 1:
            raise ValueError(f"initial_samples must be >= 1, got {self.initial_samples}")
        if self.initial_samples_dir and "best_of_n" not in self.methods:
            raise ValueError(
                "--initial_samples_dir gives best_of_n its first candidates: add best_of_n to --methods"
            )
        if self.verifier_context not in VERIFIER_CONTEXTS:
            raise ValueError(f"verifier_context must be question or history, got {self.verifier_context!r}")
