"""The ``question`` difficulty predictor: a question's pass@1 predicted before any sampling, by a linear
probe on the frozen policy's hidden states of the prompt (issue 19).

The policy reads each prompt once (``output_hidden_states=True``); a problem's features are one layer's
hidden states pooled over the prompt: their ``mean`` over the prompt tokens, or the ``last`` token's
(the state the first generated token is predicted from). Which layer, which pooling and how much ridge
regularisation are chosen by k-fold cross-validation over the *training* problems (another ``ttc
sample`` output, whose oracle pass@1 is the label), never over the problems being binned.

Why ridge regression and not an MLP: the labels are a few hundred noisy pass@1 values (a handful of
samples each) against features of hundreds to thousands of dimensions. A linear probe with an L2
penalty is the standard probe for what a frozen model's hidden states "know"; it has a closed form
(one SVD per layer and pooling gives every penalty at once), so cross-validating every layer x pooling
x penalty costs seconds and is exactly reproducible, where an MLP would add a learning rate, epochs and
a seed, and overfit at this label count. Features are standardised with the training problems' mean
and standard deviation (the penalty then treats every dimension alike), and the intercept is left
unpenalised. Layer/pooling/penalty are chosen by the cross-validated MSE of the predicted pass@1 (what
ridge minimises, and defined under the heavy ties of pass@1 over few samples); the Spearman
correlation of the out-of-fold predictions is reported beside it.

The prediction is the raw linear estimate: it may leave [0, 1] a little. It is not clipped, because
bins are quantiles of it and clipping would tie the most confident problems into one bin.

The trained probe is saved as ``question_probe.json`` (format, the policy it was trained on, its size,
the layer, pooling, penalty, feature normalisation, weights, the training samples' prompt contract,
the cross-validation table) and loaded again to bin new questions of the same policy and contract.

Compute: one forward pass of each prompt, run only as far as the probe's layer (the blocks above it
cannot change its features): ``2 * N_l * prompt_tokens`` FLOPs, ``N_l`` the parameters of the
embeddings and the blocks below layer ``l`` (:func:`parameters_through`; no generation, no verifier).
"""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ttcompute.core.budget import inference_flops
from ttcompute.core.checkpoint_identity import checkpoint_identity, same_checkpoint
from ttcompute.core.errors import InputError
from ttcompute.core.outputs import require_unique_ids
from ttcompute.core.prompts import read_contract
from ttcompute.core.shards import ShardReader, read_resolved_config, write_json
from ttcompute.models.backends import load_backend

logger = logging.getLogger(__name__)

PROBE_FORMAT = "ttcompute-question-probe"
POOLINGS = ("mean", "last")
# Penalties on standardised features; the scale of the features' Gram matrix grows with the number of
# problems, so the grid is wide rather than tuned.
ALPHAS = (0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0)


# --- features ----------------------------------------------------------------------------------


def _decoder_blocks(model) -> torch.nn.ModuleList | None:
    """The model's list of decoder blocks (Llama, Qwen2, Mistral ... ``model.model.layers``), or None
    where it is laid out otherwise (its features then come from a full forward pass)."""
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    blocks = getattr(decoder, "layers", None)
    if isinstance(blocks, torch.nn.ModuleList) and len(blocks) == model.config.num_hidden_layers:
        return blocks
    return None


def parameters_through(model, layer: int) -> int:
    """The parameters a forward pass runs to get layer ``layer``'s hidden states: all of them for the
    last layer (after the final norm) or a model laid out otherwise, else the embeddings and the blocks
    below ``layer`` (what :func:`prompt_features` runs).

    >>> from transformers import LlamaConfig, LlamaForCausalLM
    >>> model = LlamaForCausalLM(LlamaConfig(vocab_size=100, hidden_size=16, intermediate_size=32,
    ...                                      num_hidden_layers=2, num_attention_heads=2))
    >>> embed = model.model.embed_tokens.weight.numel()
    >>> block = sum(p.numel() for p in model.model.layers[0].parameters())
    >>> parameters_through(model, 0) == embed, parameters_through(model, 1) == embed + block
    (True, True)
    >>> parameters_through(model, 2) == sum(p.numel() for p in model.parameters())
    True
    """
    blocks = _decoder_blocks(model)
    if blocks is None or layer >= len(blocks):
        return sum(p.numel() for p in model.parameters())
    embeddings = model.get_input_embeddings()
    return sum(p.numel() for p in embeddings.parameters()) + sum(
        p.numel() for block in blocks[:layer] for p in block.parameters()
    )


