"""CPU DeepSpeed launch helpers: DeepSpeed asked for but not set up is an error, never silent DDP."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest
from accelerate.utils import DistributedType

from ttcompute.core.errors import InputError
from ttcompute.trainers.launch import check_deepspeed_active, distributed_setup, launch_command


def fake_trainer(distributed_type, deepspeed, zero_stage=None):
    plugin = SimpleNamespace(zero_stage=zero_stage) if zero_stage else None
    state = SimpleNamespace(distributed_type=distributed_type, backend="gloo", deepspeed_plugin=plugin)
    return SimpleNamespace(
        accelerator=SimpleNamespace(state=state), args=SimpleNamespace(world_size=2, deepspeed=deepspeed)
    )


def test_deepspeed_requested_but_ddp_set_up_is_an_error(monkeypatch):
    monkeypatch.delenv("ACCELERATE_USE_DEEPSPEED", raising=False)
    with pytest.raises(InputError, match="DeepSpeed was requested.*MULTI_CPU"):
        check_deepspeed_active(fake_trainer(DistributedType.MULTI_CPU, "configs/deepspeed/zero2.json"))
    # The accelerate launcher asks through the environment instead of --deepspeed.
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    with pytest.raises(InputError):
        check_deepspeed_active(fake_trainer(DistributedType.MULTI_CPU, None))


def test_deepspeed_set_up_or_not_requested_passes(monkeypatch):
    monkeypatch.delenv("ACCELERATE_USE_DEEPSPEED", raising=False)
    check_deepspeed_active(fake_trainer(DistributedType.DEEPSPEED, "zero3.json", zero_stage=3))
    check_deepspeed_active(fake_trainer(DistributedType.MULTI_CPU, None))
    setup = distributed_setup(fake_trainer(DistributedType.DEEPSPEED, "zero3.json", zero_stage=3))
    assert setup == {"distributed_type": "DEEPSPEED", "world_size": 2, "backend": "gloo", "zero_stage": 3}


def test_launch_command_drops_the_launchers_local_rank(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["cli.py", "--local_rank=1", "train-prm", "--seed", "3"])
    assert launch_command("train-prm") == "ttc train-prm --seed 3"
    assert launch_command("train-policy") is None


def test_stripping_launcher_args_leaves_the_environment_alone(monkeypatch):
    import os

    from ttcompute.core.argv import strip_launcher_args

    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert strip_launcher_args(["--local_rank", "1", "sample"]) == ["sample"]
    assert "LOCAL_RANK" not in os.environ
