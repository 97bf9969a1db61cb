"""Training resumes from the last complete checkpoint: after SIGKILL, after a kill while saving, and
under a two-process DeepSpeed launch (issue 7: ``train-prm``, ``train-reviser``, ``train-policy``).

How a kill is placed without racing the trainer: the child processes get a ``sitecustomize`` (written
here, on their PYTHONPATH only) that wraps transformers' ``CallbackHandler.on_step_end`` in ``python
-m ttcompute.cli`` processes. It appends every finished optimizer step to a journal file per rank
and, at ``TTC_TEST_HOLD_AT_STEP``, touches a marker file and blocks. The test waits for the markers
(by then the checkpoint before that step is complete and the next one is not written), SIGKILLs the
whole process group and reruns the same command without the hold. The rerun's journal says which
steps it really trained; an uninterrupted run of the same command is the reference it must match.

Everything trains a one-layer random Llama (hidden size 32) on one CPU thread per process.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from conftest import free_port, write_rows
from safetensors.torch import load_file, save_file

from ttcompute.cli import run_stage
from ttcompute.models.reviser import format_reviser_prompt
from ttcompute.tasks.arithmetic import (
    STEP_SEPARATOR,
    ArithmeticConfig,
    generate_problems,
    parse_question,
    reference_steps,
)
from ttcompute.trainers.resume import checkpoint_problem, last_complete_checkpoint

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
MAX_STEPS = 8
HOLD_AT = 5  # killed after step 5: checkpoint-4 is the last complete one, step 5's work is lost
DEADLINE_S = 300  # generous: the CPU is shared with other test runs

_HOOK = '''\
"""Test instrumentation of tests/test_training_resume.py, loaded as sitecustomize by ttc processes."""
import os
import sys
import threading
from pathlib import Path


def _ttc_cli():
    argv = sys.orig_argv
    return any(a == "-m" and b == "ttcompute.cli" for a, b in zip(argv, argv[1:]))


if os.environ.get("TTC_TEST_JOURNAL") and _ttc_cli():
    from transformers.trainer_callback import CallbackHandler

    _journal = Path(os.environ["TTC_TEST_JOURNAL"])
    _hold_at = int(os.environ.get("TTC_TEST_HOLD_AT_STEP", "-1"))
    _rank = os.environ.get("RANK", "0")
    _on_step_end = CallbackHandler.on_step_end

    def on_step_end(self, args, state, control):
        control = _on_step_end(self, args, state, control)
        with open(_journal / f"steps-rank{_rank}.txt", "a") as f:
            f.write(f"{state.global_step}\\n")
        if state.global_step == _hold_at:
            (_journal / f"held-rank{_rank}").touch()
            threading.Event().wait()  # until the test kills us
        return control

    CallbackHandler.on_step_end = on_step_end
'''


# --- data and commands -----------------------------------------------------------------------------


def _prm_rows(n: int) -> dict[str, list]:
    """``n`` solutions of ``a+b*c``; every second one goes wrong at its second step."""
    rows: dict[str, list] = {"prompt": [], "completions": [], "labels": [], "problem_id": []}
    for i in range(n):
        a, b, c = i % 9 + 1, (i // 3) % 7 + 2, i % 5 + 1
        wrong = i % 2 == 1
        rows["prompt"].append(f"{a}+{b}*{c}\n")
        rows["completions"].append(
            [f"{b}*{c}={b * c}", f"{a}+{b * c}={'bad' if wrong else a + b * c}", "end"]
        )
        rows["labels"].append([1.0, 0.0, 0.0] if wrong else [1.0, 1.0, 1.0])
        rows["problem_id"].append(f"p{i}")
    return rows


def _revision_rows(num_problems: int) -> dict[str, list]:
    """One trajectory per arithmetic problem with 0-2 earlier wrong attempts (started one too high)."""
    rows: dict[str, list] = {k: [] for k in ("problem_id", "question", "previous_attempts", "completion")}
    rows["prompt"] = []
    for i, problem in enumerate(generate_problems(num_problems, seed=3, cfg=ArithmeticConfig(max_ops=2))):
        start, ops = parse_question(problem.question)
        attempts = [STEP_SEPARATOR.join(reference_steps(start + 1 + j, ops)) for j in range(i % 3)]
        rows["problem_id"].append(problem.problem_id)
        rows["question"].append(problem.question)
        rows["previous_attempts"].append(attempts)
        rows["completion"].append(problem.solution)
        rows["prompt"].append(format_reviser_prompt(problem.question, attempts))
    return rows


# Every run takes 8 steps, checkpoints every 2 and keeps the newest 2; batches are mid-epoch at the
# resume point (5 or 6 batches an epoch), so the rerun must also skip the right data.
COMMON = ["--max_steps", str(MAX_STEPS), "--save_strategy", "steps", "--save_steps", "2"]
COMMON += ["--logging_steps", "1", "--report_to", "none", "--disable_tqdm", "true"]


def _stage_args(stage: str, root: Path, policy: Path, output_dir: Path, cpu: bool = True) -> list[str]:
    """``ttc <stage>`` arguments (without the stage name) on tiny data built under ``root``;
    ``cpu=False`` for DeepSpeed launches, which refuse ``--use_cpu``."""
    if stage == "train-prm":
        data = root / "steps.jsonl"
        if not data.exists():
            write_rows(_prm_rows(20), data)
        args = ["--model_name_or_path", str(policy), "--dataset_name", str(data)]
        args += ["--per_device_train_batch_size", "4", "--eval_fraction", "0", "--learning_rate", "1e-3"]
    elif stage == "train-reviser":
        data = root / "revisions.jsonl"
        if not data.exists():
            write_rows(_revision_rows(24), data)
        args = ["--model_name_or_path", str(policy), "--dataset_name", str(data)]
        args += ["--per_device_train_batch_size", "4", "--eval_fraction", "0", "--learning_rate", "1e-3"]
    else:
        args = ["--num_problems", "96", "--problem_seed", "5", "--per_device_train_batch_size", "16"]
        args += ["--hidden_size", "32", "--num_hidden_layers", "1", "--num_attention_heads", "2"]
        args += ["--eval_num_problems", "0"]
    return [*args, *COMMON, "--use_cpu", str(cpu).lower(), "--output_dir", str(output_dir)]


def _hook_env(hook_dir: Path, journal: Path, hold_at: int | None = None) -> dict[str, str]:
    journal.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCELERATE_", "LOCAL_RANK", "RANK"))}
    env.update(
        PYTHONPATH=os.pathsep.join([str(hook_dir), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        TTC_TEST_JOURNAL=str(journal),
        OMP_NUM_THREADS="1",
        HF_HUB_OFFLINE="1",
        WANDB_MODE="offline",
        TTC_LOG_LEVEL="INFO",
        TORCH_EXTENSIONS_DIR=str(REPO / ".cache" / "torch_extensions"),
    )
    env.pop("TTC_TEST_HOLD_AT_STEP", None)
    if hold_at is not None:
        env["TTC_TEST_HOLD_AT_STEP"] = str(hold_at)
    return env


@pytest.fixture(scope="module")
def hook_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("resume_hook")
    (path / "sitecustomize.py").write_text(_HOOK)
    return path


# --- processes ---------------------------------------------------------------------------------------


def _tail(path: Path, chars: int = 4000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def _start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """Start ``command`` as the leader of a new process group (a launcher's workers join it)."""
    with log.open("w") as out:
        return subprocess.Popen(
            command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def _wait_until(done: Callable[[], bool], process: subprocess.Popen, log: Path, what: str) -> None:
    """Poll the file system until ``done()``; fail at once if the process ends first."""
    deadline = time.monotonic() + DEADLINE_S
    while not done():
        if process.poll() is not None:
            pytest.fail(f"exited ({process.returncode}) before {what}:\n{_tail(log)}")
        if time.monotonic() > deadline:
            _kill_group(process)
            pytest.fail(f"no {what} within {DEADLINE_S} s:\n{_tail(log)}")
        time.sleep(0.05)


def _kill_group(process: subprocess.Popen) -> None:
    """SIGKILL the process group and wait until none of its processes is left."""
    with_group = True
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        with_group = False
    process.wait(timeout=60)
    deadline = time.monotonic() + 60
    while with_group:
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"processes of group {process.pid} survived SIGKILL")
        time.sleep(0.05)


def _run(command: list[str], env: dict[str, str], log: Path) -> None:
    with log.open("w") as out:
        result = subprocess.run(
            command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=DEADLINE_S
        )
    assert result.returncode == 0, _tail(log)


def _journal(journal: Path, rank: int = 0) -> list[int]:
    path = journal / f"steps-rank{rank}.txt"
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def _kill_after_hold(command: list[str], root: Path, hook_dir: Path, ranks: int) -> Path:
    """Run ``command`` until every rank holds after step HOLD_AT, SIGKILL it; returns its journal."""
    journal = root / "journal-killed"
    log = root / "killed.log"
    process = _start(command, _hook_env(hook_dir, journal, hold_at=HOLD_AT), log)
    try:
        held = [journal / f"held-rank{r}" for r in range(ranks)]
        _wait_until(lambda: all(p.exists() for p in held), process, log, f"step {HOLD_AT} on {ranks} rank(s)")
    finally:
        _kill_group(process)
    assert process.returncode == -signal.SIGKILL, _tail(log)
    return journal


# Left out of the comparison: timings, and TRL's own ``num_tokens`` (train-reviser), a counter of
# SFTTrainer that is not in the checkpoint and restarts at 0 in a resumed process; the Trainer's
# ``num_input_tokens_seen`` (what training_log.json reports) is restored and compared.
_NOT_RESTORED = {"train_runtime", "train_tokens_per_second", "num_tokens"}


def _history(log: dict) -> dict[int, dict]:
    """Per-step training records of a log history (the final summary entry left out)."""
    return {
        e["step"]: {k: v for k, v in e.items() if k not in _NOT_RESTORED}
        for e in log["log_history"]
        if "loss" in e
    }


def _assert_same_weights(resumed: Path, reference: Path) -> None:
    got, expected = load_file(resumed / "model.safetensors"), load_file(reference / "model.safetensors")
    assert got.keys() == expected.keys()
    different = [name for name in got if not torch.equal(got[name], expected[name])]
    assert different == [], f"weights differ from the uninterrupted run: {different}"


# --- 1. SIGKILL mid-training, then the same command again ---------------------------------------------


# Slow (~19 s each): the resume code is shared; the default suite keeps each trainer's in-process resume
# test and the half-written-checkpoint tests.
@pytest.mark.slow
@pytest.mark.parametrize("stage", ["train-prm", "train-reviser", "train-policy"])
def test_sigkill_then_rerun_resumes_and_matches_an_uninterrupted_run(
    stage, tmp_path, random_policy_dir, hook_dir
):
    """About 15 s each: two CLI processes (killed, rerun) and an in-process reference run."""
    out = tmp_path / "run"
    args = _stage_args(stage, tmp_path, random_policy_dir, out)
    command = [sys.executable, "-m", "ttcompute.cli", stage, *args]

    killed = _kill_after_hold(command, tmp_path, hook_dir, ranks=1)
    assert _journal(killed) == [1, 2, 3, 4, 5]
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    assert checkpoint_problem(out / "checkpoint-4") is None
    assert not (out / "training_log.json").exists()

    rerun_journal = tmp_path / "journal-rerun"
    _run(command, _hook_env(hook_dir, rerun_journal), tmp_path / "rerun.log")
    # The rerun trained steps 5-8 only: it started from checkpoint-4, not from step 0.
    assert _journal(rerun_journal) == [5, 6, 7, 8]
    assert f"Resuming from {out / 'checkpoint-4'}" in (tmp_path / "rerun.log").read_text()
    resumed = json.loads((out / "training_log.json").read_text())
    assert resumed["global_steps"] == MAX_STEPS

    reference_out = tmp_path / "reference"
    reference = run_stage(stage, _stage_args(stage, tmp_path, random_policy_dir, reference_out))
    assert reference["global_steps"] == MAX_STEPS
    # Steps 1-4 come from the killed run's checkpoint, 5-8 from the rerun; on CPU both are the
    # uninterrupted run's, bit for bit: losses, gradient norms, learning rates, tokens seen, weights.
    assert _history(resumed) == _history(reference)
    assert resumed["num_train_tokens"] == reference["num_train_tokens"]
    _assert_same_weights(out, reference_out)


# --- 2. killed while writing a checkpoint --------------------------------------------------------------


def _drop(name: str) -> Callable[[Path], None]:
    return lambda checkpoint: (checkpoint / name).unlink()


def _truncate(name: str) -> Callable[[Path], None]:
    def cut(checkpoint: Path) -> None:
        path = checkpoint / name
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])

    return cut


