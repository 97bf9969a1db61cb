"""Tests for ttcompute.models.tiny: the character tokenizer and the tiny Llama factory."""

from __future__ import annotations

import random

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from ttcompute.models.tiny import (
    build_char_tokenizer,
    build_tiny_llama,
    count_parameters,
    save_tiny,
    tiny_llama_config,
)

# Printable ASCII, space to tilde, plus newline -- written out here rather than taken from the module.
ALPHABET = [chr(c) for c in range(32, 127)] + ["\n"]


def _random_text(rng: random.Random, length: int) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(length))


# --- tokenizer ---------------------------------------------------------------------------------


def test_every_printable_character_is_its_own_token(char_tokenizer):
    ids = [char_tokenizer.convert_tokens_to_ids(c) for c in ALPHABET]
    assert char_tokenizer.unk_token_id not in ids
    assert len(set(ids)) == len(ALPHABET)
    # 4 specials + one token per character, nothing else.
    assert len(char_tokenizer) == 4 + len(ALPHABET)


def test_round_trip_of_random_printable_text(char_tokenizer):
    rng = random.Random(0)
    texts = [_random_text(rng, rng.randint(0, 80)) for _ in range(200)]
    texts += [
        "\n\n",
        "7 + 8 = 15\n\n15 * 2 = 30\n\nThe answer is \\boxed{30}",
        "  leading and trailing  ",
        " \n \n",
    ]
    for text in texts:
        ids = char_tokenizer(text)["input_ids"]
        assert ids[0] == char_tokenizer.bos_token_id
        assert ids[1:] == [char_tokenizer.convert_tokens_to_ids(c) for c in text], repr(text)
        assert len(ids) == len(text) + 1
        assert char_tokenizer.decode(ids, skip_special_tokens=True) == text, repr(text)


def test_unknown_characters_map_to_unk(char_tokenizer):
    unk, a, b = char_tokenizer.unk_token_id, *char_tokenizer.convert_tokens_to_ids(["a", "b"])
    assert char_tokenizer("aéb")["input_ids"] == [char_tokenizer.bos_token_id, a, unk, b]
    assert char_tokenizer("é")["input_ids"] == [char_tokenizer.bos_token_id, unk]
    # A tab is not in the vocabulary either: it is lost, not silently turned into a space.
    assert char_tokenizer("a\tb")["input_ids"] == [char_tokenizer.bos_token_id, a, unk, b]
    assert char_tokenizer.decode(char_tokenizer("aéb")["input_ids"], skip_special_tokens=True) == "ab"


def test_batches_are_padded_on_the_left(char_tokenizer):
    batch = char_tokenizer(["a", "abc"], padding=True)
    pad, bos = char_tokenizer.pad_token_id, char_tokenizer.bos_token_id
    a, b, c = char_tokenizer.convert_tokens_to_ids(["a", "b", "c"])
    assert batch["input_ids"] == [[pad, pad, bos, a], [bos, a, b, c]]
    assert batch["attention_mask"] == [[0, 0, 1, 1], [1, 1, 1, 1]]


def test_extra_special_tokens_are_single_tokens():
    tokenizer = build_char_tokenizer(["<step>"])
    step = tokenizer.convert_tokens_to_ids("<step>")
    one, two = tokenizer.convert_tokens_to_ids(["1", "2"])
    assert tokenizer("1<step>2")["input_ids"] == [tokenizer.bos_token_id, one, step, two]
    assert tokenizer.decode(tokenizer("1<step>2")["input_ids"], skip_special_tokens=True) == "12"


def test_saved_tokenizer_reloads_with_auto_tokenizer(char_tokenizer, tmp_path):
    char_tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    rng = random.Random(1)
    texts = [_random_text(rng, rng.randint(0, 60)) for _ in range(50)] + ["\n\n", "aéb"]
    for text in texts:
        ids = char_tokenizer(text)["input_ids"]
        assert reloaded(text)["input_ids"] == ids, repr(text)
        assert reloaded.decode(ids, skip_special_tokens=True) == char_tokenizer.decode(
            ids, skip_special_tokens=True
        )
    assert (reloaded.bos_token, reloaded.eos_token, reloaded.pad_token, reloaded.unk_token) == (
        "<s>",
        "</s>",
        "<pad>",
        "<unk>",
    )
    assert reloaded.padding_side == "left"