class _Enough(Exception):
    """Raised inside the forward pass once the deepest layer needed was read."""


def _hidden_states(
    model, ids: torch.Tensor, mask: torch.Tensor, layers: list[int], blocks
) -> dict[int, torch.Tensor]:
    """Each of ``layers``' hidden states of a batch. With the model's blocks known and every layer below
    the last, the states entering block ``l`` are layer ``l``'s (transformers' ``hidden_states[l]``):
    hooks read them and the pass stops at the deepest; otherwise a full pass returns them all."""
    if blocks is None or max(layers) >= len(blocks):
        out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        return {layer: out.hidden_states[layer] for layer in layers}
    deepest, seen = max(layers), {}

    def reader(layer: int):
        def hook(module, args, kwargs):
            seen[layer] = args[0] if args else kwargs["hidden_states"]
            if layer == deepest:
                raise _Enough

        return hook

    handles = [
        blocks[layer].register_forward_pre_hook(reader(layer), with_kwargs=True) for layer in set(layers)
    ]
    try:
        with contextlib.suppress(_Enough):
            model(input_ids=ids, attention_mask=mask)
    finally:
        for handle in handles:
            handle.remove()
    return seen


@torch.inference_mode()
def prompt_features(
    backend, prompts: list[str], layers: list[int] | None = None, batch_size: int = 16
) -> tuple[dict[tuple[int, str], np.ndarray], list[int]]:
    """Pooled hidden states of every prompt: ``{(layer, pooling): (num_prompts, hidden) array}``, and
    each prompt's token count (what its forward pass costs).

    ``backend`` is a :class:`~ttcompute.models.hf_backend.TransformersBackend` (its tokenizer's
    ``encode``, its model, its device). Layer 0 is the embeddings, layer L the last block's output
    (after the final norm, as transformers returns it). Prompts run in batches of similar length,
    right-padded: a causal model's states of the real tokens do not see the padding after them. The
    pass stops at the deepest layer asked for when it is below the last (:func:`parameters_through`).
    """
    token_ids = backend.encode(prompts)
    num_layers = backend.model.config.num_hidden_layers + 1
    layers = list(range(num_layers)) if layers is None else layers
    for layer in layers:
        if not 0 <= layer < num_layers:
            raise InputError(
                f"--probe_layers: layer {layer} does not exist (the policy has 0..{num_layers - 1})"
            )
    blocks = _decoder_blocks(backend.model)
    pad = backend.pad_token_id
    order = sorted(range(len(prompts)), key=lambda i: len(token_ids[i]))
    pooled: dict[tuple[int, str], list[np.ndarray]] = {(layer, p): [] for layer in layers for p in POOLINGS}
    for start in tqdm(range(0, len(order), batch_size), desc="Prompt features", unit="batch"):
        rows = order[start : start + batch_size]
        lengths = torch.tensor([len(token_ids[i]) for i in rows])
        width = int(lengths.max())
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        for r, i in enumerate(rows):
            ids[r, : lengths[r]] = torch.tensor(token_ids[i])
        mask = (torch.arange(width)[None, :] < lengths[:, None]).long()  # (rows, width)
        hidden = _hidden_states(
            backend.model, ids.to(backend.device), mask.to(backend.device), layers, blocks
        )
        mask_f = mask.to(backend.device)[:, :, None].float()
        for layer in layers:
            states = hidden[layer].float()  # (rows, width, hidden)
            mean = (states * mask_f).sum(1) / mask_f.sum(1)
            last = states[torch.arange(len(rows), device=states.device), (lengths - 1).to(states.device)]
            pooled[(layer, "mean")].append(mean.cpu().numpy())
            pooled[(layer, "last")].append(last.cpu().numpy())
    inverse = np.argsort(order)  # back to the prompts' own order
    features = {key: np.concatenate(parts)[inverse].astype(np.float64) for key, parts in pooled.items()}
    return features, [len(ids) for ids in token_ids]


# --- the ridge probe -----------------------------------------------------------------------------


@dataclass
class LinearProbe:
    """``predict(x) = ((x - mean) / scale) @ weights + bias``."""

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float

    def predict(self, features: np.ndarray) -> np.ndarray:
        return ((features - self.mean) / self.scale) @ self.weights + self.bias


