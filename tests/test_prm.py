"""PRM scoring: aggregation, our token format, the three checkpoint formats against independent forward
passes, prefix reuse, token-budget batching and errors. Tiny models built locally, no Hub."""

from __future__ import annotations

import doctest
import json
import math
import shutil

import pytest
import torch
from torch import nn

from ttcompute.core.errors import InputError
from ttcompute.core.prompts import PromptContract
from ttcompute.models import prm as prm_module
from ttcompute.models.prm import (
    PRM,
    TransformersPRM,
    aggregate,
    encode_steps,
    score_solutions,
    ttc_prm_metadata,
)
from ttcompute.models.prm_formats import PRM_FORMATS, QWEN_PRM_SYSTEM_PROMPT, load_prm
from ttcompute.models.tiny import build_char_tokenizer, tiny_llama_config

QUESTIONS = ["Start at 3. Add 4.", "Start at 12. Subtract 5. Multiply by 3."]
STEPS = [["3 + 4 = 7", "The answer is 7"], ["12 - 5 = 7", "7 * 3 = 21", "The answer is 21"]]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def small_config(tokenizer, **overrides):
    config = tiny_llama_config(len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4)
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


# ---------------------------------------------------------------------------------------------------
# Checkpoints of each format, with an independent scorer (one full forward pass per pair)


def build_ttcompute_prm(tmp_path_factory, char_tokenizer, num_labels):
    from transformers import LlamaForTokenClassification

    torch.manual_seed(num_labels)
    config = small_config(char_tokenizer, num_labels=num_labels)
    config.ttc_prm = ttc_prm_metadata("\n\n", "{question}\n")
    model = LlamaForTokenClassification(config).eval()
    with torch.no_grad():  # a visible spread of scores, not all ~0.5
        model.score.weight.mul_(20)
    path = tmp_path_factory.mktemp(f"ttc_prm_{num_labels}")
    model.save_pretrained(path)
    char_tokenizer.save_pretrained(path)

    def reference(question, steps):
        text = f"{question}\n" + "".join(step + "\n\n" for step in steps)
        ids = char_tokenizer(text)["input_ids"]
        # Character tokenizer: <s>, the prompt, then each step's characters and 2 newlines.
        positions, end = [], 1 + len(question) + 1
        for step in steps:
            end += len(step) + 2
            positions.append(end - 1)
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0, positions]
        probs = torch.sigmoid(logits[:, 0]) if num_labels == 1 else torch.softmax(logits, -1)[:, 1]
        return probs.tolist()

    return path, reference


@pytest.fixture(scope="module")
def ttcompute_prm(tmp_path_factory, char_tokenizer):
    """Our format with one logit per token (sigmoid)."""
    return build_ttcompute_prm(tmp_path_factory, char_tokenizer, num_labels=1)


@pytest.fixture(scope="module")
def ttcompute2_prm(tmp_path_factory, char_tokenizer):
    """Our format with two classes per token (TRL-style, softmax)."""
    return build_ttcompute_prm(tmp_path_factory, char_tokenizer, num_labels=2)


@pytest.fixture(scope="module")
def shepherd_prm(tmp_path_factory):
    from transformers import LlamaForCausalLM

    tokenizer = build_char_tokenizer(["ки"])
    torch.manual_seed(3)
    model = LlamaForCausalLM(small_config(tokenizer)).eval()
    path = tmp_path_factory.mktemp("shepherd")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    tag, plus, minus = tokenizer.convert_tokens_to_ids(["ки", "+", "-"])

    def reference(question, steps):
        text = f"{question} " + "".join(f"{step} ки\n" for step in steps)
        ids = torch.tensor([tokenizer(text)["input_ids"]])
        with torch.no_grad():
            logits = model(ids).logits[0]
        return torch.softmax(logits[ids[0] == tag][:, [plus, minus]], -1)[:, 0].tolist()

    return path, reference


