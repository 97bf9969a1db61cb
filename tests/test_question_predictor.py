"""Tests for the ``question`` difficulty predictor (ttcompute.data_gen.question_probe): the ridge fit,
the cross-validated choice of layer/pooling/penalty, and ``ttc difficulty --predictor question`` on real
samples of the shipped small policy on the arithmetic task."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from ttcompute.cli import run_stage
from ttcompute.core.checkpoint_identity import checkpoint_identity
from ttcompute.core.errors import InputError
from ttcompute.core.outputs import load_difficulty
from ttcompute.core.shards import load_sharded
from ttcompute.data_gen.difficulty import (
    DifficultyConfig,
    assign_bins,
    oracle_agreement,
    quantile_edges,
    run_difficulty,
)
from ttcompute.data_gen.question_probe import (
    QuestionProbe,
    cross_validate,
    fit_ridge,
    fold_ids,
    parameters_through,
    prompt_features,
)
from ttcompute.models.backends import load_backend

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# --- the ridge fit, against an independent computation --------------------------------------------


def _standardise(x_train, x):
    scale = x_train.std(0)
    scale = np.where(scale > 1e-12, scale, 1.0)
    return (x - x_train.mean(0)) / scale


def _ridge_by_lstsq(x, y, alpha, x_new):
    """Ridge as least squares on the augmented system [Z; sqrt(alpha) I] w = [y - mean(y); 0]."""
    z = _standardise(x, x)
    augmented = np.vstack([z, np.sqrt(alpha) * np.eye(x.shape[1])])
    rhs = np.concatenate([y - y.mean(), np.zeros(x.shape[1])])
    w = np.linalg.lstsq(augmented, rhs, rcond=None)[0]
    return _standardise(x, x_new) @ w + y.mean()


@pytest.mark.parametrize("shape", [(12, 4), (5, 9)])  # more problems than dimensions, and fewer
def test_ridge_matches_least_squares_on_the_augmented_system(shape):
    rng = np.random.default_rng(shape[0])
    x = rng.normal(size=shape) * rng.uniform(0.1, 10, size=shape[1])  # dimensions of unlike scale
    x[:, 1] = 3.0  # a constant feature contributes nothing
    y = rng.uniform(size=shape[0])
    x_new = rng.normal(size=(6, shape[1]))
    alphas = (0.01, 1.0, 50.0)
    for alpha, probe in zip(alphas, fit_ridge(x, y, alphas), strict=True):
        assert probe.predict(x_new) == pytest.approx(_ridge_by_lstsq(x, y, alpha, x_new), abs=1e-9)
        assert probe.weights[1] == pytest.approx(0.0, abs=1e-12)


def test_folds_partition_the_problems_evenly_and_reproducibly():
    folds = fold_ids(23, 5, seed=3)
    assert sorted(np.bincount(folds).tolist()) == [4, 4, 5, 5, 5]
    assert (fold_ids(23, 5, seed=3) == folds).all() and not (fold_ids(23, 5, seed=4) == folds).all()


def test_cross_validation_picks_the_brute_force_best():
    rng = np.random.default_rng(0)
    n = 30
    y = rng.uniform(size=n)
    features = {
        (0, "mean"): rng.normal(size=(n, 6)),  # noise
        (1, "mean"): np.column_stack([y + 0.3 * rng.normal(size=n), rng.normal(size=(n, 5))]),
        (1, "last"): np.column_stack([y + 0.05 * rng.normal(size=n), rng.normal(size=(n, 5))]),
    }
    alphas = (0.1, 3.0, 100.0)
    table = cross_validate(features, y, num_folds=4, alphas=alphas)
    # Brute force: every candidate refitted per fold by the normal equations, out-of-fold MSE pooled.
    folds = fold_ids(n, 4)
    expected = {}
    for key, x in features.items():
        for alpha in alphas:
            predictions = np.zeros(n)
            for k in range(4):
                train, held = folds != k, folds == k
                z = _standardise(x[train], x[train])
                w = np.linalg.solve(z.T @ z + alpha * np.eye(x.shape[1]), z.T @ (y[train] - y[train].mean()))
                predictions[held] = _standardise(x[train], x[held]) @ w + y[train].mean()
            expected[(*key, alpha)] = float(np.mean((predictions - y) ** 2))
    got = {(r["layer"], r["pooling"], r["alpha"]): r["cv_mse"] for r in table}
    assert got == pytest.approx(expected, abs=1e-10)
    best = min(expected, key=expected.get)
    assert (table[0]["layer"], table[0]["pooling"], table[0]["alpha"]) == best
    assert best[:2] == (1, "last")  # the informative feature wins


# --- on real samples of the small policy ----------------------------------------------------------


def _sample(out, policy, seed, num_problems, *extra):
    run_stage(
        "sample",
        ["--model_name_or_path", str(policy), "--num_problems", str(num_problems), "--problem_seed", str(seed),
         "--num_samples", "4", "--device", "cpu", "--output_dir", str(out), *extra],
    )  # fmt: skip
    return out


@pytest.fixture(scope="module")
def arithmetic(tmp_path_factory, small_policy_dir, one_torch_thread):
    """Training and held-out samples (other seeds, so other problems), and a question run over them."""
    root = tmp_path_factory.mktemp("question")
    train = _sample(root / "train", small_policy_dir, 7, 128)
    test = _sample(root / "test", small_policy_dir, 8, 64)
    out = root / "difficulty"
    stats = run_difficulty(
        DifficultyConfig(
            samples_dir=str(test), output_dir=str(out), predictor="question",
            probe_train_samples_dir=str(train), device="cpu",
        )
    )  # fmt: skip
    return {"root": root, "train": train, "test": test, "out": out, "stats": stats}


def test_question_predictor_ranks_held_out_problems_by_difficulty(arithmetic):
    table = load_difficulty(arithmetic["out"])
    samples = load_sharded(arithmetic["test"])
    assert table["problem_id"] == list(samples["problem_id"])
    oracle = [sum(c) / len(c) for c in samples["correct"]]
    num_ops = [json.loads(m)["num_ops"] for m in samples["metadata"]]
    predicted = table["predicted_score"]
    assert table["pass_at_1"] == oracle and table["num_samples"] == [0] * len(oracle)

    def rho(a, b):
        return float(np.corrcoef(pd.Series(a).rank(), pd.Series(b).rank())[0, 1])

    # Held-out problems: the probe never saw them, nor their samples. (Measured: ~0.6 against both.)
    assert rho(predicted, oracle) > 0.2
    assert rho(predicted, [-k for k in num_ops]) > 0.2
    stats = arithmetic["stats"]
    assert stats["agreement_with_oracle"] == oracle_agreement(oracle, predicted, 5)
    assert table["bin"] == assign_bins(predicted, quantile_edges(predicted, 5))
    edges = json.loads((arithmetic["out"] / "bin_edges.json").read_text())
    assert edges["metric"] == "predicted_pass_at_1" and edges["edges"] == quantile_edges(predicted, 5)
    report = stats["question_probe"]
    assert report["num_train_problems"] == 128 and report["trained_here"]
    assert report["cv_spearman"] > 0.2 and report["cv_mse"] < np.var(
        [sum(c) / len(c) for c in load_sharded(arithmetic["train"])["correct"]]
    )  # better than predicting the mean


def test_question_compute_is_one_prompt_forward_pass_up_to_the_probes_layer(arithmetic, small_policy_dir):
    tokenizer = AutoTokenizer.from_pretrained(str(small_policy_dir))
    prompts = list(load_sharded(arithmetic["test"])["prompt"])
    tokens = sum(len(ids) for ids in tokenizer(prompts, add_special_tokens=True)["input_ids"])
    weights = load_file(str(small_policy_dir / "model.safetensors"))
    params = sum(t.numel() for t in weights.values())
    layer = arithmetic["stats"]["question_probe"]["layer"]
    # The embeddings and the blocks below the probe's layer, counted from the checkpoint's own tensors
    # (the last layer's features come after the final norm: the whole model runs).
    below = sum(
        t.numel()
        for name, t in weights.items()
        if "embed_tokens" in name or any(f"layers.{i}." in name for i in range(layer))
    )
    run = params if layer == AutoConfig.from_pretrained(str(small_policy_dir)).num_hidden_layers else below
    compute = arithmetic["stats"]["estimation_compute"]
    assert compute["policy_tokens"] == tokens and compute["policy_parameters"] == params
    assert compute["parameters_run"] == run
    assert compute["total_flops"] == compute["policy_flops"] == 2 * run * tokens
    assert compute["generations"] == 0 and compute["verifier_flops"] == 0


@pytest.mark.parametrize("layers", [[0], [1], [0, 1]])
def test_a_pass_stopped_at_the_probes_layer_gives_the_full_passes_features(small_policy_dir, layers):
    backend = load_backend("transformers", str(small_policy_dir), device="cpu")
    prompts = ["Start at 3. Add 4.\n", "Start at 19. Subtract 1. Add 9. Multiply by 2.\n"]
    stopped, tokens = prompt_features(backend, prompts, layers, batch_size=2)
    full, same_tokens = prompt_features(backend, prompts, None, batch_size=2)  # every layer: the whole model
    assert tokens == same_tokens
    for key, values in stopped.items():
        assert values == pytest.approx(full[key], abs=0)
    assert parameters_through(backend.model, max(layers)) < backend.num_parameters


def test_prompt_features_match_one_prompt_at_a_time(small_policy_dir):
    backend = load_backend("transformers", str(small_policy_dir), device="cpu")
    prompts = ["Start at 3. Add 4.\n", "Start at 19. Subtract 1. Add 9. Multiply by 2.\n", "Start at 5.\n"]
    features, tokens = prompt_features(backend, prompts, batch_size=2)  # padded batches
    model = AutoModelForCausalLM.from_pretrained(str(small_policy_dir)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(small_policy_dir))
    for i, prompt in enumerate(prompts):
        ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
        assert tokens[i] == ids.shape[1]
        with torch.no_grad():
            states = model(input_ids=ids, output_hidden_states=True).hidden_states
        for layer, h in enumerate(states):
            assert features[(layer, "mean")][i] == pytest.approx(h[0].mean(0).numpy(), abs=1e-4)
            assert features[(layer, "last")][i] == pytest.approx(h[0, -1].numpy(), abs=1e-4)


def test_a_saved_probe_predicts_identically(arithmetic, tmp_path, small_policy_dir):
    probe_file = arithmetic["out"] / "question_probe.json"
    saved = json.loads(probe_file.read_text())
    manifest = json.loads((arithmetic["train"] / "manifest.json").read_text())
    assert saved["prompt_contract"] == manifest["info"]["prompt_contract"]
    assert saved["policy"] == checkpoint_identity(small_policy_dir)  # what the policy is, not where
    probe = QuestionProbe.load(probe_file)
    assert (probe.layer, probe.pooling) == (saved["layer"], saved["pooling"])
    again = tmp_path / "again"
    stats = run_difficulty(
        DifficultyConfig(
            samples_dir=str(arithmetic["test"]), output_dir=str(again), predictor="question",
            question_probe=str(probe_file), device="cpu",
        )
    )  # fmt: skip
    assert load_difficulty(again)["predicted_score"] == load_difficulty(arithmetic["out"])["predicted_score"]
    assert load_difficulty(again)["bin"] == load_difficulty(arithmetic["out"])["bin"]
    assert not stats["question_probe"]["trained_here"] and stats["question_probe"]["training_compute"] is None
    assert json.loads((again / "question_probe.json").read_text()) == saved
    # And directly: the loaded probe on freshly computed features.
    backend = load_backend("transformers", str(small_policy_dir), device="cpu")
    features, _ = prompt_features(backend, list(load_sharded(arithmetic["test"])["prompt"]), [probe.layer])
    assert probe.predict(features).tolist() == load_difficulty(again)["predicted_score"]


def _question(samples, out, **options):
    return DifficultyConfig(
        samples_dir=str(samples), output_dir=str(out), predictor="question", device="cpu", **options
    )


def _refused(config, match: str) -> None:
    with pytest.raises(InputError, match=match) as err:
        run_difficulty(config)
    assert "\n" not in str(err.value)


def test_bad_probe_inputs_are_one_line_errors_and_write_nothing(arithmetic, tmp_path, small_policy_dir):
    out = tmp_path / "out"
    probe_file = str(arithmetic["out"] / "question_probe.json")
    saved = json.loads(Path(probe_file).read_text())

    other_policy = tmp_path / "other_policy.json"
    other_policy.write_text(json.dumps({**saved, "policy": "/elsewhere/policy"}))
    _refused(
        _question(arithmetic["test"], out, question_probe=str(other_policy)), "a probe of policy /elsewhere"
    )
    # The same path, but another checkpoint there (its size differs).
    resized = tmp_path / "resized.json"
    resized.write_text(json.dumps({**saved, "policy_parameters": 1}))
    _refused(_question(arithmetic["test"], out, question_probe=str(resized)), "of 1 parameters")

    other_prompts = _sample(
        tmp_path / "other_prompts", small_policy_dir, 9, 4, "--prompt_template", "Q: {question}\n"
    )
    _refused(_question(other_prompts, out, question_probe=probe_file), "prompt contract")
    _refused(
        _question(other_prompts, out, probe_train_samples_dir=str(arithmetic["train"])), "prompt contract"
    )
    _refused(
        _question(arithmetic["test"], out, probe_train_samples_dir=str(arithmetic["test"])),
        "must not be trained on the problems it bins",
    )
    not_a_probe = tmp_path / "bin_edges.json"
    shutil.copy(arithmetic["out"] / "bin_edges.json", not_a_probe)
    _refused(_question(arithmetic["test"], out, question_probe=str(not_a_probe)), "not a question probe")
    _refused(_question(arithmetic["test"], out, question_probe=str(tmp_path / "none.json")), "cannot read")

    # Edges of another metric cannot bin a predicted pass@1.
    oracle = tmp_path / "oracle"
    run_difficulty(DifficultyConfig(samples_dir=str(arithmetic["test"]), output_dir=str(oracle)))
    edges = str(oracle / "bin_edges.json")
    _refused(
        _question(arithmetic["test"], out, question_probe=probe_file, bin_edges_file=edges),
        "edges of 'pass_at_1'",
    )
    assert not out.exists()


def test_question_config_needs_exactly_one_probe_source():
    with pytest.raises(ValueError, match="exactly one"):
        DifficultyConfig(predictor="question")
    with pytest.raises(ValueError, match="exactly one"):
        DifficultyConfig(predictor="question", probe_train_samples_dir="a", question_probe="b")
    with pytest.raises(ValueError, match="probe_folds"):
        DifficultyConfig(predictor="question", question_probe="b", probe_folds=1)
