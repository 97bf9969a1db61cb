"""Process reward models (PRMs): one scoring interface and one engine behind every checkpoint format.

A PRM gives each step of a (question, partial solution) pair a score in [0, 1], the probability that
the solution so far is on track. Search code (best-of-N, beam search, lookahead) only sees :class:`PRM`
and :func:`score_solutions`; it never imports transformers.

Every supported format is a decoder-only transformer: a backbone producing hidden states and a head
mapping the hidden state at some token positions to a score. So there is one engine,
:class:`TransformersPRM`, parameterized by an ``encode`` function (question, steps -> token ids and the
positions to score) and a ``head`` function (hidden states -> scores). The formats (ours, Math-Shepherd,
Qwen2.5-Math-PRM, RLHFlow, Skywork, the likelihood PRM) and :func:`~ttcompute.models.prm_formats.load_prm`, which
detects them, are in :mod:`ttcompute.models.prm_formats`.

The engine packs requests into batches by a token budget (a fixed batch size ran out of memory at
n=256 in search-and-learn) and reuses the KV cache of prefixes it has already scored, which is what
step-wise search asks for: the same question and first t steps, again, with one more step.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import torch
from torch import nn
from transformers import DynamicCache

from ttcompute.core.prompts import DEFAULT_CONTRACT, PromptContract
from ttcompute.core.steps import AGGREGATIONS, aggregate
from ttcompute.models.generation import starts_with_bos

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------------
# Pure pieces: our own token format


def encode_steps(
    tokenizer, prompt: str, steps: Sequence[str], step_separator: str
) -> tuple[list[int], list[int]]:
    """Token ids and label positions of the ``ttcompute`` PRM format.

    The trainer and the scorer both call this, so a PRM is scored on exactly the tokens it was trained
    on. Each piece (the prompt, then each ``step + step_separator``) is tokenized on its own, as it
    tokenizes after the piece before it (:func:`tokenize_piece_after`): the ids of the first t steps
    are then a prefix of the ids of the first t+1, which is what lets the scorer reuse a prefix's KV
    cache, and no piece gains a SentencePiece prefix space the policy's text does not have. A step's
    label sits on the last token of its piece, where the model has seen the whole step and its
    separator.

    With the character tokenizer of the built-in task (``<s>`` is prepended to the prompt):

    >>> from ttcompute.models.tiny import build_char_tokenizer
    >>> tok = build_char_tokenizer()
    >>> ids, positions = encode_steps(tok, "Q\\n", ["ab", "c"], "\\n\\n")
    >>> tok.convert_ids_to_tokens(ids)
    ['<s>', 'Q', '\\n', 'a', 'b', '\\n', '\\n', 'c', '\\n', '\\n']
    >>> positions
    [6, 9]

    Raises:
        ValueError: a piece tokenizes to nothing (it would have no token to carry its label).
    """
    ids = list(tokenize_piece(tokenizer, prompt, True))
    positions = []
    previous = prompt
    for index, step in enumerate(steps):
        piece = step + step_separator
        piece_tokens = tokenize_piece_after(tokenizer, previous, piece)
        if not piece_tokens:
            raise ValueError(f"step {index} ({piece!r}) tokenizes to no tokens")
        ids.extend(piece_tokens)
        positions.append(len(ids) - 1)
        previous = piece
    return ids, positions


@functools.lru_cache(maxsize=1 << 16)
def tokenize_piece(tokenizer, text: str, add_special_tokens: bool) -> tuple[int, ...]:
    # Search scores the same question and the same steps over and over (every round, every copy of a
    # beam): tokenizing each piece once took the PRM's time from a third of beam search to nothing.
    # A prompt whose chat template wrote the BOS gets no second one (as the policy saw it).
    add_special_tokens = add_special_tokens and not starts_with_bos(tokenizer, text)
    return tuple(tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"])


@functools.lru_cache(maxsize=1 << 16)
def tokenize_piece_after(tokenizer, previous: str, text: str) -> tuple[int, ...]:
    """The ids of ``text`` as it tokenizes right after ``previous``: those of ``previous + text`` past
    the ids of ``previous``, when those are a prefix; else the ids of ``text`` alone.

    Alone, a SentencePiece tokenizer starts every piece with a prefix space (``"A"`` becomes ``▁A``),
    so the PRM would read text the policy never wrote; after the previous piece it is the policy's
    ``A``. Byte-level BPE and the character tokenizer give the same ids either way (no merge crosses
    a step boundary there).

    >>> from ttcompute.models.tiny import build_char_tokenizer
    >>> tok = build_char_tokenizer()
    >>> tokenize_piece_after(tok, "Q\\n", "ab\\n\\n") == tokenize_piece(tok, "ab\\n\\n", False)
    True
    """
    alone = tokenize_piece(tokenizer, text, False)
    if not previous:
        return alone
    before = tokenize_piece(tokenizer, previous, False)
    joined = tokenize_piece(tokenizer, previous + text, False)
    if len(joined) > len(before) and joined[: len(before)] == before:
        return joined[len(before) :]
    return alone


def ttc_prm_metadata(step_separator: str, contract: PromptContract | str = DEFAULT_CONTRACT, **extra) -> dict:
    """The ``ttc_prm`` dict the trainer stores on ``model.config``; :func:`~ttcompute.models.prm_formats.load_prm` reads it back.

    ``contract``: the prompt contract of the data it was trained on (a bare template string means
    that template without the chat template), recorded whole.

    >>> metadata = ttc_prm_metadata("\\n\\n", "{question}\\n")
    >>> metadata["label_position"], metadata["use_chat_template"]
    ('last token of each step separator', False)
    """
    if isinstance(contract, str):
        contract = PromptContract(contract)
    return {
        "format": "ttcompute",
        "step_separator": step_separator,
        **contract.to_dict(),
        "label_position": "last token of each step separator",
        **extra,
    }


# --------------------------------------------------------------------------------------------------
# The interface search code sees


@runtime_checkable
class PRM(Protocol):
    """Scores every step of (question, steps) pairs.

    Attributes:
        num_parameters: For FLOPs accounting (2 x parameters x tokens).
        num_tokens_encoded: Tokens actually run through the model so far.
        num_tokens_requested: Tokens the requests would have cost without any reuse.
        last_tokens_encoded: Per pair of the last :meth:`score` call, the tokens run for it: what
            search charges each problem. A sequence several pairs asked for is charged to the first of
            them, so the first ``b`` pairs' charges add up to what scoring only those ``b`` would cost.
        last_tokens_requested: Per pair of the last :meth:`score` call, the tokens it asked for.
    """

    num_parameters: int
    num_tokens_encoded: int
    num_tokens_requested: int
    last_tokens_encoded: list[int]
    last_tokens_requested: list[int]

    def score(self, questions: Sequence[str], steps: Sequence[Sequence[str]]) -> list[list[float]]:
        """For each (question, steps) pair, one score per step in [0, 1]."""
        ...


def score_solutions(
    prm: PRM, questions: Sequence[str], steps: Sequence[Sequence[str]], aggregation: str = "last"
) -> list[float]:
    """One aggregated score per (question, steps) pair; see :func:`aggregate`."""
    if aggregation not in AGGREGATIONS:  # fail before spending compute on scoring
        raise ValueError(f"unknown aggregation {aggregation!r}; choose one of {AGGREGATIONS}")
    for index, pair_steps in enumerate(steps):
        if len(pair_steps) == 0:
            raise ValueError(f"pair {index} has no steps: nothing to score")
    return [aggregate(scores, aggregation) for scores in prm.score(questions, steps)]


# --------------------------------------------------------------------------------------------------
# The engine: token-budget batching and prefix (KV cache) reuse

Encoder = Callable[[str, Sequence[str]], tuple[list[int], list[int]]]
Head = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class _CachedPrefix:
    """A scored prefix: its per-layer keys/values, each (1, kv_heads, length, head_dim), and its scores."""

    length: int
    positions: tuple[int, ...]
    scores: tuple[float, ...]
    kv: list[tuple[torch.Tensor, torch.Tensor]]
    state: torch.Tensor | None = None  # what an engine needs besides the cache (its last hidden state)


class _PrefixStore:
    """LRU map from a token-id prefix (ending at a scored position) to its :class:`_CachedPrefix`."""

    def __init__(self, max_tokens: int) -> None:
        self.max_tokens = max_tokens
        self.entries: OrderedDict[tuple[int, ...], _CachedPrefix] = OrderedDict()
        self.num_tokens = 0

    def lookup(self, ids: list[int], positions: list[int]) -> _CachedPrefix | None:
        """The longest stored prefix of ``ids`` that ends at one of ``positions``."""
        for j in range(len(positions) - 1, -1, -1):
            key = tuple(ids[: positions[j] + 1])
            entry = self.entries.get(key)
            # Same ids but other scored positions (a ttcompute step containing the separator) would hand
            # back scores for the wrong tokens.
            if entry is not None and entry.positions == tuple(positions[: j + 1]):
                self.entries.move_to_end(key)
                return entry
        return None

    def wants(self, ids: list[int]) -> bool:
        """Whether :meth:`store` would keep ``ids`` (checked first: copying a cache out is not free)."""
        return len(ids) <= self.max_tokens and tuple(ids) not in self.entries

    def store(self, ids: list[int], entry: _CachedPrefix) -> None:
        key = tuple(ids)
        if not self.wants(ids):
            return
        self.entries[key] = entry
        self.num_tokens += entry.length
        while self.num_tokens > self.max_tokens:
            _, evicted = self.entries.popitem(last=False)
            self.num_tokens -= evicted.length


@dataclass
class _Job:
    """One distinct token sequence to score, and the pairs that asked for it."""

    ids: list[int]
    positions: list[int]
    pairs: list[int] = field(default_factory=list)
    start: int | None = None  # where the scored content begins (after the prompt), for engines that need it
    past: _CachedPrefix | None = None
    scores: list[float] = field(default_factory=list)

    @property
    def past_len(self) -> int:
        return self.past.length if self.past is not None else 0


# The share of the memory free when a PRM is built that its prefix cache may fill by default.
CACHE_MEMORY_FRACTION = 0.25
# A cached token also costs its id in the store's keys (a tuple entry and an int object).
_KEY_BYTES_PER_TOKEN = 64


def kv_bytes_per_token(config, dtype: torch.dtype) -> int:
    """Bytes of keys and values one token takes in a decoder with ``config`` in ``dtype``.

    >>> from ttcompute.models.tiny import tiny_llama_config
    >>> kv_bytes_per_token(tiny_llama_config(10, hidden_size=32, num_hidden_layers=2, num_attention_heads=4), torch.float32)
    512
    """
    text = config.get_text_config()
    heads = getattr(text, "num_key_value_heads", None) or text.num_attention_heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    return 2 * text.num_hidden_layers * heads * head_dim * dtype.itemsize


def free_memory_bytes(device: torch.device) -> int:
    """Memory free now on ``device``: the GPU's, or the machine's available RAM for the CPU."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def default_cache_tokens(backbone: nn.Module) -> int:
    """Tokens a quarter (:data:`CACHE_MEMORY_FRACTION`) of the memory free on the backbone's device
    holds, at the backbone's keys-and-values size per token."""
    parameter = next(backbone.parameters())
    per_token = kv_bytes_per_token(backbone.config, parameter.dtype) + _KEY_BYTES_PER_TOKEN
    return int(free_memory_bytes(parameter.device) * CACHE_MEMORY_FRACTION) // per_token


