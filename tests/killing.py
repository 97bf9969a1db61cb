"""Run a real ``ttc`` process and SIGKILL it mid-stage: no handler runs, nothing is flushed.

What a preempted node or the OOM killer does; the stage must keep every finished shard intact and a
rerun must finish the rest.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ttcompute.core.shards import finished_shards

TTC = str(Path(sys.executable).parent / "ttc")


def _env() -> dict[str, str]:
    # One torch thread per process: two cores are shared with the test process itself.
    return {**os.environ, "TTC_LOG_LEVEL": "WARNING", "OMP_NUM_THREADS": "1"}


def kill_after_shards(args: list[str], output_dir: Path, shards: int, timeout: float = 300) -> set[int]:
    """Start ``ttc *args``; SIGKILL its process group once ``shards`` shards are finished in
    ``output_dir``. Returns the shards finished at the kill; fails if the run ended first."""
    proc = subprocess.Popen(
        [TTC, *args], env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    deadline = time.monotonic() + timeout
    while len(finished_shards(output_dir)) < shards and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    alive = proc.poll() is None
    if alive:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    stderr = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    assert alive, f"ttc {args[0]} ended (exit {proc.returncode}) before it could be killed: {stderr[-3000:]}"
    return finished_shards(output_dir)


def run_ttc(args: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    """``ttc *args`` to the end in a fresh process; fails on a non-zero exit."""
    result = subprocess.run([TTC, *args], env=_env(), capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def shard_bytes(output_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(Path(output_dir).glob("shard-*.parquet"))}
