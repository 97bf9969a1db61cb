"""Options of ``ttc eval-prm``."""

from __future__ import annotations

from dataclasses import dataclass, field

from ttcompute.core.prm_format_names import PRM_FORMAT_CHOICES
from ttcompute.core.prompts import PRMPromptOptions
from ttcompute.core.steps import AGGREGATIONS

GOLD_SOURCES = ("auto", "labels", "checker", "processbench")


@dataclass
class EvalPRMConfig(PRMPromptOptions):
    """Options of ``ttc eval-prm``.

    Parameters that control the model:
        prm: Path or Hub id of the PRM (required).
        prm_format: ``auto`` or a format known to :func:`ttcompute.models.prm_formats.load_prm`.
        max_batch_tokens: Tokens per PRM forward batch.
        device: ``cpu``, ``cuda``, ``cuda:1`` ...; default: the best available.
        trust_remote_code: Allow custom model code (some public PRMs need it).

    Parameters that control the data:
        dataset: A ``ttc label`` output directory, or a ProcessBench-style file, directory or Hub id.
        split: Split to load from a dataset directory or Hub id (ProcessBench's: ``gsm8k``, ``math``,
            ``olympiadbench``, ``omnimath``); ignored for files and ``ttc label`` output.
        gold: The truth to score against: ``processbench`` (the ``label`` column), ``labels`` (first
            MC value of 0), ``checker`` (the arithmetic task's exact ``first_wrong_step``), or ``auto``:
            ProcessBench labels if present, else the checker if every question is an arithmetic
            problem, else the MC labels.
        limit: Evaluate only the first ``limit`` rows (and the first ``limit`` sampled problems).
        samples_dir: A ``ttc sample`` output for the best-of-N curve (optional).
        step_separator: Splits sampled solutions into steps; default: the PRM's, else a blank line.

    Parameters that control the metrics:
        aggregation: How step scores become a solution score for best-of-N (last, min, prod, mean).
        threshold: A step scored below it is predicted wrong (ProcessBench).
        output_dir: Where ``prm_eval.json`` and the resolved config go.
    """

    prm: str | None = field(default=None, metadata={"help": "PRM path or Hub id (required)"})
    prm_format: str = field(
        default="auto",
        metadata={"help": "PRM format; auto: what it says it is", "choices": PRM_FORMAT_CHOICES},
    )
    dataset: str | None = field(
        default=None, metadata={"help": "ttc label output dir, or ProcessBench file/dir/Hub id (required)"}
    )
    split: str = field(default="gsm8k", metadata={"help": "split of a dataset dir or Hub id"})
    gold: str = field(
        default="auto", metadata={"help": "where the truth comes from", "choices": GOLD_SOURCES}
    )
    samples_dir: str | None = field(default=None, metadata={"help": "ttc sample output for best-of-N"})
    aggregation: str = field(
        default="last", metadata={"help": "step-score aggregation", "choices": AGGREGATIONS}
    )
    threshold: float = field(default=0.5, metadata={"help": "a step scored below this is predicted wrong"})
    calibration_dataset: str | None = field(
        default=None,
        metadata={
            "help": "other problems (same format and gold) to pick the ProcessBench threshold on: the one "
            "with the best F1 there replaces --threshold"
        },
    )
    limit: int | None = field(default=None, metadata={"help": "evaluate only the first rows"})
    max_batch_tokens: int = field(default=32768, metadata={"help": "tokens per PRM forward batch"})
    device: str | None = field(default=None, metadata={"help": "torch device (default: best available)"})
    trust_remote_code: bool = field(default=False, metadata={"help": "allow custom model code"})
    step_separator: str | None = field(
        default=None, metadata={"help": "splits sampled solutions into steps (default: the PRM's)"}
    )
    output_dir: str = field(default="runs/eval_prm", metadata={"help": "output directory"})

    def __post_init__(self) -> None:
        if not self.prm:
            raise ValueError("--prm is required (a PRM path or Hub id)")
        if not self.dataset:
            raise ValueError("--dataset is required (a ttc label output dir or a ProcessBench dataset)")
        if self.gold not in GOLD_SOURCES:
            raise ValueError(f"gold must be one of {', '.join(GOLD_SOURCES)}; got {self.gold!r}")
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(
                f"aggregation must be one of {', '.join(AGGREGATIONS)}; got {self.aggregation!r}"
            )
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1, got {self.limit}")
        if self.max_batch_tokens < 1:
            raise ValueError(f"max_batch_tokens must be >= 1, got {self.max_batch_tokens}")
        if self.step_separator == "":
            raise ValueError("step_separator must not be empty")