# --- model -------------------------------------------------------------------------------------


def _expected_llama_parameters(vocab: int, hidden: int, layers: int, intermediate: int) -> int:
    # Tied embeddings (lm_head is embed_tokens); per layer q/k/v/o (h x h each, kv heads == heads),
    # gate/up/down (h x i each) and two RMSNorm weights; one final norm.
    return vocab * hidden + layers * (4 * hidden * hidden + 3 * hidden * intermediate + 2 * hidden) + hidden


@pytest.mark.parametrize(
    ("vocab", "hidden", "layers", "heads", "intermediate", "expected"),
    [
        # 100*32 + 1*(4*1024 + 3*32*128 + 64) + 32 = 3200 + 16448 + 32, worked out by hand.
        (100, 32, 1, 2, None, 19680),
        # 120*48 + 3*(4*2304 + 3*48*80 + 96) + 48 = 5760 + 3*20832 + 48
        (120, 48, 3, 4, 80, 68304),
    ],
)
def test_count_parameters_matches_the_llama_formula(vocab, hidden, layers, heads, intermediate, expected):
    config = tiny_llama_config(
        vocab,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=intermediate,
    )
    assert config.num_key_value_heads == config.num_attention_heads
    assert config.intermediate_size == (intermediate or 4 * hidden)
    assert _expected_llama_parameters(vocab, hidden, layers, config.intermediate_size) == expected
    model = build_tiny_llama(config, seed=0)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert count_parameters(model) == expected


def test_same_seed_same_weights_other_seed_other_weights(char_tokenizer):
    config = tiny_llama_config(
        len(char_tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2
    )
    first, again, other = (build_tiny_llama(config, seed=s).state_dict() for s in (3, 3, 4))
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["model.embed_tokens.weight"], other["model.embed_tokens.weight"])


def test_save_tiny_writes_safetensors_and_reloads_identically(char_tokenizer, tmp_path):
    config = tiny_llama_config(
        len(char_tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2
    )
    model = build_tiny_llama(config, seed=0).eval()
    save_tiny(model, char_tokenizer, tmp_path)

    names = {p.name for p in tmp_path.iterdir()}
    assert "model.safetensors" in names
    assert "config.json" in names
    assert not [n for n in names if n.endswith(".bin")]

    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    original_state, reloaded_state = model.state_dict(), reloaded.state_dict()
    assert original_state.keys() == reloaded_state.keys()
    for key in original_state:
        assert torch.equal(original_state[key], reloaded_state[key]), key
    assert reloaded.config.tie_word_embeddings
    assert reloaded.lm_head.weight.data_ptr() == reloaded.model.embed_tokens.weight.data_ptr()

    tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    inputs = tokenizer(["Start at 3. Add 4.\n", "3 + 4 = 7\n\n"], padding=True, return_tensors="pt")
    assert (
        inputs["input_ids"].tolist()
        == char_tokenizer(["Start at 3. Add 4.\n", "3 + 4 = 7\n\n"], padding=True, return_tensors="pt")[
            "input_ids"
        ].tolist()
    )
    with torch.no_grad():
        expected = model(**inputs).logits
        actual = reloaded(**inputs).logits
    assert expected.shape == (2, inputs["input_ids"].shape[1], len(char_tokenizer))
    assert torch.equal(expected, actual)


def test_random_policy_fixture_is_a_loadable_checkpoint(random_policy_dir, char_tokenizer):
    model = AutoModelForCausalLM.from_pretrained(random_policy_dir)
    assert count_parameters(model) == _expected_llama_parameters(len(char_tokenizer), 32, 1, 128)
    assert model.config.bos_token_id == char_tokenizer.bos_token_id == 1
    assert model.config.eos_token_id == char_tokenizer.eos_token_id == 2
    assert model.config.pad_token_id == char_tokenizer.pad_token_id == 0
