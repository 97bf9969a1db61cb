"""What a run leaves in a log file: training progress as log lines (no raw ``{'loss': ...}`` dicts on
stdout), no warning repeated for every dataloader, no terminal escape codes.

Each run redirects stdout and stderr to a file, as ``ttc demo 2> run.err > run.out`` does, so what
is checked is what a user finds in those files.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import write_rows

from ttcompute.trainers.prm_config import PRMConfig
from ttcompute.trainers.prm_trainer import train_prm

REPO = Path(__file__).resolve().parents[1]
ESCAPE = "\x1b["


def _step_rows(n: int) -> dict[str, list]:
    """``n`` stepwise rows (two problems per id, every other solution wrong from its second step)."""
    rows: dict[str, list] = {"prompt": [], "completions": [], "labels": [], "problem_id": []}
    for i in range(n):
        a, b = i % 9 + 1, i % 7 + 2
        second = f"{a}+{b}={a + b}" if i % 2 == 0 else f"{a}+{b}=bad"
        rows["prompt"].append(f"{a}+{b}\n")
        rows["completions"].append([f"{a}={a}", second, f"#### {a + b}"])
        rows["labels"].append([1.0, 1.0, 1.0] if i % 2 == 0 else [1.0, 0.0, 0.0])
        rows["problem_id"].append(f"p{i // 2}")
    return rows


def _run_to_files(command: list[str], tmp_path: Path) -> tuple[str, str]:
    """Run ``command`` from the repository root with stdout and stderr redirected to files; return both."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TQDM_", "LOCAL_RANK", "ACCELERATE_"))}
    env.update(HF_HUB_OFFLINE="1", TTC_LOG_LEVEL="INFO", OMP_NUM_THREADS="1")
    out, err = tmp_path / "run.out", tmp_path / "run.err"
    with out.open("w") as stdout, err.open("w") as stderr:
        result = subprocess.run(command, cwd=REPO, env=env, stdout=stdout, stderr=stderr, timeout=300)
    assert result.returncode == 0, err.read_text()[-3000:]
    return out.read_text(), err.read_text()


def test_a_training_run_logs_its_progress_and_writes_no_dicts_escapes_or_pin_memory_warnings(
    tmp_path, random_policy_dir
):
    """``ttc train-prm`` with its progress bar and evaluation (a training and an evaluation dataloader,
    each of which warned about pin_memory on a CPU), its log dicts and transformers' load report of the
    new score head (whose title it bolds whatever the stream) all going to files."""
    data = write_rows(_step_rows(16), tmp_path / "steps.jsonl")
    command = [sys.executable, "-m", "ttcompute.cli", "train-prm", "--model_name_or_path", str(random_policy_dir),
               "--dataset_name", str(data), "--output_dir", str(tmp_path / "prm"), "--max_steps", "2",
               "--logging_steps", "1", "--per_device_train_batch_size", "4", "--eval_fraction", "0.25",
               "--save_strategy", "no", "--use_cpu", "true", "--report_to", "none"]  # fmt: skip
    stdout, stderr = _run_to_files(command, tmp_path)
    both = stdout + stderr
    assert "'loss'" not in both and "'eval_loss'" not in both, both
    assert ESCAPE not in both, [line for line in both.splitlines() if ESCAPE in line]
    import torch

    if not torch.cuda.is_available():
        assert "pin_memory" not in both, both
    # Progress and metrics, as log lines naming the stage and the step; the load report, plain.
    assert "INFO ttcompute.trainers.training_run: train-prm step 1/2: loss " in stderr
    assert "train-prm step 2/2: eval_loss " in stderr
    assert "LOAD REPORT from:" in stderr


def test_without_a_progress_bar_the_log_dicts_are_not_printed_either(
    tmp_path, random_policy_dir, capfd, caplog
):
    """``--disable_tqdm true`` (as the demo trains): transformers' PrinterCallback would print every
    log dict to stdout."""
    data = write_rows(_step_rows(8), tmp_path / "steps.jsonl")
    config = PRMConfig(
        output_dir=str(tmp_path / "prm"),
        model_name_or_path=str(random_policy_dir),
        dataset_name=str(data),
        max_steps=2,
        logging_steps=1,
        per_device_train_batch_size=4,
        eval_fraction=0.0,
        save_strategy="no",
        use_cpu=True,
        report_to="none",
        disable_tqdm=True,
    )
    caplog.set_level("INFO", logger="ttcompute.trainers.training_run")
    train_prm(config)
    captured = capfd.readouterr()
    assert "'loss'" not in captured.out + captured.err, captured.out
    assert "train-prm step 2/2: loss " in caplog.text and "train_loss" in caplog.text


def test_logging_setup_keeps_escape_codes_out_of_a_redirected_stderr(tmp_path):
    """Two open tqdm bars (label's rollouts under its shards) and a log record that carries colour
    codes (transformers' load report), with stderr a file: no ESC[ in it, and both still there."""
    script = (
        "import logging\n"
        "from ttcompute.cli import _setup_logging\n"
        "_setup_logging()\n"
        "from tqdm.auto import tqdm\n"
        "outer = tqdm(total=2, desc='Label shards', mininterval=0)\n"
        "inner = tqdm(desc='Rollouts', unit='rollout', mininterval=0)\n"
        "for _ in range(2):\n"
        "    inner.update(8)\n"
        "    outer.update(1)\n"
        "inner.close()\n"
        "outer.close()\n"
        "logging.getLogger('transformers.modeling_utils').warning('\\x1b[1mLOAD REPORT\\x1b[0m from: x')\n"
    )
    stdout, stderr = _run_to_files([sys.executable, "-c", script], tmp_path)
    assert ESCAPE not in stdout + stderr, repr(stderr)
    assert "Label shards: 100%" in stderr and "Rollouts: 16rollout" in stderr
    assert "WARNING transformers.modeling_utils: LOAD REPORT from: x" in stderr


def test_logging_setup_leaves_a_terminal_alone(monkeypatch):
    """On a terminal the bars keep their own lines and colour stays: nothing is changed."""
    import logging

    from ttcompute import cli

    monkeypatch.delenv("TQDM_POSITION", raising=False)
    monkeypatch.setattr(sys, "stderr", type("Terminal", (), {"isatty": lambda self: True})())
    factory = logging.getLogRecordFactory()
    cli._setup_logging()
    assert "TQDM_POSITION" not in os.environ and logging.getLogRecordFactory() is factory
