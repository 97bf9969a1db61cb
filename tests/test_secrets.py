"""Secrets: Hub and W&B tokens are read, never written to configs, logs, model cards or reports.

Fake tokens are planted where real ones live -- ``HF_TOKEN``, ``HUGGING_FACE_HUB_TOKEN``,
``WANDB_API_KEY`` and ``--hub_token`` on the trainers' command lines -- and tiny real runs of
``ttc train-policy``, ``sample``, ``train-prm`` (reporting to W&B offline), ``train-reviser`` and
``report`` (W&B too) go through ``ttcompute.cli.main`` with ``sys.argv`` set as the ``ttc`` console
script would set it (the trainers record their command line from it). Then every byte each stage
wrote -- configs, model cards, ``training_log.json``, ``trainer_state.json``, the checkpoints'
pickled ``training_args.bin``, W&B's offline run files, reports -- and everything it printed or
logged is searched for the tokens. No network: HF_HUB_OFFLINE, WANDB_MODE=offline, no push.

W&B is an optional extra. Without it, ``train-prm`` and ``report`` run with ``--report_to none``:
every stage's own files, console and logs are still scanned, and only the W&B run files are missing
(the test that they were written, and so covered, is skipped).
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import datasets
import pytest
import torch

from ttcompute.cli import main

HF_ENV_TOKEN = "hf_PLANTED0123456789abcdef"
CLI_HUB_TOKEN = "hf_PLANTEDcli9876543210fedcba"
WANDB_KEY = "PLANTEDwandb" + "0123456789abcdef0123456789ab"  # 40 characters, as W&B keys are
# Every planted value contains this, so even a truncated or re-quoted copy is found.
PLANTED = b"PLANTED"

TRAINER_FLAGS = ["--max_steps", "2", "--save_strategy", "steps", "--save_steps", "1", "--use_cpu", "true"]
TRAINER_FLAGS += ["--logging_steps", "1", "--disable_tqdm", "true", "--hub_token", CLI_HUB_TOKEN]
STAGES = ("train-policy", "sample", "train-prm", "train-reviser", "report")
WANDB_STAGES = ("train-prm", "report")


@dataclass
class StageRun:
    """What one ``ttc`` invocation left behind: its exit code, output directories, console and logs."""

    exit_code: int
    directories: list[Path]
    console: str
    log: str


def _stage_argv(stage: str, root: Path, random_policy: Path, report_to: str) -> list[str]:
    """The command line of ``stage`` on tiny inputs; later stages read earlier stages' outputs.

    ``report_to`` is for the stages of ``WANDB_STAGES``; the others never report anywhere.
    """
    policy, samples = root / "train-policy", root / "sample"
    tiny_policy = ["--hidden_size", "32", "--num_hidden_layers", "1", "--num_attention_heads", "2"]
    args = {
        "train-policy": [*tiny_policy, "--num_problems", "16", "--per_device_train_batch_size", "8"]
        + ["--eval_num_problems", "2", "--eval_samples_per_problem", "1", "--report_to", "none"]
        + TRAINER_FLAGS,
        "sample": ["--model_name_or_path", str(policy), "--num_problems", "2", "--num_samples", "2"]
        + ["--max_new_tokens", "24", "--device", "cpu"],
        "train-prm": ["--model_name_or_path", str(random_policy), "--dataset_name", str(root / "steps.jsonl")]
        + ["--eval_fraction", "0", "--report_to", report_to, *TRAINER_FLAGS],
        "train-reviser": ["--model_name_or_path", str(random_policy)]
        + ["--dataset_name", str(root / "revisions.parquet"), "--eval_fraction", "0", "--report_to", "none"]
        + TRAINER_FLAGS,
        "report": ["--policy_small", str(policy), "--small_samples_dir", str(samples)]
        + ["--cost_dirs", str(samples), "--report_to", report_to],
    }[stage]
    return [stage, *args, "--output_dir", str(root / stage)]


def _write_training_data(root: Path) -> None:
    """A few PRM rows (stepwise supervision) and revision trajectories, the trainers' input shapes."""
    steps = {
        "prompt": ["1+2*3\n"] * 4,
        "completions": [["2*3=6", "1+6=7", "#### 7"], ["2*3=6", "1+6=8", "#### 8"]] * 2,
        "labels": [[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]] * 2,
        "problem_id": ["p0", "p0", "p1", "p1"],
    }
    datasets.Dataset.from_dict(steps).to_json(str(root / "steps.jsonl"), lines=True)
    solution = "1 + 2 = 3\n\nThe answer is \\boxed{3}"
    revisions = {
        "problem_id": ["p0", "p1"],
        "question": ["Start at 1. Add 2."] * 2,
        "previous_attempts": [[], ["1 + 2 = 4\n\nThe answer is \\boxed{4}"]],
        "completion": [solution] * 2,
    }
    datasets.Dataset.from_dict(revisions).to_parquet(str(root / "revisions.parquet"))


@contextlib.contextmanager
def _captured_logs():
    """Every log record (ours at INFO, transformers' at INFO) formatted into one string buffer."""
    from transformers.utils import logging as hf_logging

    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    # transformers' and datasets' loggers do not propagate to the root logger.
    loggers = [logging.getLogger(name) for name in ("", "transformers", "datasets")]
    root_level, hf_verbosity = logging.getLogger().level, hf_logging.get_verbosity()
    for logger in loggers:
        logger.addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)
    hf_logging.set_verbosity_info()
    try:
        yield buffer
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
        logging.getLogger().setLevel(root_level)
        hf_logging.set_verbosity(hf_verbosity)