def fit_ridge(
    features: np.ndarray, targets: np.ndarray, alphas: tuple[float, ...] = ALPHAS
) -> list[LinearProbe]:
    """Ridge regression of ``targets`` on standardised ``features``, one probe per penalty in ``alphas``:
    ``argmin_w |Z w - (y - mean(y))|^2 + alpha |w|^2`` with ``Z`` the standardised features, the
    intercept (``mean(y)``) unpenalised.

    One thin SVD ``Z = U S V^T`` gives every penalty: ``w = V diag(s / (s^2 + alpha)) U^T y``, exact
    whether there are more problems or more dimensions. A constant feature (zero spread) is scaled by 1
    and so contributes nothing.
    """
    mean = features.mean(0)
    scale = features.std(0)
    scale = np.where(scale > 1e-12, scale, 1.0)
    z = (features - mean) / scale
    bias = float(targets.mean())
    u, s, vt = np.linalg.svd(z, full_matrices=False)
    uty = u.T @ (targets - bias)
    return [LinearProbe(mean, scale, vt.T @ (s / (s**2 + alpha) * uty), bias) for alpha in alphas]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Rank correlation (ties share their mean rank); nan when either side is constant."""
    if len(set(a.tolist())) < 2 or len(set(b.tolist())) < 2:
        return float("nan")
    return float(np.corrcoef(pd.Series(a).rank(), pd.Series(b).rank())[0, 1])


def fold_ids(num_problems: int, num_folds: int, seed: int = 0) -> np.ndarray:
    """The fold of each problem: a seeded shuffle dealt round-robin, so fold sizes differ by at most one.

    >>> sorted(np.bincount(fold_ids(7, 3)).tolist())
    [2, 2, 3]
    """
    folds = np.empty(num_problems, dtype=int)
    folds[np.random.default_rng(seed).permutation(num_problems)] = np.arange(num_problems) % num_folds
    return folds


def cross_validate(
    features: dict[tuple[int, str], np.ndarray],
    targets: np.ndarray,
    num_folds: int,
    alphas: tuple[float, ...] = ALPHAS,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Out-of-fold MSE and Spearman of every (layer, pooling, alpha), best (lowest MSE) first; ties keep
    the order of ``features`` and ``alphas`` (the earlier layer, the smaller penalty).

    Every candidate is scored on the same folds, over problems (a problem is never in its own training
    fold), with the normalisation refitted inside each fold.
    """
    if len(targets) < num_folds:
        raise InputError(
            f"the question probe needs at least --probe_folds ({num_folds}) training problems, got {len(targets)}"
        )
    folds = fold_ids(len(targets), num_folds, seed)
    table = []
    for (layer, pooling), x in features.items():
        out_of_fold = np.zeros((len(alphas), len(targets)))
        for k in range(num_folds):
            held = folds == k
            for a, probe in enumerate(fit_ridge(x[~held], targets[~held], alphas)):
                out_of_fold[a, held] = probe.predict(x[held])
        for a, alpha in enumerate(alphas):
            table.append(
                {
                    "layer": layer,
                    "pooling": pooling,
                    "alpha": alpha,
                    "cv_mse": float(np.mean((out_of_fold[a] - targets) ** 2)),
                    "cv_spearman": _json_float(spearman(out_of_fold[a], targets)),
                }
            )
    return sorted(table, key=lambda row: row["cv_mse"])  # stable: ties keep their order


def _json_float(value: float) -> float | None:
    return None if np.isnan(value) else value


# --- the saved probe -----------------------------------------------------------------------------