@pytest.fixture(scope="module")
def qwen_prm(tmp_path_factory):
    from safetensors.torch import save_file
    from transformers import AutoTokenizer, Qwen2Config, Qwen2Model

    tokenizer = build_char_tokenizer(["<extra_0>", "<|im_start|>", "<|im_end|>"])
    tokenizer.chat_template = CHAT_TEMPLATE
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
    )
    torch.manual_seed(4)
    backbone = Qwen2Model(config).eval()
    head = nn.Sequential(nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 2)).eval()
    path = tmp_path_factory.mktemp("qwen_prm")
    # The layout of the Hub checkpoint: custom architecture, `model.*` backbone, `score.*` head.
    weights = {f"model.{k}": v.contiguous() for k, v in backbone.state_dict().items()}
    weights.update({f"score.{k}": v.contiguous() for k, v in head.state_dict().items()})
    save_file(weights, str(path / "model.safetensors"), metadata={"format": "pt"})
    config.architectures = ["Qwen2ForProcessRewardModel"]
    config.save_pretrained(path)
    config_json = json.loads((path / "config.json").read_text())
    config_json["auto_map"] = {"AutoModel": "modeling_qwen2_rm.Qwen2ForProcessRewardModel"}
    (path / "config.json").write_text(json.dumps(config_json))
    tokenizer.save_pretrained(path)
    # transformers 5 loads any qwen2 checkpoint's tokenizer as Qwen2Tokenizer (its byte-level
    # pre-tokenizer drops our vocabulary's whitespace), so the reference tokenizes as the PRM will.
    tokenizer = AutoTokenizer.from_pretrained(path)
    extra = tokenizer.convert_tokens_to_ids("<extra_0>")

    def reference(question, steps):
        text = (
            f"<|im_start|>system\n{QWEN_PRM_SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\n{question}<|im_end|>\n"
            f"<|im_start|>assistant\n{'<extra_0>'.join(steps)}<extra_0><|im_end|>\n"
        )
        ids = torch.tensor([tokenizer(text)["input_ids"]])
        with torch.no_grad():
            hidden = backbone(ids).last_hidden_state[0]
            return torch.softmax(head(hidden[ids[0] == extra]), -1)[:, 1].tolist()

    return path, reference


FORMAT_FIXTURES = {"ttcompute": "ttcompute_prm", "math-shepherd": "shepherd_prm", "qwen-prm": "qwen_prm"}
# What "auto" finds in each: a Math-Shepherd PRM is a plain causal LM, nothing in it says what it is
# (tests/test_public_prms.py), so it is named.
AUTO_FORMAT = {"ttcompute": "auto", "math-shepherd": "math-shepherd", "qwen-prm": "auto"}


def assert_scores_close(actual, expected, tol=1e-5):
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected):
        assert len(got) == len(want)
        assert all(abs(g - w) <= tol for g, w in zip(got, want)), (got, want)


# ---------------------------------------------------------------------------------------------------
# Pure pieces


def test_aggregate_hand_computed():
    scores = [0.9, 0.5, 0.8]
    assert aggregate(scores) == 0.8  # "last" is the default
    assert aggregate(scores, "min") == 0.5
    assert aggregate(scores, "prod") == pytest.approx(0.36)
    assert aggregate(scores, "mean") == pytest.approx(2.2 / 3)
    assert aggregate([0.25], "prod") == 0.25
    with pytest.raises(ValueError, match="unknown aggregation"):
        aggregate(scores, "max")
    with pytest.raises(ValueError, match="empty"):
        aggregate([], "last")


def test_encode_steps_labels_the_second_newline(char_tokenizer):
    ids, positions = encode_steps(char_tokenizer, "Q: 1+1\n", ["1 + 1 = 2", "The answer is 2"], "\n\n")
    tokens = char_tokenizer.convert_ids_to_tokens(ids)
    # <s> + 7 prompt chars, then 9 + 2, then 15 + 2 characters.
    assert positions == [8 + 11 - 1, 8 + 11 + 17 - 1]
    assert len(ids) == positions[-1] + 1
    for position in positions:
        assert tokens[position] == tokens[position - 1] == "\n"
    assert tokens[0] == "<s>"
    # Each piece is tokenized alone: t steps' ids are a prefix of t+1 steps' ids.
    shorter, _ = encode_steps(char_tokenizer, "Q: 1+1\n", ["1 + 1 = 2"], "\n\n")
    assert ids[: len(shorter)] == shorter
    with pytest.raises(ValueError, match="step 1"):
        encode_steps(char_tokenizer, "Q\n", ["a", ""], "")


def test_docstring_examples_run():
    assert doctest.testmod(prm_module).failed == 0


