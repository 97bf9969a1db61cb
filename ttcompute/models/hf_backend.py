"""Generation with plain ``transformers`` models (CPU or GPU), batched across prompts and samples.

A small sampling loop over the KV cache rather than ``model.generate``: it needs per-row stop strings
(the step separator), exact per-row token counts and finish reasons, one seeded generator per call
(reproducible sampling that does not touch the global RNG), and batches packed by a token budget.
"""

from __future__ import annotations

import logging
from collections import Counter, OrderedDict
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache
from transformers.cache_utils import Cache, DynamicLayer

from ttcompute.core.errors import InputError
from ttcompute.models.generation import Completion, SamplingParams, prompt_token_ids, starts_with_bos
from ttcompute.models.weights import load_error

logger = logging.getLogger(__name__)

# Prompt tokens decoded in front of a completion so that it decodes as it reads after the prompt.
_DECODE_CONTEXT_TOKENS = 8


def sample_next_token(
    logits: torch.Tensor,
    temperature: float,
    top_p: float,
    generator: torch.Generator | None,
    uniforms: torch.Tensor | None = None,
):
    """Next token ids, shape (batch,), from last-position logits of shape (batch, vocab).

    ``uniforms`` (batch,): one U(0, 1) draw per row from the row's own stream (``sample_seeds``),
    turned into a token by the inverse CDF, so a row's token does not depend on the other rows;
    otherwise one ``multinomial`` over the batch from ``generator``.
    """
    if temperature == 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_probs, sorted_ids = probs.sort(dim=-1, descending=True)
        # Keep the smallest prefix whose mass reaches top_p (the top token is always kept).
        outside = sorted_probs.cumsum(dim=-1) - sorted_probs > top_p
        sorted_probs = sorted_probs.masked_fill(outside, 0.0)
        probs = torch.zeros_like(probs).scatter_(-1, sorted_ids, sorted_probs)
    if uniforms is None:
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
    cdf = probs.double().cumsum(dim=-1)
    # Scaled by the total (the filtered mass, up to rounding), a token of zero probability has an
    # empty interval and is never drawn.
    targets = (uniforms.to(cdf.device, torch.float64) * cdf[:, -1]).unsqueeze(-1)
    tokens = torch.searchsorted(cdf, targets, right=True).squeeze(-1)
    return tokens.clamp_(max=probs.shape[-1] - 1)


class _GrowingLayer(DynamicLayer):
    """A ``DynamicLayer`` with room to grow: a new token is written in place instead of copying the
    whole cache (``DynamicLayer`` concatenates), which was a sixth of step-level decoding time."""

    def __init__(self, capacity: int = 0) -> None:
        super().__init__()
        self.capacity, self.length = capacity, 0
        self.buffer_keys: torch.Tensor | None = None
        self.buffer_values: torch.Tensor | None = None

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self.length + key_states.shape[-2]
        if self.buffer_keys is None or end > self.buffer_keys.shape[-2]:
            size = max(end, self.capacity, 2 * self.length)
            keys = key_states.new_empty((*key_states.shape[:2], size, key_states.shape[-1]))
            values = value_states.new_empty((*value_states.shape[:2], size, value_states.shape[-1]))
            if self.length:
                keys[:, :, : self.length] = self.buffer_keys[:, :, : self.length]
                values[:, :, : self.length] = self.buffer_values[:, :, : self.length]
            self.buffer_keys, self.buffer_values = keys, values
        self.buffer_keys[:, :, self.length : end] = key_states
        self.buffer_values[:, :, self.length : end] = value_states
        self.length = end
        self.keys, self.values = self.buffer_keys[:, :, :end], self.buffer_values[:, :, :end]
        return self.keys, self.values

    def adopt(self, keys: torch.Tensor, values: torch.Tensor, length: int) -> None:
        """Take ``keys``/``values`` (batch, heads, capacity, head_dim) whose first ``length`` slots are
        filled as the layer's buffer, without copying them."""
        self.lazy_initialization(keys, values)
        self.buffer_keys, self.buffer_values, self.length = keys, values, length
        self.keys, self.values = keys[:, :, :length], values[:, :, :length]

    def select_rows(self, index: torch.Tensor) -> None:
        self.buffer_keys, self.buffer_values = self.buffer_keys[index], self.buffer_values[index]
        self.keys, self.values = (
            self.buffer_keys[:, :, : self.length],
            self.buffer_values[:, :, : self.length],
        )


