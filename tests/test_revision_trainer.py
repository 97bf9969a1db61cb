"""Tests for ``ttc train-reviser`` (ttcompute.trainers.revision_trainer / revision_config).

Everything trains the tiny random Llama of ``random_policy_dir`` (one layer, hidden size 32; the CLI
recipe test uses the shipped small policy) on a few dozen arithmetic revision trajectories built
here, on one CPU thread. Token counts are checked against string lengths: the character tokenizer
gives one token per character plus ``<s>`` in front and ``</s>`` after the revision.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
import torch
import yaml
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
from transformers import AutoModelForCausalLM, AutoTokenizer

from ttcompute.core.checkpoint_identity import checkpoint_identity
from ttcompute.core.errors import InputError
from ttcompute.core.prompts import PromptContract
from ttcompute.models.reviser import ATTEMPT_MARKER, FORMAT_VERSION, REVISION_MARKER, format_reviser_prompt
from ttcompute.tasks.arithmetic import (
    STEP_SEPARATOR,
    ArithmeticConfig,
    format_question,
    generate_problems,
    parse_question,
    reference_steps,
)
from ttcompute.trainers.revision_config import RevisionConfig
from ttcompute.trainers.revision_data import fit_trajectories, tokenize_trajectories
from ttcompute.trainers.revision_trainer import RevisionTrainer, train_reviser

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = PromptContract("{question}\n")
IGNORE = -100


# --- data helpers ------------------------------------------------------------------------------


def _wrong(question: str, j: int) -> str:
    """A wrong solution of ``question``: the reference chain started from ``start + 1 + j``."""
    start, ops = parse_question(question)
    return STEP_SEPARATOR.join(reference_steps(start + 1 + j, ops))


def _rows(num_problems: int, per_problem: int = 2, seed: int = 0) -> dict[str, list]:
    """``per_problem`` trajectories per arithmetic problem with 0..4 earlier wrong attempts (oldest first)."""
    rows: dict[str, list] = {k: [] for k in ("problem_id", "question", "previous_attempts", "completion")}
    rows.update(num_previous=[], prompt=[])
    # Up to 3 operations: 4 attempts + the revision stay within the tiny models' 512-token context.
    for i, problem in enumerate(generate_problems(num_problems, seed=seed, cfg=ArithmeticConfig(max_ops=3))):
        for t in range(per_problem):
            k = (i + 2 * t) % 5
            attempts = [_wrong(problem.question, j) for j in range(k)]
            rows["problem_id"].append(problem.problem_id)
            rows["question"].append(problem.question)
            rows["previous_attempts"].append(attempts)
            rows["completion"].append(problem.solution)
            rows["num_previous"].append(k)
            rows["prompt"].append(format_reviser_prompt(problem.question, attempts, TEMPLATE))
    return rows


def _char_tokens(question: str, attempts: list[str], completion: str) -> int:
    """Tokens of <s> + reviser prompt + completion + </s> with the character tokenizer, from the
    format's definition written out (not from format_reviser_prompt)."""
    # Attempts first, then the revision marker, then the question; no attempts: the question alone.
    prompt = len(question) + 1
    if attempts:
        prompt += sum(len(ATTEMPT_MARKER) + len(a) + 1 for a in attempts) + len(REVISION_MARKER)
    return 1 + prompt + len(completion) + 1


def _expected_fit(rows: dict[str, list], max_length: int) -> tuple[list[int | None], int, int]:
    """Attempts kept per row (None: skipped), attempts dropped from kept rows, rows skipped."""
    kept, dropped, skipped = [], 0, 0
    for question, attempts, completion in zip(
        rows["question"], rows["previous_attempts"], rows["completion"]
    ):
        recent = attempts[-4:]
        fitting = [
            m
            for m in range(len(recent) + 1)
            if _char_tokens(question, recent[len(recent) - m :], completion) <= max_length
        ]
        if not fitting:
            kept.append(None)
            skipped += 1
        else:
            kept.append(max(fitting))
            dropped += len(recent) - max(fitting)
    return kept, dropped, skipped


