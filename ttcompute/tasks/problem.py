"""The one problem shape every source (MATH, GSM8K, arithmetic) is turned into."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Problem:
    """A question with its gold final answer.

    Attributes:
        problem_id: Stable identifier, unique within its source (MATH's ``unique_id``, ``gsm8k-<row>``,
            ``arith-<seed>-<i>``). Stages key their outputs and resumption on it.
        question: The text shown to the policy.
        answer: The gold final answer as a string (LaTeX allowed), compared with ``is_equivalent``.
        solution: A reference solution, when the source has one.
        metadata: Source-specific fields (MATH ``level``/``subject``; arithmetic ``num_ops`` ...).
    """

    problem_id: str
    question: str
    answer: str
    solution: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