@dataclass
class QuestionProbe:
    """A trained probe and what it may be applied to (the policy and prompt contract it was trained on)."""

    policy: str
    policy_parameters: int
    layer: int
    pooling: str
    alpha: float
    probe: LinearProbe
    prompt_contract: dict[str, Any] | None = None
    num_train_problems: int = 0
    cv: list[dict[str, Any]] = field(default_factory=list)

    def predict(self, features: dict[tuple[int, str], np.ndarray]) -> np.ndarray:
        return self.probe.predict(features[(self.layer, self.pooling)])

    def save(self, path: str | Path) -> None:
        write_json(
            Path(path),
            {
                "format": PROBE_FORMAT,
                "policy": self.policy,
                "policy_parameters": self.policy_parameters,
                "layer": self.layer,
                "pooling": self.pooling,
                "alpha": self.alpha,
                "prompt_contract": self.prompt_contract,
                "num_train_problems": self.num_train_problems,
                # float64 -> JSON -> float64 is exact (repr round-trips), so a loaded probe predicts the same.
                "feature_mean": self.probe.mean.tolist(),
                "feature_scale": self.probe.scale.tolist(),
                "weights": self.probe.weights.tolist(),
                "bias": self.probe.bias,
                "cross_validation": self.cv,
            },
        )

    @classmethod
    def load(cls, path: str | Path) -> QuestionProbe:
        """Raises: InputError: not a file, not JSON, or not a question probe."""
        try:
            record = json.loads(Path(path).read_text())
        except (OSError, ValueError) as err:
            raise InputError(
                f"{path}: cannot read a question probe ({err.__class__.__name__}: {err})"
            ) from None
        if not isinstance(record, dict) or record.get("format") != PROBE_FORMAT:
            raise InputError(f"{path}: not a question probe (no format {PROBE_FORMAT!r})")
        try:
            probe = LinearProbe(
                np.asarray(record["feature_mean"], dtype=np.float64),
                np.asarray(record["feature_scale"], dtype=np.float64),
                np.asarray(record["weights"], dtype=np.float64),
                float(record["bias"]),
            )
            return cls(
                policy=record["policy"],
                policy_parameters=int(record["policy_parameters"]),
                layer=int(record["layer"]),
                pooling=record["pooling"],
                alpha=float(record["alpha"]),
                probe=probe,
                prompt_contract=record.get("prompt_contract"),
                num_train_problems=int(record.get("num_train_problems", 0)),
                cv=record.get("cross_validation", []),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise InputError(f"{path}: malformed question probe ({err.__class__.__name__}: {err})") from None


def train_question_probe(
    features: dict[tuple[int, str], np.ndarray],
    pass_at_1: list[float],
    policy: str,
    policy_parameters: int,
    prompt_contract: dict[str, Any] | None,
    num_folds: int,
) -> QuestionProbe:
    """Choose layer, pooling and penalty by cross-validation, then refit the best on every problem."""
    targets = np.asarray(pass_at_1, dtype=np.float64)
    table = cross_validate(features, targets, num_folds)
    best = table[0]
    (probe,) = fit_ridge(features[(best["layer"], best["pooling"])], targets, (best["alpha"],))
    logger.info(
        "Question probe: layer %d, %s pooling, alpha %g (CV MSE %.4f, Spearman %.3f over %d problems)",
        best["layer"],
        best["pooling"],
        best["alpha"],
        best["cv_mse"],
        best["cv_spearman"],
        len(targets),
    )
    return QuestionProbe(
        policy=policy,
        policy_parameters=policy_parameters,
        layer=best["layer"],
        pooling=best["pooling"],
        alpha=best["alpha"],
        probe=probe,
        prompt_contract=prompt_contract,
        num_train_problems=len(targets),
        cv=table,
    )


# --- the predictor of ``ttc difficulty`` ---------------------------------------------------------


def policy_id(model_name_or_path: str) -> str:
    """What a probe records of its policy: what the checkpoint is (a content hash of a local one, or
    the Hub id), never where it sits (core/checkpoint_identity.py)."""
    return checkpoint_identity(model_name_or_path)


def read_prompts(samples_dir: str) -> tuple[list[str], list[str], list[float]]:
    """Problem ids, prompts and oracle pass@1 of a ``ttc sample`` output.

    Raises:
        InputError: a missing column, a problem without samples or with a null verdict, a repeated id.
    """
    reader = ShardReader(samples_dir)
    for column in ("problem_id", "prompt", "correct"):
        if column not in reader.column_names:
            raise InputError(f"{samples_dir}: missing column '{column}' (not ttc sample output?)")
    ids: list[str] = []
    prompts: list[str] = []
    pass_at_1: list[float] = []
    for batch in reader.iter_batches(["problem_id", "prompt", "correct"], batch_size=1024):
        for problem_id, prompt, verdicts in zip(*(batch.column(c).to_pylist() for c in batch.column_names)):
            if not verdicts or any(v is None for v in verdicts) or not prompt:
                what = "no samples" if not verdicts else "no prompt" if not prompt else "a null verdict"
                raise InputError(f"{samples_dir}: row {len(ids)} (problem {problem_id}): {what}")
            ids.append(problem_id)
            prompts.append(prompt)
            pass_at_1.append(sum(verdicts) / len(verdicts))
    require_unique_ids(ids, samples_dir)
    return ids, prompts, pass_at_1


def _contract_of(samples_dir: str) -> dict[str, Any] | None:
    contract = read_contract(samples_dir)
    return None if contract is None else contract.to_dict()


def _check_contract(expected: dict[str, Any] | None, expected_where: str, samples_dir: str) -> None:
    found = _contract_of(samples_dir)
    if expected is not None and found is not None and found != expected:
        raise InputError(
            f"{samples_dir}: sampled under prompt contract {found}, but {expected_where} was trained under "
            f"{expected}; the probe reads prompts as it was trained on them"
        )


def predict_question_difficulty(
    config, problem_ids: list[str], prompts: list[str]
) -> tuple[list[float], dict[str, Any], QuestionProbe, dict[str, Any]]:
    """The ``question`` predictor of ``ttc difficulty`` (``config``: its ``DifficultyConfig``): the
    predicted pass@1 of each prompt, the compute of predicting it (one prompt forward pass each), the
    probe (trained on ``probe_train_samples_dir`` or loaded from ``question_probe``) and what stats.json
    reports of it. Every input is checked before the policy loads; nothing is written here.
    """
    policy = config.model_name_or_path or read_resolved_config(config.samples_dir).get("model_name_or_path")
    if not policy:
        raise InputError(
            f"{config.samples_dir}: its ttc_config.yaml records no policy; give --model_name_or_path"
        )
    if config.question_probe:
        probe = QuestionProbe.load(config.question_probe)
        if not same_checkpoint(probe.policy, policy):
            raise InputError(
                f"{config.question_probe}: a probe of policy {probe.policy}, not of {policy} ({policy_id(policy)})"
            )
        _check_contract(probe.prompt_contract, config.question_probe, config.samples_dir)
    else:
        train_dir = config.probe_train_samples_dir
        train_policy = read_resolved_config(train_dir).get("model_name_or_path")
        if not config.model_name_or_path and train_policy and policy_id(train_policy) != policy_id(policy):
            # Compared by content: a copy of the same checkpoint elsewhere is the same policy.
            raise InputError(
                f"{train_dir}: sampled by {train_policy}, but {config.samples_dir} by {policy}; the probe's "
                "labels must be the pass@1 of the policy it probes"
            )
        train_contract = _contract_of(train_dir)
        _check_contract(train_contract, train_dir, config.samples_dir)
        train_ids, train_prompts, train_pass_at_1 = read_prompts(train_dir)
        shared = sorted(set(train_ids) & set(problem_ids))
        if shared:
            raise InputError(
                f"{train_dir}: {len(shared)} of its problems (e.g. {shared[0]!r}) are also in "
                f"{config.samples_dir}; the probe must not be trained on the problems it bins"
            )
    backend = load_backend("transformers", policy, device=config.device)
    if config.question_probe and probe.policy_parameters != backend.num_parameters:
        raise InputError(
            f"{config.question_probe}: trained on a policy of {probe.policy_parameters} parameters, "
            f"{policy} has {backend.num_parameters}"
        )
    train_compute = None
    if not config.question_probe:
        train_features, train_tokens = prompt_features(backend, train_prompts, config.probe_layers)
        probe = train_question_probe(
            train_features,
            train_pass_at_1,
            policy_id(policy),
            backend.num_parameters,
            train_contract,
            config.probe_folds,
        )
        # A one-off cost shared by every problem the probe will ever bin (as training a PRM is), so not
        # charged per problem; the training samples' own generation cost is in their stats.json.
        train_compute = {
            "policy_tokens": sum(train_tokens),
            "policy_flops": inference_flops(backend.num_parameters, sum(train_tokens)),
        }
    features, prompt_tokens = prompt_features(backend, prompts, [probe.layer])
    predicted = [float(x) for x in probe.predict(features)]
    run = parameters_through(backend.model, probe.layer)
    flops = inference_flops(run, sum(prompt_tokens))
    compute = {
        "policy_flops": flops,
        "policy_parameters": backend.num_parameters,
        "parameters_run": run,  # the forward pass stops at the probe's layer
        "policy_tokens": sum(prompt_tokens),
        "generations": 0,
        "verifier_flops": 0,
        "verifier_parameters": 0,
        "verifier_tokens": 0,
        "total_flops": flops,
    }
    best = probe.cv[0] if probe.cv else {}
    report = {
        "policy": probe.policy,
        "trained_here": not config.question_probe,
        "loaded_from": config.question_probe,
        "layer": probe.layer,
        "pooling": probe.pooling,
        "alpha": probe.alpha,
        "num_train_problems": probe.num_train_problems,
        "cv_mse": best.get("cv_mse"),
        "cv_spearman": best.get("cv_spearman"),
        "training_compute": train_compute,
    }
    return predicted, compute, probe, report