def _trainable_state(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(path / "model.safetensors")


# --- 1. fitting prompts to max_length ----------------------------------------------------------


def test_fit_drops_the_oldest_attempts_first_and_counts_them(char_tokenizer):
    q, c = "Start at 3. Add 4.", "3 + 4 = 7\n\nThe answer is \\boxed{7}"
    attempts = [f"3 + 4 = {v}\n\nThe answer is \\boxed{{{v}}}" for v in (11, 12, 13, 14, 15)]
    rows = {
        "question": [q, q, q, q, "Start at 1. " * 20],
        "previous_attempts": [attempts[:4], attempts[:2], attempts[:1], attempts, attempts[:3]],
        "completion": [c, c, c, c, c * 3],
    }
    # Room for the question, the completion and two attempts (each attempt is 9 + 33 + 1 = 43 tokens).
    max_length = _char_tokens(q, attempts[:2], c)
    expected_kept, expected_dropped, expected_skipped = _expected_fit(rows, max_length)
    assert expected_kept == [2, 2, 1, 2, None] and expected_dropped == 2 + 2 and expected_skipped == 1

    fitted, stats = fit_trajectories(datasets.Dataset.from_dict(rows), char_tokenizer, max_length, TEMPLATE)
    assert stats == {
        "num_examples": 4,
        "num_skipped_examples": 1,
        "num_dropped_attempts": 4,
        "num_attempts_beyond_context": 1,  # row 3 holds 5 attempts; the format shows at most 4
    }
    assert fitted.column_names == ["prompt", "completion", "copied_chars"]
    assert fitted["completion"] == [c] * 4
    # The most recent attempts survive, oldest first, and the prompt is still the reviser format.
    survivors = [attempts[2:4], attempts[:2], attempts[:1], attempts[3:5]]
    for prompt, kept in zip(fitted["prompt"], survivors):
        history = "".join(f"Attempt:\n{a}\n" for a in kept)
        assert prompt == (history + "Revision:\n" if kept else "") + f"{q}\n"
        shown = [a for a in attempts if f"Attempt:\n{a}\n" in prompt]
        assert shown == kept
    for prompt in fitted["prompt"]:
        assert len(char_tokenizer(prompt + c + char_tokenizer.eos_token).input_ids) <= max_length
    # One token less: rows 0, 1 and 3 keep one attempt only (3 + 1 + 3 dropped); row 2 keeps its one.
    _, stats = fit_trajectories(datasets.Dataset.from_dict(rows), char_tokenizer, max_length - 1, TEMPLATE)
    assert stats["num_dropped_attempts"] == _expected_fit(rows, max_length - 1)[1] == 7


# --- 2. the labels TRL builds: prompt masked, revision trained -----------------------------------


def test_labels_mask_every_prompt_token_and_train_the_revision(tmp_path, random_policy_dir):
    tokenizer = AutoTokenizer.from_pretrained(random_policy_dir)
    model = AutoModelForCausalLM.from_pretrained(random_policy_dir).eval()
    rows = _rows(2, per_problem=1)
    rows["previous_attempts"][1] = [_wrong(rows["question"][1], 0), _wrong(rows["question"][1], 5)]
    fitted, _ = fit_trajectories(datasets.Dataset.from_dict(rows), tokenizer, 512, TEMPLATE)
    config = trainer_config(
        RevisionConfig, tmp_path / "out", random_policy_dir, tmp_path / "unused", max_length=512
    )
    tokenized = tokenize_trajectories(fitted, tokenizer)  # as train_reviser hands them to TRL
    trainer = RevisionTrainer(model=model, args=config, train_dataset=tokenized, processing_class=tokenizer)

    features = [trainer.train_dataset[i] for i in range(2)]
    eos = tokenizer.eos_token_id
    prompt_lengths = []
    for feature, prompt, completion in zip(features, fitted["prompt"], fitted["completion"]):
        n_prompt = 1 + len(prompt)  # <s> + one token per character
        assert feature["input_ids"] == tokenizer(prompt + completion + tokenizer.eos_token).input_ids
        assert len(feature["input_ids"]) == n_prompt + len(completion) + 1
        assert feature["labels"][:n_prompt] == [IGNORE] * n_prompt
        assert feature["labels"][n_prompt:] == feature["input_ids"][n_prompt:]
        assert feature["labels"][-1] == eos  # the model learns to stop
        prompt_lengths.append(n_prompt)

    batch = trainer.data_collator(features)
    labels, ids = batch["labels"], batch["input_ids"]
    width = ids.shape[1]
    for row, (feature, n_prompt) in enumerate(zip(features, prompt_lengths)):
        n = len(feature["input_ids"])
        expected = [IGNORE] * n_prompt + feature["input_ids"][n_prompt:] + [IGNORE] * (width - n)
        assert labels[row].tolist() == expected
        assert batch["attention_mask"][row].tolist() == [1] * n + [0] * (width - n)
    assert batch["attention_mask"].min() == 0  # rows of different lengths: padding is exercised

    # The loss is the mean next-token cross-entropy over the revision tokens only.
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=batch["attention_mask"]).logits
        expected_loss = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
            labels[:, 1:].reshape(-1),
            ignore_index=IGNORE,
        )
        loss = trainer.compute_loss(model, dict(batch))
    assert loss.item() == pytest.approx(expected_loss.item(), rel=1e-4)


