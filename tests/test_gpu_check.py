"""``make gpu-check`` (bench/gpu_check.py): what it does where there is no CUDA, and a rehearsal of its
checks on the CPU with the stand-in built from vLLM's API -- so that its first run on a GPU machine is
not also its first run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import fake_vllm
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
import gpu_check  # noqa: E402


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_without_cuda_it_says_so_in_one_line_exits_0_and_writes_nothing(tmp_path):
    out = tmp_path / "gpu_check.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "gpu_check.py"), "--output", str(out)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "gpu-check: no CUDA device here (torch.cuda.is_available() is False): nothing was checked"
    ]
    assert not out.exists()


def test_the_makefile_runs_it():
    makefile = (REPO / "Makefile").read_text()
    assert "\ngpu-check: setup\n" in makefile and "bench/gpu_check.py" in makefile


def _rehearse(monkeypatch, tmp_path, checks, script=None) -> dict:
    fake_vllm.install(monkeypatch, script=script)
    out = tmp_path / "report.json"
    code = gpu_check.main(
        ["--device", "cpu", "--num_problems", "2", "--output", str(out), "--checks", *checks]
    )
    report = json.loads(out.read_text())
    assert code == (0 if report["ok"] else 1)
    return report


@pytest.mark.slow
def test_the_checks_pass_on_the_cpu_where_vllm_and_transformers_agree(monkeypatch, tmp_path):
    report = _rehearse(monkeypatch, tmp_path, ["greedy", "prm"])
    checks = report["checks"]
    assert report["ok"], checks
    assert all(row["same"] for rows in checks["greedy"]["prompts"].values() for row in rows)
    assert checks["prm"]["small_prm"]["max_abs_difference"] == 0.0  # cpu against cpu
    assert all(c["seconds"] >= 0 for c in checks.values())


def test_a_greedy_divergence_fails_and_names_its_place_and_logit_gap(monkeypatch, tmp_path):
    """vLLM (here: scripted) writes other tokens than transformers' greedy ones: the check fails and
    reports where, with the gap the transformers model itself gives between the two tokens."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ttcompute.models.generation import prompt_token_ids

    small = gpu_check.stand_ins(tmp_path / "s")["small"]
    model = AutoModelForCausalLM.from_pretrained(small).eval()
    tokenizer = AutoTokenizer.from_pretrained(small)
    prompt = prompt_token_ids(tokenizer, gpu_check.prompts_for("small", small)[0])
    with torch.no_grad():
        greedy = model.generate(torch.tensor([prompt]), do_sample=False, max_new_tokens=3)[
            0, len(prompt) :
        ].tolist()
        logits = model(torch.tensor([prompt + greedy[:2]])).logits[0, -1]
    other = int(logits.argsort(descending=True)[1])  # the runner-up at place 2
    scripted = greedy[:2] + [other] + [tokenizer.eos_token_id]

    report = _rehearse(monkeypatch, tmp_path, ["greedy"], script=lambda ids, seed: scripted)
    first = report["checks"]["greedy"]["prompts"]["small"][0]
    assert not report["ok"] and first["same"] is False and first["first_divergence"] == 2
    assert (first["transformers"], first["vllm"]) == ([greedy[2]], [other])
    assert first["logit_gap"] == pytest.approx(float(logits[greedy[2]] - logits[other]), abs=1e-5)


@pytest.mark.slow
def test_every_check_rehearses_on_the_cpu(monkeypatch, tmp_path):
    """All seven, training included (ZeRO-2 on one CPU process); about two minutes."""
    report = _rehearse(monkeypatch, tmp_path, list(gpu_check.CHECKS))
    assert report["ok"], {k: v.get("error") for k, v in report["checks"].items()}
    for name in ("train_prm", "train_reviser"):
        assert report["checks"][name]["global_steps"] == gpu_check.STEPS
