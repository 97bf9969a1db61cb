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
        "dataset_name": "run/samples,run/label",  # several outputs trained on together
        "prompt_template": "{question}, then",  # a comma, but no paths
        "output_dir": "run/label",
        "num_samples": 4,
    }
    recorded = record_options(values, tmp_path / "run" / "label")
    assert recorded["samples_dir"] == "../samples" and recorded["output_dir"] == "."
    assert recorded["select_dirs"] == ["../samples", "."] and recorded["dataset_name"] == "../samples,."
    assert (recorded["model_name_or_path"], recorded["device"]) == ("Qwen/Qwen2.5-Math-1.5B", "cpu")
    assert recorded[RECORDED_PATHS] == ["dataset_name", "output_dir", "samples_dir", "select_dirs"]

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    read = resolve_options(recorded, tmp_path / "run" / "label" / "ttc_config.yaml")
    assert read["samples_dir"] == str(tmp_path / "run" / "samples")
    assert read["select_dirs"] == [str(tmp_path / "run" / "samples"), str(tmp_path / "run" / "label")]
    assert read["dataset_name"] == ",".join(read["select_dirs"])
    assert read["prompt_template"] == "{question}, then"
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
    # `ttc merge` recomputes the revisions' stats from the samples their manifest names.
    assert (
        json.loads((moved / "revisions" / "manifest.json").read_text())["info"]["samples_dir"] == "../samples"
    )
    merged = run_stage("merge", ["--inputs", str(moved / "revisions"), "--output_dir", "merged"])
    assert merged["stats"] == json.loads((moved / "revisions" / "stats.json").read_text())


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

    # A likelihood PRM is its calibration over its base's content, however the base's path is written.
    spec = {"format": "ttcompute-likelihood", "weight": 0.8, "bias": 0.1, RECORDED_PATHS: ["base_model"]}
    for name, base in (("a", str(small_policy_dir)), ("b/c", "../../clone_b/policy_small")):
        (tmp_path / name).mkdir(parents=True)
        (tmp_path / name / "likelihood_prm.json").write_text(json.dumps({**spec, "base_model": base}))
    assert checkpoint_identity(tmp_path / "a") != checkpoint_identity(tmp_path / "b/c")  # other weights
    shutil.copytree(small_policy_dir, copy, dirs_exist_ok=True)
    assert checkpoint_identity(tmp_path / "a") == checkpoint_identity(tmp_path / "b/c")
    (tmp_path / "a" / "likelihood_prm.json").write_text(
        json.dumps({**spec, "base_model": str(copy), "bias": 0.2})
    )
    assert checkpoint_identity(tmp_path / "a") != checkpoint_identity(tmp_path / "b/c")


def test_a_hub_cache_snapshot_is_the_same_checkpoint_as_its_copy_and_its_weights_are_not_read(
    tmp_path, monkeypatch, small_policy_dir
):
    """The Hub's cache keeps each LFS file under its sha256 (blobs/<sha256>, linked from
    snapshots/<rev>/): the identity reads that name, not gigabytes, and equals a plain copy's."""
    import hashlib
    import shutil

    from ttcompute.core import checkpoint_identity as identity

    blobs, snapshot = tmp_path / "hub" / "blobs", tmp_path / "hub" / "snapshots" / "abc123"
    blobs.mkdir(parents=True)
    snapshot.mkdir(parents=True)
    for file in small_policy_dir.iterdir():
        if file.is_file():
            blob = blobs / hashlib.sha256(file.read_bytes()).hexdigest()
            shutil.copyfile(file, blob)
            (snapshot / file.name).symlink_to(os.path.relpath(blob, snapshot))
    read: list[str] = []
    real = identity.file_sha256
    monkeypatch.setattr(identity, "file_sha256", lambda path: read.append(Path(path).name) or real(path))
    copy = shutil.copytree(small_policy_dir, tmp_path / "copy")  # not hashed yet in this process
    assert identity.checkpoint_identity(snapshot) == identity.checkpoint_identity(copy)
    assert "model.safetensors" in read  # the plain checkpoint's weights were read ...
    read.clear()
    identity._cache.clear()
    identity.checkpoint_identity(snapshot)
    assert read == []  # ... the snapshot's were named by the cache