def test_copied_tokens_weigh_copied_token_weight_in_the_training_loss(tmp_path, random_policy_dir):
    """``--copied_token_weight``: the revision's tokens that repeat the most recent attempt's start
    weigh w in the training loss (checked against the cross-entropy written out by hand, with the
    common prefix counted in characters); the evaluation loss stays unweighted; a run trains."""
    tokenizer = AutoTokenizer.from_pretrained(random_policy_dir)
    model = AutoModelForCausalLM.from_pretrained(random_policy_dir)
    rows = _rows(3, per_problem=1)
    # Row 1's last attempt repeats the completion up to its last step; row 0 has no attempt.
    completion = rows["completion"][1]
    rows["previous_attempts"][1] = [_wrong(rows["question"][1], 2), completion[:-3] + "999"]
    rows["num_previous"][1] = 2
    rows["prompt"][1] = format_reviser_prompt(rows["question"][1], rows["previous_attempts"][1], TEMPLATE)
    copied = [
        0,
        len(completion) - 3,
        len(os.path.commonprefix([rows["previous_attempts"][2][-1], rows["completion"][2]])),
    ]
    assert rows["previous_attempts"][0] == [] and copied[1] > 10
    fitted, _ = fit_trajectories(datasets.Dataset.from_dict(rows), tokenizer, 512, TEMPLATE)
    assert fitted["copied_chars"] == copied
    weight = 0.25
    tokenized = tokenize_trajectories(fitted, tokenizer, copied_token_weight=weight)
    for feature, prompt, chars in zip(tokenized, fitted["prompt"], copied):
        n_prompt, n = 1 + len(prompt), len(feature["input_ids"])  # <s> + one token per character
        assert feature["loss_weights"] == [0.0] * n_prompt + [weight] * chars + [1.0] * (n - n_prompt - chars)
    assert "loss_weights" not in tokenize_trajectories(fitted, tokenizer).column_names  # w = 1: TRL's loss

    config = trainer_config(RevisionConfig, tmp_path / "out", random_policy_dir, tmp_path / "unused",
                            max_length=512, copied_token_weight=weight)  # fmt: skip
    trainer = RevisionTrainer(model=model, args=config, train_dataset=tokenized, processing_class=tokenizer)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(3)])
    assert batch["loss_weights"].shape == batch["input_ids"].shape
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        per_token = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]).float(), batch["labels"][:, 1:].reshape(-1),
            ignore_index=IGNORE, reduction="none",
        ).view(batch["labels"][:, 1:].shape)  # fmt: skip
        mask = batch["labels"][:, 1:] != IGNORE
        weighted = (per_token * batch["loss_weights"][:, 1:]).sum() / mask.sum()
        plain = per_token[mask].mean()
        model.train()
        assert trainer.compute_loss(model, dict(batch)).item() == pytest.approx(weighted.item(), rel=1e-4)
        model.eval()
        assert trainer.compute_loss(model, dict(batch)).item() == pytest.approx(plain.item(), rel=1e-4)
    assert weighted < plain  # the copied tokens did weigh less

    # End to end: the column survives TRL's preparation and the dataloader, and the run trains.
    data = write_rows(rows, tmp_path / "data" / "revisions.parquet")
    log = train_reviser(trainer_config(RevisionConfig, tmp_path / "run", random_policy_dir, data,
                                       max_length=512, copied_token_weight=weight))  # fmt: skip
    assert math.isfinite(log["train_loss"]) and log["global_steps"] == 2


