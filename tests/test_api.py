"""The Python API: ``from ttcompute import ...`` in TRL's shape, lazily; a PRM trained the TRL way
loads with ``load_prm(path)`` alone; errors raised from Python name Python arguments."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

import ttcompute
from tests.conftest import REPO, SMALL_POLICY
from ttcompute.core.errors import InputError, command_line, option

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_import_is_light_and_names_resolve_on_use():
    code = (
        "import sys, ttcompute\n"
        "heavy = [m for m in ('torch', 'transformers', 'datasets', 'numpy') if m in sys.modules]\n"
        "print(ttcompute.__version__, heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.split()[0] == ttcompute.__version__
    assert out.stdout.strip().endswith("[]"), out.stdout


def test_every_exported_name_resolves():
    assert ttcompute.__all__ == ["__version__", *ttcompute._EXPORTS]
    for name in ttcompute.__all__:
        assert getattr(ttcompute, name) is not None, name
    assert "PRMTrainer" in dir(ttcompute)
    from ttcompute.trainers.prm_trainer import PRMTrainer

    assert ttcompute.PRMTrainer is PRMTrainer
    with pytest.raises(AttributeError, match="no attribute 'PRMTrainr'"):
        ttcompute.PRMTrainr  # noqa: B018


def test_version_matches_the_package_metadata_and_the_cli():
    from importlib.metadata import version

    assert ttcompute.__version__ == version("ttcompute")
    out = subprocess.run(
        [sys.executable, "-m", "ttcompute.cli", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == f"ttcompute {ttcompute.__version__}"


def _truth(question: str, steps: list[str]) -> list[bool]:
    """Each step's label recomputed from scratch: right while every step so far is the true
    operation on the true running value (the last step: the true answer)."""
    numbers = [int(n) for n in re.findall(r"\d+", question)]
    words = re.findall(r"(Add|Subtract|Multiply by) \d+", question)
    value, truths, ok = numbers[0], [], True
    for i, step in enumerate(steps):
        if i < len(words):
            b, symbol = numbers[i + 1], {"Add": "+", "Subtract": "-", "Multiply by": "*"}[words[i]]
            result = {"+": value + b, "-": value - b, "*": value * b}[symbol]
            ok = ok and step == f"{value} {symbol} {b} = {result}"
            value = result
        else:
            ok = ok and step == f"The answer is \\boxed{{{value}}}"
        truths.append(ok)
    return truths


def test_arithmetic_stepwise_rows_are_labelled_by_the_arithmetic():
    rows = ttcompute.arithmetic_stepwise_rows(num_problems=300, seed=3, wrong_fraction=0.5)
    wrong = 0
    for row in rows:
        assert row["prompt"].endswith("\n")
        assert row["labels"] == _truth(row["prompt"].strip(), row["completions"])
        wrong += not all(row["labels"])
    assert 0.4 < wrong / len(rows) < 0.6  # the asked-for share, give or take sampling
    assert ttcompute.arithmetic_stepwise_rows(5, seed=3) == rows[:5]  # the same seed, the same rows
    with pytest.raises(InputError, match="wrong_fraction"):
        ttcompute.arithmetic_stepwise_rows(4, wrong_fraction=2)


def _trained_the_trl_way(tmp_path, rows, **config):
    import datasets
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    model = AutoModelForTokenClassification.from_pretrained(SMALL_POLICY, num_labels=1)
    tokenizer = AutoTokenizer.from_pretrained(SMALL_POLICY)
    args = ttcompute.PRMConfig(
        output_dir=str(tmp_path / "prm"),
        max_steps=2,
        per_device_train_batch_size=8,
        report_to="none",
        save_strategy="no",
        **config,
    )
    trainer = ttcompute.PRMTrainer(
        model=model, args=args, train_dataset=datasets.Dataset.from_list(rows), processing_class=tokenizer
    )
    trainer.train()
    trainer.save_model()
    return tmp_path / "prm", model, tokenizer


def test_a_prm_trained_the_trl_way_loads_with_no_other_argument(tmp_path):
    import torch

    rows = ttcompute.arithmetic_stepwise_rows(num_problems=16, seed=0)
    path, model, tokenizer = _trained_the_trl_way(tmp_path, rows)
    prm = ttcompute.load_prm(str(path), device="cpu")
    assert model.config.ttc_prm == ttcompute.ttc_prm_metadata(
        "\n\n", "{question}\n", train_on_last_step_only=False
    )

    # The loaded PRM scores what the trained model computes at each separator's last token.
    question, steps = (
        "Start at 3. Add 4. Multiply by 2.",
        ["3 + 4 = 7", "7 * 2 = 15", "The answer is \\boxed{15}"],
    )
    ids = tokenizer("Start at 3. Add 4. Multiply by 2.\n")["input_ids"]
    positions = []
    for step in steps:
        ids += tokenizer(step + "\n\n", add_special_tokens=False)["input_ids"]
        positions.append(len(ids) - 1)
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0, :, 0]
    expected = torch.sigmoid(logits[positions]).tolist()
    assert prm.score([question], [steps])[0] == pytest.approx(expected, abs=1e-5)


def test_prompts_without_a_trailing_newline_record_the_bare_template(tmp_path):
    rows = [{**row, "prompt": row["prompt"].rstrip("\n")} for row in ttcompute.arithmetic_stepwise_rows(8)]
    _, model, _ = _trained_the_trl_way(tmp_path, rows)
    assert model.config.ttc_prm["prompt_template"] == "{question}"


def test_a_template_that_does_not_rebuild_the_prompts_is_refused_before_training(tmp_path):
    rows = ttcompute.arithmetic_stepwise_rows(8)
    with pytest.raises(InputError, match=r"train_dataset: row 0: .* is not prompt_template= "):
        _trained_the_trl_way(tmp_path, rows, prompt_template="Q: {question}\n")


def test_a_two_label_head_is_refused_with_what_to_do(tmp_path):
    import datasets
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    model = AutoModelForTokenClassification.from_pretrained(SMALL_POLICY, num_labels=2)
    with pytest.raises(InputError, match="load it with num_labels=1"):
        ttcompute.PRMTrainer(
            model=model,
            args=ttcompute.PRMConfig(output_dir=str(tmp_path), report_to="none"),
            train_dataset=datasets.Dataset.from_list(ttcompute.arithmetic_stepwise_rows(4)),
            processing_class=AutoTokenizer.from_pretrained(SMALL_POLICY),
        )


def test_errors_name_python_arguments_from_python_and_flags_from_ttc(tmp_path):
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    bare = tmp_path / "bare"  # a token-classification checkpoint with no ttc_prm record
    AutoModelForTokenClassification.from_pretrained(SMALL_POLICY, num_labels=1).save_pretrained(bare)
    AutoTokenizer.from_pretrained(SMALL_POLICY).save_pretrained(bare)

    with pytest.raises(InputError) as python_error:
        ttcompute.load_prm(str(bare), device="cpu")
    assert "pass prm_format=," in str(python_error.value) and "--" not in str(python_error.value)
    with pytest.raises(InputError, match=r"pass step_separator=$"):
        ttcompute.load_prm(str(bare), prm_format="ttcompute", device="cpu")

    # `ttc` runs every stage inside command_line(): the same errors name flags there.
    with command_line(), pytest.raises(InputError, match=r"pass --prm_step_separator$"):
        ttcompute.load_prm(str(bare), prm_format="ttcompute", device="cpu")


def test_ttc_runs_stages_on_the_command_line_side(monkeypatch):
    import ttcompute.data_gen.difficulty as difficulty

    monkeypatch.setattr(difficulty, "run_difficulty", lambda config: option("prm_format"))
    assert ttcompute.run_stage("difficulty", []) == "--prm_format"
    assert option("prm_format") == "prm_format="


def test_data_that_truncation_strips_of_every_label_is_refused_before_anything_is_written(tmp_path):
    import datasets

    data = tmp_path / "rows.parquet"
    datasets.Dataset.from_list(ttcompute.arithmetic_stepwise_rows(8)).to_parquet(str(data))
    out = tmp_path / "prm"
    args = [
        "--config",
        "prm.yaml",
        "--dataset_name",
        str(data),
        "--eval_fraction",
        "0",
        "--output_dir",
        str(out),
    ]
    with pytest.raises(
        InputError, match=r"^train_dataset: every example lost all its labels .* --max_length 8; raise it"
    ):
        ttcompute.run_stage("train-prm", [*args, "--max_length", "8"])
    assert not out.exists()
