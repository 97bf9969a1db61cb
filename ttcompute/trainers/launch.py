"""DeepSpeed on CPU processes: what ``deepspeed --num_gpus N`` / ``accelerate launch --num_processes N``
need on a machine without GPUs (a laptop, CI) so ZeRO-2/3 really runs with the gloo backend.

transformers 5 gives accelerate no process-group backend on the DeepSpeed path, and accelerate only
picks one for GPUs-like devices or for ``cpu=True`` -- which turns DeepSpeed off (plain multi-CPU
DDP). With no backend, accelerate counts one process and DeepSpeed's batch-size check fails. Here the
backend is named (``gloo``, or ``--ddp_backend``) and DeepSpeed stays on; with GPUs nothing changes.
"""

from __future__ import annotations

import os
from functools import cached_property

import torch


def _launched_without_gpus() -> bool:
    return "LOCAL_RANK" in os.environ and not torch.cuda.is_available()


def deepspeed_requested(args) -> bool:
    """``--deepspeed CONFIG`` or an ``accelerate launch`` DeepSpeed plugin."""
    return bool(args.deepspeed) or os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"


class CPUDeepSpeedMixin:
    """Mix into a `TrainingArguments` subclass (first in the bases) to run DeepSpeed on CPU processes."""

    @cached_property
    def _setup_devices(self) -> torch.device:
        if not (_launched_without_gpus() and deepspeed_requested(self) and not self.use_cpu):
            return super()._setup_devices
        self.ddp_backend = self.ddp_backend or "gloo"
        # The generic branch of TrainingArguments passes the backend on; accelerate still builds the
        # DeepSpeed state because the environment flag says so (as `accelerate launch` sets it).
        deepspeed, self.deepspeed = self.deepspeed, None
        set_flag = "ACCELERATE_USE_DEEPSPEED" not in os.environ
        os.environ["ACCELERATE_USE_DEEPSPEED"] = "true"
        try:
            return super()._setup_devices
        finally:
            self.deepspeed = deepspeed
            if set_flag:
                del os.environ["ACCELERATE_USE_DEEPSPEED"]


def distributed_setup(trainer) -> dict:
    """How the run was parallelised (what a launcher really gave us, not what was asked for)."""
    state = trainer.accelerator.state
    plugin = getattr(state, "deepspeed_plugin", None)
    return {
        "distributed_type": str(state.distributed_type).split(".")[-1],
        "world_size": trainer.args.world_size,
        "backend": getattr(state, "backend", None),
        "zero_stage": plugin.zero_stage if plugin is not None else None,
    }


def check_deepspeed_active(trainer) -> None:
    """Fail loudly when DeepSpeed was asked for but the run would not use it (it would otherwise
    train as plain DDP without a word, e.g. under ``ACCELERATE_USE_CPU=true`` or ``--use_cpu``)."""
    from ttcompute.errors import InputError

    setup = distributed_setup(trainer)
    if deepspeed_requested(trainer.args) and setup["distributed_type"] != "DEEPSPEED":
        raise InputError(
            f"DeepSpeed was requested but this run was set up as {setup['distributed_type']}: "
            "--use_cpu / ACCELERATE_USE_CPU=true turn DeepSpeed off; drop them (CPU launches use gloo)"
        )


def launch_command(stage: str) -> str | None:
    """The ``ttc <stage> ...`` command line of this process (launcher arguments dropped)."""
    import sys

    from ttcompute.cli import strip_launcher_args

    argv = strip_launcher_args(sys.argv[1:])
    return f"ttc {stage} " + " ".join(argv[1:]) if argv[:1] == [stage] else None