# --- 3. a real training run ----------------------------------------------------------------------


def test_train_reviser_trains_and_writes_log_card_and_config(tmp_path, random_policy_dir):
    rows = _rows(8, per_problem=2)  # 16 trajectories
    # Small enough that the longest trajectory loses its oldest attempt ...
    max_length = max(map(_char_tokens, rows["question"], rows["previous_attempts"], rows["completion"])) - 1
    # ... and a 40-operation problem does not fit at all.
    long_ops = [("+", 1)] * 40
    rows["problem_id"].append("long")
    rows["question"].append(format_question(1, long_ops))
    rows["previous_attempts"].append([])
    rows["completion"].append(STEP_SEPARATOR.join(reference_steps(1, long_ops)))
    rows["num_previous"].append(0)
    rows["prompt"].append(format_reviser_prompt(rows["question"][-1], [], TEMPLATE))
    data = write_rows(rows, tmp_path / "data" / "revisions.parquet")
    out = tmp_path / "reviser"
    expected_kept, expected_dropped, expected_skipped = _expected_fit(rows, max_length)
    assert expected_dropped > 0 and expected_skipped == 1
    n_train = len(rows["question"]) - expected_skipped
    # One epoch exactly: every kept example is seen once, so the tokens seen are their lengths.
    steps = 3
    config = trainer_config(
        RevisionConfig,
        out,
        random_policy_dir,
        data,
        max_length=max_length,
        max_steps=steps,
        per_device_train_batch_size=math.ceil(n_train / steps),
        learning_rate=3e-3,
        warmup_steps=0,
    )
    log = train_reviser(config)

    losses = [e["loss"] for e in log["log_history"] if "loss" in e]
    assert len(losses) == steps and all(math.isfinite(v) for v in losses)
    assert log["train_loss"] == pytest.approx(sum(losses) / steps, rel=1e-2)
    assert losses[-1] < losses[0]
    saved = json.loads((out / "training_log.json").read_text())
    assert saved["global_steps"] == steps
    assert saved["max_length"] == max_length
    assert saved["num_train_examples"] == n_train
    assert saved["num_skipped_examples"] == expected_skipped
    assert saved["num_dropped_attempts"] == expected_dropped
    kept_tokens = sum(
        _char_tokens(q, a[len(a) - m :] if m else [], c)
        for q, a, c, m in zip(rows["question"], rows["previous_attempts"], rows["completion"], expected_kept)
        if m is not None
    )
    assert saved["num_train_tokens"] == kept_tokens
    fresh = AutoModelForCausalLM.from_pretrained(random_policy_dir)
    num_params = sum(p.numel() for p in fresh.parameters())
    assert saved["num_parameters"] == num_params
    assert saved["training_flops"] == 6 * num_params * kept_tokens
    assert saved["distributed"]["world_size"] == 1

    # Every trainable tensor moved.
    before, after = _trainable_state(random_policy_dir), _trainable_state(out)
    assert before.keys() == after.keys()
    assert [name for name in before if torch.equal(before[name], after[name])] == []
    meta = json.loads((out / "config.json").read_text())["ttc_reviser"]
    assert PromptContract.from_record(meta, "ttc_reviser") == TEMPLATE
    assert meta["reviser_format"] == FORMAT_VERSION
    assert (meta["attempt_marker"], meta["revision_marker"]) == (ATTEMPT_MARKER, REVISION_MARKER)
    assert meta["max_attempts_in_context"] == 4
    assert not (out / "training_args.bin").exists()

    # The model card states the format, the loss, the base model, the data and the drop rule ...
    card = (out / "README.md").read_text()
    for fact in (
        "Attempt:",
        "Revision:",
        "revision only",
        "oldest attempts are dropped first",
        "**4 attempts**",
    ):
        assert fact in card, fact
    base = os.path.relpath(random_policy_dir.resolve(), out.resolve())
    assert (
        f"`{base}` (a local checkpoint, relative to this folder; {checkpoint_identity(random_policy_dir)})"
        in card
    )
    assert f"`{os.path.relpath(data, out)}` (local, relative to this folder)" in card
    assert (meta["base_model"], meta["base_model_identity"]) == (base, checkpoint_identity(random_policy_dir))
    assert f"{expected_dropped} attempts were dropped" in card
    # ... and its worked example and generation snippet run as written.
    snippet = re.search(r"```python\n(.*?)```", card, flags=re.DOTALL).group(1)
    snippet = snippet.replace(f'model_id = "{out.name}"', f"model_id = {str(out)!r}")
    namespace: dict = {}
    exec(snippet, namespace)
    assert isinstance(namespace["revision"], str)
    example_prompt = namespace["reviser_prompt"](namespace["question"], namespace["attempts"])
    assert example_prompt == format_reviser_prompt(namespace["question"], namespace["attempts"], TEMPLATE)
    assert example_prompt in card

    # The resolved config holds the resolved max_length, and no masked placeholder ("<EOS_TOKEN>")
    # that a rerun would read back as a token.
    resolved = yaml.safe_load((out / "ttc_config.yaml").read_text())
    assert resolved["max_length"] == max_length
    assert (resolved["eos_token"], resolved["pad_token"], resolved["hub_token"]) == (None, None, None)


