"""Generation with vLLM (GPU; the optional ``vllm`` extra), behind the same interface.

Prefix caching is on by default: step-level search re-sends the same growing prefixes every round,
and vLLM then skips their prefill. Tensor/data parallel sizes are passed through for multi-GPU runs.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import replace

import torch
from transformers import AutoConfig, AutoModelForCausalLM

from ttcompute.core.errors import InputError
from ttcompute.models.generation import Completion, SamplingParams, prompt_token_ids, starts_with_bos

logger = logging.getLogger(__name__)

# vLLM samples greedily below this temperature (its _SAMPLING_EPS, the same in 0.8.0 and 0.34.0).
GREEDY_BELOW = 1e-5


class VLLMBackend:
    """:class:`~ttcompute.models.generation.GenerationBackend` over ``vllm.LLM``."""

    def __init__(
        self,
        model_name_or_path: str,
        dtype: str = "auto",
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        enable_prefix_caching: bool = True,
        trust_remote_code: bool = False,
        seed: int = 0,
    ) -> None:
        try:
            import vllm
        except ImportError:
            raise InputError(
                "backend 'vllm' needs the vllm extra: pip install 'ttcompute[vllm]' (CUDA only)"
            ) from None
        self.llm = vllm.LLM(
            model=model_name_or_path,
            # vLLM's default ("auto") falls back to pickled pytorch_model.bin files when a checkpoint
            # has no safetensors; the transformers backend refuses those, and so does this one.
            load_format="safetensors",
            dtype=dtype,
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
            enable_prefix_caching=enable_prefix_caching,
            trust_remote_code=trust_remote_code,
            seed=seed,
        )
        self.tokenizer = self.llm.get_tokenizer()
        self.max_context = self.llm.llm_engine.model_config.max_model_len
        self.num_parameters = _count_parameters(self.llm, trust_remote_code)

    def generate(self, prompts: list[str], params: SamplingParams) -> list[list[Completion]]:
        from vllm import SamplingParams as VLLMSamplingParams

        params.check_prompts(prompts)

        def sampling(n: int, seed: int) -> VLLMSamplingParams:
            return VLLMSamplingParams(
                n=n,
                temperature=params.temperature,
                top_p=params.top_p,
                max_tokens=params.max_tokens,
                stop=params.stop or None,
                # Keep the separator so prefixes concatenate back into solutions, as the HF backend does.
                include_stop_str_in_output=True,
                seed=seed,
            )

        # A prompt whose chat template wrote the BOS goes as token ids: vLLM tokenizes text prompts with
        # the special tokens, which would put a second BOS in front (TokensPrompt, vLLM's PromptType).
        requests = [
            {"prompt_token_ids": prompt_token_ids(self.tokenizer, p)}
            if starts_with_bos(self.tokenizer, p)
            else p
            for p in prompts
        ]
        if params.sample_seeds is not None:
            # One request per completion, each with its own seed: vLLM draws a seeded request from a
            # generator of its own, so a completion depends on its seed alone.
            flat = [(i, seed) for i, seeds in enumerate(params.sample_seeds) for seed in seeds]
            outputs = self.llm.generate(
                [requests[i] for i, _ in flat], [sampling(1, seed) for _, seed in flat], use_tqdm=False
            )
            grouped: list[list[Completion]] = [[] for _ in prompts]
            for (i, _), request in zip(flat, outputs):
                grouped[i] += _completions(request)
            return grouped
        # vLLM refuses n > 1 with greedy sampling ("n must be 1 when using greedy sampling"); its n
        # greedy completions would be one completion n times, so it is asked once and repeated.
        greedy = params.temperature < GREEDY_BELOW
        n = 1 if greedy else params.n
        # One seed per request: vLLM seeds each request on its own, so beam search's copies of one
        # prefix (the same prompt several times, n=1) would otherwise all sample the same next step.
        outputs = self.llm.generate(
            requests,
            [sampling(n, request_seed(params.seed, index)) for index in range(len(prompts))],
            use_tqdm=False,
        )
        if greedy:
            return [
                [replace(c) for _ in range(params.n) for c in _completions(request)] for request in outputs
            ]
        return [_completions(request) for request in outputs]


def _completions(request) -> list[Completion]:
    """A vLLM ``RequestOutput``'s completions in index order, as :class:`Completion`."""
    completions = []
    for out in sorted(request.outputs, key=lambda o: o.index):
        if out.finish_reason == "stop":
            reason = "stop" if out.stop_reason is not None else "eos"
        else:
            reason = "length"
        completions.append(Completion(text=out.text, num_tokens=len(out.token_ids), finish_reason=reason))
    return completions


def request_seed(seed: int, index: int) -> int:
    """A distinct, stable 31-bit seed for request ``index`` of a call seeded with ``seed``.

    >>> request_seed(0, 0) != request_seed(0, 1), request_seed(7, 3) == request_seed(7, 3)
    (True, True)
    """
    return zlib.crc32(f"{seed}:{index}".encode()) & 0x7FFFFFFF


def _count_parameters(llm, trust_remote_code: bool = False) -> int:
    """Parameter count from the HF config (vLLM does not expose the module in every version)."""
    try:
        # Explicit: left unset, transformers asks on an interactive terminal whether to run custom code.
        config = AutoConfig.from_pretrained(
            llm.llm_engine.model_config.model, trust_remote_code=trust_remote_code
        )

        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
        return sum(p.numel() for p in model.parameters())
    except Exception as err:  # accounting must not stop generation; say so loudly instead
        logger.warning("could not count the policy's parameters (%r); FLOPs will read 0", err)
        return 0
