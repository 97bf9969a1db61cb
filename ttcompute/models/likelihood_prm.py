"""A likelihood-feature PRM: a causal LM's own surprise at a step, calibrated on Monte Carlo labels.

Why: on the arithmetic task a token-classification head at the step separator (``ttc train-prm``'s
default PRM) plateaus at step ROC-AUC ~0.81 whatever the base, data, labels or steps
(bench/prm_learning_curve.py: the small and large policy, up to 16,000 exactly labelled solutions
and 10,000 steps); it underfits even exact labels, although the large policy's hidden states do
carry the true result. The LM's probability of the tokens it reads *is* that comparison. Here the feature of
step ``i`` is the lowest log-probability the LM gives any token of steps ``0..i`` (separators
excluded: a running minimum, so a value estimate never recovers after a slip), and the score is
``sigmoid(weight * feature + bias)``, the two numbers fitted by soft binary cross-entropy on MC labels.

Saved as ``likelihood_prm.json`` (the base LM stays where it is, by path or Hub id); ``load_prm``
recognises the directory. Scoring shares the token-budget batching and prefix (KV cache) reuse of the
other PRMs' engine.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from ttcompute.core.checkpoint_identity import checkpoint_identity, same_checkpoint
from ttcompute.core.errors import InputError
from ttcompute.core.prompts import DEFAULT_CONTRACT, PromptContract, recorded_contract
from ttcompute.core.recorded_paths import record_options, resolve_options
from ttcompute.models.generation import build_prompt
from ttcompute.models.prm import TransformersPRM, encode_steps, tokenize_piece
from ttcompute.models.weights import load_error

logger = logging.getLogger(__name__)

LIKELIHOOD_PRM_FILE = "likelihood_prm.json"
FORMAT = "ttcompute-likelihood"


class LikelihoodPRM(TransformersPRM):
    """:class:`~ttcompute.models.prm.PRM` over a causal LM's token log-probabilities.

    It shares :class:`~ttcompute.models.prm.TransformersPRM`'s engine: batches packed by a token
    budget, and a scored prefix's KV cache (plus its last hidden state, which predicts the next token)
    reused when a request extends it -- so step-wise search never re-encodes a prefix.

    Args:
        model / tokenizer: The causal LM (usually the policy that wrote the solutions) and its tokenizer.
        step_separator / contract: How (question, steps) become text (the prompt contract of the
            samples it was fitted on), as in the ttcompute format.
        weight / bias: The calibration; :meth:`features` gives the raw features whatever they are.
        max_batch_tokens / reuse_prefixes / max_cache_tokens: As for ``TransformersPRM``.
    """

    def __init__(
        self,
        model,
        tokenizer,
        *,
        step_separator: str,
        contract: PromptContract = DEFAULT_CONTRACT,
        weight: float = 1.0,
        bias: float = 0.0,
        max_batch_tokens: int = 32768,
        reuse_prefixes: bool = True,
        max_cache_tokens: int | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self.step_separator = step_separator
        self.contract = contract
        self.weight = weight
        self.bias = bias
        self.lm_head = model.get_output_embeddings()
        self._separator_tokens: dict[tuple[int, ...], int] = {}

        def encode(question: str, steps: Sequence[str]) -> tuple[list[int], list[int], int]:
            prompt = build_prompt(question, contract, tokenizer)
            ids, positions = encode_steps(tokenizer, prompt, steps, step_separator)
            return ids, positions, len(tokenize_piece(tokenizer, prompt, True))

        super().__init__(
            model.base_model,
            encode,
            head=None,
            num_parameters=sum(p.numel() for p in model.parameters()),
            pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0,
            max_batch_tokens=max_batch_tokens,
            reuse_prefixes=reuse_prefixes,
            max_cache_tokens=max_cache_tokens,
        )

    def _trailing_separator_tokens(self, piece: tuple[int, ...]) -> int:
        if piece not in self._separator_tokens:
            self._separator_tokens[piece] = _count_separator_tail(self.tokenizer, piece, self.step_separator)
        return self._separator_tokens[piece]

    def score(self, questions: Sequence[str], steps: Sequence[Sequence[str]]) -> list[list[float]]:
        """For each (question, steps) pair, one score per step in [0, 1]."""
        return [
            [1.0 / (1.0 + math.exp(-(self.weight * x + self.bias))) for x in row]
            for row in self.features(questions, steps)
        ]

    def features(self, questions: Sequence[str], steps: Sequence[Sequence[str]]) -> list[list[float]]:
        """Per step: the running minimum over steps 0..i of the least likely token's log-probability."""
        return TransformersPRM.score(self, questions, steps)

    def _score_new(self, hidden: torch.Tensor, jobs) -> list[list[float]]:
        out = []
        for row, job in enumerate(jobs):
            past, ids = job.past_len, job.ids
            new = len(ids) - past
            # The state that predicts token t is the hidden state at t - 1: cached for t = past.
            predecessors = hidden[row, : new - 1]
            first = past
            if past > 0:
                predecessors = torch.cat([job.past.state.unsqueeze(0).to(hidden.dtype), predecessors])
            else:
                first = 1  # nothing predicts the first token
            logprobs = torch.log_softmax(self.lm_head(predecessors).float(), dim=-1)
            targets = torch.tensor(ids[first:], device=logprobs.device)
            token_logprobs = logprobs.gather(1, targets.unsqueeze(1)).squeeze(1).cpu()  # of ids[first:]
            running = job.scores[-1] if job.scores else 0.0
            features = []
            for j in range(len(job.scores), len(job.positions)):
                begin = job.positions[j - 1] + 1 if j > 0 else job.start
                piece = tuple(job.ids[begin : job.positions[j] + 1])
                end = job.positions[j] - self._trailing_separator_tokens(piece)  # the step's last own token
                if end >= begin:
                    running = min(running, float(token_logprobs[begin - first : end - first + 1].min()))
                features.append(running)
            out.append(features)
        return out


