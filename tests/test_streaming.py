"""Stages stream their input: a million completions on disk, peak memory of each stage stays bounded.

Each stage runs in its own process, which reports its own peak resident set (``VmHWM``) as it ends. The completions hold more text than the bound, so a stage that held them all would fail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from synthetic_samples import write_synthetic_samples

# Peak RSS bound per stage (measured: difficulty 165, revisions 300, merge 263 MiB; before streaming,
# revisions held every completion: 858 MiB). Python + datasets + pyarrow start at ~150 MiB; streaming
# stages hold one input shard (50 problems x 500 completions here) and the output's summary columns.
PEAK_RSS_BOUND_MIB = 400
NUM_PROBLEMS, SAMPLES_PER_PROBLEM = 2000, 500


@pytest.fixture(scope="module")
def million_samples(tmp_path_factory):
    path = tmp_path_factory.mktemp("million") / "samples"
    text_chars = write_synthetic_samples(
        path, NUM_PROBLEMS, SAMPLES_PER_PROBLEM, problems_per_shard=50, text_chars=600
    )
    assert NUM_PROBLEMS * SAMPLES_PER_PROBLEM >= 1_000_000
    assert text_chars > PEAK_RSS_BOUND_MIB * 2**20  # holding every completion would break the bound
    return path


# The stage's own high-water mark, read by the process itself as it ends. Not ``ru_maxrss`` from
# ``wait4``: Linux folds the forking parent's resident set (this test process, hundreds of MiB late in
# a suite) into the child's maximum at exec.
_RUN_AND_REPORT_PEAK = """
import sys
from ttcompute.cli import main
code = main(sys.argv[2:])
status = open("/proc/self/status").read().splitlines()
open(sys.argv[1], "w").write(next(line for line in status if line.startswith("VmHWM:")).split()[1])
sys.exit(code)
"""


def peak_rss_mib(args: list[str], report: Path) -> float:
    """Run ``ttc *args`` to the end in a fresh process; its peak resident set size in MiB."""
    env = {**os.environ, "TTC_LOG_LEVEL": "WARNING", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-c", _RUN_AND_REPORT_PEAK, str(report), *args],
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return int(report.read_text()) / 1024  # VmHWM is in kB


# Slow, with the merge one: ttc revisions, the stage that held every completion before, stays in the
# default suite on the same million completions.
@pytest.mark.slow
def test_difficulty_streams_a_million_completions(million_samples, tmp_path):
    out = tmp_path / "difficulty"
    peak = peak_rss_mib(
        ["difficulty", "--samples_dir", str(million_samples), "--output_dir", str(out)], tmp_path / "peak"
    )
    stats = json.loads((out / "stats.json").read_text())
    assert stats["num_problems"] == NUM_PROBLEMS
    assert peak < PEAK_RSS_BOUND_MIB, f"ttc difficulty peaked at {peak:.0f} MiB"


@pytest.mark.slow  # a million completions, ~16 s; difficulty's streaming test above runs by default
def test_revisions_streams_a_million_completions(million_samples, tmp_path):
    out = tmp_path / "revisions"
    peak = peak_rss_mib(
        ["revisions", "--samples_dir", str(million_samples), "--output_dir", str(out)], tmp_path / "peak"
    )
    stats = json.loads((out / "stats.json").read_text())
    # Every third problem has one correct sample: one trajectory each, the others are skipped.
    assert stats["num_trajectories"] == -(-NUM_PROBLEMS // 3)
    assert stats["problems_without_correct_sample"] == NUM_PROBLEMS - stats["num_trajectories"]
    assert peak < PEAK_RSS_BOUND_MIB, f"ttc revisions peaked at {peak:.0f} MiB"


@pytest.mark.slow
def test_merge_and_its_stats_stream_a_million_completions(million_samples, tmp_path):
    out = tmp_path / "merged"
    peak = peak_rss_mib(
        ["merge", "--inputs", str(million_samples), "--output_dir", str(out)], tmp_path / "peak"
    )
    stats = json.loads((out / "stats.json").read_text())
    assert stats["num_samples"] == NUM_PROBLEMS * SAMPLES_PER_PROBLEM
    assert stats["pass_at_1"] == round(-(-NUM_PROBLEMS // 3) / stats["num_samples"], 4)
    assert peak < PEAK_RSS_BOUND_MIB, f"ttc merge peaked at {peak:.0f} MiB"
