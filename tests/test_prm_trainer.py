"""Tests for ``ttc train-prm`` (ttcompute.trainers.prm_trainer / prm_config).

Everything trains the tiny random Llama of ``random_policy_dir`` (one layer, hidden size 32) on a few
dozen arithmetic-like rows, on one CPU thread; numbers are checked against values computed here
independently (character tokenizer offsets, BCE written out, hand-made metrics).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from conftest import (
    LORA_OPTIONS,
    FakeHfApi,
    check_merged_lora_checkpoint,
    check_resume_and_overwrite,
    files_under,
    free_port,
    trainer_config,
    write_rows,
)
from transformers import AutoModelForTokenClassification, AutoTokenizer, EvalPrediction

from ttcompute.core.checkpoint_identity import checkpoint_identity
from ttcompute.core.errors import InputError
from ttcompute.core.recorded_paths import resolve_options
from ttcompute.trainers.prm_config import PRMConfig
from ttcompute.trainers.prm_trainer import PRMTrainer, StepLabelCollator, train_prm
from ttcompute.trainers.stepwise_data import IGNORE, step_metrics
from ttcompute.trainers.training_data import split_by_problem

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
SEP = "\n\n"


# --- data helpers ------------------------------------------------------------------------------


def _rows(n: int, bad_every: int = 2) -> dict[str, list]:
    """``n`` solutions of ``a+b*c``; every ``bad_every``-th one writes "bad" in its second step.

    Labels follow Monte Carlo semantics: 1.0 up to the mistake, 0.0 from it on. So the target of a
    step is "no 'bad' so far", which a one-layer attention model can learn (the letters b, a, d
    appear nowhere else).
    """
    prompts, completions, labels, problem_ids = [], [], [], []
    for i in range(n):
        a, b, c = i % 9 + 1, (i // 3) % 7 + 2, i % 5 + 1
        steps = [f"{b}*{c}={b * c}", f"{a}+{b * c}={a + b * c}", f"#### {a + b * c}"]
        step_labels = [1.0, 1.0, 1.0]
        if i % bad_every == 1:
            steps[1] = f"{a}+{b * c}=bad"
            step_labels = [1.0, 0.0, 0.0]
        prompts.append(f"{a}+{b}*{c}\n")
        completions.append(steps)
        labels.append(step_labels)
        problem_ids.append(f"p{i // 2}")
    return {"prompt": prompts, "completions": completions, "labels": labels, "problem_id": problem_ids}


def _char_offsets(prompt: str, steps: list[str], sep: str) -> list[int]:
    """Label positions for the character tokenizer, from string lengths alone: <s> + one token per char."""
    positions, length = [], 1 + len(prompt)
    for step in steps:
        length += len(step + sep)
        positions.append(length - 1)
    return positions


def _bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy against soft targets, written out (elementwise)."""
    p = torch.sigmoid(logits.double())
    t = targets.double()
    return -(t * torch.log(p) + (1 - t) * torch.log(1 - p))


def _step_logits(model, tokenizer, prompt: str, steps: list[str]) -> list[float]:
    """Logits at the label positions, encoded by hand as the model card says."""
    ids = tokenizer(prompt).input_ids
    positions = []
    for step in steps:
        ids += tokenizer(step + SEP, add_special_tokens=False).input_ids
        positions.append(len(ids) - 1)
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0, :, 0]
    return logits[positions].tolist()


# --- 1. tokenize ---------------------------------------------------------------------------------


def test_tokenize_puts_each_label_on_the_last_separator_token(char_tokenizer):
    prompt, steps = "2+3*4\n", ["3*4=12", "2+12=14", "#### 14"]
    row = {"prompt": prompt, "completions": steps, "labels": [True, 0.25, False]}
    out = PRMTrainer.tokenize(row, char_tokenizer, SEP, max_length=1024)

    # Ids: the prompt with special tokens, then each `step + sep` piece on its own.
    expected_ids = list(char_tokenizer(prompt).input_ids)
    expected_positions = []
    for step in steps:
        expected_ids += char_tokenizer(step + SEP, add_special_tokens=False).input_ids
        expected_positions.append(len(expected_ids) - 1)
    assert out["input_ids"] == expected_ids
    assert expected_positions == _char_offsets(prompt, steps, SEP)  # independent of the tokenizer
    assert char_tokenizer.convert_ids_to_tokens([expected_ids[p] for p in expected_positions]) == ["\n"] * 3
    assert out["truncated"] is False

    labelled = {i: v for i, v in enumerate(out["labels"]) if v != IGNORE}
    assert labelled == {expected_positions[0]: 1.0, expected_positions[1]: 0.25, expected_positions[2]: 0.0}
    assert all(type(v) is float for v in out["labels"])  # bools became floats
    assert len(out["labels"]) == len(out["input_ids"])
    assert sum(v == IGNORE for v in out["labels"]) == len(expected_ids) - 3


def test_tokenize_last_step_only_keeps_only_the_last_label(char_tokenizer):
    prompt, steps = "2+3*4\n", ["3*4=12", "2+12=14", "#### 14"]
    row = {"prompt": prompt, "completions": steps, "labels": [1.0, 0.75, 0.5]}
    out = PRMTrainer.tokenize(row, char_tokenizer, SEP, max_length=1024, train_on_last_step_only=True)
    last = _char_offsets(prompt, steps, SEP)[-1]
    assert {i: v for i, v in enumerate(out["labels"]) if v != IGNORE} == {last: 0.5}
    assert len(out["input_ids"]) == last + 1


