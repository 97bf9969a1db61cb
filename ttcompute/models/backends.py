"""The generation backends by name: ``--backend transformers`` (CPU/GPU) or ``--backend vllm`` (GPU)."""

from __future__ import annotations

from ttcompute.core.errors import InputError
from ttcompute.models.generation import GenerationBackend
from ttcompute.models.hf_backend import TransformersBackend
from ttcompute.models.vllm_backend import VLLMBackend


def load_backend(name: str, model_name_or_path: str, **kwargs) -> GenerationBackend:
    """Build the backend called ``name`` ("transformers" or "vllm") for a checkpoint (Hub id or path)."""
    if name == "transformers":
        return TransformersBackend(model_name_or_path, **kwargs)
    if name == "vllm":
        return VLLMBackend(model_name_or_path, **kwargs)
    raise InputError(f"unknown backend {name!r}; choose 'transformers' or 'vllm'")
