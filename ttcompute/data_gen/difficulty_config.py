"""Options of ``ttc difficulty``."""

from __future__ import annotations

from dataclasses import dataclass, field

from ttcompute.core.prm_format_names import PRM_FORMAT_CHOICES
from ttcompute.core.prompts import PRMPromptOptions

PREDICTORS = ("oracle", "prm", "prm_probe", "question")


@dataclass
class DifficultyConfig(PRMPromptOptions):
    """Options of ``ttc difficulty``.

    Attributes:
        samples_dir: Output directory of ``ttc sample``.
        output_dir: Where the bins go.
        num_bins: Number of quantile bins (the paper uses 5).
        bin_edges_file: Reuse the edges of an earlier run (its ``bin_edges.json``) instead of computing
            new ones from these samples.
        predictor: ``oracle`` (pass@1), ``prm`` (mean PRM score of all samples), ``prm_probe``
            (mean PRM score of the first ``probe_samples``) or ``question`` (pass@1 predicted from the
            policy's hidden states of the prompt, before any sampling: ``data_gen/question_probe.py``).
        prm / prm_format / device: The PRM of the ``prm*`` predictors (``device``: also the policy's
            of ``question``).
        probe_samples: Samples per problem ``prm_probe`` reads.
        step_separator: How the samples split into steps for the PRM.
        probe_train_samples_dir: ``question``: a ``ttc sample`` output of *other* problems whose oracle
            pass@1 trains the probe.
        question_probe: ``question``: a saved ``question_probe.json`` to reuse instead of training one.
        model_name_or_path: ``question``: the policy (default: the one ``samples_dir`` was sampled with).
        probe_folds: ``question``: folds of the cross-validation that picks layer, pooling and penalty.
        probe_layers: ``question``: hidden-state layers to consider (0 = embeddings; default: all).
        oracle_dir: The predictors' agreement with the oracle is measured against this oracle
            ``ttc difficulty`` output of the same problems (its pass@1, e.g. from more samples);
            default: the pass@1 of ``samples_dir`` itself.
    """

    samples_dir: str = field(default="runs/samples", metadata={"help": "output directory of ttc sample"})
    output_dir: str = field(default="runs/difficulty", metadata={"help": "output directory"})
    num_bins: int = field(default=5, metadata={"help": "number of quantile bins"})
    bin_edges_file: str | None = field(default=None, metadata={"help": "bin_edges.json to reuse"})
    predictor: str = field(
        default="oracle", metadata={"help": "how difficulty is estimated", "choices": PREDICTORS}
    )
    prm: str | None = field(default=None, metadata={"help": "PRM checkpoint for the prm predictors"})
    prm_format: str = field(
        default="auto", metadata={"help": "PRM format (see ttc search)", "choices": PRM_FORMAT_CHOICES}
    )
    device: str | None = field(default=None, metadata={"help": "PRM device (default: cuda if available)"})
    probe_samples: int = field(default=4, metadata={"help": "samples per problem prm_probe scores"})
    step_separator: str = field(default="\n\n", metadata={"help": "text between steps"})
    probe_train_samples_dir: str | None = field(
        default=None, metadata={"help": "question: ttc sample output of other problems to train the probe on"}
    )
    question_probe: str | None = field(
        default=None, metadata={"help": "question: a saved question_probe.json to reuse (no training)"}
    )
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "question: the policy (default: the samples' own)"}
    )
    probe_folds: int = field(default=5, metadata={"help": "question: cross-validation folds"})
    probe_layers: list[int] | None = field(
        default=None, metadata={"help": "question: layers to consider (0 = embeddings; default all)"}
    )
    oracle_dir: str | None = field(
        default=None, metadata={"help": "oracle ttc difficulty output the agreement is measured against"}
    )

    def __post_init__(self) -> None:
        if self.num_bins < 1:
            raise ValueError(f"num_bins must be >= 1, got {self.num_bins}")
        if self.predictor not in PREDICTORS:
            raise ValueError(f"unknown predictor {self.predictor!r}; choose one of {PREDICTORS}")
        if self.predictor in ("prm", "prm_probe") and not self.prm:
            raise ValueError(f"predictor {self.predictor} needs --prm")
        if self.probe_samples < 1:
            raise ValueError(f"probe_samples must be >= 1, got {self.probe_samples}")
        if self.predictor == "question" and bool(self.probe_train_samples_dir) == bool(self.question_probe):
            raise ValueError(
                "predictor question needs exactly one of --probe_train_samples_dir (train a probe) "
                "and --question_probe (reuse one)"
            )
        if self.probe_folds < 2:
            raise ValueError(f"probe_folds must be >= 2, got {self.probe_folds}")
