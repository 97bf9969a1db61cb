"""Compute accounting: one definition of cost, used by every stage.

Inference FLOPs are ``2 * params * tokens`` (a forward pass), pretraining FLOPs ``6 * params *
tokens`` (forward + backward), as in Snell et al. Every stage reports the tokens it generated (policy)
or scored (verifier) together with what they cost, counted separately per model.
"""

from __future__ import annotations

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
