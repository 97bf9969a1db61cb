"""Tiny models for the built-in task: a character-level tokenizer and a tiny Llama factory.

Both are built locally (no Hub) and saved in the standard formats, so everything downstream loads
them with ``AutoTokenizer`` / ``AutoModelForCausalLM`` like any Hub checkpoint.
"""

from __future__ import annotations

import string
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
# Printable ASCII plus newline: every character the arithmetic task and its prompts use. A
# whitespace pre-tokenizer would drop "\n" -- the step separator -- so characters are split one by one.
CHARACTERS = sorted(set(string.printable) - set("\t\r\x0b\x0c"))


def build_char_tokenizer(extra_special_tokens: list[str] | None = None) -> PreTrainedTokenizerFast:
    """A character-level tokenizer: one token per character, unknown characters map to ``<unk>``.

    >>> tok = build_char_tokenizer()
    >>> tok.decode(tok("7 + 8 = 15\\n\\n")["input_ids"], skip_special_tokens=True)
    '7 + 8 = 15\\n\\n'
    """
    specials = [PAD, BOS, EOS, UNK] + list(extra_special_tokens or [])
    vocab = {token: i for i, token in enumerate(specials + CHARACTERS)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    backend.decoder = decoders.Fuse()
    # Sequences start with <s>, as Llama's do, so prompts encode the same in training and sampling.
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, vocab[BOS])]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        additional_special_tokens=list(extra_special_tokens or []),
        padding_side="left",
        clean_up_tokenization_spaces=False,
    )
    return tokenizer


def tiny_llama_config(
    vocab_size: int,
    hidden_size: int = 64,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 4,
    intermediate_size: int | None = None,
    max_position_embeddings: int = 512,
    pad_token_id: int = 0,
    bos_token_id: int = 1,
    eos_token_id: int = 2,
) -> LlamaConfig:
    """A Llama config of the given size; tied embeddings keep tiny models' parameters in the blocks."""
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        num_key_value_heads=num_attention_heads,
        intermediate_size=intermediate_size or 4 * hidden_size,
        max_position_embeddings=max_position_embeddings,
        pad_token_id=pad_token_id,
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
        tie_word_embeddings=True,
        rope_theta=10000.0,
    )


def build_tiny_llama(config: LlamaConfig, seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def count_parameters(model) -> int:
    """Parameters counted once (tied embeddings are one tensor)."""
    return sum(p.numel() for p in model.parameters())


def save_tiny(model, tokenizer, path: str | Path) -> None:
    """Save as plain safetensors + tokenizer files, loadable with the Auto classes."""
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
