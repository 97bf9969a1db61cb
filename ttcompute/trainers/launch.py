"""DeepSpeed on CPU processes: what ``deepspeed --num_gpus N`` / ``accelerate launch --num_processes N``
need on a machine without GPUs (a laptop, CI) so ZeRO-2/3 really runs with the gloo backend.

transformers 5 gives accelerate no process-group backend on the DeepSpeed path, and accelerate only
picks one for GPUs-like devices or for ``cpu=True`` -- which turns DeepSpeed off (plain multi-CPU
DDP). With no backend, accelerate counts one process and DeepSpeed's batch-size check fails. Here the
backend is named (``gloo``, or ``--ddp_backend``) and DeepSpeed stays on; with GPUs nothing changes.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from functools import cached_property

import torch
import torch.distributed as torch_dist
from transformers.integrations import deepspeed as hf_deepspeed

from ttcompute.core.argv import strip_launcher_args
from ttcompute.core.budget import pretraining_flops
from ttcompute.core.errors import InputError


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
    setup = distributed_setup(trainer)
    if deepspeed_requested(trainer.args) and setup["distributed_type"] != "DEEPSPEED":
        raise InputError(
            f"DeepSpeed was requested but this run was set up as {setup['distributed_type']}: "
            "--use_cpu / ACCELERATE_USE_CPU=true turn DeepSpeed off; drop them (CPU launches use gloo)"
        )


def launch_command(stage: str) -> str | None:
    """The ``ttc <stage> ...`` command line of this process (launcher arguments dropped)."""
    argv = strip_launcher_args(sys.argv[1:])
    return f"ttc {stage} " + " ".join(argv[1:]) if argv[:1] == [stage] else None


def zero3_config():
    """The active ZeRO-3 DeepSpeed config object, set by ``--deepspeed`` or by ``accelerate launch``
    with a DeepSpeed plugin (the latter leaves ``config.deepspeed`` empty)."""
    ref = hf_deepspeed._hf_deepspeed_config_weak_ref
    obj = ref() if ref is not None else None
    return obj if obj is not None and obj.is_zero3() else None


def init_deepspeed_comm() -> None:
    """Join DeepSpeed's communicator to the process group `TrainingArguments` already started.

    ZeRO-3 partitions weights while ``from_pretrained`` loads them; DeepSpeed's config check there
    asks its own communicator for the world size, which reads 1 until it is initialised -- and then
    fails the batch-size check on a CPU (gloo) launch.
    """
    if zero3_config() is not None and torch_dist.is_available() and torch_dist.is_initialized():
        import deepspeed  # optional (the deepspeed extra); only a ZeRO-3 run gets here

        deepspeed.init_distributed(dist_backend=torch_dist.get_backend())


@contextlib.contextmanager
def without_zero3_init(config, always: bool = False):
    """On CPU processes, load the base weights whole; ZeRO-3 partitions them when training starts.

    With ``deepspeed.zero.Init`` around ``from_pretrained`` on CPU (gloo; DeepSpeed 0.19,
    transformers 5.23) the engine later runs the forward pass on unfetched partitions ("'weight'
    must be 2-D"). On GPUs loading stays partitioned, which is what keeps big models in memory.
    ``always`` is for work one process does alone (merging LoRA on rank 0): a partitioned load there
    would wait forever for the other ranks.
    """
    zero3 = zero3_config()
    on_cpu = config.use_cpu or not torch.cuda.is_available()
    if zero3 is not None and (on_cpu or always):
        hf_deepspeed.unset_hf_deepspeed_config()
        try:
            yield
        finally:
            hf_deepspeed.set_hf_deepspeed_config(zero3)
    else:
        yield


def training_summary(stage: str, trainer, result, num_parameters: int, started: float) -> dict:
    """What every trainer's ``training_log.json`` records about the run itself: the command, size,
    tokens and FLOPs (6 * params * tokens), steps, how it was parallelised, loss, time, history."""
    tokens_seen = int(trainer.state.num_input_tokens_seen)
    return {
        "command": launch_command(stage),
        "num_parameters": num_parameters,
        "num_train_tokens": tokens_seen,
        "training_flops": pretraining_flops(num_parameters, tokens_seen),
        "global_steps": trainer.state.global_step,
        "distributed": distributed_setup(trainer),
        "train_loss": result.training_loss,
        "train_runtime_s": round(time.time() - started, 1),
        "train_samples_per_second": result.metrics.get("train_samples_per_second"),
        "log_history": trainer.state.log_history,
    }
