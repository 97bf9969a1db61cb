"""``ttc sample``: real sampling with the shipped small policy, shards, resume after SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ttcompute.cli import run_stage
from ttcompute.data_gen.shards import finished_shards, load_sharded
from ttcompute.errors import InputError
from ttcompute.tasks.arithmetic import parse_question

TTC = str(Path(sys.executable).parent / "ttc")


def _args(policy: Path, out: Path, num_problems: int = 12, per_shard: int = 4, n: int = 4) -> list[str]:
    return [
        "--model_name_or_path", str(policy),
        "--num_problems", str(num_problems),
        "--problem_seed", "2024",
        "--num_samples", str(n),
        "--problems_per_shard", str(per_shard),
        "--max_new_tokens", "160",
        "--device", "cpu",
        "--output_dir", str(out),
    ]  # fmt: skip


def _true_answer(question: str) -> str:
    value, ops = parse_question(question)
    for op, b in ops:
        value = {"+": value + b, "-": value - b, "*": value * b}[op]
    return str(value)


@pytest.fixture(scope="module")
def sampled(small_policy_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("samples") / "run"
    run_stage("sample", _args(small_policy_dir, out))
    return out


def test_sample_output_columns_and_grades(sampled):
    data = load_sharded(sampled)
    assert len(data) == 12
    for column in (
        "problem_id",
        "prompt",
        "completions",
        "answers",
        "correct",
        "num_tokens",
        "finish_reasons",
    ):
        assert column in data.column_names
    graded = 0
    for row in data:
        assert len(row["completions"]) == len(row["correct"]) == len(row["num_tokens"]) == 4
        truth = _true_answer(row["question"])
        assert row["gold_answer"] == truth
        for text, answer, correct, tokens in zip(
            row["completions"], row["answers"], row["correct"], row["num_tokens"]
        ):
            assert correct == (answer == truth)  # independent grading of integer answers
            assert tokens == len(text) + (1 if tokens > len(text) else 0)  # chars + EOS
            graded += 1
    assert graded == 48
    stats = json.loads((sampled / "stats.json").read_text())
    total_tokens = sum(sum(t) for t in data["num_tokens"])
    assert stats["compute"]["policy_tokens"] == total_tokens
    assert stats["compute"]["policy_flops"] == 2 * stats["compute"]["policy_parameters"] * total_tokens
    assert (sampled / "ttc_config.yaml").is_file()


def test_shards_split_over_workers_give_the_same_dataset(small_policy_dir, sampled, tmp_path):
    out = tmp_path / "split"
    run_stage("sample", _args(small_policy_dir, out) + ["--shard", "1/2"])
    assert finished_shards(out) == {1}
    with pytest.raises(InputError, match="not finished"):
        load_sharded(out)
    run_stage("sample", _args(small_policy_dir, out) + ["--shard", "0/2"])
    assert load_sharded(out).to_list() == load_sharded(sampled).to_list()


def test_refuses_to_mix_configs_and_keeps_finished_shards(small_policy_dir, sampled, tmp_path):
    out = tmp_path / "mix"
    run_stage("sample", _args(small_policy_dir, out, num_problems=4))
    before = (out / "shard-00000.parquet").read_bytes()
    with pytest.raises(InputError, match="different run"):
        run_stage("sample", _args(small_policy_dir, out, num_problems=4) + ["--temperature", "0.5"])
    assert (out / "shard-00000.parquet").read_bytes() == before


def test_resume_after_sigkill_matches_uninterrupted_run(small_policy_dir, sampled, tmp_path):
    out = tmp_path / "killed"
    args = _args(small_policy_dir, out, per_shard=2)
    env = {**os.environ, "TTC_LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen(
        [TTC, "sample", *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.time() + 120
    while len(finished_shards(out)) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_at_kill = finished_shards(out)
    assert 2 <= len(done_at_kill) < 6
    kept = {i: (out / f"shard-{i:05d}.parquet").read_bytes() for i in done_at_kill}

    result = subprocess.run([TTC, "sample", *args], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    for i, content in kept.items():  # finished shards are not redone
        assert (out / f"shard-{i:05d}.parquet").read_bytes() == content
    assert not list(out.glob(".*tmp"))
    # Same problems, same per-shard seeds: identical to a run that was never interrupted.
    uninterrupted = tmp_path / "whole"
    run_stage("sample", _args(small_policy_dir, uninterrupted, per_shard=2))
    assert load_sharded(out).to_list() == load_sharded(uninterrupted).to_list()
