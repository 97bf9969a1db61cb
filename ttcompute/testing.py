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
- **Llama-3.1-Instruct** (the tokenizer of RLHFlow/Llama3.1-8B-PRM-*-Data): byte-level BPE with
  Llama-3's pre-tokenizer regex (digits in runs of up to three, ``"\\n\\n"`` a token of its own),
  ``ignore_merges``, BOS ``<|begin_of_text|>`` added by the post-processor, eos ``<|eot_id|>``, the chat
  markers ``<|start_header_id|>``, ``<|end_header_id|>``, ``<|eot_id|>`` after the learnt vocabulary (as
  Llama-3's ids 128000+ are), and Llama-3.1-Instruct's chat template (a system turn with its knowledge
  and today dates always written; every turn's content trimmed).

Two public PRM layouts sit on them: :func:`build_tiny_rlhflow_prm` (a plain ``LlamaForCausalLM``, as
RLHFlow's PRMs are) and :func:`build_tiny_skywork_prm` (``Qwen2ForPrmModel``: ``model.*``, ``lm_head.*``
and the value head ``v_head.summary.*`` in the weights, BOS ``<|im_start|>``, as Skywork-o1-Open-PRM).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (
    GenerationConfig,
    LlamaConfig,
    LlamaForCausalLM,
    LlamaForTokenClassification,
    LlamaTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
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
# Llama-3.1-Instruct: byte-level BPE, its special tokens and chat template

LLAMA3_BOS, LLAMA3_END_OF_TEXT = "<|begin_of_text|>", "<|end_of_text|>"
LLAMA3_START_HEADER, LLAMA3_END_HEADER, LLAMA3_EOT = "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"
LLAMA3_SPECIAL_TOKENS = (LLAMA3_BOS, LLAMA3_END_OF_TEXT, LLAMA3_START_HEADER, LLAMA3_END_HEADER, LLAMA3_EOT)
# The `pattern` of the Split pre-tokenizer in Llama-3's tokenizer.json (tiktoken's cl100k-style split).
LLAMA3_PRETOKENIZE_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# The `chat_template` of meta-llama/Llama-3.1-8B-Instruct's tokenizer_config.json, JSON-decoded.
LLAMA3_1_CHAT_TEMPLATE = r"""{{- bos_token }}
{%- if custom_tools is defined %}
    {%- set tools = custom_tools %}
{%- endif %}
{%- if not tools_in_user_message is defined %}
    {%- set tools_in_user_message = true %}
{%- endif %}
{%- if not date_string is defined %}
    {%- set date_string = "26 Jul 2024" %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}

{#- This block extracts the system message, so we can slot it into the right place. #}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}

{#- System message + builtin tools #}
{{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
{%- if builtin_tools is defined or tools is not none %}
    {{- "Environment: ipython\n" }}
{%- endif %}
{%- if builtin_tools is defined %}
    {{- "Tools: " + builtin_tools | reject('equalto', 'code_interpreter') | join(", ") + "\n\n"}}
{%- endif %}
{{- "Cutting Knowledge Date: December 2023\n" }}
{{- "Today Date: " + date_string + "\n\n" }}
{%- if tools is not none and not tools_in_user_message %}
    {{- "You have access to the following functions. To call a function, please respond with JSON for a function call." }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
{%- endif %}
{{- system_message }}
{{- "<|eot_id|>" }}

{#- Custom tools are passed in a user message with some extra guidance #}
{%- if tools_in_user_message and not tools is none %}
    {#- Extract the first user message so we can plug it in here #}
    {%- if messages | length != 0 %}
        {%- set first_user_message = messages[0]['content']|trim %}
        {%- set messages = messages[1:] %}
    {%- else %}
        {{- raise_exception("Cannot put tools in the first user message when there's no first user message!") }}
{%- endif %}
    {{- '<|start_header_id|>user<|end_header_id|>\n\n' -}}
    {{- "Given the following functions, please respond with a JSON for a function call " }}
    {{- "with its proper arguments that best answers the given prompt.\n\n" }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
    {{- first_user_message + "<|eot_id|>"}}
{%- endif %}

{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif 'tool_calls' in message %}
        {%- if not message.tool_calls|length == 1 %}
            {{- raise_exception("This model only supports single tool-calls at once!") }}
        {%- endif %}
        {%- set tool_call = message.tool_calls[0].function %}
        {%- if builtin_tools is defined and tool_call.name in builtin_tools %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
            {{- "<|python_tag|>" + tool_call.name + ".call(" }}
            {%- for arg_name, arg_val in tool_call.arguments | items %}
                {{- arg_name + '="' + arg_val + '"' }}
                {%- if not loop.last %}
                    {{- ", " }}
                {%- endif %}
                {%- endfor %}
            {{- ")" }}
        {%- else  %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
            {{- '{"name": "' + tool_call.name + '", ' }}
            {{- '"parameters": ' }}
            {{- tool_call.arguments | tojson }}
            {{- "}" }}
        {%- endif %}
        {%- if builtin_tools is defined %}
            {#- This means we're in ipython mode #}
            {{- "<|eom_id|>" }}
        {%- else %}
            {{- "<|eot_id|>" }}
        {%- endif %}
    {%- elif message.role == "tool" or message.role == "ipython" %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\n\n" }}
        {%- if message.content is mapping or message.content is iterable %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}
"""


def build_llama3_chat_tokenizer(texts: Iterable[str], vocab_size: int = 2000) -> PreTrainedTokenizerFast:
    """A Llama-3.1-Instruct-format tokenizer (byte-level BPE, BOS added, chat template) trained on ``texts``.

    The learnt vocabulary comes first and the special tokens after it, as in Llama-3 (ids 128000+).
    ``"+"`` and ``"-"`` are single tokens (byte symbols); after ``<|end_header_id|>`` the ``"\\n\\n"``
    run is one pre-token, so an assistant turn ``"+"`` tokenizes as that byte alone.

    Args:
        texts: Training text.
        vocab_size: Size of the learnt vocabulary (the 256 byte symbols included), before the specials.
    """
    backend = Tokenizer(models.BPE(ignore_merges=True))
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(LLAMA3_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
        ]
    )
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    backend.train_from_iterator(texts, trainer)
    backend.add_special_tokens(list(LLAMA3_SPECIAL_TOKENS))
    bos_id = backend.token_to_id(LLAMA3_BOS)
    backend.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single=f"{LLAMA3_BOS}:0 $A:0",
                pair=f"{LLAMA3_BOS}:0 $A:0 {LLAMA3_BOS}:1 $B:1",
                special_tokens=[(LLAMA3_BOS, bos_id)],
            ),
        ]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=LLAMA3_BOS,
        eos_token=LLAMA3_EOT,
        # RLHFlow's axolotl recipe (math-rm/llama-3.1-prm.yaml) sets this pad token.
        pad_token=LLAMA3_END_OF_TEXT,
        clean_up_tokenization_spaces=True,
        model_max_length=131072,
        chat_template=LLAMA3_1_CHAT_TEMPLATE,
    )


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