def test_train_reviser_holds_out_whole_problems_for_evaluation(tmp_path, random_policy_dir):
    rows = _rows(12, per_problem=2)  # 12 problems x 2 trajectories
    data = write_rows(rows, tmp_path / "revisions.jsonl")
    log = train_reviser(
        trainer_config(RevisionConfig, tmp_path / "reviser", random_policy_dir, data, eval_fraction=0.25)
    )
    assert log["max_length"] == 512  # the model's context
    assert log["num_train_examples"] == 18 and log["eval_fit"]["num_examples"] == 6  # 3 problems held out
    assert {"eval_loss", "eval_mean_token_accuracy"} <= set(log["eval"])
    assert math.isfinite(log["eval"]["eval_loss"])


# --- 4. LoRA ---------------------------------------------------------------------------------------


def test_lora_training_saves_a_merged_plain_checkpoint(tmp_path, random_policy_dir):
    data = write_rows(_rows(8), tmp_path / "revisions.parquet")
    out = tmp_path / "reviser"
    config = trainer_config(RevisionConfig, out, random_policy_dir, data, max_steps=6, **LORA_OPTIONS)
    assert train_reviser(config)["global_steps"] == 6

    tokenizer = AutoTokenizer.from_pretrained(out)
    ids = torch.tensor([tokenizer(format_reviser_prompt("Start at 3. Add 4.", ["3 + 4 = 8"])).input_ids])
    merged, _, _ = check_merged_lora_checkpoint(out, random_policy_dir, AutoModelForCausalLM, ids)
    assert merged.config.ttc_reviser["revision_marker"] == REVISION_MARKER


# --- 5. resume -------------------------------------------------------------------------------------


def test_train_reviser_resumes_from_the_last_checkpoint(tmp_path, random_policy_dir):
    data = write_rows(_rows(8), tmp_path / "revisions.parquet")
    first, resumed, _ = check_resume_and_overwrite(
        train_reviser, RevisionConfig, tmp_path / "reviser", random_policy_dir, data
    )
    assert resumed["num_train_tokens"] > first["num_train_tokens"]


