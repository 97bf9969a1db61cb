"""The shipped base policies: loadable with plain Auto classes, ~14x apart, trained on the same data,
and as accurate as the README says -- measured here by sampling them, not read from their logs."""

from __future__ import annotations

import json
import math
import operator
import re
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from ttcompute.demo import CHECKPOINTS
from ttcompute.models.generation import SamplingParams
from ttcompute.models.hf_backend import TransformersBackend
from ttcompute.tasks.arithmetic import generate_problems

REPO = Path(__file__).resolve().parents[1]
_OPS = {"Add": operator.add, "Subtract": operator.sub, "Multiply by": operator.mul}
_ANSWER = re.compile(r"The answer is \\boxed\{(-?\d+)\}\s*$")


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
        # The README's table states what the checkpoints' own logs measured.
        assert readme_claims()[name]["parameters"] == params[name]
        assert round(logs[name]["heldout"]["pass_at_1"], 2) == readme_claims()[name]["pass_at_1"]
    assert 12 <= params["policy_large"] / params["policy_small"] <= 16
    # Same data: the FLOPs-matched comparison reads D_pretrain from these logs.
    assert logs["policy_large"]["num_train_tokens"] == logs["policy_small"]["num_train_tokens"]


def readme_claims() -> dict[str, dict[str, float]]:
    """Parameters and held-out pass@1 (T=1) of each policy, from the README's checkpoint table."""
    claims = {}
    for line in (REPO / "docs" / "guides" / "problems.md").read_text().splitlines():
        match = re.match(r"\| `configs/(policy_\w+)\.yaml` \| ([\d,]+) .*\| (\d\.\d+) overall", line)
        if match:
            claims[match[1]] = {"parameters": int(match[2].replace(",", "")), "pass_at_1": float(match[3])}
    assert set(claims) == {"policy_small", "policy_large"}, (
        "the checkpoint table of docs/guides/problems.md not found"
    )
    return claims


def _worked_out(question: str) -> tuple[int, int]:
    """The question's value and number of operations, worked out here:
    'Start at 37. Add 8. Multiply by 2.' -> (90, 2)."""
    start, *steps = question.rstrip(".").split(". ")
    value = int(start.removeprefix("Start at "))
    for step in steps:
        name, _, operand = step.rpartition(" ")
        value = _OPS[name](value, int(operand))
    return value, len(steps)


def sampled_accuracy(name: str, num_problems: int, samples: int) -> dict[int, list[bool]]:
    """Verdicts of ``samples`` solutions at temperature 1 (the README's protocol) per held-out problem
    (the recipes' evaluation seed; training used another), by number of operations."""
    problems = generate_problems(num_problems, seed=999)
    backend = TransformersBackend(str(CHECKPOINTS / name), device="cpu")
    params = SamplingParams(n=samples, temperature=1.0, max_tokens=200, seed=0)
    verdicts: dict[int, list[bool]] = {}
    for problem, completions in zip(
        problems, backend.generate([p.question + "\n" for p in problems], params)
    ):
        truth, num_ops = _worked_out(problem.question)
        for completion in completions:
            match = _ANSWER.search(completion.text)
            verdicts.setdefault(num_ops, []).append(bool(match) and int(match[1]) == truth)
    return verdicts


def _pass_at_1(verdicts: dict[int, list[bool]]) -> float:
    every = [v for by_ops in verdicts.values() for v in by_ops]
    return sum(every) / len(every)


def _within_claim(measured: float, claimed: float, num_problems: int) -> bool:
    # Samples of one problem are correlated, so the binomial error is taken over problems, not samples
    # (conservative); 3.5 standard errors.
    return abs(measured - claimed) <= 3.5 * math.sqrt(claimed * (1 - claimed) / num_problems)


def _check_claims(num_small: int, num_large: int, samples: int) -> None:
    claims = readme_claims()
    small = sampled_accuracy("policy_small", num_small, samples)
    large = sampled_accuracy("policy_large", num_large, samples)
    small_pass, large_pass = _pass_at_1(small), _pass_at_1(large)
    assert _within_claim(small_pass, claims["policy_small"]["pass_at_1"], num_small), small_pass
    assert _within_claim(large_pass, claims["policy_large"]["pass_at_1"], num_large), large_pass
    # The large policy is clearly better (README: 0.92 vs 0.38) ...
    assert large_pass > small_pass + 0.3, (small_pass, large_pass)
    # ... and the small one makes real, difficulty-dependent mistakes (README: 0.69 on one
    # operation, 0.18 on eight).
    easy = [v for ops in (1, 2) for v in small.get(ops, [])]
    hard = [v for ops in (7, 8) for v in small.get(ops, [])]
    assert len(easy) >= 20 and len(hard) >= 20
    assert sum(easy) / len(easy) > sum(hard) / len(hard) + 0.2, (small, large)


def test_shipped_policies_are_as_accurate_as_the_readme_says():
    """A fast look: 100 problems x 2 for the small policy, 40 x 2 for the (14x slower) large one."""
    _check_claims(num_small=100, num_large=40, samples=2)


@pytest.mark.slow
def test_shipped_policies_accuracy_on_the_readme_protocol():
    """The README's own protocol, 400 held-out problems x 4 samples: tighter tolerances."""
    _check_claims(num_small=400, num_large=400, samples=4)
