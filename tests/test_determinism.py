"""Determinism: the same seed and config on the same backend give byte-identical outputs.

Two replicas of a tiny pipeline -- ``ttc sample``, ``ttc label`` (exhaustive and binary search) on
those samples, ``ttc search`` with every method (revisions included) -- each into its own directory:
one in this process, one in a fresh ``ttc`` process with another ``PYTHONHASHSEED``, so an output
that depended on leftover process state or on set / dict-of-str iteration order would show up
here. Every file of every stage is compared byte for byte; the one legitimate difference is that
``ttc_config.yaml`` names each replica's own directories (``output_dir``, ``samples_dir``).

So that the comparison can fail, other seeds must change the shards; and ``--shard i/n`` workers must
write the same shards as one worker.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ttcompute.cli import run_stage

SAMPLE = ["--num_problems", "4", "--problem_seed", "7", "--max_ops", "3", "--num_samples", "3"]
SAMPLE += ["--max_new_tokens", "80", "--problems_per_shard", "2", "--device", "cpu"]
LABEL = ["--num_rollouts", "2", "--rollout_chunk", "1", "--max_new_tokens", "80"]
LABEL += ["--problems_per_shard", "2", "--device", "cpu"]
SEARCH = ["--num_problems", "2", "--problem_seed", "4242", "--max_ops", "3", "--max_new_tokens", "80"]
SEARCH += ["--max_step_tokens", "30", "--budgets", "1", "2", "4", "--lookahead_steps", "1"]
SEARCH += ["--methods", "best_of_n", "beam_search", "lookahead", "dvts", "revisions"]
SEARCH += ["--revision_lengths", "2", "--problems_per_shard", "1", "--device", "cpu"]
STAGES = ("sample", "label", "label_binary_search", "search")

# One process per replica, every stage through the CLI's own entry point; a stage that fails stops it.
DRIVER = """
import json, sys
from ttcompute.cli import main
for argv in json.loads(sys.argv[1]):
    if main(argv) != 0:
        sys.exit(f"ttc {' '.join(argv)} failed")
"""


def _sample_argv(policy: Path, out: Path, *extra: str) -> list[str]:
    return ["sample", "--model_name_or_path", str(policy), *SAMPLE, "--output_dir", str(out), *extra]


def _label_argv(samples: Path, out: Path, *extra: str) -> list[str]:
    return ["label", "--samples_dir", str(samples), *LABEL, "--output_dir", str(out), *extra]


def _search_argv(policy: Path, prm: Path, out: Path, *extra: str) -> list[str]:
    models = ["--model_name_or_path", str(policy), "--prm", str(prm), "--reviser", str(policy)]
    return ["search", *models, *SEARCH, "--output_dir", str(out), *extra]


def _pipeline(root: Path, policy: Path, prm: Path) -> list[list[str]]:
    """The command lines of one replica, writing ``root/<stage>``."""
    return [
        _sample_argv(policy, root / "sample"),
        _label_argv(root / "sample", root / "label"),
        _label_argv(root / "sample", root / "label_binary_search", "--labeller", "binary_search"),
        _search_argv(policy, prm, root / "search"),
    ]


def _start_replica(root: Path, policy: Path, prm: Path) -> subprocess.Popen:
    """The pipeline in a fresh process whose string hashes differ from this one's."""
    hash_seed = str(int(os.environ.get("PYTHONHASHSEED", "0") or 0) + 1)
    env = {**os.environ, "PYTHONHASHSEED": hash_seed, "OMP_NUM_THREADS": "1", "TTC_LOG_LEVEL": "WARNING"}
    command = [sys.executable, "-c", DRIVER, json.dumps(_pipeline(root, policy, prm))]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def replicas(tmp_path_factory, small_policy_dir, likelihood_prm_dir) -> tuple[Path, Path]:
    """Two replicas of the pipeline run side by side (one core each), one in a fresh process and one
    in this one (which has run other tests before: state left over from them must not matter)."""
    roots = (tmp_path_factory.mktemp("replica_a"), tmp_path_factory.mktemp("replica_b"))
    process = _start_replica(roots[1], small_policy_dir, likelihood_prm_dir)
    try:
        for argv in _pipeline(roots[0], small_policy_dir, likelihood_prm_dir):
            run_stage(argv[0], argv[1:])
    finally:
        _, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr[-4000:]
    return roots


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def _config_without(raw: bytes, *keys: str) -> dict:
    values = yaml.safe_load(raw)
    return {k: v for k, v in values.items() if k not in keys}