class TransformersPRM:
    """:class:`PRM` over a transformers backbone, an encoder and a head.

    Args:
        backbone: A decoder-only base model (``LlamaModel``, ``Qwen2Model`` ...) returning
            ``last_hidden_state``; it must accept ``position_ids`` and a ``DynamicCache``.
        encode: ``(question, steps) -> (ids, positions)``: the token ids and, ascending, the index of the
            token that carries each step's score.
        head: Hidden states (n, hidden) at those positions -> scores (n,) in [0, 1].
        num_parameters: Parameters of backbone + head, for FLOPs.
        pad_token_id: Any valid id; padded slots are masked out.
        max_batch_tokens: A batch holds rows until rows x (longest cached prefix + longest new part)
            would pass this; a longer single request runs alone.
        reuse_prefixes: Keep the KV cache of scored prefixes and run only the new tokens of a request
            that extends one (and score identical requests once).
        max_cache_tokens: Least recently used prefixes are dropped beyond this many cached tokens.
            ``None``: :func:`default_cache_tokens`, what a quarter of the memory free when the PRM is
            built holds (keys and values take 57 kB a token for Qwen2.5-7B in bf16, 0.5 MB for
            Llama-2-7B, a few hundred bytes for a tiny model: no fixed number suits them all).

    ``num_tokens_requested`` counts each request up to its last scored token (later tokens, such as a
    chat template's end of turn, are never run: they cannot change a score); ``num_tokens_encoded``
    counts the tokens actually run, so the two are equal with ``reuse_prefixes=False``.
    """

    def __init__(
        self,
        backbone: nn.Module,
        encode: Encoder,
        head: Head,
        *,
        num_parameters: int,
        pad_token_id: int = 0,
        max_batch_tokens: int = 32768,
        reuse_prefixes: bool = True,
        max_cache_tokens: int | None = None,
    ) -> None:
        if max_batch_tokens < 1:
            raise ValueError(f"max_batch_tokens must be >= 1, got {max_batch_tokens}")
        if max_cache_tokens is None:
            max_cache_tokens = default_cache_tokens(backbone)
        if max_cache_tokens < 0:
            raise ValueError(f"max_cache_tokens must be >= 0, got {max_cache_tokens}")
        self.backbone = backbone.eval()
        self.encode = encode
        self.head = head
        self.num_parameters = num_parameters
        self.pad_token_id = pad_token_id
        self.max_batch_tokens = max_batch_tokens
        self.reuse_prefixes = reuse_prefixes
        self.prefix_store = _PrefixStore(max_cache_tokens) if reuse_prefixes and max_cache_tokens else None
        self.num_tokens_encoded = 0
        self.num_tokens_requested = 0
        self.last_tokens_encoded: list[int] = []
        self.last_tokens_requested: list[int] = []

    @property
    def device(self) -> torch.device:
        return next(self.backbone.parameters()).device

    def clear_prefix_cache(self) -> None:
        """Forget every cached prefix, so the next scores and costs do not depend on earlier calls."""
        if self.prefix_store is not None:
            self.prefix_store = _PrefixStore(self.prefix_store.max_tokens)

    @torch.inference_mode()
    def score(self, questions: Sequence[str], steps: Sequence[Sequence[str]]) -> list[list[float]]:
        """For each (question, steps) pair, one score per step in [0, 1]; ``[]`` for a pair with no steps."""
        if len(questions) != len(steps):
            raise ValueError(f"{len(questions)} questions but {len(steps)} step lists")
        jobs: dict[object, _Job] = {}
        requested = [0] * len(questions)
        for index, (question, pair_steps) in enumerate(zip(questions, steps)):
            if isinstance(pair_steps, str):
                raise ValueError(f"pair {index}: steps must be a list of strings, got one string")
            if len(pair_steps) == 0:
                continue
            for step_index, step in enumerate(pair_steps):
                if not step:
                    raise ValueError(f"pair {index}, step {step_index}: empty step")
            encoded = self.encode(question, pair_steps)
            ids, positions = encoded[0], encoded[1]
            start = encoded[2] if len(encoded) > 2 else None
            if len(positions) != len(pair_steps):
                raise ValueError(
                    f"pair {index}: {len(pair_steps)} steps but {len(positions)} scored tokens "
                    "(does the question or a step contain the step tag?)"
                )
            # Tokens after the last scored one (a chat template's end-of-turn) cannot change any score.
            ids = ids[: positions[-1] + 1]
            self.num_tokens_requested += len(ids)
            requested[index] = len(ids)
            # Identical requests run once (with reuse on); the positions are part of the key because a
            # ttcompute step containing the separator has the same ids as two steps.
            key = (tuple(ids), tuple(positions)) if self.reuse_prefixes else index
            if key not in jobs:
                jobs[key] = _Job(ids=ids, positions=positions, start=start)
            jobs[key].pairs.append(index)

        for job in jobs.values():
            if self.prefix_store is not None:
                job.past = self.prefix_store.lookup(job.ids, job.positions)
                if job.past is not None:
                    job.scores = list(job.past.scores)
        to_run = [job for job in jobs.values() if job.past_len < len(job.ids)]
        for batch in self._plan_batches(to_run):
            self._run_batch(batch)
        logger.debug(
            "PRM: %d pairs, %d distinct, %d run (%d reusing a prefix)",
            len(questions),
            len(jobs),
            len(to_run),
            sum(job.past is not None for job in to_run),
        )

        results: list[list[float]] = [[] for _ in questions]
        self.last_tokens_encoded = [0] * len(questions)
        self.last_tokens_requested = requested
        for job in jobs.values():
            for index in job.pairs:
                results[index] = list(job.scores)
            if job.past_len < len(job.ids):
                self.last_tokens_encoded[job.pairs[0]] = len(job.ids) - job.past_len
        return results

    def _plan_batches(self, jobs: list[_Job]) -> list[list[_Job]]:
        # Sorted by (cached, new) length, so rows of a batch need little padding on either side.
        order = sorted(jobs, key=lambda job: (job.past_len, len(job.ids) - job.past_len))
        batches: list[list[_Job]] = []
        current: list[_Job] = []
        widest_past = widest_new = 0
        for job in order:
            past, new = job.past_len, len(job.ids) - job.past_len
            if current and (len(current) + 1) * (max(widest_past, past) + max(widest_new, new)) > (
                self.max_batch_tokens
            ):
                batches.append(current)
                current, widest_past, widest_new = [], 0, 0
            current.append(job)
            widest_past, widest_new = max(widest_past, past), max(widest_new, new)
        if current:
            batches.append(current)
        return batches

    def _run_batch(self, jobs: list[_Job]) -> None:
        past_lens = [job.past_len for job in jobs]
        new_ids = [job.ids[job.past_len :] for job in jobs]
        rows, width_past, width_new = len(jobs), max(past_lens), max(len(ids) for ids in new_ids)
        # Layout per row: [left padding | cached prefix | new tokens | right padding]. Cached keys
        # already carry their rotary embedding, so padding slots shifts nothing as long as the new
        # tokens get their true positions.
        input_ids = torch.full((rows, width_new), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((rows, width_past + width_new), dtype=torch.long)
        position_ids = torch.zeros((rows, width_new), dtype=torch.long)
        for row, (past_len, ids) in enumerate(zip(past_lens, new_ids)):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            attention_mask[row, width_past - past_len : width_past + len(ids)] = 1
            position_ids[row] = past_len + torch.arange(width_new)

        cache = None
        if width_past > 0:
            cache = self._stack_caches(jobs, width_past)
        elif self.prefix_store is not None:
            # Our own cache, not the model's default: a config-built one may be a sliding-window cache
            # that keeps only the last window of the prefix.

            cache = DynamicCache()
        device = self.device
        hidden = self.backbone(
            input_ids=input_ids.to(device),
            attention_mask=attention_mask.to(device),
            position_ids=position_ids.to(device),
            cache=cache,
            use_cache=cache is not None,
        ).last_hidden_state  # (rows, width_new, hidden)
        self.num_tokens_encoded += sum(len(ids) for ids in new_ids)

        new_scores = self._score_new(hidden, jobs)
        for row, job in enumerate(jobs):
            if any(math.isnan(v) for v in new_scores[row]):
                raise ValueError(f"the PRM returned NaN for question {job.pairs[0]}")
            job.scores.extend(new_scores[row])
            if self.prefix_store is not None and self.prefix_store.wants(job.ids):
                begin, end = width_past - past_lens[row], width_past + len(new_ids[row])
                kv = [
                    (
                        layer.keys[row : row + 1, :, begin:end].clone(),
                        layer.values[row : row + 1, :, begin:end].clone(),
                    )
                    for layer in cache.layers
                ]
                state = hidden[row, len(new_ids[row]) - 1].detach().clone()
                entry = _CachedPrefix(len(job.ids), tuple(job.positions), tuple(job.scores), kv, state)
                self.prefix_store.store(job.ids, entry)

    def _score_new(self, hidden: torch.Tensor, jobs: list[_Job]) -> list[list[float]]:
        """The scores of each job's positions past its cached prefix, from the new tokens' hidden states
        (rows, new tokens, hidden)."""
        score_rows, score_cols = [], []
        for row, job in enumerate(jobs):
            for position in job.positions:
                if position >= job.past_len:
                    score_rows.append(row)
                    score_cols.append(position - job.past_len)
        scores = self.head(hidden[score_rows, score_cols]).float().cpu().tolist()
        out, start = [], 0
        for job in jobs:
            count = len(job.positions) - len(job.scores)
            out.append(scores[start : start + count])
            start += count
        return out

    @staticmethod
    def _stack_caches(jobs: list[_Job], width: int):
        """One DynamicCache for the batch: each row's cached prefix, left-padded to ``width`` slots."""
        reference = next(job.past for job in jobs if job.past is not None)
        layers = []
        for layer_index, (ref_keys, ref_values) in enumerate(reference.kv):
            batch_shape = (len(jobs), ref_keys.shape[1], width, ref_keys.shape[3])
            keys = ref_keys.new_zeros(batch_shape)
            values = ref_values.new_zeros(batch_shape[:3] + (ref_values.shape[3],))
            for row, job in enumerate(jobs):
                if job.past is not None:
                    past_keys, past_values = job.past.kv[layer_index]
                    keys[row, :, width - job.past.length :] = past_keys[0]
                    values[row, :, width - job.past.length :] = past_values[0]
            layers.append((keys, values))
        return DynamicCache(ddp_cache_data=layers)