def _killed_during(*steps: Callable[[Path], None]) -> Callable[[Path], None]:
    def damage(checkpoint: Path) -> None:
        for step in steps:
            step(checkpoint)

    return damage


# What a checkpoint looks like when the writer died at each point (transformers writes the weights,
# then optimizer, scheduler, RNG state, and trainer_state.json last).
KILLED_WHILE = {
    "writing_weights": _killed_during(
        _truncate("model.safetensors"),
        *(_drop(n) for n in ("optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json")),
    ),
    "writing_the_optimizer": _killed_during(
        _truncate("optimizer.pt"),
        *(_drop(n) for n in ("scheduler.pt", "rng_state.pth", "trainer_state.json")),
    ),
    "writing_trainer_state": _truncate("trainer_state.json"),
}


@pytest.fixture(scope="module")
def prm_checkpoints(tmp_path_factory, random_policy_dir) -> Path:
    """A finished 4-step PRM run (checkpoint-2 and checkpoint-4) beside its data; tests damage copies."""
    root = tmp_path_factory.mktemp("prm_checkpoints")
    run_stage("train-prm", _short(_stage_args("train-prm", root, random_policy_dir, root / "run")))
    return root


def _short(args: list[str]) -> list[str]:
    """The same run stopped at step 4."""
    i = args.index("--max_steps")
    return [*args[: i + 1], "4", *args[i + 2 :]]


