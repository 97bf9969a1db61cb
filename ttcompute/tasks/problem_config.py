"""Options that select a problem set; shared by every stage that reads problems."""

from __future__ import annotations

from dataclasses import dataclass, field

from ttcompute.tasks.sources import DEFAULT_NUM_ARITHMETIC_PROBLEMS, ProblemList, load_problems


@dataclass
class ProblemConfig:
    """Which problems to run on.

    Attributes:
        task: ``arithmetic`` (built in, generated from a seed), ``math`` or ``gsm8k``.
        dataset: For math/gsm8k: a local .json/.jsonl/.parquet file or directory, or a Hub dataset id
            (e.g. ``HuggingFaceH4/MATH-500``, ``openai/gsm8k``).
        split: Dataset split when loading through ``datasets``.
        dataset_config: A Hub/directory dataset's config(s) to read, one after the other; ``all``:
            every config (EleutherAI/hendrycks_math splits MATH by subject).
        question_field / answer_field / solution_field / id_field: Column names, for copies laid
            out differently (defaults: MATH-500's ``problem``, ``answer``, ``solution``,
            ``unique_id``; GSM8K's ``question``, ``answer``). A MATH source without the answer column
            takes the solution's last ``\\boxed{}``; without the id column, a hash of the question.
        shuffle_seed: Shuffle the problems before taking ``num_problems`` (a seeded subset).
        num_problems: Use the first N problems (all when unset; required for arithmetic).
        problem_seed: Seed of the arithmetic generator (held-out sets use a seed unseen in training).
        min_ops / max_ops / max_operand / max_value / ops: Arithmetic difficulty knobs.
        strict: math/gsm8k: a malformed dataset row (missing, empty or non-text field, no ``#### N``,
            a duplicate id ...) is an error naming the file, row and field. Off, such rows are
            skipped, each logged as a warning and counted; never loaded with a made-up answer.
    """

    task: str = field(default="arithmetic", metadata={"help": "arithmetic | math | gsm8k"})
    dataset: str | None = field(default=None, metadata={"help": "file, directory or Hub id (math/gsm8k)"})
    split: str = field(default="test", metadata={"help": "split for Hub/directory datasets"})
    dataset_config: list[str] | None = field(
        default=None, metadata={"help": "config(s) of a Hub/directory dataset; 'all' for every one"}
    )
    question_field: str | None = field(default=None, metadata={"help": "question column (math: problem)"})
    answer_field: str | None = field(default=None, metadata={"help": "gold answer column (answer)"})
    solution_field: str | None = field(
        default=None,
        metadata={
            "help": "math: reference solution column (solution); its last \\boxed{} "
            "is the answer when there is no answer column"
        },
    )
    id_field: str | None = field(
        default=None, metadata={"help": "problem id column (math: unique_id; absent: a hash of the question)"}
    )
    shuffle_seed: int | None = field(
        default=None, metadata={"help": "shuffle before taking --num_problems (a seeded subset)"}
    )
    num_problems: int | None = field(
        default=None, metadata={"help": "first N problems (arithmetic: how many)"}
    )
    problem_seed: int = field(default=1000, metadata={"help": "seed of the arithmetic generator"})
    min_ops: int = field(default=1, metadata={"help": "arithmetic: fewest operations"})
    max_ops: int = field(default=8, metadata={"help": "arithmetic: most operations"})
    max_operand: int = field(default=9, metadata={"help": "arithmetic: largest operand"})
    max_value: int = field(default=99, metadata={"help": "arithmetic: largest intermediate value"})
    ops: list[str] = field(
        default_factory=lambda: ["+", "-", "*"], metadata={"help": "arithmetic: operation mix"}
    )
    strict: bool = field(
        default=False,
        metadata={"help": "math/gsm8k: reject a malformed dataset row instead of skipping (and counting) it"},
    )

    def __post_init__(self) -> None:
        if self.task == "arithmetic" and not self.num_problems:
            self.num_problems = DEFAULT_NUM_ARITHMETIC_PROBLEMS
        if self.task in ("math", "gsm8k") and not self.dataset:
            raise ValueError(f"task {self.task!r} needs --dataset (a file, directory or Hub id)")
        if self.task == "arithmetic" and self.source_options():
            raise ValueError(
                f"the arithmetic task is generated: {', '.join(sorted(self.source_options()))} do not apply"
            )

    def source_options(self) -> dict:
        """The options of a math/gsm8k source (configs, shuffle seed, field names) that are set."""
        options = {
            "configs": self.dataset_config,
            "shuffle_seed": self.shuffle_seed,
            "question_field": self.question_field,
            "answer_field": self.answer_field,
            "solution_field": self.solution_field,
            "id_field": self.id_field,
        }
        return {name: value for name, value in options.items() if value is not None}

    def load(self) -> ProblemList:
        """The problems; malformed rows skipped are in the result's ``skipped`` (see ``strict``)."""
        return load_problems(
            self.task,
            self.dataset,
            self.split,
            self.num_problems,
            strict=self.strict,
            source=self.source_options() if self.task != "arithmetic" else None,
            seed=self.problem_seed,
            min_ops=self.min_ops,
            max_ops=self.max_ops,
            max_operand=self.max_operand,
            max_value=self.max_value,
            ops=tuple(self.ops),
        )