class _GrowingCache(DynamicCache):
    """A ``DynamicCache`` of :class:`_GrowingLayer`, optionally starting from given keys/values."""

    def __init__(
        self, capacity: int, initial: list[tuple[torch.Tensor, torch.Tensor]] | None = None, length: int = 0
    ):
        Cache.__init__(self, layer_class_to_replicate=lambda: _GrowingLayer(capacity))
        for keys, values in initial or []:  # buffers of ``capacity`` slots, the first ``length`` filled
            layer = _GrowingLayer(capacity)
            layer.adopt(keys, values, length)
            self.layers.append(layer)

    def select_rows(self, index: torch.Tensor) -> None:
        for layer in self.layers:
            layer.select_rows(index)


class _KVPrefixCache:
    """LRU map from token sequences to their per-layer keys/values, found by longest stored prefix.

    A prompt that extends a stored sequence (the next step of a beam, a rollout's next step) only runs
    its new tokens. The usual hit is the prompt minus its last token (a stopped output is stored
    without its last token): one tuple hash. Otherwise the stored lengths are tried, longest first,
    up to ``max_probes`` of them.
    """

    def __init__(self, max_bytes: int, max_probes: int = 32) -> None:
        self.max_bytes, self.max_probes = max_bytes, max_probes
        self.entries: OrderedDict[tuple[int, ...], list[tuple[torch.Tensor, torch.Tensor]]] = OrderedDict()
        self.lengths: Counter[int] = Counter()
        self.num_bytes = 0

    def lookup(self, ids: list[int], longest: int) -> tuple[int, list | None]:
        """The longest stored prefix of ``ids`` of at most ``longest`` tokens: (length, kv) or (0, None)."""
        if not self.entries:
            return 0, None
        candidates = [longest] if longest in self.lengths else []
        candidates += sorted((n for n in self.lengths if n < longest), reverse=True)[: self.max_probes]
        for length in candidates:
            key = tuple(ids[:length])
            kv = self.entries.get(key)
            if kv is not None:
                self.entries.move_to_end(key)
                return length, kv
        return 0, None

    def __contains__(self, ids: list[int]) -> bool:
        return tuple(ids) in self.entries

    def store(self, ids: list[int], kv: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        size = sum(k.nbytes + v.nbytes for k, v in kv)
        key = tuple(ids)
        if size > self.max_bytes or key in self.entries:
            return
        self.entries[key] = kv
        self.lengths[len(key)] += 1
        self.num_bytes += size
        while self.num_bytes > self.max_bytes:
            evicted_key, evicted = self.entries.popitem(last=False)
            self.num_bytes -= sum(k.nbytes + v.nbytes for k, v in evicted)
            self.lengths[len(evicted_key)] -= 1
            if not self.lengths[len(evicted_key)]:
                del self.lengths[len(evicted_key)]

    def clear(self) -> None:
        self.entries.clear()
        self.lengths.clear()
        self.num_bytes = 0


class TransformersBackend:
    """:class:`~ttcompute.models.generation.GenerationBackend` over ``AutoModelForCausalLM``.

    Args:
        model_name_or_path: Hub id or local directory.
        device: ``"cpu"``, ``"cuda"`` ...; default: CUDA when available.
        dtype: torch dtype name or ``"auto"`` (the checkpoint's).
        max_batch_tokens: Rows are packed into a forward batch until rows x (prompt + new tokens)
            would pass this budget, so long prompts get smaller batches instead of running out of memory.
            The prompt counts whole, cached prefix included (a batch that mixes cached and uncached rows
            can hold up to twice that), so that batches do not depend on the cache.
        trust_remote_code: Off unless the user asks; checkpoints load from safetensors only.
        enable_prefix_caching: Keep the keys/values of sequences that stopped at a stop string, and run
            only the new tokens of a later prompt that extends one -- what vLLM's automatic prefix
            caching does, and what step-level search needs: each round's prompts are the last round's
            outputs plus nothing. Only calls with stop strings store anything.
        max_prefix_cache_mb: Least recently used sequences are dropped beyond this much memory.
    """

    def __init__(
        self,
        model_name_or_path: str,
        device: str | None = None,
        dtype: str = "auto",
        max_batch_tokens: int = 65536,
        trust_remote_code: bool = False,
        enable_prefix_caching: bool = True,
        max_prefix_cache_mb: int = 2048,
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
            raise InputError(load_error(model_name_or_path, "the model", err)) from None
        self.model.eval()
        self.max_batch_tokens = max_batch_tokens
        self.num_parameters = sum(p.numel() for p in self.model.parameters())
        # Longest prompt + completion the model takes (None: unknown); revisions fit prompts to it.
        self.max_context = getattr(self.model.config, "max_position_embeddings", None)
        self.eos_token_ids = self._eos_ids()
        self.pad_token_id = self.tokenizer.pad_token_id
        if self.pad_token_id is None:
            self.pad_token_id = next(iter(self.eos_token_ids))
        self._stop_enders: dict[tuple[str, ...], set[int]] = {}
        self.prefix_cache = _KVPrefixCache(max_prefix_cache_mb << 20) if enable_prefix_caching else None
        self.num_prompt_tokens = 0  # prompt tokens asked for
        self.num_prompt_tokens_run = 0  # prompt tokens actually run (the rest came from the cache)

    def _eos_ids(self) -> set[int]:
        ids = self.model.generation_config.eos_token_id
        if ids is None:
            ids = self.tokenizer.eos_token_id
        ids = ids if isinstance(ids, list) else [ids]
        return {i for i in ids if i is not None}

    def encode(self, prompts: list[str]) -> list[list[int]]:
        if any(starts_with_bos(self.tokenizer, p) for p in prompts):  # a chat template wrote the BOS
            return [prompt_token_ids(self.tokenizer, p) for p in prompts]
        return self.tokenizer(prompts, add_special_tokens=True)["input_ids"]

    def clear_prefix_cache(self) -> None:
        """Forget every cached prefix (a run that must not depend on what ran before it)."""
        if self.prefix_cache is not None:
            self.prefix_cache.clear()

    @torch.inference_mode()
    def generate(self, prompts: list[str], params: SamplingParams) -> list[list[Completion]]:
        params.check_prompts(prompts)
        # Beam copies send one prompt many times: tokenize and look up each distinct prompt once.
        distinct = list(dict.fromkeys(prompts))
        ids_of = dict(zip(distinct, self.encode(distinct)))
        prompt_ids = [ids_of[prompt] for prompt in prompts]
        # Each prompt's cached prefix; at least its last token always runs (its logits start sampling).
        past_of = {
            prompt: self.prefix_cache.lookup(ids, len(ids) - 1)
            if self.prefix_cache is not None
            else (0, None)
            for prompt, ids in ids_of.items()
        }
        pasts = [past_of[prompt] for prompt in prompts]
        self.num_prompt_tokens += params.n * sum(len(ids) for ids in prompt_ids)
        self.num_prompt_tokens_run += params.n * sum(
            len(ids) - past for ids, (past, _) in zip(prompt_ids, pasts)
        )
        # One row per (prompt, sample), sorted by prompt length so batches waste little padding. Order
        # and batches follow the full prompt lengths, never what the prefix cache holds: the rows share
        # one seeded generator, so a cache-dependent order handed each row other random draws and made
        # seeded samples depend on what ran before (tests/test_real_formats.py).
        rows = [(i, j) for i in range(len(prompts)) for j in range(params.n)]
        order = sorted(range(len(rows)), key=lambda r: len(prompt_ids[rows[r][0]]))
        generator = torch.Generator(device=self.device).manual_seed(params.seed)
        uniforms = None
        if params.sample_seeds is not None and params.temperature > 0:
            # Every completion's draws up front, from its own seed: one (max_tokens,) stream per row.
            uniforms = torch.stack(
                [
                    torch.rand(
                        params.max_tokens, generator=torch.Generator().manual_seed(seed), dtype=torch.float64
                    )
                    for seeds in params.sample_seeds
                    for seed in seeds
                ]
            )
        results: list[list[Completion | None]] = [[None] * params.n for _ in prompts]
        start = 0
        while start < len(order):
            widest = 0
            end = start
            while end < len(order):
                widest = max(widest, len(prompt_ids[rows[order[end]][0]]))
                tokens = (end - start + 1) * (widest + params.max_tokens)
                if end > start and tokens > self.max_batch_tokens:
                    break
                end += 1
            batch = [rows[r] for r in order[start:end]]
            completions = self._generate_rows(
                [prompt_ids[i] for i, _ in batch],
                [pasts[i] for i, _ in batch],
                params,
                generator,
                uniforms[[i * params.n + j for i, j in batch]] if uniforms is not None else None,
            )
            for (i, j), completion in zip(batch, completions):
                results[i][j] = completion
            start = end
        return results  # type: ignore[return-value]

    def _generate_rows(
        self,
        prompt_ids: list[list[int]],
        pasts: list[tuple[int, list | None]],
        params: SamplingParams,
        generator: torch.Generator,
        uniforms: torch.Tensor | None = None,
    ) -> list[Completion]:
        batch_size = len(prompt_ids)
        past_lens = [past for past, _ in pasts]
        new_ids = [ids[past:] for ids, past in zip(prompt_ids, past_lens)]
        width_past, width_new = max(past_lens), max(len(ids) for ids in new_ids)
        # Layout per row: [padding | cached prefix][padding | new prompt tokens], then generated tokens.
        # Left padding in both parts puts every row's last prompt token at the end; cached keys carry
        # their rotary embeddings and new tokens get their true positions, so the gaps change nothing.
        input_ids = torch.full((batch_size, width_new), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((batch_size, width_past + width_new), dtype=torch.long)
        position_ids = torch.zeros((batch_size, width_new), dtype=torch.long)
        for row, (past, ids) in enumerate(zip(past_lens, new_ids)):
            input_ids[row, width_new - len(ids) :] = torch.tensor(ids)
            attention_mask[row, width_past - past : width_past] = 1
            attention_mask[row, width_past + width_new - len(ids) :] = 1
            position_ids[row, width_new - len(ids) :] = past + torch.arange(len(ids))
        input_ids, attention_mask = input_ids.to(self.device), attention_mask.to(self.device)
        position_ids = position_ids.to(self.device)
        capacity = width_past + width_new + params.max_tokens
        initial = self._stack_pasts(pasts, width_past, capacity) if width_past else None
        cache = _GrowingCache(capacity, initial, width_past)
        logits = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            use_cache=True,
        ).logits[:, -1]
        next_position = position_ids[:, -1:] + 1

        generated: list[list[int]] = [[] for _ in range(batch_size)]
        finish: list[str | None] = [None] * batch_size
        stop_window = max((len(s) for s in params.stop), default=0) + 4
        eos = torch.tensor(sorted(self.eos_token_ids), device=self.device)
        store = self.prefix_cache is not None and bool(params.stop)
        layout = (prompt_ids, past_lens, new_ids, width_past, width_new)
        active = list(range(batch_size))  # row k of the tensors and the cache is batch row active[k]
        for step in range(params.max_tokens):
            draws = uniforms[active, step] if uniforms is not None else None
            next_tokens = sample_next_token(logits, params.temperature, params.top_p, generator, draws)
            live = torch.tensor([finish[row] is None for row in active], device=self.device)
            next_tokens = torch.where(live, next_tokens, torch.full_like(next_tokens, self.pad_token_id))
            is_eos = torch.isin(next_tokens, eos) & live
            tokens, eos_rows = next_tokens.tolist(), is_eos.tolist()
            new_token_of: dict[int, int] = {}
            for k, row in enumerate(active):
                if finish[row] is None:
                    generated[row].append(tokens[k])
                    new_token_of[row] = tokens[k]
                    if eos_rows[k]:
                        finish[row] = "eos"
            if params.stop:
                self._mark_stops(generated, finish, params.stop, stop_window, new_token_of)
            if all(finish[row] is not None for row in active):
                break
            attention_mask = torch.cat([attention_mask, live[:, None].long()], dim=-1)
            logits = self.model(
                input_ids=next_tokens[:, None],
                attention_mask=attention_mask,
                position_ids=next_position,
                cache=cache,
                use_cache=True,
            ).logits[:, -1]
            next_position = next_position + 1
            # Once half the rows are done, drop them: finished rows would otherwise ride along to the
            # end of the longest one (a long last step, a long solution), costing as much as live ones.
            done = [k for k, row in enumerate(active) if finish[row] is not None]
            if len(done) * 2 >= len(active):
                if store:
                    self._store_stopped([(k, active[k]) for k in done], layout, generated, finish, cache)
                keep = [k for k, row in enumerate(active) if finish[row] is None]
                index = torch.tensor(keep, device=self.device)
                cache.select_rows(index)
                attention_mask, next_position, logits = (
                    attention_mask[index],
                    next_position[index],
                    logits[index],
                )
                active = [active[k] for k in keep]

        if store:
            self._store_stopped(list(enumerate(active)), layout, generated, finish, cache)
        completions = []
        for row in range(batch_size):
            ids = generated[row]
            reason = finish[row] or "length"
            text_ids = ids[:-1] if reason == "eos" else ids
            text = self._decode_after(prompt_ids[row], text_ids)
            if reason == "stop":
                text = _cut_after_first_stop(text, params.stop)
            completions.append(Completion(text=text, num_tokens=len(ids), finish_reason=reason))
        return completions

    def _decode_after(self, prompt_ids: list[int], ids: list[int]) -> str:
        """The text ``ids`` add after the prompt: a few prompt tokens are decoded in front and their text
        cut off, as vLLM's incremental detokenizer does. Decoded alone, a SentencePiece decoder strips
        the space of a first ``▁word`` token, and the completion would not be the text the model wrote
        (the next prompt, prompt + completion, would then tokenize differently)."""
        context = prompt_ids[-_DECODE_CONTEXT_TOKENS:]
        if context:
            head = self.tokenizer.decode(context, skip_special_tokens=True)
            full = self.tokenizer.decode(context + ids, skip_special_tokens=True)
            if full.startswith(head):
                return full[len(head) :]
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def _store_stopped(self, rows, layout, generated, finish, cache) -> None:
        """Cache each of ``rows`` (cache row, batch row) that stopped at a stop string: it is the
        prefix of its next prompt.

        Its last generated token is left out (its keys/values were never computed when it ended the
        loop), which also leaves the next prompt at least one token to run.
        """
        prompt_ids, past_lens, new_ids, width_past, width_new = layout
        start_generated = width_past + width_new
        for k, row in rows:
            if finish[row] != "stop" or len(generated[row]) < 2:
                continue
            ids = prompt_ids[row] + generated[row][:-1]
            if ids in self.prefix_cache:
                continue
            slots = torch.cat(
                [
                    torch.arange(width_past - past_lens[row], width_past),
                    torch.arange(width_past + width_new - len(new_ids[row]), width_past + width_new),
                    torch.arange(start_generated, start_generated + len(generated[row]) - 1),
                ]
            ).to(self.device)
            kv = [
                (layer.keys[k : k + 1, :, slots].clone(), layer.values[k : k + 1, :, slots].clone())
                for layer in cache.layers
            ]
            self.prefix_cache.store(ids, kv)

    @staticmethod
    def _stack_pasts(
        pasts: list[tuple[int, list | None]], width: int, capacity: int
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer, ``capacity``-slot key and value buffers for the batch, each row's cached prefix
        right-aligned in the first ``width`` slots (zeros to its left; the rest is filled later).

        Rows sharing one cached prefix (copies of a beam) are filled in one indexed assignment.
        """
        reference = next(kv for _, kv in pasts if kv is not None)
        rows_of: dict[int, list[int]] = {}
        for row, (_, kv) in enumerate(pasts):
            if kv is not None:
                rows_of.setdefault(id(kv), []).append(row)
        groups = [(pasts[rows[0]], torch.tensor(rows)) for rows in rows_of.values()]
        layers = []
        for layer_index, (ref_keys, ref_values) in enumerate(reference):
            keys = ref_keys.new_empty((len(pasts), ref_keys.shape[1], capacity, ref_keys.shape[3]))
            values = ref_values.new_empty((len(pasts), ref_values.shape[1], capacity, ref_values.shape[3]))
            keys[:, :, :width] = 0
            values[:, :, :width] = 0
            for (length, kv), rows in groups:
                index = rows.to(keys.device)
                keys[index, :, width - length : width] = kv[layer_index][0]
                values[index, :, width - length : width] = kv[layer_index][1]
            layers.append((keys, values))
        return layers

    def _enders(self, stop: list[str]) -> set[int]:
        """Ids of the tokens that can complete a stop string: those whose text holds one's last
        character, or that decode to no whole character (a byte of a multi-byte character)."""
        key = tuple(stop)
        if key not in self._stop_enders:
            last_chars = {s[-1] for s in stop}
            pieces = self.tokenizer.batch_decode([[i] for i in range(len(self.tokenizer))])
            self._stop_enders[key] = {
                i
                for i, piece in enumerate(pieces)
                if "\ufffd" in piece or any(c in piece for c in last_chars)
            }
        return self._stop_enders[key]

    def _mark_stops(
        self, generated, finish, stop: list[str], window: int, new_tokens: dict[int, int]
    ) -> None:
        enders = self._enders(stop)
        live_rows = [row for row, token in new_tokens.items() if finish[row] is None and token in enders]
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