def _recording_steps(monkeypatch) -> list[int]:
    """The optimizer steps this process trains from now on (in-process twin of the journal)."""
    from transformers.trainer_callback import CallbackHandler

    steps: list[int] = []
    original = CallbackHandler.on_step_end

    def on_step_end(self, args, state, control):
        steps.append(state.global_step)
        return original(self, args, state, control)

    monkeypatch.setattr(CallbackHandler, "on_step_end", on_step_end)
    return steps


@pytest.mark.parametrize("moment", KILLED_WHILE)
def test_a_checkpoint_left_half_written_is_skipped(
    moment, tmp_path, prm_checkpoints, random_policy_dir, monkeypatch, caplog
):
    """transformers' get_last_checkpoint picks checkpoint-4 whatever its state; the rerun died on it."""
    out = tmp_path / "run"
    shutil.copytree(prm_checkpoints / "run", out)
    final = load_file(out / "model.safetensors")
    KILLED_WHILE[moment](out / "checkpoint-4")
    steps = _recording_steps(monkeypatch)

    with caplog.at_level(logging.INFO, logger="ttcompute"):
        log = run_stage(
            "train-prm", _short(_stage_args("train-prm", prm_checkpoints, random_policy_dir, out))
        )

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(f"Not resuming from {out / 'checkpoint-4'}" in m for m in warnings), warnings
    assert f"Resuming from {out / 'checkpoint-2'}" in caplog.text
    assert steps == [3, 4]  # resumed at step 2: neither from scratch nor from the broken checkpoint-4
    assert log["global_steps"] == 4
    assert checkpoint_problem(out / "checkpoint-4") is None  # written again, whole
    # ... and steps 3-4 redone give the weights the first run ended with.
    got = load_file(out / "model.safetensors")
    assert all(torch.equal(got[name], final[name]) for name in final)


