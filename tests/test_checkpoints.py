"""The shipped base policies: loadable with plain Auto classes, ~14x apart, trained on the same data."""

from __future__ import annotations

import json

from transformers import AutoModelForCausalLM, AutoTokenizer

from ttcompute.demo import CHECKPOINTS


def test_shipped_policies_load_and_match_their_logs():
    logs, params = {}, {}
    for name in ("policy_small", "policy_large"):
        path = CHECKPOINTS / name
        assert (path / "model.safetensors").is_file() and not list(path.glob("*.bin"))
        model = AutoModelForCausalLM.from_pretrained(path)
        AutoTokenizer.from_pretrained(path)
        params[name] = sum(p.numel() for p in model.parameters())
        logs[name] = json.loads((path / "training_log.json").read_text())
        assert logs[name]["num_parameters"] == params[name]
        assert logs[name]["pretraining_flops"] == 6 * params[name] * logs[name]["num_train_tokens"]
    assert 12 <= params["policy_large"] / params["policy_small"] <= 16
    # Same data: the FLOPs-matched comparison reads D_pretrain from these logs.
    assert logs["policy_large"]["num_train_tokens"] == logs["policy_small"]["num_train_tokens"]
    # The small policy makes real, difficulty-dependent mistakes; the large one fewer.
    small = logs["policy_small"]["heldout"]
    assert 0.2 <= small["pass_at_1"] <= 0.7
    assert small["pass_at_1_by_num_ops"]["1"] > small["pass_at_1_by_num_ops"]["8"]
    assert logs["policy_large"]["heldout"]["pass_at_1"] > small["pass_at_1"]
