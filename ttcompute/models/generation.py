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


def build_prompt(question: str, template: str, tokenizer=None, use_chat_template: bool = False) -> str:
    """The policy's prompt for a question: ``template`` over it, as the user turn of the tokenizer's
    chat template with ``use_chat_template`` (the turn's trailing whitespace dropped: the template's
    own end of turn follows it, and ``"{question}\\n"`` would leave a stray newline inside it).

    >>> build_prompt("Start at 3. Add 4.", "{question}\\n")
    'Start at 3. Add 4.\\n'

    Raises:
        InputError: ``use_chat_template`` with a tokenizer that has no chat template.
    """
    text = template.format(question=question)
    if use_chat_template:
        if getattr(tokenizer, "chat_template", None) is None:
            raise InputError(
                "--use_chat_template true, but the policy's tokenizer has no chat template; turn it off "
                "or write the chat format into --prompt_template"
            )
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": text.rstrip()}], tokenize=False, add_generation_prompt=True
        )
    return text