def _run_as_console_script(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, str]:
    """``ttc <argv>`` in this process: exit code, console output, log output."""
    monkeypatch.setattr(sys, "argv", ["ttc", *argv])
    console = io.StringIO()
    with _captured_logs() as log, contextlib.redirect_stdout(console), contextlib.redirect_stderr(console):
        exit_code = main(argv)
    return exit_code, console.getvalue(), log.getvalue()


@pytest.fixture(scope="module")
def runs(tmp_path_factory, random_policy_dir) -> dict[str, StageRun]:
    try:
        import wandb
    except ImportError:
        wandb = None
    report_to = "none" if wandb is None else "wandb"
    root = tmp_path_factory.mktemp("secrets")
    _write_training_data(root)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # two shared cores: a thread per core oversubscribes them
    results = {}
    with pytest.MonkeyPatch.context() as monkeypatch:
        for name, value in (("HF_TOKEN", HF_ENV_TOKEN), ("HUGGING_FACE_HUB_TOKEN", HF_ENV_TOKEN)):
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("WANDB_API_KEY", WANDB_KEY)
        monkeypatch.setenv("WANDB_MODE", "offline")
        monkeypatch.setenv("WANDB_SILENT", "true")
        monkeypatch.setenv("WANDB_DIR", str(root / "wandb_dir"))
        (root / "wandb_dir").mkdir()
        try:
            for stage in STAGES:
                exit_code, console, log = _run_as_console_script(
                    _stage_argv(stage, root, random_policy_dir, report_to), monkeypatch
                )
                # Each `ttc` is its own process, whose W&B run ends with it.
                if wandb is not None and wandb.run is not None:
                    wandb.finish()
                directories = [root / stage] + ([root / "wandb_dir"] if stage == "train-prm" else [])
                results[stage] = StageRun(exit_code, directories, console, log)
        finally:
            # W&B keeps process-wide settings (WANDB_DIR ...) from its first set-up: later tests need a fresh one.
            if wandb is not None:
                wandb.teardown()
            torch.set_num_threads(threads)
    return results


def _files(run: StageRun) -> list[Path]:
    return sorted(p for d in run.directories for p in d.rglob("*") if p.is_file())


def _leaks(run: StageRun) -> list[str]:
    """Where the planted marker appears: file paths, or "console" / "log"."""
    found = [str(p) for p in _files(run) if PLANTED in p.read_bytes()]
    found += [
        channel for channel, text in (("console", run.console), ("log", run.log)) if PLANTED.decode() in text
    ]
    return found


def test_every_stage_ran_and_wrote_what_the_scan_must_cover(runs):
    """The scan means something only if the runs were real and wrote the risky files."""
    assert {stage: run.exit_code for stage, run in runs.items()} == dict.fromkeys(STAGES, 0)
    names = {stage: {p.name for p in _files(run)} for stage, run in runs.items()}
    for trainer in ("train-policy", "train-prm", "train-reviser"):
        assert {"ttc_config.yaml", "training_log.json", "training_args.bin", "trainer_state.json"} <= names[
            trainer
        ]
    assert "README.md" in names["train-prm"] and "README.md" in names["train-reviser"]  # model cards
    assert {"shard-00000.parquet", "stats.json", "manifest.json", "ttc_config.yaml"} <= names["sample"]
    assert {"report.json", "report.md", "ttc_config.yaml"} <= names["report"]
    assert "Training a" in runs["train-prm"].log and "Sampled" in runs["sample"].log


def test_wandb_stages_wrote_offline_runs_for_the_scan(runs):
    """With W&B installed, its offline run files (metadata, logs) are among the files scanned."""
    pytest.importorskip("wandb")
    for stage in WANDB_STAGES:
        names = {p.name for p in _files(runs[stage])}
        assert any(name.endswith(".wandb") for name in names), f"{stage}: no W&B run file"


def test_the_hub_token_flag_is_read_then_redacted_from_the_recorded_command(runs):
    import json

    for trainer in ("train-policy", "train-prm", "train-reviser"):
        command = json.loads((runs[trainer].directories[0] / "training_log.json").read_text())["command"]
        assert command.startswith(f"ttc {trainer} ") and "--hub_token <redacted>" in command


@pytest.mark.parametrize("stage", STAGES)
def test_no_planted_secret_is_written_printed_or_logged(runs, stage):
    leaks = _leaks(runs[stage])
    assert leaks == [], f"ttc {stage} wrote a planted token to {leaks}"


def test_parsing_a_token_flag_redacts_it_from_sys_argv(monkeypatch):
    from ttcompute.core.config import parse_stage_args
    from ttcompute.trainers.prm_config import PRMConfig

    argv = ["train-prm", "--output_dir", "x", "--hub-token", CLI_HUB_TOKEN, "--use_cpu", "true"]
    monkeypatch.setattr(sys, "argv", ["ttc", *argv])
    (config,) = parse_stage_args((PRMConfig,), argv[1:], prog="ttc train-prm")
    assert config.hub_token == CLI_HUB_TOKEN  # the trainer still gets it (for push_to_hub)
    assert sys.argv == [
        "ttc",
        "train-prm",
        "--output_dir",
        "x",
        "--hub-token",
        "<redacted>",
        "--use_cpu",
        "true",
    ]