def test_a_run_resumes_from_anywhere_but_not_on_new_weights_at_the_same_path(
    tmp_path, monkeypatch, caplog, small_policy_dir
):
    """The config hash names inputs by what they are (core/checkpoint_identity.input_identity): a run
    resumed from another directory, its paths spelled another way, is the same run; new weights
    written where the policy was are not; an output begun before the rule still resumes."""
    import shutil

    from ttcompute.core import sharded_stage
    from ttcompute.core.shards import load_sharded

    shutil.copytree(small_policy_dir, tmp_path / "policy")
    for name in ("a", "b/c"):
        (tmp_path / name).mkdir(parents=True)
    task = ["--num_problems", "4", "--problems_per_shard", "2", "--num_samples", "2", "--max_ops", "2",
            "--max_new_tokens", "40", "--device", "cpu"]  # fmt: skip
    monkeypatch.chdir(tmp_path / "a")
    run_stage("sample", ["--model_name_or_path", "../policy", *task, "--output_dir", "../run/samples"])
    out = tmp_path / "run" / "samples"
    rows = load_sharded(out).to_list()
    (out / "shard-00001.parquet").unlink()

    monkeypatch.chdir(tmp_path / "b" / "c")
    with caplog.at_level(logging.INFO, logger="ttcompute.core.sharded_stage"):
        run_stage(
            "sample", ["--model_name_or_path", str(tmp_path / "policy"), *task, "--output_dir", str(out)]
        )
    assert "Resuming: 1 of 2 shards already finished" in caplog.text
    assert load_sharded(out).to_list() == rows

    data = bytearray((tmp_path / "policy" / "model.safetensors").read_bytes())
    data[-1] ^= 1  # other weights, same path
    (tmp_path / "policy" / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(InputError, match="holds output of a different run"):
        run_stage(
            "sample", ["--model_name_or_path", "../../policy", *task, "--output_dir", "../../run/samples"]
        )

    # Begun by the code before the rule (its hash of the paths as typed), resumed by this one.
    old = tmp_path / "run" / "old"
    with monkeypatch.context() as before:
        before.setattr(sharded_stage, "identified_inputs", lambda values: values)
        run_stage("sample", ["--model_name_or_path", "../../policy", *task, "--output_dir", str(old)])
    (old / "shard-00000.parquet").unlink()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="ttcompute.core.sharded_stage"):
        run_stage("sample", ["--model_name_or_path", "../../policy", *task, "--output_dir", str(old)])
    assert "Resuming: 1 of 2 shards already finished" in caplog.text


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


# The whole demo chain again (~60 s): `make test-slow`. The default suite runs sample, label and
# revisions from other directories (above) and search -> select -> compute-optimal -> route from
# others (tests/test_route.py's pipeline).
@pytest.mark.slow
def test_every_stage_of_the_demo_runs_from_another_directory_and_the_finished_run_moves(
    tmp_path, monkeypatch, caplog
):
    """Each stage of ``ttc demo`` (sample -> label -> train-prm -> revisions -> train-reviser -> search
    -> select -> compute-optimal ...) started from a directory of its own, every path it is given
    written relative to there; then the finished run is moved, and select, compute-optimal and route
    run against it from yet another directory and give what they gave before."""
    import shutil

    from conftest import run_from
    from test_demo import REPO, TOY

    from ttcompute import demo
    from ttcompute.core.shards import load_sharded
    from ttcompute.eval.routing_policy import load_routing_policy

    ran = []

    def from_elsewhere(stage: str, args: list[str]):
        cwd = tmp_path / "cwds" / f"{len(ran):02d}-{stage}" / ("a/b" if len(ran) % 2 else "")
        ran.append((stage, args))
        return run_from(cwd, stage, args)

    monkeypatch.setattr(demo, "run_stage", from_elsewhere)
    monkeypatch.chdir(REPO)
    out = tmp_path / "run" / "demo"
    with caplog.at_level(logging.WARNING):
        run_stage("demo", [*TOY, "--output_dir", str(out)])
    # The report matched each evaluated PRM with the one its search used, however either was spelled.
    assert "selected from a search with" not in caplog.text
    stages = {stage for stage, _ in ran}
    assert {"sample", "label", "train-prm", "revisions", "train-reviser", "search", "select", "difficulty",
            "compute-optimal", "flops-matched", "report"} <= stages  # fmt: skip
    # What each stage recorded is relative to its own output, not to where it ran.
    recorded = yaml.safe_load((out / "reviser" / "trajectories" / "ttc_config.yaml").read_text())
    assert recorded["samples_dir"] == "../train_samples"
    assert yaml.safe_load((out / "search" / "ttc_config.yaml").read_text())["prm"] == "../prm/prm"
    policy_file = out / "compute_optimal_question" / "routing_policy.json"
    assert json.loads(policy_file.read_text())["searches"][0]["search_dir"] == "../search"

    new = ["--num_problems", "4", "--problem_seed", "4242", "--budget", "2"]
    monkeypatch.chdir(tmp_path / "cwds")
    run_stage("route", ["--policy", os.path.relpath(policy_file), *new, "--output_dir", "routed"])

    moved = tmp_path / "elsewhere" / "deeper" / "demo"
    moved.parent.mkdir(parents=True)
    out.rename(moved)
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    run_stage("select", ["--search_dir", str(moved / "search"), "--difficulty_dir",
                         "../elsewhere/deeper/demo/difficulty_question", "--output_dir", "select"])  # fmt: skip
    run_stage("compute-optimal", ["--select_dirs", "select", "--difficulty_dir", str(moved / "difficulty_question"),
                                  "--output_dir", "co"])  # fmt: skip
    again = load_routing_policy("co/routing_policy.json")
    before = load_routing_policy(moved / "compute_optimal_question" / "routing_policy.json")
    assert again["rule"] == before["rule"] and again["predictor"]["edges"] == before["predictor"]["edges"]
    assert (
        again["predictor"]["difficulty_dir"]
        == before["predictor"]["difficulty_dir"]
        == str(moved / "difficulty_question")
    )
    run_stage("route", ["--policy", str(moved / "compute_optimal_question" / "routing_policy.json"), *new,
                        "--output_dir", "routed"])  # fmt: skip
    columns = ["problem_id", "strategy", "answer", "policy_flops", "prm_flops"]
    routed_before = load_sharded(tmp_path / "cwds" / "routed").select_columns(columns).to_list()
    assert load_sharded("routed").select_columns(columns).to_list() == routed_before
    shutil.rmtree(moved.parent)
