"""W&B and the Hub for the long stages: ``--report_to wandb`` on sample/label/revisions/search logs
progress and stats (offline here), ``--push_to_hub`` uploads a finished label or revisions output as a
Hub dataset with its card (a fake Hub API here); neither is part of a run's identity, and the token
is written nowhere."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ttcompute.cli import run_stage
from ttcompute.core.shards import read_manifest

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SECRET = "hf_trackingsecret1234567890"


@pytest.fixture(scope="module")
def sampled(small_policy_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tracking") / "samples"
    run_stage("sample", [
        "--model_name_or_path", str(small_policy_dir), "--task", "arithmetic", "--num_problems", "4",
        "--num_samples", "2", "--max_new_tokens", "100", "--problems_per_shard", "2", "--device", "cpu",
        "--output_dir", str(out),
    ])  # fmt: skip
    return out


@pytest.fixture
def offline_wandb(monkeypatch, tmp_path):
    wandb = pytest.importorskip("wandb", reason="wandb is not installed")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    yield wandb
    if wandb.run is not None:
        wandb.finish()
    wandb.teardown()


def offline_run(output_dir: Path) -> Path:
    runs = list((output_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, f"expected one offline W&B run under {output_dir}, found {runs}"
    assert list(runs[0].glob("run-*.wandb")), "the run recorded nothing"
    return runs[0]


@pytest.fixture
def recorded(monkeypatch) -> dict:
    """What the stage handed W&B: the run's config, each ``log`` and the final summary (W&B's own
    offline files are its business; the real run is still written)."""
    import wandb

    import ttcompute.core.tracking as tracking

    seen: dict = {"logs": [], "summary": None, "config": None}
    init, log, finish = (
        tracking.StageTracker.__init__,
        tracking.StageTracker.log,
        tracking.StageTracker.finish,
    )

    def record_init(self, stage, options, config, output_dir):
        init(self, stage, options, config, output_dir)
        seen["config"] = dict(wandb.run.config) if self.run is not None else None

    def record_log(self, values):
        seen["logs"].append(dict(values))
        log(self, values)

    def record_finish(self, stats):
        seen["summary"] = tracking.flatten(stats) if stats is not None else None
        finish(self, stats)

    monkeypatch.setattr(tracking.StageTracker, "__init__", record_init)
    monkeypatch.setattr(tracking.StageTracker, "log", record_log)
    monkeypatch.setattr(tracking.StageTracker, "finish", record_finish)
    return seen


def test_sample_logs_progress_and_stats_to_wandb_without_changing_its_identity(
    small_policy_dir, tmp_path, offline_wandb, recorded
):
    out = tmp_path / "samples"
    args = [
        "--model_name_or_path", str(small_policy_dir), "--task", "arithmetic", "--num_problems", "4",
        "--num_samples", "2", "--max_new_tokens", "100", "--problems_per_shard", "2", "--device", "cpu",
        "--output_dir", str(out),
    ]  # fmt: skip
    plain = run_stage("sample", args)
    assert recorded["config"] is None and not (out / "wandb").exists()  # off by default
    digest = read_manifest(out)["config_hash"]
    recorded["logs"].clear()
    # W&B on, in a fresh directory: the same identity (a resumed run would not see a "different run").
    tracked_out = tmp_path / "tracked"
    tracked = run_stage(
        "sample", [*args[:-1], str(tracked_out), "--report_to", "wandb", "--wandb_run_name", "s1"]
    )
    assert read_manifest(tracked_out)["config_hash"] == digest
    assert tracked["pass_at_1"] == plain["pass_at_1"]
    offline_run(tracked_out)
    assert recorded["config"]["num_samples"] == 2 and recorded["config"]["report_to"] == "wandb"
    assert [entry["shards_done"] for entry in recorded["logs"]] == [1, 2]
    assert sum(entry["policy_tokens"] for entry in recorded["logs"]) == plain["compute"]["policy_tokens"]
    assert recorded["summary"]["num_samples"] == 8
    assert recorded["summary"]["compute/policy_tokens"] == plain["compute"]["policy_tokens"]


def test_search_logs_each_shards_spend(small_policy_dir, tmp_path, offline_wandb, recorded):
    out = tmp_path / "search"
    stats = run_stage("search", [
        "--model_name_or_path", str(small_policy_dir), "--task", "arithmetic", "--num_problems", "2",
        "--methods", "best_of_n", "--budgets", "1", "2", "--max_new_tokens", "60", "--device", "cpu",
        "--report_to", "wandb", "--output_dir", str(out),
    ])  # fmt: skip
    logged = recorded["logs"]
    assert [entry["shards_done"] for entry in logged] == list(range(1, len(logged) + 1))
    # Each problem's spend once per shard: the shards add up to the stage's own total.
    assert sum(entry["policy_tokens"] for entry in logged) == stats["compute"]["policy_tokens"]
    offline_run(out)


def test_label_pushes_its_dataset_with_a_card_and_no_token(sampled, tmp_path, offline_hub, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    out = tmp_path / "labels"
    run_stage("label", [
        "--samples_dir", str(sampled), "--num_rollouts", "1", "--max_new_tokens", "60", "--device", "cpu",
        "--problems_per_shard", "2", "--output_dir", str(out), "--push_to_hub", "true",
        "--hub_dataset_id", "me/arith-labels", "--hub_private_repo", "true",
    ])  # fmt: skip
    (api,) = offline_hub.api.instances
    assert api.created == [
        {"repo_id": "me/arith-labels", "repo_type": "dataset", "private": True, "exist_ok": True}
    ]
    (upload,) = api.uploads
    assert upload["repo_type"] == "dataset" and upload["repo_id"] == "me/arith-labels"
    # What the Hub receives, after the push's allow_patterns: every shard, the card and the records.
    shards = sorted(path.name for path in out.glob("shard-*.parquet"))
    assert len(shards) == 2
    assert sorted(upload["uploaded_files"]) == sorted(
        [*shards, "README.md", "manifest.json", "stats.json", "ttc_config.yaml"]
    )
    card = (out / "README.md").read_text()
    header = yaml.safe_load(card.split("---\n")[1])
    assert header["configs"][0]["data_files"] == [{"split": "train", "path": "shard-*.parquet"}]
    for fact in (
        "labeller",
        "rollouts per step",
        "prompt contract",
        str(sampled),
        "template '{question}\\n'",
    ):
        assert fact in card, fact
    assert offline_hub.connects == []
    for path in out.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_revisions_pushes_its_dataset(sampled, tmp_path, offline_hub):
    out = tmp_path / "revisions"
    run_stage("revisions", ["--samples_dir", str(sampled), "--output_dir", str(out), "--push_to_hub", "true"])
    (api,) = offline_hub.api.instances
    # Default: the directory's name, which the Hub puts under the token's namespace.
    assert api.created == [
        {"repo_id": "revisions", "repo_type": "dataset", "private": None, "exist_ok": True}
    ]
    (upload,) = api.uploads
    assert upload["repo_id"] == f"{api.user}/revisions" and upload["repo_type"] == "dataset"
    shards = sorted(path.name for path in out.glob("shard-*.parquet"))
    assert shards and set(shards) | {"README.md"} <= set(upload["uploaded_files"])
    card = (out / "README.md").read_text()
    assert "reviser format" in card and "prompt contract" in card


def test_an_unknown_report_to_is_refused_before_anything_runs(tmp_path):
    from ttcompute.core.errors import InputError

    with pytest.raises(InputError, match="report_to must be one of"):
        run_stage(
            "revisions",
            ["--samples_dir", str(tmp_path), "--output_dir", str(tmp_path / "o"), "--report_to", "tb"],
        )
    assert not (tmp_path / "o").exists()