@pytest.mark.parametrize("stage", ["train-reviser", "train-policy"])
def test_reviser_and_policy_skip_a_half_written_checkpoint(stage, tmp_path, random_policy_dir, monkeypatch):
    """The same shared check in the other two trainers (train-policy also reads its tokenizer from the
    checkpoint it resumes)."""
    out = tmp_path / "run"
    args = _short(_stage_args(stage, tmp_path, random_policy_dir, out))
    run_stage(stage, args)
    final = load_file(out / "model.safetensors")
    KILLED_WHILE["writing_the_optimizer"](out / "checkpoint-4")
    steps = _recording_steps(monkeypatch)
    log = run_stage(stage, args)
    assert steps == [3, 4]
    assert log["global_steps"] == 4
    got = load_file(out / "model.safetensors")
    assert all(torch.equal(got[name], final[name]) for name in final)


# --- 3. the completeness check on hand-made checkpoints ------------------------------------------------


def _fake_checkpoint(root: Path, step: int, deepspeed: bool = False) -> Path:
    path = root / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    (path / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": []}))
    if deepspeed:
        (path / f"global_step{step}").mkdir()
        for rank in (0, 1):
            torch.save(
                {"rank": rank, "state": torch.ones(64)},
                path / f"global_step{step}" / f"zero_pp_rank_{rank}_optim_states.pt",
            )
        (path / "latest").write_text(f"global_step{step}")
    else:
        save_file({"w": torch.ones(16, 16)}, str(path / "model.safetensors"))
        torch.save({"state": torch.ones(64)}, path / "optimizer.pt")
    return path


def test_complete_checkpoints_pass_and_the_newest_is_chosen(tmp_path):
    for step in (2, 10, 4):
        _fake_checkpoint(tmp_path, step)
    _fake_checkpoint(tmp_path, 12, deepspeed=True)
    (tmp_path / "checkpoint-99.tmp").mkdir()  # not a checkpoint name
    assert [checkpoint_problem(tmp_path / f"checkpoint-{s}") for s in (2, 4, 10, 12)] == [None] * 4
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-12")
    assert last_complete_checkpoint(tmp_path / "missing") is None


DAMAGE = {
    "no trainer_state.json": _drop("trainer_state.json"),
    "trainer_state.json does not parse": _truncate("trainer_state.json"),
    "config.json does not parse": _truncate("config.json"),
    "model.safetensors is truncated": _truncate("model.safetensors"),
    "optimizer.pt: truncated": _truncate("optimizer.pt"),
    "optimizer.pt: empty": lambda c: (c / "optimizer.pt").write_bytes(b""),
    "no model weights": _drop("model.safetensors"),
    "trainer_state.json records step 3, not 4": lambda c: (c / "trainer_state.json").write_text(
        '{"global_step": 3}'
    ),
}


@pytest.mark.parametrize("problem", DAMAGE)
def test_each_kind_of_damage_is_named_and_the_previous_checkpoint_used(problem, tmp_path, caplog):
    _fake_checkpoint(tmp_path, 2)
    DAMAGE[problem](_fake_checkpoint(tmp_path, 4))
    with caplog.at_level(logging.WARNING, logger="ttcompute"):
        assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-2")
    assert problem in checkpoint_problem(tmp_path / "checkpoint-4")
    assert f"Not resuming from {tmp_path / 'checkpoint-4'}: {problem}" in caplog.text


DEEPSPEED_DAMAGE = {
    "shard truncated": _truncate("global_step4/zero_pp_rank_1_optim_states.pt"),
    "no latest tag": _drop("latest"),
    "latest names nothing": lambda c: (c / "latest").write_text("global_step6"),
}


@pytest.mark.parametrize("damage", DEEPSPEED_DAMAGE)
def test_a_damaged_deepspeed_checkpoint_is_skipped(damage, tmp_path):
    _fake_checkpoint(tmp_path, 2, deepspeed=True)
    DEEPSPEED_DAMAGE[damage](_fake_checkpoint(tmp_path, 4, deepspeed=True))
    assert checkpoint_problem(tmp_path / "checkpoint-4") is not None
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-2")


def test_no_complete_checkpoint_means_a_fresh_start(tmp_path):
    _drop("trainer_state.json")(_fake_checkpoint(tmp_path, 2))
    assert last_complete_checkpoint(tmp_path) is None


# --- 4. DeepSpeed: two CPU processes (gloo), SIGKILL the launcher's group, rerun ------------------------


def _deepspeed_command(stage: str, zero: str, args: list[str]) -> list[str]:
    launcher = Path(sys.executable).parent / "deepspeed"
    if not launcher.is_file():
        pytest.skip(f"no deepspeed launcher at {launcher}")
    command = [str(launcher), "--num_gpus", "2", "--master_port", str(free_port())]
    command += ["--module", "ttcompute.cli", stage, "--deepspeed", f"configs/deepspeed/{zero}.json"]
    # Two ranks of 2 rows make the global batch of 4 that the single-process runs use.
    i = args.index("--per_device_train_batch_size")
    return command + [*args[: i + 1], "2", *args[i + 2 :]]


@pytest.mark.slow
@pytest.mark.parametrize(
    "stage, zero", [("train-prm", "zero2"), ("train-prm", "zero3"), ("train-reviser", "zero2")]
)
def test_deepspeed_sigkill_then_rerun_resumes_on_two_ranks(
    stage, zero, tmp_path, random_policy_dir, hook_dir
):
    """``deepspeed --num_gpus 2``, killed after step 5, rerun: resumes at checkpoint-4 on both ranks
    and finishes like an uninterrupted DeepSpeed run. About 1-2 minutes each on 2 cores."""
    pytest.importorskip("deepspeed", reason="deepspeed is not installed")
    out = tmp_path / "run"
    command = _deepspeed_command(stage, zero, _stage_args(stage, tmp_path, random_policy_dir, out, cpu=False))

    killed = _kill_after_hold(command, tmp_path, hook_dir, ranks=2)
    assert _journal(killed, 0) == _journal(killed, 1) == [1, 2, 3, 4, 5]
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    shards = sorted(p.name for p in (out / "checkpoint-4" / "global_step4").glob("*optim_states.pt"))
    assert len(shards) == 2, shards  # one ZeRO optimizer shard per rank
    assert checkpoint_problem(out / "checkpoint-4") is None

    rerun_journal = tmp_path / "journal-rerun"
    command[command.index("--master_port") + 1] = str(free_port())
    _run(command, _hook_env(hook_dir, rerun_journal), tmp_path / "rerun.log")
    assert _journal(rerun_journal, 0) == _journal(rerun_journal, 1) == [5, 6, 7, 8]
    rerun_log = (tmp_path / "rerun.log").read_text()
    assert rerun_log.count(f"Resuming from {out / 'checkpoint-4'}") == 2, rerun_log[-4000:]  # each rank
    resumed = json.loads((out / "training_log.json").read_text())
    assert resumed["global_steps"] == MAX_STEPS
    assert resumed["distributed"] == {
        "distributed_type": "DEEPSPEED",
        "world_size": 2,
        "backend": "gloo",
        "zero_stage": int(zero[-1]),
    }

    reference_out = tmp_path / "reference"
    reference_command = _deepspeed_command(
        stage, zero, _stage_args(stage, tmp_path, random_policy_dir, reference_out)
    )
    _run(reference_command, _hook_env(hook_dir, tmp_path / "journal-reference"), tmp_path / "reference.log")
    reference = json.loads((reference_out / "training_log.json").read_text())
    assert _history(resumed) == _history(reference)
    _assert_same_weights(out, reference_out)
