"""Generation with plain ``transformers`` models (CPU or GPU), batched across prompts and samples.

A small sampling loop over the KV cache rather than ``model.generate``: it needs per-row stop strings
(the step separator), exact per-row token counts and finish reasons, one seeded generator per call
(reproducible sampling that does not touch the global RNG), and batches packed by a token budget.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache

from ttcompute.errors import InputError
from ttcompute.models.generation import Completion, SamplingParams

logger = logging.getLogger(__name__)


def sample_next_token(logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator):
    """Next token ids, shape (batch,), from last-position logits of shape (batch, vocab)."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_probs, sorted_ids = probs.sort(dim=-1, descending=True)
        # Keep the smallest prefix whose mass reaches top_p (the top token is always kept).
        outside = sorted_probs.cumsum(dim=-1) - sorted_probs > top_p
        sorted_probs = sorted_probs.masked_fill(outside, 0.0)
        probs = torch.zeros_like(probs).scatter_(-1, sorted_ids, sorted_probs)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


class TransformersBackend:
    """:class:`~ttcompute.models.generation.GenerationBackend` over ``AutoModelForCausalLM``.

    Args:
        model_name_or_path: Hub id or local directory.
        device: ``"cpu"``, ``"cuda"`` ...; default: CUDA when available.
        dtype: torch dtype name or ``"auto"`` (the checkpoint's).
        max_batch_tokens: Rows are packed into a forward batch until rows x (prompt + new tokens)
            would pass this budget, so long prompts get smaller batches instead of running out of memory.
        trust_remote_code: Off unless the user asks; checkpoints load from safetensors only.
    """

    def __init__(
        self,
        model_name_or_path: str,
        device: str | None = None,
        dtype: str = "auto",
        max_batch_tokens: int = 65536,
        trust_remote_code: bool = False,
    ) -> None:
        # A path-like name that does not exist is a typo, not a Hub id: fail before any Hub lookup.
        if not Path(model_name_or_path).exists() and model_name_or_path.startswith((".", "/")):
            raise InputError(f"{model_name_or_path}: no such model directory")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(
                model_name_or_path, trust_remote_code=trust_remote_code
            )
            self.model = AutoModelForCausalLM.from_pretrained(
                model_name_or_path,
                dtype=dtype if dtype == "auto" else getattr(torch, dtype),
                use_safetensors=True,
                trust_remote_code=trust_remote_code,
            ).to(self.device)
        except (OSError, ValueError) as err:  # not a directory, not on the Hub (or offline), no safetensors
            first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise InputError(f"{model_name_or_path}: cannot load the model ({first_line})") from None
        self.model.eval()
        self.max_batch_tokens = max_batch_tokens
        self.num_parameters = sum(p.numel() for p in self.model.parameters())
        self.eos_token_ids = self._eos_ids()
        self.pad_token_id = self.tokenizer.pad_token_id
        if self.pad_token_id is None:
            self.pad_token_id = next(iter(self.eos_token_ids))

    def _eos_ids(self) -> set[int]:
        ids = self.model.generation_config.eos_token_id
        if ids is None:
            ids = self.tokenizer.eos_token_id
        ids = ids if isinstance(ids, list) else [ids]
        return {i for i in ids if i is not None}

    def encode(self, prompts: list[str]) -> list[list[int]]:
        return self.tokenizer(prompts, add_special_tokens=True)["input_ids"]

    @torch.inference_mode()
    def generate(self, prompts: list[str], params: SamplingParams) -> list[list[Completion]]:
        prompt_ids = self.encode(prompts)
        # One row per (prompt, sample); rows sorted by length so batches waste little padding.
        rows = [(i, j) for i in range(len(prompts)) for j in range(params.n)]
        order = sorted(range(len(rows)), key=lambda r: len(prompt_ids[rows[r][0]]))
        generator = torch.Generator(device=self.device).manual_seed(params.seed)
        results: list[list[Completion | None]] = [[None] * params.n for _ in prompts]
        start = 0
        while start < len(order):
            longest = len(prompt_ids[rows[order[start]][0]])
            end = start
            while end < len(order):
                longest = max(longest, len(prompt_ids[rows[order[end]][0]]))
                if end > start and (end - start + 1) * (longest + params.max_tokens) > self.max_batch_tokens:
                    break
                end += 1
            batch = [rows[r] for r in order[start:end]]
            completions = self._generate_rows([prompt_ids[i] for i, _ in batch], params, generator)
            for (i, j), completion in zip(batch, completions):
                results[i][j] = completion
            start = end
        return results  # type: ignore[return-value]

    def _generate_rows(
        self, prompt_ids: list[list[int]], params: SamplingParams, generator: torch.Generator
    ) -> list[Completion]:
        batch_size = len(prompt_ids)
        width = max(len(ids) for ids in prompt_ids)
        input_ids = torch.full((batch_size, width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((batch_size, width), dtype=torch.long)
        for row, ids in enumerate(prompt_ids):  # left padding: every row's next token is at the end
            input_ids[row, width - len(ids) :] = torch.tensor(ids)
            attention_mask[row, width - len(ids) :] = 1
        input_ids, attention_mask = input_ids.to(self.device), attention_mask.to(self.device)
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache()
        logits = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=cache,
            use_cache=True,
        ).logits[:, -1]
        next_position = position_ids[:, -1:] + 1

        generated: list[list[int]] = [[] for _ in range(batch_size)]
        finish: list[str | None] = [None] * batch_size
        stop_window = max((len(s) for s in params.stop), default=0) + 4
        eos = torch.tensor(sorted(self.eos_token_ids), device=self.device)
        for _ in range(params.max_tokens):
            next_tokens = sample_next_token(logits, params.temperature, params.top_p, generator)
            live = torch.tensor([f is None for f in finish], device=self.device)
            next_tokens = torch.where(live, next_tokens, torch.full_like(next_tokens, self.pad_token_id))
            is_eos = torch.isin(next_tokens, eos) & live
            tokens, eos_rows = next_tokens.tolist(), is_eos.tolist()
            for row in range(batch_size):
                if finish[row] is None:
                    generated[row].append(tokens[row])
                    if eos_rows[row]:
                        finish[row] = "eos"
            if params.stop:
                self._mark_stops(generated, finish, params.stop, stop_window)
            if all(f is not None for f in finish):
                break
            attention_mask = torch.cat([attention_mask, live[:, None].long()], dim=-1)
            logits = self.model(
                input_ids=next_tokens[:, None],
                attention_mask=attention_mask,
                position_ids=next_position,
                past_key_values=cache,
                use_cache=True,
            ).logits[:, -1]
            next_position = next_position + 1

        completions = []
        for row in range(batch_size):
            ids = generated[row]
            reason = finish[row] or "length"
            text_ids = ids[:-1] if reason == "eos" else ids
            text = self.tokenizer.decode(text_ids, skip_special_tokens=True)
            if reason == "stop":
                text = _cut_after_first_stop(text, params.stop)
            completions.append(Completion(text=text, num_tokens=len(ids), finish_reason=reason))
        return completions

    def _mark_stops(self, generated, finish, stop: list[str], window: int) -> None:
        live_rows = [row for row, f in enumerate(finish) if f is None]
        if not live_rows:
            return
        # A stop string completed at this step lies within the last few tokens (each decodes to at
        # least one character), so decoding a short tail per step is enough.
        tails = self.tokenizer.batch_decode([generated[row][-window:] for row in live_rows])
        for row, tail in zip(live_rows, tails):
            if any(s in tail for s in stop):
                finish[row] = "stop"


def _cut_after_first_stop(text: str, stop: list[str]) -> str:
    ends = [text.find(s) + len(s) for s in stop if s in text]
    return text[: min(ends)] if ends else text
