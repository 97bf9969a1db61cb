"""The generation interface every stage talks to, and a loader that picks a backend by name.

Search, sampling and labelling code only sees :class:`GenerationBackend`; the transformers and vLLM
backends (and test toys) implement it, so no stage imports an inference engine directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from ttcompute.core.errors import InputError


@dataclass
class SamplingParams:
    """How to sample.

    Attributes:
        n: Completions per prompt.
        temperature: 0 means greedy.
        top_p: Nucleus sampling mass.
        max_tokens: Most new tokens per completion.
        stop: Strings that end a completion (e.g. the step separator for step-level search); the stop
            string is kept at the end of the text so that prefixes concatenate back into solutions.
        seed: Seed for this call; the same seed, prompts and params give the same completions on the
            same backend and device.
    """

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 256
    stop: list[str] = field(default_factory=list)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")


@dataclass
class Completion:
    """One generated continuation.

    Attributes:
        text: The generated text (including the stop string when one ended it).
        num_tokens: Tokens generated, counted by the policy's tokenizer -- what compute accounting uses.
        finish_reason: ``"stop"`` (a stop string), ``"eos"`` (end of sequence) or ``"length"``.
    """

    text: str
    num_tokens: int
    finish_reason: str


@runtime_checkable
class GenerationBackend(Protocol):
    """Batched sampling of ``params.n`` completions for each prompt."""

    num_parameters: int

    def generate(self, prompts: list[str], params: SamplingParams) -> list[list[Completion]]:
        """Returns, for each prompt, its ``params.n`` completions in a fixed order."""
        ...


def load_backend(name: str, model_name_or_path: str, **kwargs) -> GenerationBackend:
    """Build the backend called ``name`` ("transformers" or "vllm") for a checkpoint (Hub id or path)."""
    if name == "transformers":
        from ttcompute.models.hf_backend import TransformersBackend

        return TransformersBackend(model_name_or_path, **kwargs)
    if name == "vllm":
        from ttcompute.models.vllm_backend import VLLMBackend

        return VLLMBackend(model_name_or_path, **kwargs)
    raise InputError(f"unknown backend {name!r}; choose 'transformers' or 'vllm'")


@dataclass
class GeneratorConfig:
    """Which policy generates, on which backend, and how.

    Attributes:
        model_name_or_path: Hub id or local checkpoint directory of the policy.
        backend: ``transformers`` (CPU/GPU) or ``vllm`` (GPU, optional extra).
        temperature / top_p / max_new_tokens: Sampling parameters.
        prompt_template: Python format string over the problem's fields (``{question}``).
        use_chat_template: Wrap the formatted prompt as a user turn of the tokenizer's chat template
            (instruction-tuned Hub policies); off for base models and the built-in task.
        device / dtype / max_batch_tokens: transformers backend placement and batching.
        tensor_parallel_size / data_parallel_size / gpu_memory_utilization: passed through to vLLM.
        enable_prefix_caching: Reuse the KV cache of a prompt's longest already-seen prefix (vLLM's
            automatic prefix caching; the transformers backend's own cache of stopped outputs).
        trust_remote_code: Off unless asked.
    """

    model_name_or_path: str | None = field(default=None, metadata={"help": "policy: Hub id or local path"})
    backend: str = field(default="transformers", metadata={"help": "transformers | vllm"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature (0 = greedy)"})
    top_p: float = field(default=1.0, metadata={"help": "nucleus sampling mass"})
    max_new_tokens: int = field(default=256, metadata={"help": "most new tokens per completion"})
    prompt_template: str = field(default="{question}\n", metadata={"help": "format string over {question}"})
    use_chat_template: bool = field(default=False, metadata={"help": "wrap prompts in the chat template"})
    device: str | None = field(default=None, metadata={"help": "transformers backend: cpu, cuda, ..."})
    dtype: str = field(default="auto", metadata={"help": "auto | float32 | bfloat16 | float16"})
    max_batch_tokens: int = field(
        default=65536, metadata={"help": "transformers backend: tokens per forward batch"}
    )
    tensor_parallel_size: int = field(default=1, metadata={"help": "vLLM tensor parallel GPUs"})
    data_parallel_size: int = field(default=1, metadata={"help": "vLLM data parallel replicas"})
    gpu_memory_utilization: float = field(default=0.9, metadata={"help": "vLLM GPU memory fraction"})
    enable_prefix_caching: bool = field(
        default=True,
        metadata={"help": "reuse the KV cache of prompts that extend earlier outputs (both backends)"},
    )
    trust_remote_code: bool = field(default=False, metadata={"help": "allow custom model code (off)"})

    def backend_kwargs(self) -> dict:
        if self.backend == "vllm":
            return {
                "dtype": self.dtype,
                "tensor_parallel_size": self.tensor_parallel_size,
                "data_parallel_size": self.data_parallel_size,
                "gpu_memory_utilization": self.gpu_memory_utilization,
                "enable_prefix_caching": self.enable_prefix_caching,
                "trust_remote_code": self.trust_remote_code,
            }
        return {
            "device": self.device,
            "dtype": self.dtype,
            "max_batch_tokens": self.max_batch_tokens,
            "trust_remote_code": self.trust_remote_code,
            "enable_prefix_caching": self.enable_prefix_caching,
        }

    def sampling_params(self, n: int, seed: int, stop: list[str] | None = None) -> SamplingParams:
        return SamplingParams(
            n=n,
            temperature=self.temperature,
            top_p=self.top_p,
            max_tokens=self.max_new_tokens,
            stop=stop or [],
            seed=seed,
        )


def build_prompt(question: str, template: str, tokenizer=None, use_chat_template: bool = False) -> str:
    """The policy's prompt for a question.

    >>> build_prompt("Start at 3. Add 4.", "{question}\\n")
    'Start at 3. Add 4.\\n'
    """
    text = template.format(question=question)
    if use_chat_template:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
        )
    return text
