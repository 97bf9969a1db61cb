"""The generation interface every stage talks to, and a loader that picks a backend by name.

Search, sampling and labelling code only sees :class:`GenerationBackend`; the transformers and vLLM
backends (and test toys) implement it, so no stage imports an inference engine directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from ttcompute.core.errors import InputError
from ttcompute.core.prompts import PromptContract


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
        sample_seeds: One seed per completion instead (for each prompt, ``n`` of them): each
            completion is drawn from a random stream of its own, so it depends on its prompt and its
            seed alone -- not on the other prompts of the call, nor on how many completions are asked.
            Adaptive sampling draws a problem's candidates a round at a time and gets the very ones one
            call would have given (:func:`~ttcompute.eval.search.best_of_n.candidate_seeds`).
    """

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 256
    stop: list[str] = field(default_factory=list)
    seed: int = 0
    sample_seeds: list[list[int]] | None = None

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.sample_seeds is not None and any(len(seeds) != self.n for seeds in self.sample_seeds):
            raise ValueError(f"sample_seeds: {self.n} seeds (n) for every prompt")

    def check_prompts(self, prompts: list[str]) -> None:
        """Raise unless ``sample_seeds`` (when given) has one list per prompt."""
        if self.sample_seeds is not None and len(self.sample_seeds) != len(prompts):
            raise ValueError(f"sample_seeds: {len(self.sample_seeds)} lists for {len(prompts)} prompts")


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


def starts_with_bos(tokenizer, text: str) -> bool:
    """Whether ``text`` already begins with the tokenizer's BOS token as text: a chat template that
    writes ``{{ bos_token }}`` itself (Llama-2/3, Mistral) rendered it."""
    bos = getattr(tokenizer, "bos_token", None)
    return bool(bos) and text.startswith(bos)


def prompt_token_ids(tokenizer, text: str) -> list[int]:
    """A prompt's token ids as the model must see them: the tokenizer's special tokens added (its
    BOS), unless a chat template already wrote the BOS -- adding it again would give ``<s><s>``, an
    input the model never saw in training (what ``apply_chat_template(tokenize=True)`` avoids too)."""
    return tokenizer(text, add_special_tokens=not starts_with_bos(tokenizer, text))["input_ids"]


def build_prompt(question: str, contract: PromptContract, tokenizer=None) -> str:
    """The prompt for a question under a prompt contract: the template over it, as the user turn of the
    tokenizer's chat template with ``use_chat_template`` (the turn's trailing whitespace dropped: the
    template's own end of turn follows it, and ``"{question}\\n"`` would leave a stray newline inside it).

    >>> build_prompt("Start at 3. Add 4.", PromptContract("{question}\\n"))
    'Start at 3. Add 4.\\n'

    Raises:
        InputError: ``use_chat_template`` with a tokenizer that has no chat template.
    """
    return render_turn(contract.prompt_template.format(question=question), contract, tokenizer)


def render_turn(text: str, contract: PromptContract, tokenizer=None) -> str:
    """``text`` as the model sees it under ``contract``: itself, or with the chat template the user
    turn of a conversation (after the contract's system turn, if any) ready for the answer.

    Raises:
        InputError: ``use_chat_template`` with a tokenizer that has no chat template.
    """
    if not contract.use_chat_template:
        return text
    if getattr(tokenizer, "chat_template", None) is None:
        raise InputError(
            "--use_chat_template true, but the model's tokenizer has no chat template; turn it off "
            "or write the chat format into --prompt_template"
        )
    messages = [{"role": "user", "content": text.rstrip()}]
    if contract.system_prompt is not None:
        messages.insert(0, {"role": "system", "content": contract.system_prompt})
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
