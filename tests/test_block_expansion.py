"""Tests for ttcompute.models.block_expansion (LLaMA Pro block expansion) and ``train-reviser
--expand_blocks``: the expanded model computes what the original did (logits, cached generation,
after a save and reload), its new blocks then train, and unsupported models are refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import trainer_config, write_rows
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel, Qwen2Config, Qwen2ForCausalLM

from ttcompute.core.errors import InputError
from ttcompute.models.block_expansion import expand_blocks, expansion_positions
from ttcompute.models.reviser import format_reviser_prompt
from ttcompute.models.tiny import build_tiny_llama, tiny_llama_config
from ttcompute.trainers.revision_config import RevisionConfig
from ttcompute.trainers.revision_trainer import train_reviser

torch.set_num_threads(1)


@pytest.mark.parametrize("num_layers", range(1, 7))
def test_new_blocks_are_spread_evenly_and_the_last_closes_the_top(num_layers):
    for num_new in range(1, num_layers + 1):
        after = expansion_positions(num_layers, num_new)
        assert len(after) == num_new == len(set(after)) and after == sorted(after)
        assert after[-1] == num_layers - 1 and after[0] >= 0
        # Groups of original blocks between new ones differ in size by at most one.
        groups = [b - a for a, b in zip([-1, *after], after)]
        assert max(groups) - min(groups) <= 1, (num_layers, num_new, after)
    assert expansion_positions(num_layers, 0) == []
    with pytest.raises(ValueError, match="at most one new block"):
        expansion_positions(num_layers, num_layers + 1)


def _qwen2(seed: int = 0) -> Qwen2ForCausalLM:
    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=50,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    return Qwen2ForCausalLM(config)


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_expanded_model_computes_what_the_original_did(family, tmp_path):
    def build():
        if family == "llama":
            return build_tiny_llama(tiny_llama_config(50, hidden_size=32, num_hidden_layers=2), seed=3)
        return _qwen2(seed=3)

    original, model = build().eval(), build().eval()
    layers = original.config.num_hidden_layers
    expand_blocks(model, 2)
    assert model.config.num_hidden_layers == len(model.model.layers) == layers + 2
    assert [block.self_attn.layer_idx for block in model.model.layers] == list(range(layers + 2))
    if getattr(model.config, "layer_types", None):
        assert len(model.config.layer_types) == layers + 2
    # Each new block is a copy of the block before it, but for its zeroed output projections.
    new = [i + 1 + k for k, i in enumerate(expansion_positions(layers, 2))]
    for index in new:
        block, before = model.model.layers[index], model.model.layers[index - 1]
        assert torch.equal(block.self_attn.o_proj.weight, torch.zeros_like(block.self_attn.o_proj.weight))
        assert torch.equal(block.mlp.down_proj.weight, torch.zeros_like(block.mlp.down_proj.weight))
        assert torch.equal(block.self_attn.q_proj.weight, before.self_attn.q_proj.weight)
        assert block is not before

    ids = torch.randint(3, 50, (2, 11), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(original(ids).logits, model(ids).logits, atol=1e-6)
        # Cached decoding indexes the cache by layer_idx: a stale index would break this.
        kwargs = {"max_new_tokens": 8, "do_sample": False, "use_cache": True, "pad_token_id": 0}
        assert torch.equal(original.generate(ids, **kwargs), model.generate(ids, **kwargs))
    model.save_pretrained(tmp_path / "expanded")
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "expanded").eval()
    assert reloaded.config.num_hidden_layers == layers + 2
    with torch.no_grad():
        assert torch.allclose(original(ids).logits, reloaded(ids).logits, atol=1e-6)


def test_zero_new_blocks_leaves_the_model_alone():
    model = build_tiny_llama(tiny_llama_config(50, hidden_size=32, num_hidden_layers=2))
    layers = list(model.model.layers)
    assert expand_blocks(model, 0) is model and list(model.model.layers) == layers


def test_models_without_llama_style_blocks_are_refused():
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_embd=32, n_layer=2, n_head=4, n_positions=32))
    with pytest.raises(InputError, match="no model.layers"):
        expand_blocks(gpt2, 1)


def _rows(n: int) -> dict[str, list]:
    rows = {
        k: [] for k in ("problem_id", "question", "previous_attempts", "completion", "num_previous", "prompt")
    }
    for i in range(n):
        question = f"Start at {i}. Add 2."
        attempt, completion = f"{i} + 2 = {i + 3}", f"{i} + 2 = {i + 2}"
        rows["problem_id"].append(f"p{i}")
        rows["question"].append(question)
        rows["previous_attempts"].append([attempt])
        rows["completion"].append(completion)
        rows["num_previous"].append(1)
        rows["prompt"].append(format_reviser_prompt(question, [attempt]))
    return rows


def test_train_reviser_expands_the_base_and_trains_the_new_blocks(tmp_path, random_policy_dir):
    data = write_rows(_rows(12), tmp_path / "revisions.parquet")
    out = tmp_path / "reviser"
    config = trainer_config(
        RevisionConfig, out, random_policy_dir, data, expand_blocks=1, max_steps=3, learning_rate=1e-2
    )
    log = train_reviser(config)
    base = AutoModelForCausalLM.from_pretrained(random_policy_dir)
    reviser = AutoModelForCausalLM.from_pretrained(out)
    layers = base.config.num_hidden_layers
    assert reviser.config.num_hidden_layers == layers + 1
    assert json.loads((out / "config.json").read_text())["num_hidden_layers"] == layers + 1
    assert log["num_parameters"] == sum(p.numel() for p in reviser.parameters())
    assert log["num_parameters"] > sum(p.numel() for p in base.parameters())
    # The new (top) block started with zero output projections: training moved them off zero.
    assert "deepened by 1 identity-initialised decoder block (LLaMA Pro" in (out / "README.md").read_text()
    top = reviser.model.layers[-1]
    assert top.self_attn.o_proj.weight.abs().max() > 0 and top.mlp.down_proj.weight.abs().max() > 0


def test_expand_blocks_must_not_be_negative(tmp_path, random_policy_dir):
    with pytest.raises(ValueError, match="expand_blocks must be >= 0"):
        trainer_config(RevisionConfig, tmp_path, random_policy_dir, tmp_path / "d.jsonl", expand_blocks=-1)


def test_the_two_stage_recipe_runs_on_the_small_policy(tmp_path, small_policy_dir):
    """configs/reviser_copy.yaml (stage 1: expanded, copy data) then configs/reviser.yaml from its
    output (stage 2): the deeper model is what stage 2 trains and saves."""
    from ttcompute.cli import main

    repo = Path(__file__).resolve().parents[1]
    rows = _rows(6)
    copies = {**rows, "completion": [a[0] for a in rows["previous_attempts"]]}
    common = ["--max_steps", "2", "--use_cpu", "true", "--eval_fraction", "0", "--save_strategy", "no",
              "--disable_tqdm", "true", "--model_name_or_path"]  # fmt: skip
    stage1, stage2 = tmp_path / "copy", tmp_path / "reviser"
    argv = [
        "train-reviser",
        "--config",
        str(repo / "configs" / "reviser_copy.yaml"),
        *common,
        str(small_policy_dir),
    ]
    assert (
        main(
            [
                *argv,
                "--dataset_name",
                str(write_rows(copies, tmp_path / "c.parquet")),
                "--output_dir",
                str(stage1),
            ]
        )
        == 0
    )
    argv = ["train-reviser", "--config", str(repo / "configs" / "reviser.yaml"), *common, str(stage1)]
    assert (
        main(
            [
                *argv,
                "--dataset_name",
                str(write_rows(rows, tmp_path / "r.parquet")),
                "--output_dir",
                str(stage2),
            ]
        )
        == 0
    )
    for out in (stage1, stage2):
        log = json.loads((out / "training_log.json").read_text())
        assert log["num_parameters"] == 269_120  # the small policy's 137,792 + two blocks of 65,664
        assert AutoModelForCausalLM.from_pretrained(out).config.num_hidden_layers == 4


def test_stage_two_without_stage_one_names_what_to_run_first(tmp_path, monkeypatch, capsys):
    from ttcompute.cli import main

    monkeypatch.chdir(tmp_path)  # no runs/reviser_copy here
    data = write_rows(_rows(2), tmp_path / "r.parquet")
    repo = Path(__file__).resolve().parents[1]
    code = main(["train-reviser", "--config", str(repo / "configs" / "reviser.yaml"), "--dataset_name", str(data),
                 "--output_dir", str(tmp_path / "out")])  # fmt: skip
    assert code == 2
    error = capsys.readouterr().err
    assert "runs/reviser_copy: cannot load the base" in error and "configs/reviser_copy.yaml" in error
    assert not (tmp_path / "out").exists()