def build_tiny_rlhflow_prm(tokenizer: PreTrainedTokenizerBase, path: str | Path, seed: int = 0) -> Path:
    """A tiny random stand-in for RLHFlow/Llama3.1-8B-PRM-*-Data saved at ``path``: like the real ones, a
    plain ``LlamaForCausalLM`` on a Llama-3.1-Instruct tokenizer (:func:`build_llama3_chat_tokenizer`),
    with nothing in it that says it is a PRM (it reads P("+") vs P("-") from the LM head)."""
    return build_tiny_llama_on(tokenizer, path, seed=seed)


def build_tiny_skywork_prm(
    tokenizer: Qwen2Tokenizer, path: str | Path, seed: int = 0, head_scale: float = 5.0
) -> Path:
    """A tiny random stand-in for Skywork/Skywork-o1-Open-PRM-Qwen-2.5-* saved at ``path`` in its layout:
    ``architectures: ["Qwen2ForPrmModel"]`` with an ``auto_map`` to its own code (never run here), one
    safetensors file holding the causal LM's ``model.*`` and ``lm_head.weight`` plus the value head
    ``v_head.summary.weight`` (1, hidden) and ``v_head.summary.bias`` (1,), and the Qwen2.5 tokenizer
    with ``bos_token`` ``<|im_start|>`` (Skywork's special_tokens_map.json; its prompt starts with it).

    The published checkpoints ship ``pytorch_model.bin`` (a pickle, which ttcompute never loads); the
    safetensors layout here is that of the converted variant (refs/pr/4 of the 7B's Hub repo).
    ``head_scale`` multiplies the random value head so that scores spread over (0, 1).
    """
    config = _qwen2_config(tokenizer)
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config).eval()
    value_head = torch.nn.Linear(config.hidden_size, 1)
    with torch.no_grad():
        value_head.weight.mul_(head_scale)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    weights = {key: value.contiguous() for key, value in model.state_dict().items()}
    weights.update(
        {f"v_head.summary.{k}": v.detach().contiguous() for k, v in value_head.state_dict().items()}
    )
    save_file(weights, str(path / "model.safetensors"), metadata={"format": "pt"})
    config.architectures = ["Qwen2ForPrmModel"]
    config.save_pretrained(path)
    config_json = json.loads((path / "config.json").read_text())
    # The Hub repos ship configuration_qwen2_rm.py and modeling_qwen2_rm.py ("custom_code").
    config_json["auto_map"] = {
        "AutoConfig": "configuration_qwen2_rm.Qwen2RMConfig",
        "AutoModel": "modeling_qwen2_rm.Qwen2ForPrmModel",
    }
    (path / "config.json").write_text(json.dumps(config_json, indent=2))
    tokenizer.save_pretrained(path)
    tokenizer_config = json.loads((path / "tokenizer_config.json").read_text())
    tokenizer_config["bos_token"] = QWEN_IM_START
    (path / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2))
    return path


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