def test_ttc_prm_metadata():
    metadata = ttc_prm_metadata("\n\n", "{question}\n", base_model="tiny")
    assert metadata == {
        "format": "ttcompute",
        "step_separator": "\n\n",
        "prompt_template": "{question}\n",
        "use_chat_template": False,
        "system_prompt": None,
        "label_position": "last token of each step separator",
        "base_model": "tiny",
    }
    with pytest.raises(ValueError, match="question"):
        ttc_prm_metadata("\n\n", "no placeholder")


# ---------------------------------------------------------------------------------------------------
# The three formats against an independent computation


@pytest.mark.parametrize(
    ("prm_format", "fixture"),
    [*FORMAT_FIXTURES.items(), ("ttcompute", "ttcompute2_prm")],
    ids=[*FORMAT_FIXTURES, "ttcompute-2-labels"],
)
def test_format_auto_detected_and_matches_reference(request, prm_format, fixture):
    path, reference = request.getfixturevalue(fixture)
    if AUTO_FORMAT[prm_format] != "auto":
        with pytest.raises(InputError, match="cannot tell the PRM format"):
            load_prm(str(path), device="cpu")
    prm = load_prm(str(path), AUTO_FORMAT[prm_format], device="cpu")
    assert isinstance(prm, PRM)
    scores = prm.score(QUESTIONS, STEPS)
    assert_scores_close(scores, [reference(q, s) for q, s in zip(QUESTIONS, STEPS)])
    assert all(0 <= s <= 1 for pair in scores for s in pair)
    assert len({round(s, 4) for pair in scores for s in pair}) > 1  # the head is not a constant
    assert prm.num_parameters > 0
    # Explicitly naming the right format gives the same scores.
    explicit = load_prm(str(path), prm_format, device="cpu", dtype="float32")
    assert_scores_close(explicit.score(QUESTIONS, STEPS), scores)


def test_score_solutions_aggregates(ttcompute_prm):
    path, reference = ttcompute_prm
    prm = load_prm(str(path), device="cpu")
    expected = [reference(q, s) for q, s in zip(QUESTIONS, STEPS)]
    assert score_solutions(prm, QUESTIONS, STEPS) == pytest.approx([e[-1] for e in expected], abs=1e-5)
    assert score_solutions(prm, QUESTIONS, STEPS, "min") == pytest.approx(
        [min(e) for e in expected], abs=1e-5
    )
    before = prm.num_tokens_requested
    with pytest.raises(ValueError, match="unknown aggregation"):
        score_solutions(prm, QUESTIONS, STEPS, "median")
    with pytest.raises(ValueError, match="pair 1 has no steps"):
        score_solutions(prm, QUESTIONS, [STEPS[0], []])
    assert prm.num_tokens_requested == before  # failed before scoring anything


# ---------------------------------------------------------------------------------------------------
# Prefix reuse


def search_rounds():
    """Pairs scored step by step like a beam search: 2 questions x 4 branches sharing early steps, and
    a third question that joins at t = 3 (rows with and without a cached prefix in one batch)."""
    pairs = []
    for q, question in enumerate(QUESTIONS):
        for branch in range(4):
            steps = [
                f"{3 + 9 * q} + 4 = {7 + 9 * q}",
                f"x * {2 + branch // 2} = {14 + branch // 2}",
                f"y - {branch} = {9 - branch}",
                f"z + {branch * q} = 1{branch}",
                f"The answer is {branch}{q}",
            ]
            pairs.append((question, steps))
    late = ("Start at 1.", ["1 = 1", "1 + 0 = 1", "1 * 1 = 1", "1 - 0 = 1", "The answer is 1"])
    rounds = []
    for t in range(1, 6):
        current = [(q, s[:t]) for q, s in pairs]
        if t >= 3:
            current.append((late[0], late[1][:t]))
        rounds.append(current)
    return rounds


def run_rounds(prm, rounds):
    return [prm.score([q for q, _ in r], [s for _, s in r]) for r in rounds]


def ttc_length(question, steps):
    return 1 + len(question) + 1 + sum(len(step) + 2 for step in steps)


