"""Compute accounting: one definition of cost, used by every stage.

Inference FLOPs are ``2 * params * tokens`` (a forward pass), pretraining FLOPs ``6 * params *
tokens`` (forward + backward), as in Snell et al. Every stage reports the tokens it generated (policy)
or scored (verifier) together with what they cost, counted separately per model.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


def inference_flops(num_parameters: int, num_tokens: int) -> int:
    """FLOPs of processing ``num_tokens`` tokens with a ``num_parameters`` model.

    >>> inference_flops(1_000, 10)
    20000
    """
    return 2 * num_parameters * num_tokens


def pretraining_flops(num_parameters: int, num_tokens: int) -> int:
    """FLOPs of training on ``num_tokens`` tokens (forward and backward).

    >>> pretraining_flops(1_000, 10)
    60000
    """
    return 6 * num_parameters * num_tokens


@dataclass
class ComputeSpent:
    """Tokens and FLOPs a stage spent, per model role."""

    policy_parameters: int = 0
    policy_tokens: int = 0
    verifier_parameters: int = 0
    verifier_tokens: int = 0

    @property
    def policy_flops(self) -> int:
        return inference_flops(self.policy_parameters, self.policy_tokens)

    @property
    def verifier_flops(self) -> int:
        return inference_flops(self.verifier_parameters, self.verifier_tokens)

    @property
    def total_flops(self) -> int:
        return self.policy_flops + self.verifier_flops

    def to_dict(self) -> dict[str, int]:
        return {
            **asdict(self),
            "policy_flops": self.policy_flops,
            "verifier_flops": self.verifier_flops,
            "total_flops": self.total_flops,
        }


# --------------------------------------------------------------------------------------------------
# The search budget (Snell et al., sec. 5): the number of generations N. Best-of-N samples N full
# solutions; beam search and DVTS keep N beams alive and sample one step for each per round (so they
# also spend about N solutions' worth of tokens); lookahead search adds k greedy steps to each of them,
# costing N x (k + 1). Exact tokens and FLOPs are recorded besides this unit, for policy and verifier
# separately.


def search_generations(num_beams: int, lookahead: int = 0) -> int:
    """Generations a search with ``num_beams`` beams and ``lookahead`` greedy steps costs.

    >>> search_generations(16), search_generations(16, lookahead=3)
    (16, 64)
    """
    if num_beams < 1 or lookahead < 0:
        raise ValueError(f"need num_beams >= 1 and lookahead >= 0, got {num_beams}, {lookahead}")
    return num_beams * (lookahead + 1)


def beams_for_budget(budget: int, lookahead: int = 0) -> int:
    """The most beams a budget of ``budget`` generations pays for: ``budget // (lookahead + 1)``.

    Rounded down, so a search never spends more than its budget (0: the budget is too small).

    >>> beams_for_budget(64, lookahead=3), beams_for_budget(16, lookahead=2), beams_for_budget(2, 3)
    (16, 5, 0)
    """
    if budget < 1 or lookahead < 0:
        raise ValueError(f"need budget >= 1 and lookahead >= 0, got {budget}, {lookahead}")
    return budget // (lookahead + 1)


def resolve_beam_width(num_beams: int, width: str | int) -> int:
    """The beam width M actually used with ``num_beams`` beams for a width setting.

    ``width`` is an integer M or ``"sqrt"`` (M = sqrt(N), as in Snell et al.). Beam search keeps N / M
    prefixes and expands each M times, so M must divide N: the setting is rounded *down* to the
    largest divisor of N not above it (and never above N). With N a power of two and M = 4 nothing is
    rounded except N < 4 (M = N); ``"sqrt"`` gives 1, 1, 2, 2, 4, 4, 8, 8, 16 for N = 1, 2, ..., 256.

    >>> [resolve_beam_width(n, 4) for n in (1, 2, 4, 8, 6, 21)]
    [1, 2, 4, 4, 3, 3]
    >>> [resolve_beam_width(n, "sqrt") for n in (1, 2, 4, 8, 16, 32, 64, 128, 256)]
    [1, 1, 2, 2, 4, 4, 8, 8, 16]
    """
    if num_beams < 1:
        raise ValueError(f"num_beams must be >= 1, got {num_beams}")
    if width == "sqrt":
        target = math.isqrt(num_beams)
    else:
        try:
            target = int(width)
        except ValueError:
            raise ValueError(f"beam width must be a positive integer or 'sqrt', got {width!r}") from None
        if target < 1:
            raise ValueError(f"beam width must be >= 1, got {width!r}")
    target = min(target, num_beams)
    return next(m for m in range(target, 0, -1) if num_beams % m == 0)