# --- 6. bad input ----------------------------------------------------------------------------------


def _no_completion_column(rows):
    del rows["completion"]


def _empty_completion(rows):
    rows["completion"][2] = "  \n"


def _attempts_not_a_list(rows):
    rows["previous_attempts"] = ["\n\n".join(a) for a in rows["previous_attempts"]]
    del rows["prompt"], rows["num_previous"]


def _empty_attempt(rows):
    rows["previous_attempts"][1] = ["1 + 1 = 3", ""]
    rows["num_previous"][1] = 2
    del rows["prompt"]


def _wrong_num_previous(rows):
    rows["num_previous"][3] += 1


def _prompt_of_another_template(rows):
    rows["prompt"] = [p.replace("Start at", "Q: Start at", 1) for p in rows["prompt"]]


BAD_INPUTS = {
    "missing completion column": (_no_completion_column, ["missing column", "completion"]),
    "empty completion": (_empty_completion, ["row 2", "field completion", "empty completion"]),
    "attempts not a list": (_attempts_not_a_list, ["row 0", "field previous_attempts", "expected a list"]),
    "empty attempt": (_empty_attempt, ["row 1", "field previous_attempts[1]", "empty attempt"]),
    "wrong num_previous": (_wrong_num_previous, ["row 3", "field num_previous"]),
    "prompt of another template": (_prompt_of_another_template, ["row 0", "field prompt", "prompt_template"]),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_rows_are_rejected_before_anything_is_written(case, tmp_path, random_policy_dir):
    mutate, fragments = BAD_INPUTS[case]
    rows = _rows(2)
    mutate(rows)
    data = write_rows(rows, tmp_path / "bad.jsonl")
    out = tmp_path / "reviser"
    with pytest.raises(InputError) as err:
        train_reviser(trainer_config(RevisionConfig, out, random_policy_dir, data))
    message = str(err.value)
    assert str(data) in message
    for fragment in fragments:
        assert fragment in message, message
    assert files_under(out) == []


def test_bad_eval_rows_and_a_too_small_max_length_write_nothing(tmp_path, random_policy_dir):
    data = write_rows(_rows(2), tmp_path / "train.parquet")
    bad = _rows(2)
    _empty_completion(bad)
    eval_data = write_rows(bad, tmp_path / "eval.parquet")
    out = tmp_path / "reviser"
    with pytest.raises(InputError, match=r"eval\.parquet: row 2, field completion"):
        train_reviser(
            trainer_config(RevisionConfig, out, random_policy_dir, data, eval_dataset_name=str(eval_data))
        )
    with pytest.raises(InputError, match="no trajectory fits max_length=20"):
        train_reviser(trainer_config(RevisionConfig, out, random_policy_dir, data, max_length=20))
    assert files_under(out) == []


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"prompt_template": "Q: {q}"}, "prompt_template must contain {question}"),
        ({"eval_fraction": 1.0}, "eval_fraction must be in [0, 1), got 1.0"),
        ({"max_length": 1}, "max_length must be >= 2"),
        ({"completion_only_loss": False}, "completion_only_loss must be true"),
    ],
)
def test_config_rejects_bad_values(tmp_path, bad, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        RevisionConfig(output_dir=str(tmp_path), use_cpu=True, **bad)


# --- 7. push to the Hub: once, and the token never in a file ----------------------------------------


def test_push_to_hub_uploads_once_and_the_token_is_in_no_file(tmp_path, random_policy_dir, offline_hub):
    connects = offline_hub.connects
    secret = "hf_PLANTEDsecret123"
    data = write_rows(_rows(4), tmp_path / "revisions.parquet")
    out = tmp_path / "reviser"
    config = trainer_config(
        RevisionConfig,
        out,
        random_policy_dir,
        data,
        push_to_hub=True,
        hub_model_id="me/tiny-reviser",
        hub_token=secret,
        save_strategy="steps",
        save_steps=1,
    )
    train_reviser(config)

    assert len(FakeHfApi.instances) == 1
    api = FakeHfApi.instances[0]
    assert api.token == secret
    assert api.created == [
        {"repo_id": "me/tiny-reviser", "repo_type": "model", "private": None, "exist_ok": True}
    ]
    (upload,) = api.uploads
    assert upload["repo_id"] == "me/tiny-reviser" and upload["repo_type"] == "model"
    assert Path(upload["folder_path"]) == out
    assert (out / "checkpoint-2" / "training_args.bin").is_file()  # a pickled config was written
    assert 'model_id = "me/tiny-reviser"' in (out / "README.md").read_text()
    assert connects == []
    # What the Hub receives, after the push's ignore_patterns: the final model, no checkpoint.
    uploaded = upload["uploaded_files"]
    final = {"README.md", "config.json", "model.safetensors", "training_log.json", "ttc_config.yaml"}
    assert final <= set(uploaded)
    assert [name for name in uploaded if name.startswith(("checkpoint-", "_", "."))] == []
    assert "training_args.bin" not in uploaded
    leaks = [str(p.relative_to(out)) for p in files_under(out) if secret.encode() in p.read_bytes()]
    assert leaks == [], f"hub token written to {leaks}"


# --- 8. command line and recipe ---------------------------------------------------------------------


def test_cli_runs_the_recipe_on_the_small_policy(tmp_path, small_policy_dir):
    from ttcompute.cli import main

    data = write_rows(_rows(6), tmp_path / "revisions.parquet")
    out = tmp_path / "reviser"
    argv = ["train-reviser", "--config", str(REPO / "configs" / "reviser.yaml")]
    argv += ["--model_name_or_path", str(small_policy_dir), "--dataset_name", str(data)]
    argv += ["--output_dir", str(out), "--max_steps", "2", "--use_cpu", "true", "--eval_fraction", "0"]
    argv += ["--save_strategy", "no", "--disable_tqdm", "true"]
    assert main(argv) == 0
    log = json.loads((out / "training_log.json").read_text())
    assert log["global_steps"] == 2 and log["num_train_examples"] == 12
    assert log["num_parameters"] == 137_792
    assert log["max_length"] == 512
    assert log["command"] is None or log["command"].startswith("ttc train-reviser")


def test_help_lists_the_reviser_options(capsys):
    from ttcompute.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["train-reviser", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for flag in (
        "--model_name_or_path",
        "--dataset_name",
        "--eval_fraction",
        "--prompt_template",
        "--use_peft",
        "--expand_blocks",
    ):
        assert flag in text
    assert "--max_length" in text and "--deepspeed" in text and "--push_to_hub" in text


# --- 9. ZeRO-2 on two CPU processes -------------------------------------------------------------------


# Slow (~25 s): the launch path is the PRM trainer's (trainers/launch.py), whose two-process ZeRO-2
# test stays in the default suite.
@pytest.mark.slow
def test_zero2_two_process_launch(tmp_path, random_policy_dir):
    """``deepspeed --num_gpus 2`` with ZeRO-2 on two CPU processes (gloo); about 20 s."""
    pytest.importorskip("deepspeed", reason="deepspeed is not installed")
    launcher = Path(sys.executable).parent / "deepspeed"
    if not launcher.is_file():
        pytest.skip(f"no deepspeed launcher at {launcher}")
    data = write_rows(_rows(8), tmp_path / "revisions.parquet")  # 16 trajectories
    out = tmp_path / "reviser"
    command = [str(launcher), "--num_gpus", "2", "--master_port", str(free_port())]
    command += ["--module", "ttcompute.cli", "train-reviser", "--deepspeed", "configs/deepspeed/zero2.json"]
    command += ["--model_name_or_path", str(random_policy_dir), "--dataset_name", str(data)]
    command += ["--output_dir", str(out), "--max_steps", "2", "--per_device_train_batch_size", "2"]
    command += ["--report_to", "none", "--eval_fraction", "0", "--logging_steps", "1"]
    command += ["--save_strategy", "steps", "--save_steps", "2"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCELERATE_", "LOCAL_RANK", "RANK"))}
    env.update(
        OMP_NUM_THREADS="1",
        HF_HUB_OFFLINE="1",
        TORCH_EXTENSIONS_DIR=str(REPO / ".cache" / "torch_extensions"),
        TTC_LOG_LEVEL="INFO",
    )
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    log = json.loads((out / "training_log.json").read_text())
    assert log["distributed"] == {
        "distributed_type": "DEEPSPEED",
        "world_size": 2,
        "backend": "gloo",
        "zero_stage": 2,
    }
    assert log["global_steps"] == 2
    # 2 processes x batch 2 x 2 steps: an epoch of 16 rows takes 4 steps of 4 rows.
    assert [e["epoch"] for e in log["log_history"] if "loss" in e] == [0.25, 0.5]
    # Trained by the DeepSpeed engine (one ZeRO optimizer shard per rank), not silently by DDP.
    shards = sorted((out / "checkpoint-2").glob("global_step2/*zero_pp_rank_*optim_states.pt"))
    assert len(shards) == 2
    assert "DDP constructor" not in result.stdout + result.stderr
    assert AutoModelForCausalLM.from_pretrained(out).config.ttc_reviser["max_attempts_in_context"] == 4


def test_report_to_wandb_runs_offline(tmp_path, random_policy_dir, monkeypatch):
    pytest.importorskip("wandb", reason="wandb is not installed")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb_dir"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    (tmp_path / "wandb_dir").mkdir()
    data = write_rows(_rows(4), tmp_path / "revisions.parquet")
    import wandb

    try:
        log = train_reviser(
            trainer_config(RevisionConfig, tmp_path / "reviser", random_policy_dir, data, report_to="wandb")
        )
    finally:
        # The trainer leaves its run open (a `ttc` process ends it by exiting), and W&B keeps
        # process-wide settings (WANDB_DIR): later tests need the run ended and a fresh set-up.
        if wandb.run is not None:
            wandb.finish()
        wandb.teardown()
    assert log["global_steps"] == 2
    runs = list((tmp_path / "wandb_dir" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, "no offline W&B run was recorded"


@pytest.mark.parametrize("kind", ["bpe_chat", "sentencepiece"])
def test_copied_token_weights_stop_where_bpe_tokens_leave_the_copied_text(kind):
    """On real subword tokenizers a token may straddle the end of the copied prefix: the weighted
    tokens decode to a prefix of it, and one more token would not."""
    from ttcompute.testing import build_bpe_chat_tokenizer, build_sentencepiece_llama_tokenizer
    from ttcompute.trainers.revision_data import copied_token_weights, sft_example

    problems = generate_problems(40, seed=3, cfg=ArithmeticConfig(max_ops=4))
    texts = [p.question + "\n" + p.solution for p in problems]
    build = build_bpe_chat_tokenizer if kind == "bpe_chat" else build_sentencepiece_llama_tokenizer
    tokenizer = build(texts, vocab_size=400)
    checked = 0
    for i, problem in enumerate(problems):
        wrong = _wrong(problem.question, i % 3)
        prompt = format_reviser_prompt(problem.question, [wrong], TEMPLATE)
        target = problem.solution + tokenizer.eos_token
        for copied_chars in (
            0,
            3,
            len(os.path.commonprefix([wrong, problem.solution])),
            len(problem.solution) // 2,
        ):
            ids, mask = sft_example(tokenizer, prompt, target)
            weights = copied_token_weights(tokenizer, prompt, target, (ids, mask), copied_chars, 0.5)
            assert len(weights) == len(ids) and [w > 0 for w in weights] == [bool(m) for m in mask]
            start, n = mask.index(1), weights.count(0.5)
            copied = target[:copied_chars]
            decoded = tokenizer.decode(ids[start : start + n])
            assert copied.startswith(decoded.lstrip(" ")) or not n
            if start + n < len(ids):  # the next token leaves the copied text (or straddles its end)
                assert not copied.startswith(tokenizer.decode(ids[start : start + n + 1]).lstrip(" "))
            checked += n > 0
    assert checked > 20