# The likelihood PRM scores a whole solution in one pass (no KV reuse): tests/test_likelihood_prm.py.
@pytest.mark.parametrize("prm_format", sorted(FORMAT_FIXTURES))
def test_prefix_reuse_gives_identical_scores_for_fewer_tokens(request, prm_format):
    path, reference = request.getfixturevalue(FORMAT_FIXTURES[prm_format])
    rounds = search_rounds()
    fresh = load_prm(str(path), AUTO_FORMAT[prm_format], device="cpu", reuse_prefixes=False)
    reused = load_prm(str(path), AUTO_FORMAT[prm_format], device="cpu", reuse_prefixes=True)
    without, with_reuse = run_rounds(fresh, rounds), run_rounds(reused, rounds)
    for scores_off, scores_on in zip(without, with_reuse):
        assert_scores_close(scores_on, scores_off)
    last = rounds[-1]
    assert_scores_close(with_reuse[-1], [reference(q, s) for q, s in last])
    assert fresh.num_tokens_encoded == fresh.num_tokens_requested
    assert reused.num_tokens_requested == fresh.num_tokens_requested
    assert reused.num_tokens_encoded < fresh.num_tokens_encoded / 2


def test_prefix_reuse_runs_exactly_the_new_tokens(ttcompute_prm):
    path, _ = ttcompute_prm
    rounds = search_rounds()
    prm = load_prm(str(path), device="cpu")
    run_rounds(prm, rounds)
    # By hand: each distinct sequence runs only the tokens past its longest previously scored prefix
    # (identical requests in a round run once).
    expected, seen = 0, set()
    for current in rounds:
        distinct = {(q, tuple(s)) for q, s in current}
        for question, steps in distinct:
            prefix = (question, steps[:-1])
            expected += ttc_length(question, steps) - (ttc_length(*prefix) if prefix in seen else 0)
        seen |= distinct
    assert prm.num_tokens_encoded == expected
    assert prm.num_tokens_requested == sum(ttc_length(q, s) for r in rounds for q, s in r)


def test_the_default_cache_size_follows_free_memory_and_the_models_size(qwen_prm, monkeypatch):
    path, _ = qwen_prm
    monkeypatch.setattr(prm_module, "free_memory_bytes", lambda device: 400 << 20)
    prm = load_prm(str(path), device="cpu")
    config = prm.backbone.config  # 2 layers x 2 key/value heads x 8 dims x 2 (keys, values) x 4 bytes
    per_token = 2 * config.num_hidden_layers * config.num_key_value_heads * 8 * 4
    assert prm_module.kv_bytes_per_token(config, torch.float32) == per_token == 256
    assert prm.prefix_store.max_tokens == (100 << 20) // (per_token + 64)  # a quarter of 400 MiB
    monkeypatch.setattr(prm_module, "free_memory_bytes", lambda device: 800 << 20)
    assert load_prm(str(path), device="cpu").prefix_store.max_tokens == (200 << 20) // (per_token + 64)
    assert load_prm(str(path), device="cpu", max_cache_tokens=123).prefix_store.max_tokens == 123


def test_cache_eviction_keeps_scores_identical(qwen_prm):
    path, _ = qwen_prm
    rounds = search_rounds()
    full = load_prm(str(path), device="cpu", reuse_prefixes=False)
    tiny_cache = load_prm(str(path), device="cpu", max_cache_tokens=400)
    for scores_off, scores_on in zip(run_rounds(full, rounds), run_rounds(tiny_cache, rounds)):
        assert_scores_close(scores_on, scores_off)
    store = tiny_cache.prefix_store
    assert 0 < store.num_tokens <= 400
    assert store.num_tokens == sum(entry.length for entry in store.entries.values())
    assert tiny_cache.num_tokens_encoded < full.num_tokens_encoded


def test_reuse_checks_scored_positions_not_just_ids(ttcompute_prm):
    """A step containing the separator gives the same ids as two steps, but other scored positions."""
    path, reference = ttcompute_prm
    prm = load_prm(str(path), device="cpu")
    two_steps = prm.score(["Q"], [["1 = 1", "2 = 2"]])
    one_step = prm.score(["Q"], [["1 = 1\n\n2 = 2"]])
    assert len(two_steps[0]) == 2 and len(one_step[0]) == 1
    assert_scores_close(one_step, [reference("Q", ["1 = 1\n\n2 = 2"])])
    assert one_step[0][0] == pytest.approx(two_steps[0][1], abs=1e-5)
    # The same two requests in one call are not merged either.
    both = load_prm(str(path), device="cpu").score(["Q", "Q"], [["1 = 1", "2 = 2"], ["1 = 1\n\n2 = 2"]])
    assert_scores_close(both, two_steps + one_step)


def test_repeated_request_runs_nothing(ttcompute_prm):
    path, _ = ttcompute_prm
    prm = load_prm(str(path), device="cpu")
    first = prm.score(QUESTIONS, STEPS)
    encoded = prm.num_tokens_encoded
    assert prm.score(QUESTIONS, STEPS) == first
    assert prm.num_tokens_encoded == encoded


