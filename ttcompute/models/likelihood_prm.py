"""A likelihood-feature PRM: a causal LM's own surprise at a step, calibrated on Monte Carlo labels.

Why: in a small decoder the result of ``a op b`` exists only at the output layer of the position that
predicts it, so a token-classification head at the step separator (``ttc train-prm``'s default PRM)
cannot read whether the written result matches -- it plateaus far from the labels' quality on the
arithmetic task. The LM's probability of the tokens it reads *is* that comparison. Here the feature of
step ``i`` is the lowest log-probability the LM gives any token of steps ``0..i`` (separators
excluded: a running minimum, so a value estimate never recovers after a slip), and the score is
``sigmoid(weight * feature + bias)``, the two numbers fitted by soft binary cross-entropy on MC labels.

Saved as ``likelihood_prm.json`` (the base LM stays where it is, by path or Hub id); ``load_prm``
recognises the directory. Scoring runs one forward pass per solution and scores every step at once,
batched by a token budget.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ttcompute.errors import InputError

logger = logging.getLogger(__name__)

LIKELIHOOD_PRM_FILE = "likelihood_prm.json"
FORMAT = "ttcompute-likelihood"


class LikelihoodPRM:
    """:class:`~ttcompute.models.prm.PRM` over a causal LM's token log-probabilities.

    Args:
        model / tokenizer: The causal LM (usually the policy that wrote the solutions) and its tokenizer.
        step_separator / prompt_template: How (question, steps) become text, as in the ttcompute format.
        weight / bias: The calibration; ``weight=1, bias=0`` with :meth:`features` gives raw features.
        max_batch_tokens: Rows are packed until rows x longest row would pass this.
    """

    def __init__(
        self,
        model,
        tokenizer,
        *,
        step_separator: str,
        prompt_template: str = "{question}\n",
        weight: float = 1.0,
        bias: float = 0.0,
        max_batch_tokens: int = 32768,
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.step_separator = step_separator
        self.prompt_template = prompt_template
        self.weight = weight
        self.bias = bias
        self.max_batch_tokens = max_batch_tokens
        self.num_parameters = sum(p.numel() for p in model.parameters())
        self.num_tokens_encoded = 0
        self.num_tokens_requested = 0
        self._separator_len = len(tokenizer(step_separator, add_special_tokens=False)["input_ids"])

    def score(self, questions: Sequence[str], steps: Sequence[Sequence[str]]) -> list[list[float]]:
        """For each (question, steps) pair, one score per step in [0, 1]."""
        return [
            [1.0 / (1.0 + math.exp(-(self.weight * x + self.bias))) for x in row]
            for row in self.features(questions, steps)
        ]

    @torch.inference_mode()
    def features(self, questions: Sequence[str], steps: Sequence[Sequence[str]]) -> list[list[float]]:
        """Per step: the running minimum over steps 0..i of the least likely token's log-probability."""
        from ttcompute.models.prm import encode_steps

        if len(questions) != len(steps):
            raise ValueError(f"{len(questions)} questions but {len(steps)} step lists")
        requests = []
        for index, (question, pair_steps) in enumerate(zip(questions, steps)):
            if isinstance(pair_steps, str):
                raise ValueError(f"pair {index}: steps must be a list of strings, got one string")
            if not pair_steps:
                requests.append(None)
                continue
            prompt = self.prompt_template.format(question=question)
            ids, positions = encode_steps(self.tokenizer, prompt, pair_steps, self.step_separator)
            prompt_len = len(self.tokenizer(prompt, add_special_tokens=True)["input_ids"])
            requests.append((ids, positions, prompt_len))
            self.num_tokens_requested += len(ids)
        results: list[list[float]] = [[] for _ in questions]
        order = sorted(
            (i for i, r in enumerate(requests) if r is not None), key=lambda i: len(requests[i][0])
        )
        batch: list[int] = []
        for index in order + [None]:
            if index is not None and (
                not batch or (len(batch) + 1) * len(requests[index][0]) <= self.max_batch_tokens
            ):
                batch.append(index)
                continue
            if batch:
                for i, row in zip(batch, self._run([requests[i] for i in batch])):
                    results[i] = row
            batch = [index] if index is not None else []
        return results

    def _run(self, requests: list[tuple[list[int], list[int], int]]) -> list[list[float]]:
        width = max(len(ids) for ids, _, _ in requests)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        input_ids = torch.full((len(requests), width), pad, dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        for row, (ids, _, _) in enumerate(requests):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            attention_mask[row, : len(ids)] = 1
        device = next(self.model.parameters()).device
        logits = self.model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device)).logits
        # logprob[r, t] = log P(ids[t + 1] | ids[: t + 1])
        logprobs = torch.log_softmax(logits[:, :-1].float(), dim=-1)
        token_logprobs = logprobs.gather(2, input_ids[:, 1:].to(device).unsqueeze(-1)).squeeze(-1).cpu()
        self.num_tokens_encoded += sum(len(ids) for ids, _, _ in requests)
        out = []
        for row, (_, positions, prompt_len) in enumerate(requests):
            features, running, start = [], 0.0, prompt_len
            for position in positions:
                end = position - self._separator_len  # the step's last own token
                if end >= start:
                    running = min(running, float(token_logprobs[row, start - 1 : end].min()))
                features.append(running)
                start = position + 1
            out.append(features)
        return out