def test_tokenize_truncates_from_the_right_and_drops_labels_beyond(char_tokenizer):
    prompt, steps = "2+3*4\n", ["3*4=12", "2+12=14", "#### 14"]
    row = {"prompt": prompt, "completions": steps, "labels": [0.9, 0.6, 0.3]}
    positions = _char_offsets(prompt, steps, SEP)
    full = PRMTrainer.tokenize(row, char_tokenizer, SEP, max_length=1024)

    # Cut inside the second step: only the first label survives.
    cut = positions[1] - 2
    out = PRMTrainer.tokenize(row, char_tokenizer, SEP, max_length=cut)
    assert out["truncated"] is True
    assert out["input_ids"] == full["input_ids"][:cut]
    assert len(out["labels"]) == cut
    assert {i: v for i, v in enumerate(out["labels"]) if v != IGNORE} == {positions[0]: 0.9}

    # Exactly the full length is not a truncation.
    exact = PRMTrainer.tokenize(row, char_tokenizer, SEP, max_length=positions[-1] + 1)
    assert exact["truncated"] is False
    assert exact["labels"] == full["labels"]


def test_prepare_counts_truncated_rows_and_drops_rows_left_without_labels(tmp_path, random_policy_dir):
    tokenizer = AutoTokenizer.from_pretrained(random_policy_dir)
    model = AutoModelForTokenClassification.from_pretrained(random_policy_dir, num_labels=1)
    rows = {
        "prompt": ["1+1\n", "a much longer question prompt\n", "2+2\n"],
        "completions": [["1+1=2"], ["x=1", "y=2"], ["2+2=4", "#### 4", "done"]],
        "labels": [[1.0], [1.0, 0.0], [1.0, 0.5, 0.25]],
    }
    # max_length 12: row 0 (<s>1+1\n1+1=2\n\n, 12 tokens) fits; row 1 loses all labels; row 2 keeps one.
    config = trainer_config(
        PRMConfig, tmp_path / "out", random_policy_dir, tmp_path / "unused", max_length=12
    )
    trainer = PRMTrainer(
        model=model,
        args=config,
        train_dataset=datasets.Dataset.from_dict(rows),
        processing_class=tokenizer,
    )
    assert trainer.num_truncated == 2
    kept = trainer.train_dataset
    assert len(kept) == 2
    assert [len(ids) for ids in kept["input_ids"]] == [12, 12]
    assert [[v for v in labels if v != IGNORE] for labels in kept["labels"]] == [[1.0], [1.0]]
    assert "truncated" not in kept.column_names


# --- 1b. label types: bool, int, float, numpy, through the real `Dataset.map` path ---------------


def _as_label_type(rows: dict[str, list], kind: str, tmp_path: Path) -> datasets.Dataset:
    """``rows`` (0/1 labels) as a dataset whose ``labels`` column has the given storage."""
    if kind == "float":
        return datasets.Dataset.from_dict(rows)
    cast = {"bool": bool, "int": int, "numpy": bool, "parquet_bool": bool, "jsonl_bool": bool}[kind]
    typed = {**rows, "labels": [[cast(v) for v in labels] for labels in rows["labels"]]}
    if kind == "numpy":  # tokenize and validation then see numpy arrays and numpy scalars
        return datasets.Dataset.from_dict(typed).with_format("numpy")
    if kind in ("parquet_bool", "jsonl_bool"):  # the path TRL-format files really take
        from ttcompute.trainers.training_data import load_training_dataset

        suffix = ".parquet" if kind == "parquet_bool" else ".jsonl"
        return load_training_dataset(str(write_rows(typed, tmp_path / f"steps{suffix}")), "train")
    return datasets.Dataset.from_dict(typed)


LABEL_KINDS = ["bool", "int", "float", "numpy", "parquet_bool", "jsonl_bool"]


@pytest.mark.parametrize("kind", LABEL_KINDS)
def test_labels_of_every_type_land_on_their_steps_after_dataset_map(kind, tmp_path, random_policy_dir):
    """The bug this guards: ``Dataset.map`` kept a bool ``labels`` type, so [-100, 1.0, 0.0] came back
    [True, True, False] and every token became a positive target."""
    tokenizer = AutoTokenizer.from_pretrained(random_policy_dir)
    model = AutoModelForTokenClassification.from_pretrained(random_policy_dir, num_labels=1)
    rows, held = _rows(6), _rows(4, bad_every=2)
    train_data = _as_label_type(rows, kind, tmp_path / "train")
    eval_data = _as_label_type(held, kind, tmp_path / "eval")
    assert {"bool": "bool", "int": "int64"}.get(kind, "") in str(train_data.features["labels"])

    config = trainer_config(PRMConfig, tmp_path / "out", random_policy_dir, tmp_path / "unused")
    trainer = PRMTrainer(
        model=model, args=config, train_dataset=train_data, eval_dataset=eval_data, processing_class=tokenizer
    )
    assert str(trainer.train_dataset.features["labels"]) == "List(Value('float32'))"
    for tokenized, source in ((trainer.train_dataset, rows), (trainer.eval_dataset, held)):
        for labels, prompt, steps, want in zip(
            tokenized["labels"], source["prompt"], source["completions"], source["labels"]
        ):
            positions = [len(ids) - 1 for ids in _step_prefix_ids(tokenizer, prompt, steps)]
            assert {i: v for i, v in enumerate(labels) if v != IGNORE} == dict(zip(positions, want))

    # The trainer's own metrics count the real steps only: 4 held-out solutions x 3 steps.
    metrics = trainer.evaluate()
    assert metrics["eval_num_steps"] == 12
    # ... and its accuracy is the one at those positions, recomputed here.
    logits = []
    with torch.no_grad():
        for prompt, steps in zip(held["prompt"], held["completions"]):
            logits += _step_logits(trainer.model.eval(), tokenizer, prompt, steps)
    targets = [v for labels in held["labels"] for v in labels]
    accuracy = np.mean([(torch.sigmoid(torch.tensor(x)) > 0.5) == (t > 0.5) for x, t in zip(logits, targets)])
    assert metrics["eval_step_accuracy"] == pytest.approx(accuracy)


