"""Stand-ins for real checkpoints in tests: real tokenizer formats and tiny random models, built locally.

The built-in task's character tokenizer (:mod:`ttcompute.models.tiny`) hides every tokenizer quirk a real
model brings: merges that swallow a step separator (``".\\n\\n"`` as one token), a SentencePiece prefix
space, byte fallback, a BOS token, a chat template. The builders here train real BPE vocabularies with
the ``tokenizers`` library on the texts a test passes (MATH-500 and GSM8K in the tests), wrap them in
the classes ``AutoTokenizer`` itself builds for Qwen2.5 and Llama-2 checkpoints, and put tiny random
Qwen2 / Llama models on top, saved as any Hub checkpoint is. Nothing is downloaded; for the same texts
and seed everything is the same; building takes well under a second each.

The formats, as public copies of the real files state them (the tokenizer_config.json of Qwen2.5
checkpoints, copies of Qwen2.5-Math-Instruct's chat template and config.json, Llama-2's tokenizer.json
as hf-internal-testing/llama-tokenizer ships it) and as transformers' own tokenizer classes build them:

- **Qwen2.5 (Qwen/Qwen2.5-Math-1.5B-Instruct)**: byte-level BPE with Qwen2's pre-tokenizer regex (single
  digits, newline runs kept together with the punctuation before them), NFC, a ByteLevel decoder;
  special tokens ``<|endoftext|>``, ``<|im_start|>``, ``<|im_end|>``; no BOS; eos ``<|im_end|>``
  (``config.json``: ``eos_token_id`` 151645), pad ``<|endoftext|>``; the Qwen2.5-Math-Instruct chat
  template, whose default system prompt asks for ``\\boxed{}``.
- **Llama-2**: BPE with byte fallback (``<0x00>`` ... ``<0xFF>`` after ``<unk>``, ``<s>``, ``</s>``: a
  newline is the byte token ``<0x0A>``, never a piece), ``"▁"`` for spaces and a prefix space, BOS
  ``<s>`` added, EOS ``</s>`` not added. Llama-2's ``tokenizer.json`` does the prefix space with a
  ``Prepend("▁")`` normalizer; transformers' ``LlamaTokenizer`` rebuilds every Llama checkpoint it loads
  as ``Metaspace(prepend_scheme="first", split=False)`` (``legacy=False``), and that rebuilt tokenizer
  is what the package really sees, so that is the stand-in.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
from transformers import (
    GenerationConfig,
    LlamaConfig,
    LlamaForCausalLM,
    LlamaForTokenClassification,
    LlamaTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen2ForTokenClassification,
    Qwen2Tokenizer,
)
from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX as QWEN_PRETOKENIZE_REGEX

from ttcompute.models.prm import ttc_prm_metadata

# --------------------------------------------------------------------------------------------------
# Qwen2.5: byte-level BPE and its chat template

QWEN_ENDOFTEXT, QWEN_IM_START, QWEN_IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
QWEN_SPECIAL_TOKENS = (QWEN_ENDOFTEXT, QWEN_IM_START, QWEN_IM_END)
# The `chat_template` of Qwen/Qwen2.5-Math-1.5B-Instruct's tokenizer_config.json, JSON-decoded: the
# Qwen2.5 template with the Math models' default system prompt.
QWEN2_5_MATH_CHAT_TEMPLATE = r"""{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'Please reason step by step, and put your final answer within \\boxed{}.' }}
    {%- endif %}
    {{- "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nPlease reason step by step, and put your final answer within \\boxed{}.<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\n<tool_call>\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"""


def build_bpe_chat_tokenizer(texts: Iterable[str], vocab_size: int = 2000) -> Qwen2Tokenizer:
    """A Qwen2.5-format tokenizer (byte-level BPE, its special tokens and chat template) trained on ``texts``.

    Merges are learnt from ``texts``, so on MATH text the step separator really is swallowed by bigger
    tokens (``".\\n\\n"``, ``"$.\\n\\n"``). Ids 0-2 are the special tokens; no BOS is added.

    Args:
        texts: Training text (the tests pass MATH-500 and GSM8K problems and solutions).
        vocab_size: Vocabulary size, special tokens and the 256 byte symbols included.
    """
    backend = Tokenizer(models.BPE())
    backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = _qwen_pre_tokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(QWEN_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer)
    vocab, merges = _vocab_and_merges(backend)
    # Qwen2Tokenizer rebuilds the normalizer, pre-tokenizer and decoder itself, exactly as it does when
    # AutoTokenizer loads a Qwen2.5 checkpoint; the settings are those of Qwen2.5's tokenizer_config.
    return Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        bos_token=None,
        eos_token=QWEN_IM_END,
        pad_token=QWEN_ENDOFTEXT,
        # Qwen2.5's additional_special_tokens: the chat markers are single tokens, never split.
        extra_special_tokens=[QWEN_IM_START, QWEN_IM_END],
        add_bos_token=False,
        clean_up_tokenization_spaces=False,
        model_max_length=131072,
        chat_template=QWEN2_5_MATH_CHAT_TEMPLATE,
    )


def _qwen_pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    # Qwen2Tokenizer's own split (Qwen2.5's tokenizer.json has the same): merges are learnt on the
    # pre-tokens the tokenizer will really produce.
    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )


