"""Block expansion (LLaMA Pro, Wu et al. 2024): deepen a trained decoder by inserting copies of its
blocks whose output projections are zero, so that the deeper model computes exactly what the
original did and the new blocks are free capacity for what finetuning adds.

Why a reviser wants it: a revision mostly repeats its most recent attempt, and copying a step's
result from an attempt hundreds of characters back needs an attention circuit (match the step's
left-hand side, read what followed it) that a 2-layer policy, whose layers already do its
arithmetic, did not form in 5,400 steps of pure copy data; with two expanded blocks it formed
within 1,800 (docs: research/reviser_study.md).
"""

from __future__ import annotations

import copy

import torch
from transformers import PreTrainedModel

from ttcompute.core.errors import InputError


def expansion_positions(num_layers: int, num_new: int) -> list[int]:
    """After which original blocks (0-based) a new block goes: spread evenly, the last one after the
    top block (LLaMA Pro's groups: one new block closing each group of ``num_layers / num_new``).

    >>> expansion_positions(2, 2), expansion_positions(4, 2), expansion_positions(5, 2)
    ([0, 1], [1, 3], [2, 4])
    """
    if num_new < 0:
        raise ValueError(f"the number of new blocks must be >= 0, got {num_new}")
    if num_new > num_layers:
        raise ValueError(f"at most one new block per original block ({num_layers}), got {num_new}")
    return [num_layers - 1 - (num_layers * i) // num_new for i in reversed(range(num_new))]


def _zero_output_projections(block: torch.nn.Module) -> None:
    attention, mlp = getattr(block, "self_attn", None), getattr(block, "mlp", None)
    outputs = [getattr(attention, "o_proj", None), getattr(mlp, "down_proj", None)]
    if any(not isinstance(o, torch.nn.Linear) for o in outputs):
        raise InputError(
            f"block expansion needs Llama-style decoder blocks (self_attn.o_proj, mlp.down_proj); "
            f"{type(block).__name__} has no such projections"
        )
    for linear in outputs:
        torch.nn.init.zeros_(linear.weight)
        if linear.bias is not None:
            torch.nn.init.zeros_(linear.bias)


def expand_blocks(model: PreTrainedModel, num_new: int) -> PreTrainedModel:
    """Insert ``num_new`` identity blocks into a causal LM in place (and return it): each a copy of
    the block before it with ``o_proj`` and ``down_proj`` zeroed, so every residual update it adds
    is 0 and the logits are unchanged. Llama, Qwen2, Mistral-style models (``model.model.layers``).
    The config's ``num_hidden_layers`` (and ``layer_types`` where it has them) follow."""
    if num_new == 0:
        return model
    decoder = getattr(model, "model", None)
    layers = getattr(decoder, "layers", None)
    if not isinstance(layers, torch.nn.ModuleList):
        raise InputError(f"block expansion: {type(model).__name__} has no model.layers to expand")
    after = set(expansion_positions(len(layers), num_new))
    config = model.config.get_text_config()
    layer_types = list(getattr(config, "layer_types", None) or [])
    blocks, types = [], []
    for i, block in enumerate(layers):
        copies = [block]
        if i in after:
            copies.append(copy.deepcopy(block))
            _zero_output_projections(copies[-1])
        blocks += copies
        types += [layer_types[i] if layer_types else None] * len(copies)
    for index, block in enumerate(blocks):
        # The KV cache is indexed by each attention's layer_idx: it must be the block's new position.
        if hasattr(block, "self_attn") and hasattr(block.self_attn, "layer_idx"):
            block.self_attn.layer_idx = index
    decoder.layers = torch.nn.ModuleList(blocks)
    config.num_hidden_layers = len(blocks)
    if layer_types:
        config.layer_types = types
    return model
