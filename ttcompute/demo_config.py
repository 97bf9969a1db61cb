"""Options of ``ttc demo``."""

from __future__ import annotations

from dataclasses import dataclass, field

TOKEN_PRM_METHODS = ("best_of_n", "beam_search")


@dataclass
class DemoConfig:
    """Options of ``ttc demo``.

    Attributes:
        output_dir: Where every stage writes (reruns resume from what is there).
        retrain: Train the base policies from their recipes instead of using the shipped checkpoints.
        fast: A smoke-test run (a few problems, small budgets, ~3 minutes).
        policy_small_config / policy_large_config: Recipes used by ``--retrain``.
        num_problems / num_samples: Evaluation problems and samples per problem for their oracle
            difficulty (``--fast`` shrinks them).
        problem_seed: Seed of the evaluation problems (differs from every training seed below).
        budgets: Search budgets (generations per problem); every power of 2, so that an efficiency
            ratio moves in steps of 2x, not 4x.
        methods / revision_lengths: The search settings (beam search with M = 4). Left out by
            default to stay within 20 minutes: lookahead k = 3 (at or below beam search at every
            budget on 400 problems: 0.39 vs 0.67 at 4, within 0.003 from 16 on), DVTS (within 0.04 of
            beam search at every budget on 100 problems), and revision chains of 1 (the reviser
            sampling without context: best-of-N of another model) and 16 attempts (the slowest
            setting: 16 sequential rounds).
        problems_per_shard: Search problems per shard: the unit of batching (a tiny policy on a CPU
            spends most of a step on per-call overhead, so larger batches are faster) and resumption.
        prm_problems / reviser_problems / reviser_samples: Training data of the PRM and the reviser.
        reviser_rounds: 1 trains the paper's reviser; 2 then runs it on its training problems (4
            chains of 8) and trains a second one from the policy on the paper's trajectories plus every
            correct attempt of those chains with its context (ReST^EM; ``ttc revisions --chains_dir``).
            bench/reviser_options.py measured 2 the best option; it costs ~8 more minutes.
        token_prm_max_steps / token_prm_learning_rate: The schedule of the token-classification PRM
            (the paper's: ``configs/prm.yaml``, trained on the likelihood PRM's MC labels and reported
            beside it). ``max_steps`` -1 keeps the recipe's epochs; the learning rate defaults to the
            recipe's. 400 steps (~9 epochs of the 192 problems' labels) take ~45 s on 2 CPU cores.
        token_prm_methods: The searches run with the token-classification PRM (beside the likelihood
            PRM's): ``best_of_n`` ranks the main search's candidates (no generation of its own, ~5 s
            per 100 problems), ``beam_search`` is its own search (about as long as the main one's,
            ~55 s per 100 problems); ``[]`` runs neither.
        seed: Sampling seed.
        report_to: ``none`` or ``wandb`` (the report's tables and plots).
        trained_from: A finished demo output whose PRMs and reviser (and their evaluation) this run
            uses instead of training its own: they never saw the evaluation problems, so another
            draw of those (``--problem_seed``) costs only its evaluation (bench/headline_spread.py).
            One from before the token-classification PRM gets that PRM trained (and evaluated) in
            this run's ``output_dir`` on its labels.
    """

    output_dir: str = field(default="runs/demo", metadata={"help": "output directory (cached, resumable)"})
    retrain: bool = field(default=False, metadata={"help": "train the base policies from scratch"})
    fast: bool = field(default=False, metadata={"help": "smoke-test size"})
    policy_small_config: str = field(
        default="configs/policy_small.yaml", metadata={"help": "recipe for --retrain"}
    )
    policy_large_config: str = field(
        default="configs/policy_large.yaml", metadata={"help": "recipe for --retrain"}
    )
    num_problems: int = field(default=400, metadata={"help": "evaluation problems"})
    num_samples: int = field(default=16, metadata={"help": "samples per problem for oracle difficulty"})
    problem_seed: int = field(default=2024, metadata={"help": "seed of the evaluation problems"})
    budgets: list[int] = field(
        default_factory=lambda: [1, 2, 4, 8, 16, 32, 64], metadata={"help": "search budgets"}
    )
    problems_per_shard: int = field(default=50, metadata={"help": "search problems per shard"})
    methods: list[str] = field(
        default_factory=lambda: ["best_of_n", "beam_search", "revisions"],
        metadata={"help": "search methods (dvts, and longer revision chains, cost the most time)"},
    )
    revision_lengths: list[int] = field(
        default_factory=lambda: [4], metadata={"help": "revision chain lengths"}
    )
    prm_problems: int = field(default=192, metadata={"help": "problems whose samples are MC-labelled"})
    reviser_problems: int = field(
        default=800, metadata={"help": "problems sampled for revision trajectories"}
    )
    reviser_samples: int = field(default=64, metadata={"help": "samples per reviser training problem"})
    token_prm_max_steps: int = field(
        default=400, metadata={"help": "token-classification PRM steps (-1: the prm.yaml recipe's epochs)"}
    )
    token_prm_learning_rate: float | None = field(
        default=None,
        metadata={"help": "token-classification PRM learning rate (default: the prm.yaml recipe's)"},
    )
    token_prm_methods: list[str] = field(
        default_factory=lambda: ["best_of_n", "beam_search"],
        metadata={"help": "searches with the token-classification PRM", "choices": TOKEN_PRM_METHODS},
    )
    reviser_rounds: int = field(
        default=1,
        metadata={
            "help": "1: the paper's reviser; 2: + a ReST^EM round on its own chains",
            "choices": (1, 2),
        },
    )
    seed: int = field(default=0, metadata={"help": "sampling seed"})
    report_to: str = field(
        default="none", metadata={"help": "W&B logging of the report", "choices": ("none", "wandb")}
    )
    trained_from: str | None = field(
        default=None, metadata={"help": "reuse the PRM and reviser of this finished demo output"}
    )

    def __post_init__(self) -> None:
        if self.fast:
            self.num_problems = min(self.num_problems, 24)
            self.num_samples = min(self.num_samples, 4)
            self.budgets = [b for b in self.budgets if b <= 4] or [1, 4]
            self.methods = [m for m in self.methods if m in ("best_of_n", "beam_search", "revisions")]
            self.revision_lengths = [min(self.revision_lengths + [1])]
            self.prm_problems = min(self.prm_problems, 24)
            self.reviser_problems = min(self.reviser_problems, 48)
            self.reviser_samples = min(self.reviser_samples, 16)
            self.token_prm_max_steps = (
                min(self.token_prm_max_steps, 20) if self.token_prm_max_steps > 0 else 20
            )
        if self.reviser_rounds not in (1, 2):
            raise ValueError(f"reviser_rounds must be 1 or 2, got {self.reviser_rounds}")
        if not self.budgets or any(b < 1 for b in self.budgets):
            raise ValueError(f"budgets must be positive, got {self.budgets}")
        unknown = [m for m in self.token_prm_methods if m not in TOKEN_PRM_METHODS]
        if unknown:
            raise ValueError(f"token_prm_methods: best_of_n and/or beam_search, got {unknown}")
        if self.token_prm_max_steps == 0 or self.token_prm_max_steps < -1:
            raise ValueError(f"token_prm_max_steps must be positive or -1, got {self.token_prm_max_steps}")