# --------------------------------------------------------------------------------------------------
# Llama-2: SentencePiece-style BPE with byte fallback

LLAMA_UNK, LLAMA_BOS, LLAMA_EOS = "<unk>", "<s>", "</s>"
LLAMA_SPECIAL_TOKENS = (LLAMA_UNK, LLAMA_BOS, LLAMA_EOS)
LLAMA_BYTE_TOKENS = tuple(f"<0x{byte:02X}>" for byte in range(256))
# Characters Llama-2's vocabulary has no piece for: they always go through byte fallback.
_LLAMA_BYTE_ONLY_CHARACTERS = "\n\r\t"


# Llama-2-chat's conversation format (the `chat_template` transformers ships for Llama-2-chat checkpoints,
# reduced to system + user turns): the template itself writes the BOS, the system prompt goes in a
# <<SYS>> block inside the first user turn.
LLAMA2_CHAT_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set system = messages[0]['content'] %}"
    "{% set messages = messages[1:] %}{% else %}{% set system = '' %}{% endif %}"
    "{% for message in messages %}{% if message['role'] == 'user' %}"
    "{{ bos_token + '[INST] ' + ('<<SYS>>\\n' + system + '\\n<</SYS>>\\n\\n' if system and loop.first else '')"
    " + message['content'] + ' [/INST]' }}{% endif %}{% endfor %}"
)


def build_sentencepiece_llama_tokenizer(
    texts: Iterable[str], vocab_size: int = 2000, limit_alphabet: int = 120, chat_template: str | None = None
) -> LlamaTokenizer:
    """A Llama-2-format tokenizer (``"▁"`` spaces, prefix space, byte fallback, BOS) trained on ``texts``.

    Ids: ``<unk>`` 0, ``<s>`` 1, ``</s>`` 2, the byte tokens ``<0x00>`` ... ``<0xFF>`` 3-258, then the learnt
    pieces, as in Llama-2. A newline has no piece: ``"\\n\\n"`` is two ``<0x0A>`` tokens. Characters
    outside the ``limit_alphabet`` most frequent ones are byte-encoded too (``é`` is two byte tokens).

    Args:
        texts: Training text.
        vocab_size: Size of the learnt part before the byte tokens are added.
        limit_alphabet: Most single characters kept as pieces.
        chat_template: None (a base model's tokenizer) or e.g. :data:`LLAMA2_CHAT_TEMPLATE`.
    """
    backend = Tokenizer(models.BPE(unk_token=LLAMA_UNK))
    # Trained on "▁"-prefixed words so that no piece spans a word boundary (SentencePiece's default);
    # the tokenizer then runs without that split, as LlamaTokenizer does.
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(LLAMA_SPECIAL_TOKENS),
        limit_alphabet=limit_alphabet,
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer)
    vocab, merges = _byte_fallback_vocab(*_vocab_and_merges(backend))
    tokenizer = LlamaTokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=LLAMA_UNK,
        bos_token=LLAMA_BOS,
        eos_token=LLAMA_EOS,
        add_bos_token=True,
        add_eos_token=False,
        legacy=False,
        clean_up_tokenization_spaces=False,
    )
    tokenizer.chat_template = chat_template
    return tokenizer


