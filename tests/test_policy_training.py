"""``ttc train-policy``: a tiny policy really trains, is counted, saved as safetensors and resumes."""

from __future__ import annotations

import json
import logging
import shutil

import pytest
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


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One uninterrupted 20-step run with a checkpoint at step 10; a short warm-up so that 20 steps
    move the loss well beyond batch noise."""
    out = tmp_path_factory.mktemp("trained") / "policy"
    log = _train(out, "--max_steps", "20", "--save_steps", "10", "--warmup_steps", "2")
    return out, log


def _heldout_loss(model, tokenizer, problems) -> float:
    """Mean next-token cross-entropy on the solutions (EOS included) of problems never trained on,
    computed here rather than read from the trainer's log."""
    rows = []
    for p in problems:
        prompt = tokenizer(p.question + "\n")["input_ids"]  # BOS first, as in training
        target = tokenizer(p.solution, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        rows.append((prompt, target))
    width = max(len(a) + len(b) for a, b in rows)
    ids = torch.full((len(rows), width), tokenizer.pad_token_id)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (prompt, target) in enumerate(rows):
        ids[i, : len(prompt) + len(target)] = torch.tensor(prompt + target)
        mask[i, : len(prompt) + len(target)] = 1
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)
    total = sum(
        -logp[i, len(prompt) - 1 + torch.arange(len(target)), torch.tensor(target)].sum().item()
        for i, (prompt, target) in enumerate(rows)
    )
    return total / sum(len(target) for _, target in rows)


def _losses(log) -> list[tuple[int, float, float]]:
    return [(e["step"], e["loss"], e["learning_rate"]) for e in log["log_history"] if "loss" in e]


def test_train_policy_trains_counts_and_saves(trained):
    out, log = trained
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
    )
    init_weights, trained_weights = init.state_dict(), load_file(out / "model.safetensors")
    changed = [name for name, t in trained_weights.items() if not torch.equal(t, init_weights[name])]
    assert len(changed) == len(trained_weights)
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.model_type == "llama"

    # It learned the task, not just moved: on unseen problems (another seed) the solutions' loss falls
    # by far more than noise (untrained ~4.6 nats, ln of the vocabulary; trained ~3.6).
    heldout = generate_problems(64, seed=999)
    before = _heldout_loss(init.eval(), tokenizer, heldout)
    after = _heldout_loss(model.eval(), tokenizer, heldout)
    assert before > 4.3 and after < before - 0.5, (before, after)
    losses = [loss for _, loss, _ in _losses(log)]
    assert len(losses) == 4 and losses[-1] < losses[0] - 0.4, losses


def test_train_policy_resumes_from_last_checkpoint(trained, tmp_path, monkeypatch, caplog):
    """Killed after the step-10 checkpoint, the same command resumes there: only the last 10 steps
    run, and the weights equal the uninterrupted run's, bit for bit (optimizer, schedule, RNG and
    data order restored). A restart from scratch would also end equal, but after 20 steps."""
    whole, whole_log = trained
    out = tmp_path / "policy"
    shutil.copytree(whole, out)
    shutil.rmtree(out / "checkpoint-20")  # what a kill between the two checkpoints leaves behind
    for name in ("model.safetensors", "training_log.json"):
        (out / name).unlink()
    steps_run = []
    original_step = PolicyTrainer.training_step

    def counted_step(self, *args, **kwargs):
        steps_run.append(self.state.global_step)
        return original_step(self, *args, **kwargs)

    monkeypatch.setattr(PolicyTrainer, "training_step", counted_step)
    caplog.set_level(logging.INFO, logger="ttcompute.trainers.policy_trainer")
    log = _train(out, "--max_steps", "20", "--save_steps", "10", "--warmup_steps", "2")

    assert f"Resuming from {out / 'checkpoint-10'}" in caplog.text
    assert steps_run == list(range(10, 20))
    assert log["global_steps"] == 20
    assert json.loads((out / "checkpoint-20" / "trainer_state.json").read_text())["global_step"] == 20

    # The losses of steps 5 and 10 were never computed by this process: they came back with the
    # checkpoint's state.
    assert _losses(log) == _losses(whole_log)
    assert log["num_train_tokens"] == whole_log["num_train_tokens"]
    resumed, reference = load_file(out / "model.safetensors"), load_file(whole / "model.safetensors")
    at_10 = load_file(whole / "checkpoint-10" / "model.safetensors")
    assert resumed.keys() == reference.keys()
    assert all(torch.equal(resumed[k], reference[k]) for k in reference)
    assert not all(torch.equal(at_10[k], reference[k]) for k in reference)  # the last 10 steps mattered
