"""``ttc sample``: real sampling with the shipped small policy, shards, resume after SIGKILL."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import arithmetic_answer
from transformers import AutoModelForCausalLM, AutoTokenizer

from ttcompute.cli import run_stage
from ttcompute.core.errors import InputError
from ttcompute.core.shards import finished_shards, load_sharded

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


@pytest.fixture(scope="module")
def sampled(small_policy_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("samples") / "run"
    run_stage("sample", _args(small_policy_dir, out))
    return out


def test_sample_output_columns_and_grades(sampled, small_policy_dir):
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
    tokenizer = AutoTokenizer.from_pretrained(small_policy_dir)
    graded, recounted, reasons = 0, 0, []
    for row in data:
        assert len(row["completions"]) == len(row["correct"]) == len(row["num_tokens"]) == 4
        truth = arithmetic_answer(row["question"])
        assert row["gold_answer"] == truth
        for text, answer, correct, tokens, reason in zip(
            row["completions"], row["answers"], row["correct"], row["num_tokens"], row["finish_reasons"]
        ):
            assert correct == (answer == truth)  # independent grading of integer answers
            # The text's own tokens, plus the EOS the text leaves out; a capped one used the whole cap.
            expected = len(tokenizer(text, add_special_tokens=False)["input_ids"]) + (reason == "eos")
            assert tokens == expected, (text, reason)
            assert reason == "eos" or (reason == "length" and tokens == 160)
            recounted += expected
            reasons.append(reason)
            graded += 1
    assert graded == 48 and "eos" in reasons
    stats = json.loads((sampled / "stats.json").read_text())
    parameters = sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(small_policy_dir).parameters())
    assert stats["compute"]["policy_parameters"] == parameters
    assert stats["compute"]["policy_tokens"] == recounted
    assert stats["compute"]["policy_flops"] == 2 * parameters * recounted
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


# Slow (~19 s): the shard writer and resume are the ones every stage shares; the search stage's SIGKILL
# test and the lost-shard tests keep them in the default suite.
@pytest.mark.slow
def test_resume_after_sigkill_matches_uninterrupted_run(small_policy_dir, sampled, tmp_path):
    from killing import kill_after_shards, run_ttc, shard_bytes

    out = tmp_path / "killed"
    args = ["sample", *_args(small_policy_dir, out, per_shard=2)]
    done_at_kill = kill_after_shards(args, out, shards=2)
    assert 2 <= len(done_at_kill) < 6
    kept = shard_bytes(out)
    (out / ".shard-00005.parquet.99999.tmp").write_bytes(b"PAR1 half a shard")  # a kill mid-write
    run_ttc(args)
    after = shard_bytes(out)
    assert {name: after[name] for name in kept} == kept  # finished shards are not redone
    # Same problems, same per-shard seeds: identical to a run that was never interrupted.
    uninterrupted = tmp_path / "whole"
    run_stage("sample", _args(small_policy_dir, uninterrupted, per_shard=2))
    assert after == shard_bytes(uninterrupted)
    assert (out / "stats.json").read_bytes() == (uninterrupted / "stats.json").read_bytes()


def test_workers_in_separate_directories_merge_into_the_single_run(small_policy_dir, sampled, tmp_path):
    nodes = [tmp_path / "node0", tmp_path / "node1"]
    for i, node in enumerate(nodes):  # e.g. a job array whose tasks write to local disks
        run_stage("sample", _args(small_policy_dir, node) + ["--shard", f"{i}/2"])
    assert finished_shards(nodes[0]) == {0, 2} and finished_shards(nodes[1]) == {1}
    merged = tmp_path / "merged"
    result = run_stage("merge", ["--inputs", str(tmp_path / "node*"), "--output_dir", str(merged)])
    assert result["copied"] == 3 and result["missing"] == []
    for i in range(3):
        name = f"shard-{i:05d}.parquet"
        assert (merged / name).read_bytes() == (sampled / name).read_bytes()
    assert json.loads((merged / "stats.json").read_text()) == json.loads((sampled / "stats.json").read_text())
    assert (merged / "ttc_config.yaml").is_file()