@pytest.mark.parametrize("stage", STAGES)
def test_same_seed_and_config_give_byte_identical_files(replicas, stage):
    first, second = (_files(root / stage) for root in replicas)
    assert sorted(first) == sorted(second)
    data_files = [name for name in first if name != "ttc_config.yaml"]
    assert {"manifest.json", "stats.json", "shard-00000.parquet"} <= set(data_files)
    differing = [name for name in data_files if first[name] != second[name]]
    assert differing == [], f"ttc {stage}: {differing} differ between two identical runs"
    # The resolved config names the replica's own directories relative to itself (output_dir ".",
    # samples_dir "../sample"; core/recorded_paths.py): the same bytes in both replicas.
    configs = [_files(root / stage)["ttc_config.yaml"] for root in replicas]
    assert b"output_dir: .\n" in configs[0]
    assert configs[0] == configs[1]


def test_the_replicas_did_real_work(replicas):
    """Identical empty outputs would prove nothing: the runs sampled, labelled and searched."""
    from ttcompute.core.shards import load_sharded

    root = replicas[0]
    samples = load_sharded(root / "sample")
    verdicts = [v for row in samples["correct"] for v in row]
    assert len(verdicts) == 12 and 0 < sum(verdicts) < 12  # right and wrong solutions
    labelled = json.loads((root / "label" / "stats.json").read_text())
    assert labelled["num_rollouts"] > 0 and labelled["num_solutions"] > 0
    assert json.loads((root / "label_binary_search" / "stats.json").read_text())["num_solutions"] > 0
    methods = set(load_sharded(root / "search")["method"])
    assert methods == {"best_of_n", "beam_search", "lookahead", "dvts", "revisions"}


def _shards(directory: Path) -> dict[str, bytes]:
    return {name: data for name, data in _files(directory).items() if name.startswith("shard-")}


@pytest.mark.parametrize("stage", STAGES)
def test_another_seed_gives_other_shards(replicas, stage, small_policy_dir, likelihood_prm_dir, tmp_path):
    root = replicas[0]
    out = tmp_path / stage
    argv = {
        "sample": _sample_argv(small_policy_dir, out, "--seed", "1"),
        "label": _label_argv(root / "sample", out, "--seed", "1"),
        "label_binary_search": _label_argv(
            root / "sample", out, "--labeller", "binary_search", "--seed", "1"
        ),
        "search": _search_argv(small_policy_dir, likelihood_prm_dir, out, "--seed", "1"),
    }[stage]
    run_stage(argv[0], argv[1:])
    assert _shards(out).keys() == _shards(root / stage).keys()
    assert _shards(out) != _shards(root / stage)


def test_shard_workers_write_the_same_bytes_as_one_worker(replicas, small_policy_dir, tmp_path):
    out = tmp_path / "split"
    for worker in ("1/2", "0/2"):  # the second worker to finish writes stats.json
        run_stage("sample", _sample_argv(small_policy_dir, out, "--shard", worker)[1:])
    whole = _files(replicas[0] / "sample")
    split = _files(out)
    for name in ("shard-00000.parquet", "shard-00001.parquet", "manifest.json", "stats.json"):
        assert split[name] == whole[name], name
    # --shard is left out of the config hash (the manifest above), but the resolved config records it.
    assert _config_without(split["ttc_config.yaml"], "output_dir", "shard") == _config_without(
        whole["ttc_config.yaml"], "output_dir", "shard"
    )
