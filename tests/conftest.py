"""Shared fixtures: tiny models and tokenizers built locally, never fetched; no network."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TTC_LOG_LEVEL", "WARNING")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# Real MATH-500 and GSM8K rows shipped with the tests (tests/data/README.md), so a clean clone runs
# every real-data check instead of skipping it.
TEST_DATA = REPO / "tests" / "data"
MATH500 = TEST_DATA / "math500.jsonl"
GSM8K_TEST_HEAD = TEST_DATA / "gsm8k_test_head500.jsonl"  # the split's first 500 of 1319 rows
SMALL_POLICY = REPO / "ttcompute" / "checkpoints" / "policy_small"


@pytest.fixture(scope="session")
def char_tokenizer():
    from ttcompute.models.tiny import build_char_tokenizer

    return build_char_tokenizer()


@pytest.fixture(scope="session")
def random_policy_dir(tmp_path_factory, char_tokenizer) -> Path:
    """An untrained tiny Llama saved like any checkpoint (fast; generates noise)."""
    from ttcompute.models.tiny import build_tiny_llama, save_tiny, tiny_llama_config

    path = tmp_path_factory.mktemp("random_policy")
    config = tiny_llama_config(
        len(char_tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2
    )
    save_tiny(build_tiny_llama(config, seed=0), char_tokenizer, path)
    return path


@pytest.fixture(scope="session")
def small_policy_dir() -> Path:
    """The shipped small policy: trained, so it writes real (often right, sometimes wrong) solutions."""
    if not (SMALL_POLICY / "model.safetensors").is_file():
        pytest.fail(
            f"{SMALL_POLICY} missing: train it with `ttc train-policy --config configs/policy_small.yaml`"
        )
    return SMALL_POLICY


@pytest.fixture(scope="session")
def likelihood_prm_dir(tmp_path_factory, small_policy_dir) -> Path:
    """A likelihood PRM over the small policy (the calibration of bench/prm_experiment.sh, rounded)."""
    import json

    path = tmp_path_factory.mktemp("likelihood_prm")
    spec = {
        "format": "ttcompute-likelihood",
        "base_model": str(small_policy_dir),
        "step_separator": "\n\n",
        "prompt_template": "{question}\n",
        "weight": 0.83,
        "bias": 0.19,
    }
    (path / "likelihood_prm.json").write_text(json.dumps(spec))
    return path
