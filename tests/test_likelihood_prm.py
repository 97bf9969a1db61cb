"""The likelihood-feature PRM: features against an unbatched brute force, the calibration against the
known optimum, and the train-prm -> load_prm round trip."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch

from ttcompute.core.checkpoint_identity import checkpoint_identity
from ttcompute.core.errors import InputError
from ttcompute.models.likelihood_prm import LIKELIHOOD_PRM_FILE, LikelihoodPRM, fit_calibration

torch.set_num_threads(1)
SEP = "\n\n"

QUESTIONS = ["Start at 12. Add 3.", "Start at 5. Multiply by 2. Subtract 1.", "Start at 9. Add 1."]
STEPS = [
    ["12 + 3 = 15", "The answer is \\boxed{15}"],
    ["5 * 2 = 10", "10 - 1 = 8", "The answer is \\boxed{8}"],
    ["9 + 1 = 10"],
]


@pytest.fixture(scope="module")
def lm(random_policy_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(random_policy_dir).eval(), AutoTokenizer.from_pretrained(
        random_policy_dir
    )


def brute_force_features(model, tokenizer, question, steps):
    """One solution at a time, token by token: log P(token | everything before it)."""
    prompt_ids = tokenizer(question + "\n")["input_ids"]
    ids, spans = list(prompt_ids), []
    for step in steps:
        step_ids = tokenizer(step, add_special_tokens=False)["input_ids"]
        sep_ids = tokenizer(SEP, add_special_tokens=False)["input_ids"]
        # With the character tokenizer, tokenizing step + separator equals step then separator.
        spans.append((len(ids), len(ids) + len(step_ids)))
        ids += step_ids + sep_ids
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].double()
    logp = torch.log_softmax(logits, -1)
    out, running = [], 0.0
    for begin, end in spans:
        running = min([running] + [float(logp[t - 1, ids[t]]) for t in range(begin, end)])
        out.append(running)
    return out


def test_features_match_an_unbatched_brute_force(lm):
    model, tokenizer = lm
    # A tiny token budget: every solution runs in a batch of its own; a big one: all in one batch.
    for budget in (1, 10_000):
        prm = LikelihoodPRM(model, tokenizer, step_separator=SEP, max_batch_tokens=budget)
        got = prm.features(QUESTIONS, STEPS)
        for question, steps, row in zip(QUESTIONS, STEPS, got):
            assert row == pytest.approx(brute_force_features(model, tokenizer, question, steps), abs=1e-4)
            assert row == sorted(row, reverse=True)  # a running minimum
        assert prm.num_tokens_encoded == prm.num_tokens_requested > 0
    scored = LikelihoodPRM(model, tokenizer, step_separator=SEP, weight=2.0, bias=0.5).score(QUESTIONS, STEPS)
    assert scored[0] == pytest.approx([1 / (1 + math.exp(-(2.0 * x + 0.5))) for x in got[0]])
    assert LikelihoodPRM(model, tokenizer, step_separator=SEP).score(["q"], [[]]) == [[]]


def test_calibration_recovers_the_generating_parameters_and_beats_a_grid():
    gen = torch.Generator().manual_seed(0)
    x = (-4 * torch.rand(400, generator=gen)).tolist()
    w_true, b_true = 1.7, 0.9
    y = [1 / (1 + math.exp(-(w_true * v + b_true))) for v in x]  # soft labels: the optimum is exact
    w, b = fit_calibration([x[:200], x[200:]], [y[:200], y[200:]])
    assert (w, b) == pytest.approx((w_true, b_true), abs=1e-6)

    def bce(w, b, xs, ys):
        return sum(
            -(t * math.log(p) + (1 - t) * math.log(1 - p))
            for v, t in zip(xs, ys)
            for p in [1 / (1 + math.exp(-(w * v + b)))]
        )

    # Hard labels drawn from those probabilities: the fit beats every point of a grid around it.
    hard = [float(torch.rand(1, generator=gen).item() < t) for t in y]
    w, b = fit_calibration([x], [hard])
    best = bce(w, b, x, hard)
    assert all(bce(w + dw, b + db, x, hard) >= best - 1e-9 for dw in (-0.3, 0, 0.3) for db in (-0.3, 0, 0.3))


def test_train_prm_likelihood_round_trip(tmp_path, random_policy_dir):
    from ttcompute.models.prm_formats import load_prm
    from ttcompute.trainers.prm_config import PRMConfig
    from ttcompute.trainers.prm_trainer import train_prm

    rows = [
        {"prompt": q + "\n", "question": q, "completions": s, "labels": [1.0] * (len(s) - 1) + [float(i % 2)]}
        for i, (q, s) in enumerate(zip(QUESTIONS * 4, STEPS * 4))
    ]
    data = tmp_path / "labels.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "prm"
    base = tmp_path / "base"
    shutil.copytree(random_policy_dir, base)
    log = train_prm(
        PRMConfig(
            output_dir=str(out),
            model_name_or_path=str(base),
            dataset_name=str(data),
            prm_kind="likelihood",
            eval_fraction=0.0,
            report_to="none",
            use_cpu=True,
        )
    )
    spec = json.loads((out / LIKELIHOOD_PRM_FILE).read_text())
    assert spec["format"] == "ttcompute-likelihood" and spec["step_separator"] == SEP
    assert (log["weight"], log["bias"]) == (spec["weight"], spec["bias"])
    prm = load_prm(str(out))
    assert isinstance(prm, LikelihoodPRM)
    raw = prm.features(QUESTIONS, STEPS)
    assert (spec["weight"], spec["bias"]) == pytest.approx(
        fit_calibration(raw * 4, [r["labels"] for r in rows]), abs=1e-9
    )
    assert prm.score(QUESTIONS, STEPS)[1] == pytest.approx(
        [1 / (1 + math.exp(-(spec["weight"] * v + spec["bias"]))) for v in raw[1]]
    )
    # Its card states the calibration, the base model and the prompt, and loads it by its name.
    card = (out / "README.md").read_text()
    for fact in (
        f"{spec['weight']:.6g}",
        f"{spec['bias']:.6g}",
        f"`../base` (a local checkpoint, relative to this folder; {checkpoint_identity(base)})",
        "`../labels.jsonl` (local, relative to this folder)",
        "'{question}\\n'",
        'load_prm("prm")',
    ):
        assert fact in card, fact
    scope: dict = {"question": QUESTIONS[1], "steps": STEPS[1]}
    exec(card.split("```python\n", 1)[1].split("```", 1)[0].replace('"prm"', repr(str(out))), scope)
    assert scope["step_scores"] == pytest.approx(prm.score(QUESTIONS, STEPS)[1])
    assert "base_model:" not in card.split("---")[1]  # a local path is no Hub metadata

    # Its two numbers fit this base's log-probabilities: other weights at the base's path are refused.
    weights = base / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(InputError, match=f"calibrated over base model {spec['base_model_identity']}, but"):
        load_prm(str(out))


def test_a_broken_spec_is_an_input_error(tmp_path):
    from ttcompute.models.prm_formats import load_prm

    (tmp_path / LIKELIHOOD_PRM_FILE).write_text(json.dumps({"format": "ttcompute-likelihood"}))
    with pytest.raises(InputError, match="not a likelihood PRM spec"):
        load_prm(str(tmp_path))


def test_step_wise_scoring_reuses_prefixes_and_scores_the_same(lm):
    model, tokenizer = lm
    # Search-like rounds: each extends the previous round's prefixes by a step; a new question joins
    # in round 2, so cached and fresh rows share batches (left-padded caches).
    rounds = [
        [(QUESTIONS[0], STEPS[0][:1]), (QUESTIONS[1], STEPS[1][:1])],
        [(QUESTIONS[0], STEPS[0][:2]), (QUESTIONS[1], STEPS[1][:2]), (QUESTIONS[2], STEPS[2][:1])],
        [(QUESTIONS[1], STEPS[1][:3]), (QUESTIONS[1], STEPS[1][:2])],
    ]
    fresh = LikelihoodPRM(model, tokenizer, step_separator=SEP, reuse_prefixes=False)
    reused = LikelihoodPRM(model, tokenizer, step_separator=SEP, reuse_prefixes=True)
    for pairs in rounds:
        questions, steps = [q for q, _ in pairs], [s for _, s in pairs]
        expected = [brute_force_features(model, tokenizer, q, s) for q, s in pairs]
        for engine in (fresh, reused):
            got = engine.features(questions, steps)
            assert [len(row) for row in got] == [len(row) for row in expected]
            assert [v for row in got for v in row] == pytest.approx(
                [v for row in expected for v in row], abs=1e-4
            )
    assert reused.num_tokens_requested == fresh.num_tokens_requested
    assert reused.num_tokens_encoded < fresh.num_tokens_encoded == fresh.num_tokens_requested
