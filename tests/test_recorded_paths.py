"""Recorded paths are relative to the file that records them (core/recorded_paths.py, issue 39): a
run reads the same from any working directory and after it moves; old files read as before, with a
warning; a missing local checkpoint is "no such directory", never a Hub-id complaint."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
import yaml

from ttcompute.cli import run_stage
from ttcompute.core.errors import InputError
from ttcompute.core.recorded_paths import RECORDED_PATHS, record_options, resolve_options
from ttcompute.core.shards import read_resolved_config


def test_local_paths_are_recorded_relative_to_the_file_and_resolved_from_anywhere(tmp_path, monkeypatch):
    (tmp_path / "run" / "samples").mkdir(parents=True)
    (tmp_path / "run" / "label").mkdir()
    (tmp_path / "cpu").mkdir()  # a bare word that names a folder here is no path of an option like device
    monkeypatch.chdir(tmp_path)
    values = {
        "samples_dir": "run/samples",
        "model_name_or_path": "Qwen/Qwen2.5-Math-1.5B",  # a Hub id: as it is
        "device": "cpu",
        "select_dirs": ["run/samples", "run/label"],
        "output_dir": "run/label",
        "num_samples": 4,
    }
    recorded = record_options(values, tmp_path / "run" / "label")
    assert recorded["samples_dir"] == "../samples" and recorded["output_dir"] == "."
    assert recorded["select_dirs"] == ["../samples", "."]
    assert (recorded["model_name_or_path"], recorded["device"]) == ("Qwen/Qwen2.5-Math-1.5B", "cpu")
    assert recorded[RECORDED_PATHS] == ["output_dir", "samples_dir", "select_dirs"]

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    read = resolve_options(recorded, tmp_path / "run" / "label" / "ttc_config.yaml")
    assert read["samples_dir"] == str(tmp_path / "run" / "samples")
    assert read["select_dirs"] == [str(tmp_path / "run" / "samples"), str(tmp_path / "run" / "label")]
    assert RECORDED_PATHS not in read and read["model_name_or_path"] == "Qwen/Qwen2.5-Math-1.5B"


def test_stages_run_from_other_directories_and_after_the_run_moved(tmp_path, monkeypatch, small_policy_dir):
    """sample from one directory, label from another naming the samples its own way, revisions from a
    third; then the run is moved and a later stage still finds what the earlier ones recorded."""
    for name in ("a", "b", "c", "d"):
        (tmp_path / name).mkdir()
    task = ["--num_problems", "3", "--max_ops", "2", "--max_new_tokens", "40", "--device", "cpu"]
    monkeypatch.chdir(tmp_path / "a")
    run_stage("sample", ["--model_name_or_path", str(small_policy_dir), "--num_samples", "4",
                         "--output_dir", "../run/samples", *task])  # fmt: skip
    monkeypatch.chdir(tmp_path / "b")
    run_stage("label", ["--samples_dir", "../run/samples", "--num_rollouts", "1", "--max_solutions_per_problem",
                        "1", "--device", "cpu", "--max_new_tokens", "40", "--output_dir", "../run/labels"])  # fmt: skip
    monkeypatch.chdir(tmp_path / "c")
    run_stage("revisions", ["--samples_dir", "../run/samples", "--output_dir", "../run/revisions"])
    recorded = yaml.safe_load((tmp_path / "run" / "labels" / "ttc_config.yaml").read_text())
    assert recorded["samples_dir"] == "../samples" and "samples_dir" in recorded[RECORDED_PATHS]

    moved = tmp_path / "d" / "deeper" / "run"
    moved.parent.mkdir()
    (tmp_path / "run").rename(moved)
    monkeypatch.chdir(tmp_path)
    assert read_resolved_config(moved / "labels")["samples_dir"] == str(moved / "samples")
    # The samples' policy is the shipped checkpoint: recorded relative, found where it is installed.
    assert Path(read_resolved_config(moved / "samples")["model_name_or_path"]) == small_policy_dir.resolve()
    # A later stage that reads the labels' recorded options runs against the moved run.
    monkeypatch.chdir(tmp_path / "a")
    run_stage(
        "revisions", ["--samples_dir", str(moved / "samples"), "--output_dir", str(moved / "revisions2")]
    )
    assert (moved / "revisions2" / "manifest.json").is_file()


def test_a_file_written_before_the_rule_reads_from_the_working_directory_with_a_warning(
    tmp_path, monkeypatch, caplog
):
    (tmp_path / "runs" / "samples").mkdir(parents=True)
    out = tmp_path / "runs" / "labels"
    out.mkdir()
    (out / "ttc_config.yaml").write_text(yaml.safe_dump({"samples_dir": "runs/samples", "num_rollouts": 2}))
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.WARNING):
        values = read_resolved_config(out)
    assert values == {"samples_dir": "runs/samples", "num_rollouts": 2}
    assert "ttc_config.yaml was written before recorded paths were stored relative to it" in caplog.text
    assert str(out / "ttc_config.yaml") in caplog.text


def test_a_missing_local_checkpoint_is_no_such_directory_not_a_hub_id(tmp_path, monkeypatch):
    from ttcompute.models.prm_formats import load_prm

    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError) as err:
        load_prm("runs/demo/prm/prm", device="cpu")
    assert str(err.value) == (
        f"runs/demo/prm/prm: cannot load the PRM: no such directory: runs/demo/prm/prm (resolved against {tmp_path})"
    )
    assert "Repo id" not in str(err.value)


def test_a_strategies_file_names_its_search_relative_to_itself(tmp_path):
    from ttcompute.eval.routing_policy import _strategy_settings

    select = tmp_path / "select"
    select.mkdir()
    (tmp_path / "search").mkdir()
    (select / "strategies.json").write_text(
        json.dumps({"search_dir": "../search", RECORDED_PATHS: ["/search_dir"], "strategies": {}})
    )
    cwd = os.getcwd()
    assert _strategy_settings([str(select)])[1] == [str(tmp_path / "search")]
    assert os.getcwd() == cwd


def test_a_checkpoint_is_identified_by_its_content_not_its_path(tmp_path, small_policy_dir):
    import shutil

    from ttcompute.core.checkpoint_identity import checkpoint_identity, same_checkpoint

    copy = tmp_path / "clone_b" / "policy_small"
    shutil.copytree(small_policy_dir, copy)
    assert checkpoint_identity(copy) == checkpoint_identity(small_policy_dir)
    assert checkpoint_identity(copy).startswith("sha256:")
    assert same_checkpoint(str(small_policy_dir.resolve()), copy)  # a record from before: a path
    assert checkpoint_identity("Qwen/Qwen2.5-Math-1.5B") == "Qwen/Qwen2.5-Math-1.5B"
    # Another checkpoint at the same path is not the same policy.
    before = checkpoint_identity(copy)
    data = bytearray((copy / "model.safetensors").read_bytes())
    data[-1] ^= 1
    (copy / "model.safetensors").write_bytes(bytes(data))
    assert checkpoint_identity(copy) != before and not same_checkpoint(before, copy)


# Three stages (~5 s): `make test-slow`; content identity itself is checked just above.
@pytest.mark.slow
def test_a_probe_trained_on_samples_of_a_copy_of_the_policy_bins_the_originals_samples(
    tmp_path, small_policy_dir
):
    """The samples of two clones of the same shipped policy are the same policy's samples."""
    import shutil

    copy = tmp_path / "clone_b" / "policy_small"
    shutil.copytree(small_policy_dir, copy)
    task = ["--max_ops", "2", "--max_new_tokens", "40", "--device", "cpu", "--num_samples", "2"]
    run_stage("sample", ["--model_name_or_path", str(copy), "--num_problems", "12", "--problem_seed", "5",
                         *task, "--output_dir", str(tmp_path / "train")])  # fmt: skip
    run_stage("sample", ["--model_name_or_path", str(small_policy_dir), "--num_problems", "4",
                         "--problem_seed", "9", *task, "--output_dir", str(tmp_path / "samples")])  # fmt: skip
    run_stage("difficulty", ["--samples_dir", str(tmp_path / "samples"), "--predictor", "question",
                             "--probe_train_samples_dir", str(tmp_path / "train"), "--num_bins", "2",
                             "--device", "cpu", "--output_dir", str(tmp_path / "difficulty")])  # fmt: skip
    assert (tmp_path / "difficulty" / "question_probe.json").is_file()
