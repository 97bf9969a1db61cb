"""Options of ``ttc difficulty``."""

from __future__ import annotations

from dataclasses import dataclass, field

from ttcompute.core.prompts import PRMPromptOptions

PREDICTORS = ("oracle", "prm", "prm_probe")


@dataclass
class DifficultyConfig(PRMPromptOptions):
    """Options of ``ttc difficulty``.

    Attributes:
        samples_dir: Output directory of ``ttc sample``.
        output_dir: Where the bins go.
        num_bins: Number of quantile bins (the paper uses 5).
        bin_edges_file: Reuse the edges of an earlier run (its ``bin_edges.json``) instead of computing
            new ones from these samples.
        predictor: ``oracle`` (pass@1), ``prm`` (mean PRM score of all samples) or ``prm_probe``
            (mean PRM score of the first ``probe_samples``).
        prm / prm_format / device: The PRM of the ``prm*`` predictors.
        probe_samples: Samples per problem ``prm_probe`` reads.
        step_separator: How the samples split into steps for the PRM.
    """

    samples_dir: str = field(default="runs/samples", metadata={"help": "output directory of ttc sample"})
    output_dir: str = field(default="runs/difficulty", metadata={"help": "output directory"})
    num_bins: int = field(default=5, metadata={"help": "number of quantile bins"})
    bin_edges_file: str | None = field(default=None, metadata={"help": "bin_edges.json to reuse"})
    predictor: str = field(default="oracle", metadata={"help": "oracle | prm | prm_probe"})
    prm: str | None = field(default=None, metadata={"help": "PRM checkpoint for the prm predictors"})
    prm_format: str = field(default="auto", metadata={"help": "PRM format (see ttc search)"})
    device: str | None = field(default=None, metadata={"help": "PRM device (default: cuda if available)"})
    probe_samples: int = field(default=4, metadata={"help": "samples per problem prm_probe scores"})
    step_separator: str = field(default="\n\n", metadata={"help": "text between steps"})

    def __post_init__(self) -> None:
        if self.num_bins < 1:
            raise ValueError(f"num_bins must be >= 1, got {self.num_bins}")
        if self.predictor not in PREDICTORS:
            raise ValueError(f"unknown predictor {self.predictor!r}; choose one of {PREDICTORS}")
        if self.predictor != "oracle" and not self.prm:
            raise ValueError(f"predictor {self.predictor} needs --prm")
        if self.probe_samples < 1:
            raise ValueError(f"probe_samples must be >= 1, got {self.probe_samples}")
