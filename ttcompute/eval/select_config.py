"""Options of ``ttc select``."""

from __future__ import annotations

from dataclasses import dataclass, field

from ttcompute.core.steps import AGGREGATIONS

DEFAULT_TAUS = [0.5, 0.7, 0.8, 0.9, 0.95, 0.99]


@dataclass
class SelectConfig:
    """Options of ``ttc select``.

    Attributes:
        search_dir: Output directory of ``ttc search``.
        output_dir: Where the tables and the plot go (default: ``<search_dir>/select``).
        aggregation: How a candidate's step scores become its score (last / min / prod / mean).
        difficulty_dir: Output of ``ttc difficulty`` for the same problems: accuracy per bin too.
        adaptive: Evaluate adaptive strategies (``ttcompute/eval/adaptive.py``) on the saved
            candidates: every stopping rule of ``adaptive_rules`` at every ``adaptive_taus`` and cap
            (``adaptive_caps``), revision chains stopped early, tree searches escalated.
        adaptive_rules: The stopping rules (default: every one the search can feed -- the verifier
            rules ``share`` and ``best`` need a search with a PRM; naming one without is refused).
        adaptive_taus: The thresholds tau of the agreement rules (a posterior probability), each in (0, 1].
        verifier_taus: The thresholds of the verifier rules (``share``, ``best``, revision chains'
            acceptance, escalation), each in (0, 1]. Default: the quantiles ``verifier_quantiles`` of
            the verifier's scores of the saved best-of-N candidates -- a verifier's scale is its own
            (the demo's likelihood PRM never scores above 0.54) -- read from the scores alone, never
            from whether a candidate is correct.
        verifier_quantiles: The quantiles behind the default ``verifier_taus``.
        escalation_caps: The largest budget an escalation may reach (default: the search's largest).
        adaptive_caps: The caps B of the best-of-N rules (default: every best-of-N budget >= 2 of the
            search; one above its largest is refused).
        esc_windows: The windows w of the ``esc`` rule.
        adaptive_strategies: Adaptive strategies by name, evaluated besides the grid (e.g.
            ``"adaptive_vote rule=beta tau=0.95 B=64"``).
    """

    search_dir: str = field(default="runs/search", metadata={"help": "output directory of ttc search"})
    output_dir: str | None = field(default=None, metadata={"help": "default: <search_dir>/select"})
    aggregation: str = field(
        default="last", metadata={"help": "step scores -> score", "choices": AGGREGATIONS}
    )
    difficulty_dir: str | None = field(default=None, metadata={"help": "ttc difficulty output (bins)"})
    adaptive: bool = field(default=True, metadata={"help": "evaluate adaptive strategies on the candidates"})
    adaptive_rules: list[str] | None = field(
        default=None,
        metadata={"help": "stopping rules: beta dirichlet esc share best (default: all the search feeds)"},
    )
    adaptive_taus: list[float] = field(
        default_factory=lambda: list(DEFAULT_TAUS), metadata={"help": "stopping thresholds tau in (0, 1]"}
    )
    verifier_taus: list[float] | None = field(
        default=None,
        metadata={"help": "verifier rules' thresholds (default: quantiles of the verifier's scores)"},
    )
    verifier_quantiles: list[float] = field(
        default_factory=lambda: [0.5, 0.6, 0.7, 0.8, 0.9, 0.95],
        metadata={"help": "quantiles of the verifier's scores behind the default verifier_taus"},
    )
    escalation_caps: list[int] | None = field(
        default=None,
        metadata={"help": "largest budget an escalation reaches (default: the search's largest)"},
    )
    adaptive_caps: list[int] | None = field(
        default=None, metadata={"help": "caps B of the best-of-N rules (default: best-of-N budgets >= 2)"}
    )
    esc_windows: list[int] = field(default_factory=lambda: [2, 4], metadata={"help": "esc rule windows"})
    adaptive_strategies: list[str] = field(
        default_factory=list, metadata={"help": "adaptive strategies by name, besides the grid"}
    )

    def __post_init__(self) -> None:
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"unknown aggregation {self.aggregation!r}; choose one of {AGGREGATIONS}")
        bad = [t for t in self.adaptive_taus if not 0 < t <= 1]
        if bad or not self.adaptive_taus:
            raise ValueError(f"adaptive_taus: each tau must be in (0, 1], got {self.adaptive_taus}")
        if self.verifier_taus is not None and (
            not self.verifier_taus or any(not 0 < t <= 1 for t in self.verifier_taus)
        ):
            raise ValueError(f"verifier_taus: each tau must be in (0, 1], got {self.verifier_taus}")
        if not self.verifier_quantiles or any(not 0 < q < 1 for q in self.verifier_quantiles):
            raise ValueError(f"verifier_quantiles: each in (0, 1), got {self.verifier_quantiles}")
        if any(c < 1 for c in self.adaptive_caps or []) or any(w < 1 for w in self.esc_windows):
            raise ValueError("adaptive_caps and esc_windows must be >= 1")