def _byte_fallback_vocab(
    vocab: dict[str, int], merges: list[tuple[str, str]]
) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Llama-2's layout: specials, the 256 byte tokens, then the pieces without byte-only characters."""

    def byte_only(text: str) -> bool:
        return any(character in text for character in _LLAMA_BYTE_ONLY_CHARACTERS)

    by_id = sorted(vocab, key=vocab.__getitem__)
    pieces = [t for t in by_id if t not in LLAMA_SPECIAL_TOKENS and not byte_only(t)]
    layout = list(LLAMA_SPECIAL_TOKENS) + list(LLAMA_BYTE_TOKENS) + pieces
    # A merge whose result holds a dropped character would build a dropped piece: drop it too.
    kept_merges = [(left, right) for left, right in merges if not byte_only(left + right)]
    return {token: index for index, token in enumerate(layout)}, kept_merges


def _vocab_and_merges(backend: Tokenizer) -> tuple[dict[str, int], list[tuple[str, str]]]:
    model = json.loads(backend.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    return dict(model["vocab"]), merges


# --------------------------------------------------------------------------------------------------
# Tiny random models on those tokenizers


def build_tiny_qwen2(
    tokenizer: PreTrainedTokenizerBase,
    path: str | Path,
    seed: int = 0,
    favoured_text: str | None = None,
    favoured_boost: float = 4.0,
) -> Path:
    """A tiny random ``Qwen2ForCausalLM`` (hidden 32, 2 layers, grouped-query attention) saved with
    ``tokenizer`` at ``path``, loadable with ``AutoModelForCausalLM`` / ``AutoTokenizer``.

    Its generation config ends at ``<|im_end|>`` or ``<|endoftext|>``, as Qwen2.5-Math-Instruct's does.
    ``favoured_text`` / ``favoured_boost``: the tokens containing that text get that logit boost (see
    :func:`favour_tokens`); ``"\\n"`` makes the model end steps every few tokens.
    """
    config = _qwen2_config(tokenizer)
    eos = [tokenizer.convert_tokens_to_ids(QWEN_IM_END), tokenizer.convert_tokens_to_ids(QWEN_ENDOFTEXT)]
    generation = GenerationConfig(
        bos_token_id=config.bos_token_id, eos_token_id=eos, pad_token_id=tokenizer.pad_token_id
    )
    return _random_policy(
        Qwen2ForCausalLM, config, generation, tokenizer, path, seed, favoured_text, favoured_boost
    )


def build_tiny_llama_on(
    tokenizer: PreTrainedTokenizerBase,
    path: str | Path,
    seed: int = 0,
    favoured_text: str | None = None,
    favoured_boost: float = 4.0,
) -> Path:
    """A tiny random ``LlamaForCausalLM`` (hidden 32, 2 layers) saved with ``tokenizer`` at ``path``,
    loadable with ``AutoModelForCausalLM`` / ``AutoTokenizer``; ``favoured_text`` / ``favoured_boost`` as for
    :func:`build_tiny_qwen2` (a newline is one byte token here, so ending a step needs a larger boost)."""
    config = _llama_config(tokenizer)
    generation = GenerationConfig(bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id)
    return _random_policy(
        LlamaForCausalLM, config, generation, tokenizer, path, seed, favoured_text, favoured_boost
    )


def build_tiny_prm_on(
    tokenizer: PreTrainedTokenizerBase,
    path: str | Path,
    seed: int = 0,
    step_separator: str = "\n\n",
    prompt_template: str = "{question}\n",
) -> Path:
    """A tiny random PRM in the ``ttcompute`` format on ``tokenizer``'s architecture: a one-logit
    ``Qwen2ForTokenClassification`` (a Qwen2 tokenizer) or ``LlamaForTokenClassification`` (any other)
    with the ``ttc_prm`` metadata that ``load_prm`` reads, saved with the tokenizer at ``path``.

    The score head is scaled up so that step scores spread over (0, 1) instead of all sitting near 0.5.
    """
    if isinstance(tokenizer, Qwen2Tokenizer):
        config, model_class = _qwen2_config(tokenizer), Qwen2ForTokenClassification
    else:
        config, model_class = _llama_config(tokenizer), LlamaForTokenClassification
    config.num_labels = 1
    config.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    config.ttc_prm = ttc_prm_metadata(step_separator, prompt_template)
    torch.manual_seed(seed)
    model = model_class(config).eval()
    with torch.no_grad():
        model.score.weight.mul_(20)
    return _save(model, tokenizer, path)


def token_ids_containing(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    """Ids of the vocabulary's tokens whose decoded text contains ``text``."""
    pieces = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    return [i for i, piece in enumerate(pieces) if text in piece]


def favour_tokens(model: PreTrainedModel, token_ids: Sequence[int], logit_boost: float = 3.0) -> None:
    """Add about ``logit_boost`` to the logits of ``token_ids`` at every position of a random decoder.

    A random model almost never writes a step separator, so stop-string code would go untested. The
    decoders have no output bias, so one is made: hidden dimension 0 is set to a constant in every
    embedding and no layer writes to it (its rows of the attention and MLP output projections are
    zeroed), so after the final norm it is a positive feature present at every position, and the untied
    LM head reads it for ``token_ids`` only. Everything else stays random.
    """
    if model.config.tie_word_embeddings:
        raise ValueError("favour_tokens needs an untied LM head (tie_word_embeddings=False)")
    base = model.model
    with torch.no_grad():
        base.embed_tokens.weight[:, 0] = 1.0
        for layer in base.layers:
            layer.self_attn.o_proj.weight[0, :] = 0.0
            layer.mlp.down_proj.weight[0, :] = 0.0
        head = model.get_output_embeddings().weight
        head[:, 0] = 0.0
        # The feature's size after the final norm depends on the rest of the residual stream: measure
        # it on a probe sequence so that the boost is about what was asked for.
        probe = torch.arange(min(64, head.shape[0]))[None]
        feature = base(input_ids=probe).last_hidden_state[0, :, 0].mean()
        head[list(token_ids), 0] = logit_boost / feature


# Random weights this wide spread the logits over a few units, so that greedy choices depend on the
# context instead of repeating one token.
INITIALIZER_RANGE = 0.3


def _tiny_shape(tokenizer: PreTrainedTokenizerBase) -> dict:
    """The miniature shape both stand-in architectures share. The LM head is untied so that
    :func:`favour_tokens` can bias it."""
    return {
        "vocab_size": len(tokenizer),
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "max_position_embeddings": 4096,
        "rope_theta": 10000.0,
        "tie_word_embeddings": False,
        "initializer_range": INITIALIZER_RANGE,
    }


def _qwen2_config(tokenizer: PreTrainedTokenizerBase) -> Qwen2Config:
    # Qwen2.5-Math-1.5B's shape in miniature: grouped-query attention (12 heads, 2 KV heads there),
    # rope_theta 1e4, 4096 positions, bos <|endoftext|>, eos <|im_end|>.
    return Qwen2Config(
        **_tiny_shape(tokenizer),
        num_key_value_heads=2,
        use_sliding_window=False,
        bos_token_id=tokenizer.convert_tokens_to_ids(QWEN_ENDOFTEXT),
        eos_token_id=tokenizer.convert_tokens_to_ids(QWEN_IM_END),
    )


def _llama_config(tokenizer: PreTrainedTokenizerBase) -> LlamaConfig:
    return LlamaConfig(
        **_tiny_shape(tokenizer),
        num_key_value_heads=4,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )


def _random_policy(
    model_class: type[PreTrainedModel],
    config,
    generation: GenerationConfig,
    tokenizer: PreTrainedTokenizerBase,
    path: str | Path,
    seed: int,
    favoured_text: str | None,
    favoured_boost: float,
) -> Path:
    """A random ``model_class`` policy drawn with ``seed``, its tokens ``favoured_text`` favoured, saved."""
    torch.manual_seed(seed)
    model = model_class(config).eval()
    model.generation_config = generation
    if favoured_text is not None:
        favour_tokens(model, token_ids_containing(tokenizer, favoured_text), favoured_boost)
    return _save(model, tokenizer, path)


def _save(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, path: str | Path) -> Path:
    path = Path(path)
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path
