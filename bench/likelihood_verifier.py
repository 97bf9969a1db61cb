"""Diagnostic: how well a policy's own token likelihood finds the first wrong step (no training).

A step is flagged when its least likely token (separator excluded) has log-probability below a
threshold; the threshold is picked on calibration problems and ProcessBench F1 is reported on the
held-out ones against the arithmetic task's exact step checker. This is the yardstick for the
trained PRM (bench/prm_experiment.sh): in a 2-5 layer model the sum a op b is only computed at the
output layer of the "=" position, so a token-classification head at the separator cannot read it,
while the likelihood of the written result can.

Usage: python bench/likelihood_verifier.py [runs/prm_exp] [policy_small policy_large]
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
GRID = [round(-0.05 * i, 2) for i in range(1, 200)]


def step_min_logprobs(model, tokenizer, question: str, steps: list[str], separator: str) -> list[float]:
    """Per step: the lowest log-probability the model gives one of the step's own tokens."""
    from ttcompute.models.prm import encode_steps

    ids, positions = encode_steps(tokenizer, question + "\n", steps, separator)
    with torch.no_grad():
        logprobs = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), -1)
    token_logprobs = logprobs[:-1].gather(1, torch.tensor(ids[1:]).unsqueeze(1)).squeeze(1)  # of ids[t+1]
    num_sep = len(tokenizer(separator, add_special_tokens=False).input_ids)
    start = len(tokenizer(question + "\n").input_ids)
    out = []
    for position in positions:
        out.append(float(token_logprobs[start - 1 : position + 1 - num_sep - 1].min()))
        start = position + 1
    return out


def features(model, tokenizer, path: Path) -> tuple[list[list[float]], list[int]]:
    from ttcompute.core.shards import load_sharded
    from ttcompute.tasks.arithmetic import STEP_SEPARATOR, first_wrong_step

    scores, truth = [], []
    for row in load_sharded(path):
        wrong = first_wrong_step(row["question"], row["completions"])
        truth.append(-1 if wrong is None else wrong)
        scores.append(
            step_min_logprobs(model, tokenizer, row["question"], row["completions"], STEP_SEPARATOR)
        )
    return scores, truth


def processbench_at(scores, truth, threshold: float) -> dict:
    from ttcompute.eval.prm_eval import first_error_from_scores, processbench_metrics

    return processbench_metrics([first_error_from_scores(s, threshold) for s in scores], truth)


def main() -> int:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/prm_exp")
    policies = sys.argv[2:] or ["policy_small", "policy_large"]
    torch.set_num_threads(2)
    for name in policies:
        path = REPO / "ttcompute" / "checkpoints" / name
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path).eval()
        calib = features(model, tokenizer, root / "calib_labels")
        test = features(model, tokenizer, root / "heldout_labels_ex")
        threshold = max(GRID, key=lambda t: processbench_at(*calib, t)["f1"] or 0.0)
        result = processbench_at(*test, threshold)
        print(
            f"{name}: min-token-logprob verifier, threshold {threshold} (calibrated on {len(calib[1])} "
            f"solutions): ProcessBench F1 {result['f1']:.3f} (error acc {result['error_accuracy']:.3f} on "
            f"{result['num_erroneous']}, correct acc {result['correct_accuracy']:.3f} on {result['num_correct']})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