# ---------------------------------------------------------------------------------------------------
# Token-budget batching


def test_token_budget_bounds_every_batch(ttcompute_prm, monkeypatch):
    path, _ = ttcompute_prm
    rounds = search_rounds()
    budget = 200
    large = load_prm(str(path), device="cpu", max_batch_tokens=100_000)
    small = load_prm(str(path), device="cpu", max_batch_tokens=budget)
    batches = []
    forward = small.backbone.forward

    def recording_forward(*args, **kwargs):
        input_ids, cache = kwargs["input_ids"], kwargs["cache"]
        past = cache.get_seq_length() if cache is not None else 0
        batches.append((input_ids.shape[0], past + input_ids.shape[1]))
        assert kwargs["attention_mask"].shape == (input_ids.shape[0], past + input_ids.shape[1])
        return forward(*args, **kwargs)

    monkeypatch.setattr(small.backbone, "forward", recording_forward)
    for scores_large, scores_small in zip(run_rounds(large, rounds), run_rounds(small, rounds)):
        assert_scores_close(scores_small, scores_large)
    assert all(rows == 1 or rows * width <= budget for rows, width in batches)
    assert any(rows > 1 for rows, _ in batches)
    assert len(batches) > len(rounds)  # the budget split rounds into several batches


# ---------------------------------------------------------------------------------------------------
# Errors


def test_unknown_format_names_path_and_architectures(random_policy_dir):
    with pytest.raises(InputError) as err:
        load_prm(str(random_policy_dir), device="cpu")
    message = str(err.value)
    assert str(random_policy_dir) in message and "LlamaForCausalLM" in message
    assert all(name in message for name in PRM_FORMATS)
    with pytest.raises(InputError, match="unknown PRM format"):
        load_prm(str(random_policy_dir), "orm")


@pytest.mark.parametrize(
    ("prm_format", "missing"),
    [("math-shepherd", "ки"), ("qwen-prm", "<extra_0>"), ("ttcompute", "ForTokenClassification")],
)
def test_explicit_format_that_does_not_fit(random_policy_dir, prm_format, missing):
    with pytest.raises(InputError, match=missing):
        load_prm(str(random_policy_dir), prm_format, device="cpu")


def test_ttcompute_checkpoint_without_metadata(ttcompute_prm, tmp_path):
    import shutil

    path, reference = ttcompute_prm
    bare = tmp_path / "bare"
    shutil.copytree(path, bare)
    config = json.loads((bare / "config.json").read_text())
    del config["ttc_prm"]
    (bare / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputError, match="LlamaForTokenClassification"):
        load_prm(str(bare), device="cpu")  # nothing says which format it is
    with pytest.raises(InputError, match="step_separator"):
        load_prm(str(bare), "ttcompute", device="cpu")
    # Nor which prompt it reads: one line asking for it, never a guess.
    with pytest.raises(InputError, match=r"records no prompt contract.*\(prompt_contract=\)$") as err:
        load_prm(str(bare), "ttcompute", device="cpu", step_separator="\n\n")
    assert "\n" not in str(err.value)
    contract = PromptContract("{question}\n")
    prm = load_prm(str(bare), "ttcompute", device="cpu", step_separator="\n\n", prompt_contract=contract)
    assert_scores_close(prm.score(QUESTIONS, STEPS), [reference(q, s) for q, s in zip(QUESTIONS, STEPS)])


