"""Options of ``ttc report``."""

from __future__ import annotations

from dataclasses import dataclass, field

REPORT_TO = ("none", "wandb")


@dataclass
class ReportConfig:
    """Options of ``ttc report``. Every input is optional: missing parts are left out of the report.

    Attributes:
        output_dir: Where ``report.md``, ``report.json`` and the PNGs go.
        policy_small / policy_large: Checkpoint directories (parameter counts).
        small_samples_dir: ``ttc sample`` of the small policy on the evaluation problems (pass@1).
        large_samples_dir: ``ttc sample`` of the large policy, greedy, on the same problems.
        prm_eval_dir: ``ttc eval-prm`` output.
        select_dirs: ``ttc select`` outputs (accuracy vs budget, revision steps).
        compare_prm_eval_dir / compare_prm_select_dir: A second PRM's ``ttc eval-prm`` output and the
            ``ttc select`` output of a search with it (the demo: the token-classification PRM), put
            side by side with ``prm_eval_dir`` and ``select_dirs``' in ``verifiers``.
        compute_optimal_dir / flops_matched_dir: Outputs of those stages.
        compute_optimal_predicted_dirs: ``ttc compute-optimal`` outputs over predicted bins, one per
            predictor (reported side by side with the oracle's as ``compute_optimal_by_predictor``).
        headline_predictor: The difficulty predictor whose spend-axis analysis (static and adaptive
            strategies, every cost counted) the headline reads -- declared, not picked after the fact;
            ``none`` for the adaptive rules without bins. Every predictor's row is reported beside it.
        profile_file: A JSON ``{stage: seconds}`` of the run being reported (the demo writes one).
        cost_dirs: Stage outputs whose compute is summed into ``cost.total_flops``.
        wall_seconds: Wall time of the run being reported (the demo passes its own).
        report_to: ``none`` or ``wandb``.
    """

    output_dir: str = field(default="runs/report", metadata={"help": "output directory"})
    policy_small: str | None = field(default=None, metadata={"help": "small policy checkpoint"})
    policy_large: str | None = field(default=None, metadata={"help": "large policy checkpoint"})
    small_samples_dir: str | None = field(default=None, metadata={"help": "small policy samples"})
    large_samples_dir: str | None = field(default=None, metadata={"help": "large policy greedy samples"})
    prm_eval_dir: str | None = field(default=None, metadata={"help": "ttc eval-prm output"})
    select_dirs: list[str] = field(default_factory=list, metadata={"help": "ttc select outputs"})
    compare_prm_eval_dir: str | None = field(
        default=None, metadata={"help": "a second PRM's ttc eval-prm output (the verifiers table)"}
    )
    compare_prm_select_dir: str | None = field(
        default=None, metadata={"help": "ttc select output of a search with that second PRM"}
    )
    compute_optimal_dir: str | None = field(default=None, metadata={"help": "ttc compute-optimal output"})
    compute_optimal_predicted_dirs: list[str] = field(
        default_factory=list,
        metadata={
            "help": "ttc compute-optimal outputs over predicted (no ground truth) bins, one per predictor"
        },
    )
    headline_predictor: str = field(
        default="question", metadata={"help": "the predictor the headline reads (none: no bins)"}
    )
    profile_file: str | None = field(default=None, metadata={"help": "JSON {stage: seconds} of the run"})
    flops_matched_dir: str | None = field(default=None, metadata={"help": "ttc flops-matched output"})
    cost_dirs: list[str] = field(default_factory=list, metadata={"help": "outputs whose compute is summed"})
    wall_seconds: float | None = field(default=None, metadata={"help": "wall time of the reported run"})
    # Listed, not argparse choices: __post_init__ refuses another value with its own message.
    report_to: str = field(
        default="none",
        metadata={"help": "where the report also goes", "metavar": "{" + ",".join(REPORT_TO) + "}"},
    )

    def __post_init__(self) -> None:
        if self.report_to not in REPORT_TO:
            raise ValueError(f"report_to must be none or wandb, got {self.report_to!r}")