def fit_calibration(
    features: Sequence[Sequence[float]], labels: Sequence[Sequence[float]]
) -> tuple[float, float]:
    """``(weight, bias)`` minimising the soft binary cross-entropy of ``sigmoid(w x + b)`` vs labels.

    A convex problem in two numbers: Newton's method from (0, logit of the mean label) converges in a
    few iterations and needs no learning rate. A vanishing ridge keeps separable data finite.

    >>> w, b = fit_calibration([[-3.0, -0.1], [-0.2, -0.05]], [[0.0, 1.0], [1.0, 1.0]])
    >>> w > 0
    True
    """
    x = torch.tensor([v for row in features for v in row], dtype=torch.float64)
    y = torch.tensor([float(v) for row in labels for v in row], dtype=torch.float64)
    if x.numel() != y.numel() or x.numel() == 0:
        raise ValueError(f"{x.numel()} features for {y.numel()} labels")
    mean = float(y.mean().clamp(1e-6, 1 - 1e-6))
    theta = torch.tensor([0.0, math.log(mean / (1 - mean))], dtype=torch.float64)
    design = torch.stack([x, torch.ones_like(x)], dim=1)
    ridge = 1e-9 * x.numel()
    for _ in range(100):
        p = torch.sigmoid(design @ theta)
        gradient = design.T @ (p - y) + ridge * theta
        hessian = design.T @ (design * (p * (1 - p)).unsqueeze(1)) + ridge * torch.eye(2, dtype=torch.float64)
        step = torch.linalg.solve(hessian, gradient)
        theta = theta - step
        if float(step.abs().max()) < 1e-10:
            break
    return float(theta[0]), float(theta[1])


def save_likelihood_prm(out: Path, metadata: dict[str, Any]) -> Path:
    """Write ``likelihood_prm.json`` (format, base model, separator, template, weight, bias ...)."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / LIKELIHOOD_PRM_FILE
    path.write_text(json.dumps({"format": FORMAT, **metadata}, indent=2))
    return path


def load_likelihood_prm(
    path: str | Path,
    *,
    device: str | None = None,
    max_batch_tokens: int = 32768,
    trust_remote_code: bool = False,
) -> LikelihoodPRM:
    """The PRM a ``likelihood_prm.json`` directory describes (its base LM loaded from its own path)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec_file = Path(path) / LIKELIHOOD_PRM_FILE
    try:
        spec = json.loads(spec_file.read_text())
        base = spec["base_model"]
        separator, template = spec["step_separator"], spec.get("prompt_template", "{question}\n")
        weight, bias = float(spec["weight"]), float(spec["bias"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise InputError(f"{spec_file}: not a likelihood PRM spec ({type(err).__name__}: {err})") from None
    target = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    try:
        tokenizer = AutoTokenizer.from_pretrained(base, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            base, use_safetensors=True, trust_remote_code=trust_remote_code
        ).to(target)
    except (OSError, ValueError) as err:
        raise InputError(f"{spec_file}: cannot load its base model {base!r} ({err})") from None
    return LikelihoodPRM(
        model,
        tokenizer,
        step_separator=separator,
        prompt_template=template,
        weight=weight,
        bias=bias,
        max_batch_tokens=max_batch_tokens,
    )