def test_prm_step_separator_flag_loads_a_checkpoint_without_metadata(ttcompute_prm, tmp_path, monkeypatch):
    """``ttc eval-prm --prm_step_separator``: the PRM's separator reaches load_prm, which then loads a
    token-classification checkpoint that records none and scores it as the reference does."""
    from ttcompute.cli import run_stage
    from ttcompute.core.shards import prepare_output, write_shard
    from ttcompute.eval import prm_eval

    path, reference = ttcompute_prm
    bare = tmp_path / "bare"
    shutil.copytree(path, bare)
    config = json.loads((bare / "config.json").read_text())
    del config["ttc_prm"]
    (bare / "config.json").write_text(json.dumps(config))
    dataset = tmp_path / "labels"  # a `ttc label` output
    prepare_output(dataset, "label", "test", 1, overwrite=False)
    rows = [
        {"problem_id": f"p{i}", "question": q, "prompt": q + "\n", "completions": s, "labels": [1.0] * len(s)}
        for i, (q, s) in enumerate(zip(QUESTIONS, STEPS))
    ]
    write_shard(dataset, 0, [{**row, "correct": True} for row in rows])
    loaded = []

    def recording_load_prm(*args, **kwargs):
        loaded.append(load_prm(*args, **kwargs))
        return loaded[-1]

    monkeypatch.setattr(prm_eval, "load_prm", recording_load_prm)
    argv = ["--prm", str(bare), "--dataset", str(dataset), "--gold", "labels", "--device", "cpu"]
    argv += ["--prm_format", "ttcompute"]
    argv += ["--prm_prompt_template", "{question}\n", "--output_dir", str(tmp_path / "eval")]
    with pytest.raises(InputError, match="step_separator"):
        run_stage("eval-prm", argv)  # the checkpoint says nothing about its separator
    result = run_stage("eval-prm", [*argv, "--prm_step_separator", "\n\n"])
    assert result["num_solutions"] == 2 and result["num_steps"] == 5
    (prm,) = loaded
    assert_scores_close(prm.score(QUESTIONS, STEPS), [reference(q, s) for q, s in zip(QUESTIONS, STEPS)])
    # A wrong separator reaches the PRM too: other tokens, other scores.
    result = run_stage(
        "eval-prm", [*argv, "--prm_step_separator", "\n", "--output_dir", str(tmp_path / "e2")]
    )
    assert loaded[-1].score(QUESTIONS, STEPS) != prm.score(QUESTIONS, STEPS)


def test_a_given_prompt_contract_must_agree_with_the_recorded_one(ttcompute_prm):
    path, reference = ttcompute_prm
    same = load_prm(str(path), device="cpu", prompt_contract=PromptContract("{question}\n"))
    assert_scores_close(same.score(QUESTIONS, STEPS), [reference(q, s) for q, s in zip(QUESTIONS, STEPS)])
    with pytest.raises(
        InputError, match=r"records the prompt contract \(template '\{question\}\\n'.*contradicts"
    ):
        load_prm(str(path), device="cpu", prompt_contract=PromptContract("Q: {question}\n"))


def test_missing_directory_is_input_error(tmp_path):
    with pytest.raises(InputError, match="no such model directory"):
        load_prm(str(tmp_path / "nope"))


def test_bad_requests(ttcompute_prm):
    path, reference = ttcompute_prm
    prm = load_prm(str(path), device="cpu")
    scores = prm.score(QUESTIONS, [[], STEPS[1]])
    assert scores[0] == []
    assert_scores_close(scores[1:], [reference(QUESTIONS[1], STEPS[1])])
    with pytest.raises(ValueError, match="pair 1, step 2: empty step"):
        prm.score(QUESTIONS, [STEPS[0], ["a", "b", ""]])
    with pytest.raises(ValueError, match="2 questions but 1"):
        prm.score(QUESTIONS, [STEPS[0]])
    with pytest.raises(ValueError, match="one string"):
        prm.score(QUESTIONS[:1], ["3 + 4 = 7"])


def test_nan_scores_raise_naming_the_question(ttcompute_prm):
    path, _ = ttcompute_prm
    prm = load_prm(str(path), device="cpu")
    prm.head = lambda hidden: torch.full((hidden.shape[0],), math.nan)
    with pytest.raises(ValueError, match="NaN for question 1"):
        prm.score(QUESTIONS, [[], STEPS[1]])


def test_engine_with_a_toy_head(ttcompute_prm):
    """The engine takes any backbone/encode/head: a constant head scores every step the same."""
    from transformers import AutoModel, AutoTokenizer

    path, _ = ttcompute_prm
    tokenizer = AutoTokenizer.from_pretrained(path)
    engine = TransformersPRM(
        AutoModel.from_pretrained(path),
        lambda q, steps: encode_steps(tokenizer, q + "\n", steps, "\n\n"),
        lambda hidden: torch.full((hidden.shape[0],), 0.25),
        num_parameters=1,
    )
    assert engine.score(QUESTIONS, STEPS) == [[0.25] * 2, [0.25] * 3]
    with pytest.raises(ValueError, match="max_batch_tokens"):
        TransformersPRM(engine.backbone, engine.encode, engine.head, num_parameters=1, max_batch_tokens=0)