def _count_separator_tail(tokenizer, piece: Sequence[int], separator: str) -> int:
    """How many of a ``step + separator`` piece's last tokens hold separator text only.

    Counted on the decoded text, not as the separator's own token count: a BPE merge such as
    ``".\\n\\n"`` holds step text (it is the step's), and a byte-fallback tokenizer spells
    ``"\\n\\n"`` with other tokens alone than inside a piece.
    """
    count = 0
    while count < len(piece) - 1:
        tail = tokenizer.decode(list(piece[len(piece) - count - 1 :]))
        if not tail or not separator.endswith(tail):
            break
        count += 1
    return count


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
    # Its base model relative to this file (core/recorded_paths.py): the PRM moves with its run.
    spec = {"format": FORMAT, **record_options(metadata, out)}
    path.write_text(json.dumps(spec, indent=2))
    return path


def load_likelihood_prm(
    path: str | Path,
    *,
    prompt_contract: PromptContract | None = None,
    device: str | None = None,
    max_batch_tokens: int = 32768,
    max_cache_tokens: int | None = None,
    trust_remote_code: bool = False,
) -> LikelihoodPRM:
    """The PRM a ``likelihood_prm.json`` directory describes (its base LM loaded from its own path);
    ``prompt_contract`` as for :func:`~ttcompute.models.prm_formats.load_prm`."""
    spec_file = Path(path) / LIKELIHOOD_PRM_FILE
    try:
        spec = resolve_options(json.loads(spec_file.read_text()), spec_file)
        base = spec["base_model"]
        separator = spec["step_separator"]
        contract = recorded_contract(spec, prompt_contract, str(spec_file))
        weight, bias = float(spec["weight"]), float(spec["bias"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise InputError(f"{spec_file}: not a likelihood PRM spec ({type(err).__name__}: {err})") from None
    calibrated_on = spec.get("base_model_identity")
    if calibrated_on and Path(base).is_dir() and not same_checkpoint(calibrated_on, base):
        # Its two numbers fit one LM's log-probabilities; other weights at the path need their own.
        raise InputError(
            f"{spec_file}: calibrated over base model {calibrated_on}, but {base} now holds "
            f"{checkpoint_identity(base)}; calibrate again with `ttc train-prm --prm_kind likelihood`"
        )
    target = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    try:
        tokenizer = AutoTokenizer.from_pretrained(base, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            base, use_safetensors=True, trust_remote_code=trust_remote_code
        ).to(target)
    except (OSError, ValueError) as err:
        raise InputError(f"{spec_file}: {load_error(base, 'its base model', err)}") from None
    return LikelihoodPRM(
        model,
        tokenizer,
        step_separator=separator,
        contract=contract,
        weight=weight,
        bias=bias,
        max_batch_tokens=max_batch_tokens,
        max_cache_tokens=max_cache_tokens,
    )
