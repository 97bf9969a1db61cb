"""``ttc demo``: the whole pipeline at toy size, then a rerun that resumes instead of redoing."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from ttcompute.cli import run_stage
from ttcompute.errors import InputError
from ttcompute.eval.report import flatten

REPO = Path(__file__).resolve().parents[1]
TOY = ["--fast", "true", "--num_problems", "6", "--num_samples", "4", "--budgets", "1", "2",
       "--prm_problems", "6", "--reviser_problems", "12", "--reviser_samples", "8"]  # fmt: skip


def test_demo_runs_end_to_end_and_resumes(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(REPO)  # the demo reads configs/
    out = tmp_path / "demo"
    report = run_stage("demo", [*TOY, "--output_dir", str(out)])
    saved = json.loads((out / "report" / "report.json").read_text())
    flat = flatten(saved)
    for key in ("policy.small.pass_at_1", "policy.large.pass_at_1", "prm.first_error_f1", "reviser.pass_at_1_by_step",
                "search.best_of_n_weighted.2", "search.beam_search.2", "search.revisions.2", "compute_optimal.2",
                "compute_optimal.efficiency_vs_best_of_n", "flops_matched.22.all.small_ttc", "cost.total_flops",
                "wall_seconds"):  # fmt: skip
        assert key in flat, key
    assert report["policy"] == saved["policy"] and saved["cost"]["total_flops"] > 0
    markdown = (out / "report" / "report.md").read_text()
    assert "![compute-optimal](compute_optimal_vs_best_of_n.png)" in markdown
    assert (out / "report" / "flops_matched.png").is_file()

    # A rerun resumes: every sharded stage finds its shards, trained models are reused.
    caplog.set_level(logging.INFO, logger="ttcompute.demo")
    run_stage("demo", [*TOY, "--output_dir", str(out)])
    assert "train-prm: reusing" in caplog.text and "train-reviser: reusing" in caplog.text
    assert json.loads((out / "report" / "report.json").read_text())["search"] == saved["search"]


def test_demo_outside_the_repository_says_so(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match="run the demo from the repository root"):
        run_stage("demo", ["--fast", "true", "--output_dir", str(tmp_path / "d")])
