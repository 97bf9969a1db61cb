"""Tests for ttcompute.models.context_extension and ``train-reviser --context_length``: a plain-RoPE
decoder declared longer computes what it did (its logits depend on relative positions only, checked
by shifting a sequence past the old context), scaled RoPE and learned positions are refused, and the
trained reviser declares the longer context that ``ttc search`` fits its attempts to."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import trainer_config, write_rows
from test_block_expansion import _rows
from transformers import GPT2Config, GPT2LMHeadModel

from ttcompute.core.errors import InputError
from ttcompute.models.context_extension import extend_context
from ttcompute.models.hf_backend import TransformersBackend
from ttcompute.models.tiny import build_tiny_llama, tiny_llama_config
from ttcompute.trainers.revision_config import RevisionConfig
from ttcompute.trainers.revision_trainer import train_reviser

torch.set_num_threads(1)


def _llama(rope: dict | None = None):
    config = tiny_llama_config(50, hidden_size=32, num_hidden_layers=2, max_position_embeddings=64)
    if rope is not None:
        config.rope_parameters = rope
    return build_tiny_llama(config, seed=1).eval()


def test_extended_model_reads_a_shifted_sequence_as_it_read_it_at_the_start():
    """What makes the extension sound: the same 40 tokens at positions 0-39 and at 200-239 (far past
    the declared 64) give the same logits."""
    model = extend_context(_llama(), 256)
    assert model.config.max_position_embeddings == 256
    ids = torch.randint(3, 50, (1, 40), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        at_start = model(ids).logits
        shifted = model(ids, position_ids=torch.arange(200, 240)[None]).logits
    torch.testing.assert_close(shifted, at_start, atol=2e-5, rtol=1e-4)
    with torch.no_grad():  # positions do matter: spread out, the same tokens read differently
        spread = model(ids, position_ids=2 * torch.arange(40)[None]).logits
    assert (spread - at_start).abs().max() > 1e-3
    # And the extension changed nothing else: a fresh model of the same seed gives the same logits.
    with torch.no_grad():
        torch.testing.assert_close(_llama()(ids).logits, at_start)


def test_no_length_or_a_shorter_one_leaves_the_model_as_it_is():
    model = _llama()
    assert extend_context(model, None) is model and model.config.max_position_embeddings == 64
    assert extend_context(model, 32).config.max_position_embeddings == 64


def test_scaled_rope_and_learned_positions_are_refused():
    scaled = _llama({"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0})
    with pytest.raises(InputError, match="scaled RoPE \\(linear\\)"):
        extend_context(scaled, 128)
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_embd=16, n_layer=1, n_head=2, n_positions=32))
    with pytest.raises(InputError, match="no rotary position embedding"):
        extend_context(gpt2, 64)


def test_train_reviser_raises_the_context_and_search_fits_attempts_to_it(tmp_path, random_policy_dir):
    data = write_rows(_rows(8), tmp_path / "revisions.parquet")
    base_context = json.loads((random_policy_dir / "config.json").read_text())["max_position_embeddings"]
    out = tmp_path / "reviser"
    log = train_reviser(
        trainer_config(RevisionConfig, out, random_policy_dir, data, context_length=2 * base_context)
    )
    assert json.loads((out / "config.json").read_text())["max_position_embeddings"] == 2 * base_context
    assert log["max_length"] == 2 * base_context  # max_length follows the raised context
    assert f"context raised to {2 * base_context} tokens" in (out / "README.md").read_text()
    assert TransformersBackend(str(out)).max_context == 2 * base_context


def test_context_length_below_the_base_is_refused(tmp_path, random_policy_dir):
    data = write_rows(_rows(4), tmp_path / "revisions.parquet")
    config = trainer_config(RevisionConfig, tmp_path / "r", random_policy_dir, data, context_length=16)
    with pytest.raises(InputError, match="--context_length 16 is below the base's context"):
        train_reviser(config)
    assert not (tmp_path / "r").exists()


def test_context_length_beyond_the_trained_length_is_refused(tmp_path, random_policy_dir):
    """A reviser must not declare a context its training never reached (ttc search would fill it)."""
    data = write_rows(_rows(4), tmp_path / "revisions.parquet")
    config = trainer_config(
        RevisionConfig, tmp_path / "r", random_policy_dir, data, context_length=1024, max_length=512
    )
    with pytest.raises(InputError, match="--context_length 1024 with --max_length 512"):
        train_reviser(config)
    assert not (tmp_path / "r").exists()
