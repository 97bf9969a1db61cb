"""``ttc train-policy``: a tiny policy really trains, is counted, saved as safetensors and resumes."""

from __future__ import annotations

import json

import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from ttcompute.cli import run_stage
from ttcompute.models.tiny import build_char_tokenizer, build_tiny_llama, tiny_llama_config
from ttcompute.tasks.arithmetic import generate_problems
from ttcompute.trainers.policy_trainer import PolicyTrainer, ShuffledLengthGroupedSampler

TINY = ["--hidden_size", "32", "--num_hidden_layers", "1", "--num_attention_heads", "2", "--use_cpu", "true"]


def _train(out, *extra: str):
    args = [
        "--problem_seed",
        "5",
        "--num_problems",
        "320",
        "--per_device_train_batch_size",
        "16",
        "--logging_steps",
        "5",
    ]
    args += ["--eval_num_problems", "8", "--eval_samples_per_problem", "2"]
    return run_stage(
        "train-policy", [*TINY, *args, "--output_dir", str(out), "--disable_tqdm", "true", *extra]
    )


def test_tokenize_masks_the_prompt():
    tokenizer = build_char_tokenizer()
    out = PolicyTrainer.tokenize({"prompt": "Start at 1. Add 2.\n", "completion": "1 + 2 = 3"}, tokenizer)
    assert out["input_ids"][0] == tokenizer.bos_token_id and out["input_ids"][-1] == tokenizer.eos_token_id
    assert out["labels"][: len("Start at 1. Add 2.\n") + 1] == [-100] * (len("Start at 1. Add 2.\n") + 1)
    assert tokenizer.decode(out["labels"][len("Start at 1. Add 2.\n") + 1 : -1]) == "1 + 2 = 3"


def test_sampler_yields_every_index_once_in_length_grouped_batches():
    lengths = [(i * 37) % 101 for i in range(1000)]
    order = list(ShuffledLengthGroupedSampler(lengths, batch_size=8, seed=0, group_batches=5))
    assert sorted(order) == list(range(1000))
    batches = [order[i : i + 8] for i in range(0, 1000, 8)]
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(batches)
    assert spread < 30  # random batches of 8 would span ~75 of the 0..100 range
    assert order != list(ShuffledLengthGroupedSampler(lengths, batch_size=8, seed=1, group_batches=5))


def test_train_policy_trains_counts_and_saves(tmp_path):
    out = tmp_path / "policy"
    log = _train(out, "--max_steps", "20", "--save_steps", "10")
    assert any("loss" in entry for entry in log["log_history"])
    # 20 steps x 16 = 320 problems: exactly one epoch, so D_pretrain is every example's tokens (BOS/EOS too).
    problems = generate_problems(320, seed=5)
    expected = sum(len(p.question) + 1 + len(p.solution) + 2 for p in problems)
    assert log["num_train_tokens"] == expected
    assert log["pretraining_flops"] == 6 * log["num_parameters"] * expected
    assert (out / "model.safetensors").is_file() and not list(out.glob("*.bin"))
    on_disk = json.loads((out / "training_log.json").read_text())
    assert on_disk["heldout"]["num_problems"] == 8
    assert set(on_disk["heldout"]["pass_at_1_by_num_ops"]) <= {str(k) for k in range(1, 9)}

    # Parameters changed from their initialisation (same seed -> same init).
    tokenizer = AutoTokenizer.from_pretrained(out)
    init = build_tiny_llama(
        tiny_llama_config(len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2), seed=0
    ).state_dict()
    trained = load_file(out / "model.safetensors")
    changed = [name for name, tensor in trained.items() if not torch.equal(tensor, init[name])]
    assert len(changed) == len(trained)
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.model_type == "llama"


def test_train_policy_resumes_from_last_checkpoint(tmp_path):
    out = tmp_path / "policy"
    _train(out, "--max_steps", "10", "--save_steps", "10", "--eval_num_problems", "0")
    assert (out / "checkpoint-10").is_dir()
    log = _train(out, "--max_steps", "20", "--save_steps", "10", "--eval_num_problems", "0")
    assert log["global_steps"] == 20
    # The loss logged at step 5 came from the first run, restored with the checkpoint's state.
    assert any(entry.get("step") == 5 and "loss" in entry for entry in log["log_history"])
