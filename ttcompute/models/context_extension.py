"""Longer context for a RoPE decoder: raise the length it declares, nothing else.

Why this is sound for plain rotary embeddings: attention scores depend on positions only through
their difference (each query and key is rotated by its position), and the default rotary embedding
computes its angles from the positions it is given, not from ``max_position_embeddings``. A model
declared longer therefore computes exactly what it did on every input that fitted before; what it has
not seen is attention across distances beyond its training context, which the finetuning that
follows teaches (a reviser's oldest attempts sit that far back). Scaled RoPE variants (linear, NTK,
YaRN, llama3) derive their angles from the declared lengths, and learned absolute positions (GPT-2)
have no embedding past the last one: both are refused, with what to do instead.
"""

from __future__ import annotations

from transformers import PreTrainedModel

from ttcompute.core.errors import InputError


def _rope_types(config) -> set[str]:
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    if not isinstance(rope, dict):
        return {"default"}
    # Models with several attention types keep one dict per type (e.g. {"full_attention": {...}}).
    nested = [value for value in rope.values() if isinstance(value, dict)]
    return {entry.get("rope_type", entry.get("type", "default")) for entry in (nested or [rope])}


def extend_context(model: PreTrainedModel, length: int | None) -> PreTrainedModel:
    """Declare a context of ``length`` tokens on a decoder with plain rotary embeddings (in place;
    returns the model). ``None`` or a length no longer than the declared one leaves it as it is.

    Raises:
        InputError: the model has no rotary embedding, or a scaled one (one line, with the remedy).
    """
    config = model.config.get_text_config()
    declared = getattr(config, "max_position_embeddings", None)
    if length is None or (declared is not None and length <= declared):
        return model
    decoder = getattr(model, "model", None)
    if getattr(decoder, "rotary_emb", None) is None:
        raise InputError(
            f"context extension: {type(model).__name__} has no rotary position embedding (learned "
            "absolute positions end at the last one trained); train it at its own context"
        )
    scaled = _rope_types(config) - {"default"}
    if scaled:
        raise InputError(
            f"context extension: {type(model).__name__} uses scaled RoPE ({', '.join(sorted(scaled))}), "
            "whose angles depend on the declared context; extend it with that method's own settings "
            "(rope_parameters) instead"
        )
    config.max_position_embeddings = length
    return model