def _step_prefix_ids(tokenizer, prompt: str, steps: list[str]) -> list[list[int]]:
    """The ids up to the end of each step's separator, encoded as the model card says."""
    ids, prefixes = tokenizer(prompt).input_ids, []
    for step in steps:
        ids = ids + tokenizer(step + SEP, add_special_tokens=False).input_ids
        prefixes.append(ids)
    return prefixes


def test_a_label_type_lost_on_the_way_stops_training(tmp_path, random_policy_dir, monkeypatch):
    """With both fixes undone (no float cast, features inferred by `map`), the old dilution happens
    and the positional check refuses it instead of training on it."""
    import ttcompute.trainers.prm_trainer as prm_trainer

    # Patched where PRMTrainer looks them up (with_float_labels lives in trainers/stepwise_data.py).
    monkeypatch.setattr(prm_trainer, "with_float_labels", lambda dataset: dataset)
    monkeypatch.setattr(prm_trainer, "TOKENIZED_FEATURES", None)
    tokenizer = AutoTokenizer.from_pretrained(random_policy_dir)
    model = AutoModelForTokenClassification.from_pretrained(random_policy_dir, num_labels=1)
    bool_rows = _as_label_type(_rows(4), "bool", tmp_path)
    config = trainer_config(PRMConfig, tmp_path / "out", random_policy_dir, tmp_path / "unused")
    with pytest.raises(RuntimeError, match="labelled tokens for 3 labelled steps"):
        PRMTrainer(model=model, args=config, train_dataset=bool_rows, processing_class=tokenizer)


@pytest.mark.parametrize("prm_kind", ["token_classification", "likelihood"])
def test_bool_and_float_labels_train_the_same_prm(prm_kind, tmp_path, random_policy_dir):
    """train-prm on the same rows stored as bools and as floats: the same losses, metrics and weights."""
    rows = _rows(16)
    as_bool = {**rows, "labels": [[bool(v) for v in labels] for labels in rows["labels"]]}
    logs, weights = [], []
    for name, data in (("bool", as_bool), ("float", rows)):
        path = write_rows(data, tmp_path / f"{name}.parquet")
        out = tmp_path / f"prm_{name}"
        config = trainer_config(
            PRMConfig, out, random_policy_dir, path, max_steps=3, eval_fraction=0.25, prm_kind=prm_kind
        )
        logs.append(train_prm(config))
        if prm_kind == "token_classification":
            weights.append(AutoModelForTokenClassification.from_pretrained(out).state_dict())
    if prm_kind == "likelihood":
        assert (logs[0]["weight"], logs[0]["bias"]) == (logs[1]["weight"], logs[1]["bias"])
    else:
        losses = [[e.get("loss") for e in log["log_history"]] for log in logs]
        assert losses[0] == losses[1] and None not in losses[0][:3]
        assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    evals = [
        {k: v for k, v in log["eval"].items() if "runtime" not in k and "per_second" not in k} for log in logs
    ]
    assert evals[0] == evals[1]
    assert evals[0]["eval_num_steps"] == 12  # 4 held-out solutions x 3 steps


# --- 2. collator ---------------------------------------------------------------------------------


