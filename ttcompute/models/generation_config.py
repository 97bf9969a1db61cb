"""Which policy generates, on which backend, and how: the options of every stage that generates."""

from __future__ import annotations

from dataclasses import dataclass, field

from ttcompute.core.prompts import PromptContract
from ttcompute.models.generation import SamplingParams

# core.grading.ANSWER_EXTRACTIONS (tested equal): not imported, so that parsing a command line does
# not load SymPy.
ANSWER_EXTRACTIONS = ("strict", "lenient")
BACKENDS = ("transformers", "vllm")


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
        system_prompt: The system turn with the chat template; unset, the template's default.
            Together these three are the prompt contract (:mod:`ttcompute.core.prompts`), recorded in
            the output and read by every later stage.
        device / dtype / max_batch_tokens: transformers backend placement and batching.
        tensor_parallel_size / gpu_memory_utilization: passed through to vLLM.
        data_parallel_size: Must stay 1. vLLM's offline data parallelism is one process per replica,
            each with its own GPUs and its own part of the data: that is ``--shard i/n``, one worker
            per replica (``CUDA_VISIBLE_DEVICES`` set per worker), each resumable on its own.
        enable_prefix_caching: Reuse the KV cache of a prompt's longest already-seen prefix (vLLM's
            automatic prefix caching; the transformers backend's own cache of stopped outputs).
        trust_remote_code: Off unless asked.
        answer_extraction: How a final answer is read from an output to grade it
            (:func:`ttcompute.core.grading.extract_answer`): ``strict`` takes marked answers only
            (boxes, "Final Answer: ...", "The answer is ...", ``#### N``); ``lenient`` falls back to
            the output's last mathematical expression, as peer graders do.
    """

    model_name_or_path: str | None = field(default=None, metadata={"help": "policy: Hub id or local path"})
    backend: str = field(default="transformers", metadata={"help": "generation backend", "choices": BACKENDS})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature (0 = greedy)"})
    top_p: float = field(default=1.0, metadata={"help": "nucleus sampling mass"})
    max_new_tokens: int = field(default=256, metadata={"help": "most new tokens per completion"})
    prompt_template: str = field(default="{question}\n", metadata={"help": "format string over {question}"})
    use_chat_template: bool = field(default=False, metadata={"help": "wrap prompts in the chat template"})
    system_prompt: str | None = field(
        default=None, metadata={"help": "system turn with the chat template (default: the template's own)"}
    )
    device: str | None = field(default=None, metadata={"help": "transformers backend: cpu, cuda, ..."})
    dtype: str = field(default="auto", metadata={"help": "auto | float32 | bfloat16 | float16"})
    max_batch_tokens: int = field(
        default=65536, metadata={"help": "transformers backend: tokens per forward batch"}
    )
    tensor_parallel_size: int = field(default=1, metadata={"help": "vLLM tensor parallel GPUs"})
    data_parallel_size: int = field(
        default=1, metadata={"help": "must stay 1: one --shard i/n worker per vLLM replica instead"}
    )
    gpu_memory_utilization: float = field(default=0.9, metadata={"help": "vLLM GPU memory fraction"})
    enable_prefix_caching: bool = field(
        default=True,
        metadata={"help": "reuse the KV cache of prompts that extend earlier outputs (both backends)"},
    )
    trust_remote_code: bool = field(default=False, metadata={"help": "allow custom model code (off)"})
    answer_extraction: str = field(
        default="strict",
        # Listed, not argparse choices: __post_init__ refuses another value with its own message.
        metadata={
            "help": "strict (marked answers only) | lenient (else the last expression): how outputs are graded",
            "metavar": "{" + ",".join(ANSWER_EXTRACTIONS) + "}",
        },
    )

    def __post_init__(self) -> None:
        self.prompt_contract()  # a template without {question}, a system prompt without chat: refused
        if self.answer_extraction not in ANSWER_EXTRACTIONS:
            raise ValueError(
                f"answer_extraction must be one of {ANSWER_EXTRACTIONS}, got {self.answer_extraction!r}"
            )
        if self.data_parallel_size != 1:
            raise ValueError(
                f"data_parallel_size {self.data_parallel_size}: vLLM runs offline data parallelism as one "
                "process per replica; start one worker per replica instead, e.g. "
                "CUDA_VISIBLE_DEVICES=i ttc sample ... --shard i/n (docs: guides/scale.md)"
            )

    def prompt_contract(self) -> PromptContract:
        """How this generator turns a question into a prompt."""
        return PromptContract(self.prompt_template, self.use_chat_template, self.system_prompt)

    def backend_kwargs(self) -> dict:
        if self.backend == "vllm":
            return {
                "dtype": self.dtype,
                "tensor_parallel_size": self.tensor_parallel_size,
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