def test_collator_pads_ids_mask_and_labels():
    collate = StepLabelCollator(pad_token_id=7)
    batch = collate(
        [
            {"input_ids": [1, 2, 3], "labels": [IGNORE, IGNORE, 0.25]},
            {"input_ids": [1, 4, 5, 6, 8], "labels": [IGNORE, 1.0, IGNORE, IGNORE, 0.0]},
        ]
    )
    assert batch["input_ids"].tolist() == [[1, 2, 3, 7, 7], [1, 4, 5, 6, 8]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert batch["labels"].tolist() == [
        [IGNORE, IGNORE, 0.25, IGNORE, IGNORE],
        [IGNORE, 1.0, IGNORE, IGNORE, 0.0],
    ]
    assert batch["input_ids"].dtype == torch.long
    assert batch["attention_mask"].dtype == torch.long
    assert batch["labels"].dtype == torch.float32


# --- 3. compute_loss -----------------------------------------------------------------------------


def test_compute_loss_is_soft_bce_over_labelled_positions(tmp_path, random_policy_dir):
    tokenizer = AutoTokenizer.from_pretrained(random_policy_dir)
    model = AutoModelForTokenClassification.from_pretrained(random_policy_dir, num_labels=1)
    torch.manual_seed(1)
    with torch.no_grad():  # a non-trivial head so logits are far from 0
        model.score.weight.normal_(0, 1.0)
    model.eval()
    rows = _rows(3)
    rows["labels"] = [[0.9, 0.2, 0.7], [1.0, 0.0, 0.0], [0.5, 0.3, 1.0]]
    trainer = PRMTrainer(
        model=model,
        args=trainer_config(PRMConfig, tmp_path / "out", random_policy_dir, tmp_path / "unused"),
        train_dataset=datasets.Dataset.from_dict(rows),
        processing_class=tokenizer,
    )
    features = [trainer.train_dataset[i] for i in range(3)]
    batch = StepLabelCollator(tokenizer.pad_token_id)(features)
    assert batch["attention_mask"].min() == 0  # rows of different lengths: padding is exercised

    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[..., 0]
    mask = batch["labels"] != IGNORE
    assert int(mask.sum()) == 9
    per_step = _bce(logits[mask], batch["labels"][mask])
    assert per_step.std() > 0.01

    with torch.no_grad():
        loss = trainer.compute_loss(model, dict(batch))
        loss_n = trainer.compute_loss(model, dict(batch), num_items_in_batch=torch.tensor(20))
    assert loss.item() == pytest.approx(per_step.mean().item(), rel=1e-5)
    assert loss_n.item() == pytest.approx(per_step.sum().item() / 20, rel=1e-5)
    # The base class's count (labels != -100) applied to our float labels.
    assert int(trainer._get_num_items_in_batch([batch, batch], "cpu")) == 18


# --- 4. metrics ----------------------------------------------------------------------------------


def test_step_metrics_on_hand_made_predictions():
    logits = np.array([[2.0, -1.0, 0.0, 5.0], [-3.0, 0.5, 9.0, 9.0]]).reshape(2, 4, 1)
    labels = np.array([[1.0, IGNORE, 0.25, IGNORE], [0.0, 0.25, IGNORE, IGNORE]])
    metrics = step_metrics(EvalPrediction(predictions=logits, label_ids=labels))

    sig = [1 / (1 + math.exp(-x)) for x in (2.0, 0.0, -3.0, 0.5)]
    targets = [1.0, 0.25, 0.0, 0.25]
    # p > 0.5: T, F (0.5 exactly), F, T; target > 0.5: T, F, F, F -> 3 of 4 agree; 2 of 4 positive.
    assert metrics["step_accuracy"] == pytest.approx(0.75)
    assert metrics["step_predicted_positive"] == pytest.approx(0.5)
    assert metrics["step_mse"] == pytest.approx(sum((p - t) ** 2 for p, t in zip(sig, targets)) / 4)
    assert metrics["num_steps"] == 4


# --- 5. real training ----------------------------------------------------------------------------


def test_train_prm_learns_the_step_labels_and_writes_a_usable_checkpoint(tmp_path, random_policy_dir):
    from ttcompute.models.prm_formats import load_prm

    rows = _rows(24)
    data = write_rows(rows, tmp_path / "data" / "steps.jsonl")
    out = tmp_path / "prm"
    # 24 rows / batch 4 = 6 steps per epoch; 48 steps = exactly 8 epochs.
    config = trainer_config(
        PRMConfig, out, random_policy_dir, data, max_steps=48, learning_rate=3e-3, warmup_steps=0
    )
    log = train_prm(config)

    losses = [(e["step"], e["loss"]) for e in log["log_history"] if "loss" in e]
    assert [s for s, _ in losses] == list(range(1, 49))
    first, last = losses[0][1], sum(v for _, v in losses[-6:]) / 6  # last epoch's mean
    assert last < 0.5 * first, losses

    saved = json.loads((out / "training_log.json").read_text())
    assert saved["global_steps"] == 48
    assert saved["train_loss"] == pytest.approx(sum(v for _, v in losses) / 48, rel=1e-2)
    assert saved["train_samples_per_second"] > 0
    assert saved["num_train_examples"] == 24
    assert saved["num_truncated_examples"] == 0
    tokenizer = AutoTokenizer.from_pretrained(random_policy_dir)
    tokens_per_epoch = sum(
        len(_step_ids(tokenizer, p, s)) for p, s in zip(rows["prompt"], rows["completions"])
    )
    assert saved["num_train_tokens"] == 8 * tokens_per_epoch
    fresh = AutoModelForTokenClassification.from_pretrained(random_policy_dir, num_labels=1)
    num_params = sum(p.numel() for p in fresh.parameters())
    assert saved["num_parameters"] == num_params
    assert saved["training_flops"] == 6 * num_params * 8 * tokens_per_epoch

    config_json = json.loads((out / "config.json").read_text())
    assert config_json["architectures"] == ["LlamaForTokenClassification"]
    meta = config_json["ttc_prm"]
    assert meta["step_separator"] == SEP
    assert meta["prompt_template"] == "{question}\n"
    assert meta["label_position"] == "last token of each step separator"
    # Base and data relative to the checkpoint (core/recorded_paths.py), the base also by content.
    assert resolve_options(meta, out / "config.json")["base_model"] == str(random_policy_dir.resolve())
    assert meta["base_model"] == os.path.relpath(random_policy_dir.resolve(), out.resolve())
    assert (meta["dataset"], meta["base_model_identity"]) == (
        "../data/steps.jsonl",
        checkpoint_identity(random_policy_dir),
    )

    readme = (out / "README.md").read_text()
    assert repr(SEP) in readme
    assert "last token of each step separator" in readme
    assert f"`{meta['base_model']}` (a local checkpoint, relative to this folder; sha256:" in readme
    assert "`../data/steps.jsonl` (local, relative to this folder)" in readme
    assert "base_model:" not in readme.split("---")[1]  # a local path is no Hub metadata
    assert "training_args.bin" not in {p.name for p in out.iterdir()}

    # Held-out questions (not in the data): a "bad" step scores lower than the correct one.
    prm = load_prm(str(out), device="cpu")
    good = prm.score(["9+8*7"], [["8*7=56", "9+56=65", "#### 65"]])[0]
    bad = prm.score(["9+8*7"], [["8*7=56", "9+56=bad", "#### 65"]])[0]
    assert good[0] == pytest.approx(bad[0], abs=1e-5)  # same prefix, same score
    assert good[1] - bad[1] > 0.4, (good, bad)
    assert good[2] - bad[2] > 0.4, (good, bad)
    # The scorer reads the same logits as a plain transformers model encoded by hand.
    plain = AutoModelForTokenClassification.from_pretrained(out).eval()
    assert plain.config.num_labels == 1
    by_hand = [
        1 / (1 + math.exp(-x)) for x in _step_logits(plain, tokenizer, "9+8*7\n", ["8*7=56", "9+56=bad"])
    ]
    assert bad[:2] == pytest.approx(by_hand, abs=1e-5)


def _step_ids(tokenizer, prompt: str, steps: list[str]) -> list[int]:
    ids = list(tokenizer(prompt).input_ids)
    for step in steps:
        ids += tokenizer(step + SEP, add_special_tokens=False).input_ids
    return ids


# --- 6. evaluation -------------------------------------------------------------------------------


def test_split_by_problem_holds_out_whole_problems():
    rows = {
        "prompt": [f"q{i // 3}\n" for i in range(24)],
        "completions": [["s"]] * 24,
        "labels": [[1.0]] * 24,
        "problem_id": [f"p{i // 3}" for i in range(24)],  # 8 problems x 3 solutions
    }
    dataset = datasets.Dataset.from_dict(rows)
    train, held = split_by_problem(dataset, 0.25, seed=0)
    train_ids, held_ids = set(train["problem_id"]), set(held["problem_id"])
    assert len(held_ids) == 2 and len(held) == 6 and len(train) == 18
    assert not train_ids & held_ids
    assert train_ids | held_ids == set(rows["problem_id"])
    assert split_by_problem(dataset, 0.25, seed=0)[1]["problem_id"] == held["problem_id"]
    # At least one problem is held out even when the fraction rounds to zero.
    assert len(set(split_by_problem(dataset, 0.01, seed=0)[1]["problem_id"])) == 1
    # Without problem_id, the prompt is the problem.
    no_ids = dataset.remove_columns("problem_id")
    train, held = split_by_problem(no_ids, 0.5, seed=3)
    assert len(set(held["prompt"])) == 4
    assert not set(train["prompt"]) & set(held["prompt"])


def test_train_prm_evaluates_held_out_problems(tmp_path, random_policy_dir):
    rows = _rows(24)  # 12 problems of 2 solutions
    data = write_rows(rows, tmp_path / "steps.parquet")
    out = tmp_path / "prm"
    config = trainer_config(
        PRMConfig, out, random_policy_dir, data, max_steps=4, eval_fraction=0.25, learning_rate=1e-3
    )
    log = train_prm(config)

    # 3 of 12 problems (6 rows) held out, whole.
    assert log["num_train_examples"] == 18
    evals = log["eval"]
    for key in ("eval_loss", "eval_step_accuracy", "eval_step_mse", "eval_step_predicted_positive"):
        assert key in evals
    assert evals["eval_num_steps"] == 18  # 6 rows x 3 steps
    assert any("eval_loss" in e for e in log["log_history"][:-1])  # also evaluated during training

    # Recompute the final eval by hand on the saved model and the held-out rows.
    _, held = split_by_problem(datasets.Dataset.from_dict(rows), 0.25, seed=config.seed)
    model = AutoModelForTokenClassification.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    logits, targets = [], []
    for prompt, steps, labels in zip(held["prompt"], held["completions"], held["labels"]):
        logits += _step_logits(model, tokenizer, prompt, steps)
        targets += labels
    logits_t, targets_t = torch.tensor(logits), torch.tensor(targets)
    assert evals["eval_loss"] == pytest.approx(_bce(logits_t, targets_t).mean().item(), abs=1e-4)
    probs = torch.sigmoid(logits_t)
    accuracy = ((probs > 0.5) == (targets_t > 0.5)).double().mean().item()
    assert evals["eval_step_accuracy"] == pytest.approx(accuracy)


def test_train_prm_uses_eval_dataset_name(tmp_path, random_policy_dir):
    data = write_rows(_rows(8), tmp_path / "train.jsonl")
    eval_data = write_rows(_rows(4, bad_every=4), tmp_path / "eval.jsonl")
    config = trainer_config(
        PRMConfig, tmp_path / "prm", random_policy_dir, data, eval_dataset_name=str(eval_data)
    )
    log = train_prm(config)
    assert log["num_train_examples"] == 8  # nothing split off the training data
    assert log["eval"]["eval_num_steps"] == 12
    assert "eval_step_accuracy" in log["eval"]


# --- 7. LoRA -------------------------------------------------------------------------------------


def test_lora_training_saves_a_merged_plain_checkpoint(tmp_path, random_policy_dir):
    data = write_rows(_rows(16), tmp_path / "steps.jsonl")
    out = tmp_path / "prm"
    config = trainer_config(PRMConfig, out, random_policy_dir, data, max_steps=12, **LORA_OPTIONS)
    log = train_prm(config)
    assert log["global_steps"] == 12
    assert json.loads((out / "config.json").read_text())["ttc_prm"]["step_separator"] == SEP

    tokenizer = AutoTokenizer.from_pretrained(out)
    ids = torch.tensor([_step_ids(tokenizer, "9+8*7\n", ["8*7=56", "9+56=bad"])])
    _, adapter, merged_weights = check_merged_lora_checkpoint(
        out, random_policy_dir, AutoModelForTokenClassification, ids, num_labels=1
    )
    # The head is trained in full and saved with the adapter: the merged one is that head.
    head = [v for k, v in adapter.items() if k.endswith("score.weight")]
    assert len(head) == 1
    assert torch.equal(merged_weights["score.weight"], head[0])


# --- 8. resume -----------------------------------------------------------------------------------


def test_train_prm_resumes_from_the_last_checkpoint(tmp_path, random_policy_dir):
    data = write_rows(_rows(16), tmp_path / "steps.jsonl")
    first, resumed, _ = check_resume_and_overwrite(
        train_prm, PRMConfig, tmp_path / "prm", random_policy_dir, data
    )
    losses = {e["step"]: e["loss"] for e in resumed["log_history"] if "loss" in e}
    assert {s: losses[s] for s in range(1, 5)} == {
        e["step"]: e["loss"] for e in first["log_history"] if "loss" in e
    }


# --- 9. bad input --------------------------------------------------------------------------------


def _separator_in_step(rows):
    rows["completions"][1] = ["3*4=12\n\n2+12=14", "#### 14"]
    rows["labels"][1] = [1.0, 1.0]


def _no_steps(rows):
    rows["completions"][1], rows["labels"][1] = [], []


def _empty_step(rows):
    rows["completions"][2][1] = ""


def _wrong_label_count(rows):
    rows["labels"][0] = [1.0, 1.0]


def _nan_label(rows):
    rows["labels"][1][2] = float("nan")


def _label_above_one(rows):
    rows["labels"][2][0] = 1.5


def _label_below_zero(rows):
    rows["labels"][1][0] = -0.5


def _no_labels_column(rows):
    del rows["labels"]


def _prompt_not_from_template(rows):
    rows["question"] = [prompt.strip() for prompt in rows["prompt"]]
    rows["prompt"] = [f"Q: {prompt}" for prompt in rows["prompt"]]


# mutation of 3 good rows -> fragments the error message must contain
BAD_INPUTS = {
    "separator inside a step": (_separator_in_step, ["row 1", "field completions[0]", "separator"]),
    "no steps": (_no_steps, ["row 1", "field completions", "no steps"]),
    "empty step": (_empty_step, ["row 2", "field completions[1]", "empty step"]),
    "labels of the wrong length": (_wrong_label_count, ["row 0", "field labels", "2 labels for 3 steps"]),
    "NaN label": (_nan_label, ["row 1", "field labels[2]", "nan"]),
    "label above 1": (_label_above_one, ["row 2", "field labels[0]", "1.5"]),
    "missing labels column": (_no_labels_column, ["missing column", "labels"]),
    "prompt not from the template": (_prompt_not_from_template, ["row 0", "prompt", "prompt_template"]),
}


def _bad(mutate) -> dict[str, list]:
    rows = _rows(3)
    mutate(rows)
    return rows


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_rows_are_rejected_before_anything_is_written(case, tmp_path, random_policy_dir):
    mutate, fragments = BAD_INPUTS[case]
    data = write_rows(_bad(mutate), tmp_path / "bad.parquet")
    out = tmp_path / "prm"
    with pytest.raises(InputError) as err:
        train_prm(trainer_config(PRMConfig, out, random_policy_dir, data))
    message = str(err.value)
    assert str(data) in message
    for fragment in fragments:
        assert fragment in message, message
    assert files_under(out) == []


def test_bad_eval_rows_are_rejected_before_anything_is_written(tmp_path, random_policy_dir):
    data = write_rows(_rows(4), tmp_path / "train.jsonl")
    eval_data = write_rows(_bad(_label_below_zero), tmp_path / "eval.parquet")
    out = tmp_path / "prm"
    with pytest.raises(InputError, match=r"eval\.parquet: row 1, field labels\[0\]"):
        train_prm(trainer_config(PRMConfig, out, random_policy_dir, data, eval_dataset_name=str(eval_data)))
    assert files_under(out) == []


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"step_separator": ""}, "step_separator must not be empty"),
        ({"prompt_template": "Q: {q}"}, "prompt_template must contain {question}"),
        ({"eval_fraction": 1.0}, "eval_fraction must be in [0, 1), got 1.0"),
        ({"eval_fraction": -0.1}, "eval_fraction must be in [0, 1), got -0.1"),
        ({"max_length": 1}, "max_length must be >= 2"),
    ],
)
def test_config_rejects_bad_values(tmp_path, bad, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        PRMConfig(output_dir=str(tmp_path), use_cpu=True, **bad)


# --- 10. push to the Hub -------------------------------------------------------------------------


def test_push_to_hub_uploads_the_final_folder_once_without_the_token(
    tmp_path, random_policy_dir, offline_hub
):
    connects = offline_hub.connects
    data = write_rows(_rows(8), tmp_path / "steps.jsonl")
    out = tmp_path / "prm"
    config = trainer_config(
        PRMConfig,
        out,
        random_policy_dir,
        data,
        push_to_hub=True,
        hub_model_id="me/tiny-prm",
        hub_token="hf_SECRET",
        save_strategy="steps",
        save_steps=1,
    )
    assert connects == []  # building the config contacts nobody
    train_prm(config)

    assert len(FakeHfApi.instances) == 1
    api = FakeHfApi.instances[0]
    assert api.token == "hf_SECRET"
    assert api.created == [
        {"repo_id": "me/tiny-prm", "repo_type": "model", "private": None, "exist_ok": True}
    ]
    (upload,) = api.uploads
    assert upload["repo_id"] == "me/tiny-prm" and upload["repo_type"] == "model"
    assert Path(upload["folder_path"]) == out
    assert (out / "checkpoint-2").is_dir()  # there were checkpoints to leave out
    assert connects == []
    # The card's code loads the model by the id it was pushed to.
    assert 'from_pretrained("me/tiny-prm")' in (out / "README.md").read_text()

    # What the Hub receives, after the push's ignore_patterns: the final model, no checkpoint.
    uploaded = upload["uploaded_files"]
    final = {"README.md", "config.json", "model.safetensors", "training_log.json", "ttc_config.yaml"}
    assert final <= set(uploaded)
    assert [name for name in uploaded if name.startswith(("checkpoint-", "_", "."))] == []
    assert [name for name in uploaded if b"hf_SECRET" in (out / name).read_bytes()] == []
    # push_prm promises the token "is never written to a file": not even in a local checkpoint.
    leaks = [str(p.relative_to(out)) for p in files_under(out) if b"hf_SECRET" in p.read_bytes()]
    assert leaks == [], f"hub token written to {leaks}"


# --- 11. command line ----------------------------------------------------------------------------


def test_cli_train_prm(tmp_path, random_policy_dir, capsys):
    from ttcompute.cli import main

    data = write_rows(_rows(8), tmp_path / "steps.jsonl")
    out = tmp_path / "prm"
    argv = ["train-prm", "--model_name_or_path", str(random_policy_dir), "--dataset_name", str(data)]
    argv += ["--output_dir", str(out), "--max_steps", "2", "--use_cpu", "true", "--report_to", "none"]
    argv += ["--eval_fraction", "0", "--save_strategy", "no", "--per_device_train_batch_size", "4"]
    assert main(argv) == 0
    log = json.loads((out / "training_log.json").read_text())
    assert log["global_steps"] == 2
    assert log["num_train_examples"] == 8
    assert (out / "ttc_config.yaml").is_file()

    missing = tmp_path / "nope" / "steps.jsonl"
    bad_out = tmp_path / "bad"
    argv = ["train-prm", "--model_name_or_path", str(random_policy_dir), "--dataset_name", str(missing)]
    argv += ["--output_dir", str(bad_out), "--use_cpu", "true"]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("ttc: error: ") and str(missing) in err[0]
    assert not bad_out.exists()


# --- 12. ZeRO-2 on two CPU processes -------------------------------------------------------------


@pytest.fixture(scope="module")
def zero2_run(tmp_path_factory, random_policy_dir):
    """One ``deepspeed --num_gpus 2`` launch of train-prm with ZeRO-2 on CPU; 16 rows of equal length."""
    pytest.importorskip("deepspeed", reason="deepspeed is not installed")
    launcher = Path(sys.executable).parent / "deepspeed"
    if not launcher.is_file():
        pytest.skip(f"no deepspeed launcher at {launcher}")
    root = tmp_path_factory.mktemp("zero2")
    rows = _rows(16, bad_every=2)
    # Equal token counts per row make the tokens seen a count of rows seen.
    rows["prompt"] = ["1+2*3\n"] * 16
    rows["completions"] = [
        ["2*3=6", "1+6=7", "#### 7"] if i % 2 else ["2*3=6", "1+6=x", "#### 7"] for i in range(16)
    ]
    data = write_rows(rows, root / "steps.jsonl")
    out = root / "prm"
    command = [str(launcher), "--num_gpus", "2", "--master_port", str(free_port())]
    command += ["--module", "ttcompute.cli", "train-prm", "--deepspeed", "configs/deepspeed/zero2.json"]
    command += ["--model_name_or_path", str(random_policy_dir), "--dataset_name", str(data)]
    command += ["--output_dir", str(out), "--max_steps", "2", "--per_device_train_batch_size", "2"]
    command += ["--report_to", "none", "--eval_fraction", "0", "--logging_steps", "1"]
    # One checkpoint at the end: its layout tells which engine trained.
    command += ["--save_strategy", "steps", "--save_steps", "2"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCELERATE_", "LOCAL_RANK", "RANK"))}
    env.update(
        OMP_NUM_THREADS="1",
        HF_HUB_OFFLINE="1",
        TORCH_EXTENSIONS_DIR=str(REPO / ".cache" / "torch_extensions"),
        TTC_LOG_LEVEL="INFO",
    )
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    tokenizer = AutoTokenizer.from_pretrained(random_policy_dir)
    row_tokens = len(_step_ids(tokenizer, rows["prompt"][0], rows["completions"][0]))
    yield result, out, row_tokens
    shutil.rmtree(root, ignore_errors=True)


def test_zero2_two_process_launch_trains_with_world_size_2(zero2_run):
    result, out, row_tokens = zero2_run
    assert result.returncode == 0, result.stderr[-4000:]
    log = json.loads((out / "training_log.json").read_text())
    assert log["global_steps"] == 2
    assert log["num_train_examples"] == 16
    # 2 processes x batch 2 x 2 steps = 8 rows seen (one process would have seen 4) ...
    assert log["num_train_tokens"] == 8 * row_tokens
    # ... and an epoch of 16 rows takes 4 steps of 4 rows.
    assert [e["epoch"] for e in log["log_history"] if "loss" in e] == [0.25, 0.5]
    assert sorted(p.name for p in (out / "checkpoint-2").glob("rng_state_*.pth")) == [
        "rng_state_0.pth",
        "rng_state_1.pth",
    ]
    assert AutoModelForTokenClassification.from_pretrained(out).config.ttc_prm["step_separator"] == SEP


def test_zero2_two_process_launch_really_uses_deepspeed(zero2_run):
    """`--deepspeed zero2.json` must train with the DeepSpeed engine, not silently with plain DDP."""
    result, out, _ = zero2_run
    assert result.returncode == 0, result.stderr[-4000:]
    output = result.stdout + result.stderr
    assert "DDP constructor" not in output, "trained by torch DDP, not by DeepSpeed"
    # A DeepSpeed checkpoint has the engine's folder with one ZeRO optimizer shard per rank.
    shards = sorted((out / "checkpoint-2").glob("global_step2/*zero_pp_rank_*optim_states.pt"))
    assert len(shards) == 2, sorted(p.name for p in (out / "checkpoint-2").rglob("*"))
    log = json.loads((out / "training_log.json").read_text())
    assert log["distributed"] == {
        "distributed_type": "DEEPSPEED",
        "world_size": 2,
        "backend": "gloo",
        "zero_stage": 2,
    }


def test_several_comma_separated_sources_are_concatenated(tmp_path):
    from ttcompute.trainers.training_data import load_training_dataset

    a = tmp_path / "a.jsonl"
    b = tmp_path / "b.jsonl"
    a.write_text(
        json.dumps({"prompt": "1+1\n", "completions": ["1+1=2"], "labels": [1.0], "extra": 1}) + "\n"
    )
    b.write_text(json.dumps({"prompt": "2+2\n", "completions": ["2+2=5"], "labels": [0.0]}) + "\n")
    both = load_training_dataset(f"{a}, {b}", "train")
    assert both["prompt"] == ["1+1\n", "2+2\n"] and both["labels"] == [[1.0], [0.0]]
    assert "extra" not in both.column_names  # only the columns all sources share


# --- 13. multi-node launch: a hostfile, one `deepspeed --no_ssh --node_rank i` per node ------------


@pytest.mark.slow
def test_two_node_hostfile_launch_trains_one_model(tmp_path, random_policy_dir):
    """The README's multi-node recipe, both "nodes" on this machine: each node runs the launcher itself
    (``--no_ssh --node_rank i``, as a SLURM/K8s task would), rendezvousing at ``--master_addr``."""
    pytest.importorskip("deepspeed", reason="deepspeed is not installed")
    launcher = Path(sys.executable).parent / "deepspeed"
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("node0 slots=1\nnode1 slots=1\n")
    data = write_rows(_rows(8), tmp_path / "steps.jsonl")
    out = tmp_path / "prm"
    port = str(free_port())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCELERATE_", "LOCAL_RANK", "RANK"))}
    env.update(OMP_NUM_THREADS="1", TORCH_EXTENSIONS_DIR=str(REPO / ".cache" / "torch_extensions"))
    nodes = []
    for rank in range(2):
        command = [str(launcher), "--hostfile", str(hostfile), "--no_ssh", "--node_rank", str(rank)]
        command += ["--master_addr", "127.0.0.1", "--master_port", port]
        command += ["--module", "ttcompute.cli", "train-prm", "--deepspeed", "configs/deepspeed/zero2.json"]
        command += ["--model_name_or_path", str(random_policy_dir), "--dataset_name", str(data)]
        command += ["--output_dir", str(out), "--max_steps", "2", "--per_device_train_batch_size", "2"]
        command += ["--report_to", "none", "--eval_fraction", "0", "--save_strategy", "no"]
        nodes.append(
            subprocess.Popen(
                command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
        )
    outputs = [node.communicate(timeout=600)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    log = json.loads((out / "training_log.json").read_text())
    assert log["global_steps"] == 2
    assert log["distributed"]["world_size"] == 2 and log["distributed"]["distributed_type"] == "DEEPSPEED"
