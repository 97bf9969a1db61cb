"""The public PRM formats RLHFlow and Skywork against their published reference code, and format detection
that never takes an ordinary causal LM for a PRM. Tiny stand-ins built locally (ttcompute.testing), no Hub.

Each reference below is the published code rewritten on plain transformers (no ttcompute engine):
RLHFlow's ``math-rm/prm_evaluate.py`` (RLHFlow/RLHF-Reward-Modeling) and Skywork's
``model_utils/io_utils.py`` + ``model_utils/prm_model.py`` (SkyworkAI/skywork-o1-prm-inference).
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ttcompute.core.errors import InputError
from ttcompute.models.prm import PRM
from ttcompute.models.prm_formats import (
    PRM_FORMATS,
    PUBLISHED_CAUSAL_LM_PRMS,
    _detect_format,
    _shepherd_tag_id,
    load_prm,
)
from ttcompute.testing import (
    build_bpe_chat_tokenizer,
    build_llama3_chat_tokenizer,
    build_sentencepiece_llama_tokenizer,
    build_tiny_llama_on,
    build_tiny_qwen2,
    build_tiny_rlhflow_prm,
    build_tiny_skywork_prm,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# Steps with what trips a careless encoder: "+" and "-" inside a user turn (the verdict tokens),
# surrounding whitespace (the reference strips it), a digit run.
QUESTIONS = ["Start at 3. Add 4.", "Start at 12. Subtract 5. Multiply by 3."]
STEPS = [["3 + 4 = 7", " The answer is 7 "], ["12 - 5 = 7", "7 * 3 = 21+0", "The answer is 21"]]
TEXTS = [f"{q}\n\n" + "\n\n".join(s) for q, s in zip(QUESTIONS * 3, STEPS * 3)] + [
    "x * 2 = 14\ny - 1 = 9\nz + 0 = 10\nThe answer is 10\n"
] * 4


FLOAT_ORDER_TOL = 5e-5


def assert_scores_close(actual, expected, tol=1e-5):
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected):
        assert len(got) == len(want)
        assert all(abs(g - w) <= tol for g, w in zip(got, want)), (got, want)


def search_rounds():
    """Pairs scored step by step like a beam search: shared early steps across branches, and a
    question joining late (rows with and without a cached prefix in one batch)."""
    pairs = []
    for q, question in enumerate(QUESTIONS):
        for branch in range(3):
            steps = [
                f"{3 + 9 * q} + 4 = {7 + 9 * q}",
                f"x * {2 + branch // 2} = {14 + branch // 2}",
                f"y - {branch} = {9 - branch}",
                f"The answer is {branch}{q}",
            ]
            pairs.append((question, steps))
    late = ("Start at 1.", ["1 = 1", "1 + 0 = 1", "1 * 1 = 1", "The answer is 1"])
    rounds = []
    for t in range(1, 5):
        current = [(q, s[:t]) for q, s in pairs]
        if t >= 2:
            current.append((late[0], late[1][:t]))
        rounds.append(current)
    return rounds


def run_rounds(prm, rounds):
    return [prm.score([q for q, _ in r], [s for _, s in r]) for r in rounds]


# ---------------------------------------------------------------------------------------------------
# Stand-ins with their references


@pytest.fixture(scope="module")
def rlhflow_prm(tmp_path_factory):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = build_tiny_rlhflow_prm(
        build_llama3_chat_tokenizer(TEXTS, vocab_size=400), tmp_path_factory.mktemp("rlhflow"), seed=1
    )
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    plus_tag_id = tokenizer.encode("+")[-1]
    minus_tag_id = tokenizer.encode("-")[-1]
    candidate_tokens = [plus_tag_id, minus_tag_id]

    def reference(prompt, steps):
        """prm_evaluate.py's select_sample for one answer (model_type Deepseek: steps split on a blank
        line), one forward pass per step over the conversation so far."""
        ans = "\n\n".join(steps)
        single_step_score = []
        conversation = []
        ans_list = ans.split("\n\n")
        ans_list = [j.strip() for j in ans_list]
        for k in range(len(ans_list)):
            if k == 0:  # noqa: SIM108 (the published code, as written)
                text = prompt + " " + ans_list[0]
            else:
                text = ans_list[k]
            conversation.append({"content": text, "role": "user"})
            conversation.append({"content": "+", "role": "assistant"})
            # transformers 5 returns a dict unless asked for the ids alone, as 4.x did.
            input_ids = tokenizer.apply_chat_template(conversation, return_tensors="pt", return_dict=False)
            with torch.no_grad():
                logits = model(input_ids).logits[:, -3, candidate_tokens]
                scores = logits.softmax(dim=-1)[:, 0]
                single_step_score.append(scores[0].item())
        return single_step_score

    return path, reference


@pytest.fixture(scope="module")
def skywork_prm(tmp_path_factory):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = build_tiny_skywork_prm(
        build_bpe_chat_tokenizer(TEXTS, vocab_size=400), tmp_path_factory.mktemp("skywork"), seed=2
    )
    tokenizer = AutoTokenizer.from_pretrained(path)
    # PRM_MODEL wraps AutoModelForCausalLM and adds v_head, loaded from the same state dict.
    pretrained_model = AutoModelForCausalLM.from_pretrained(path).eval()
    weights = load_file(path / "model.safetensors")
    v_head = nn.Linear(pretrained_model.config.hidden_size, 1)
    v_head.load_state_dict(
        {"weight": weights["v_head.summary.weight"], "bias": weights["v_head.summary.bias"]}
    )

    def prepare_input(problem, response, tokenizer, step_token):
        """io_utils.prepare_input, as published."""
        prompt_ids = tokenizer.encode(tokenizer.bos_token + problem + "\n")
        response_ids = []
        steps = []
        reward_flags = [0] * len(prompt_ids)
        step_token_id = tokenizer.encode(step_token)[-1]
        for idx, step in enumerate(response.split(step_token)):  # noqa: B007 (as published)
            if step != "":  # noqa: SIM108
                step_ids = tokenizer.encode(step)
            else:
                step_ids = []
            step_ids += [step_token_id]
            step = step + step_token
            flag = [0] * len(step_ids)
            flag[-1] = 1
            response_ids.extend(step_ids)
            reward_flags.extend(flag)
            steps.append(step)
        input_ids = prompt_ids + response_ids
        return input_ids, steps, reward_flags

    def reference(problem, steps):
        """The README's inference on the response "\\n".join(steps) (step_token "\\n"), one sequence:
        PRM_MODEL.forward(return_probs=True) is sigmoid(v_head(hidden_states[-1])). A step holding
        "\\n" is several reference steps: its score is its last one's."""
        input_ids, _, reward_flags = prepare_input(problem, "\n".join(steps), tokenizer, step_token="\n")
        with torch.no_grad():
            output = pretrained_model(input_ids=torch.tensor([input_ids]), output_hidden_states=True)
            rewards = torch.sigmoid(v_head(output.hidden_states[-1]).squeeze(-1))[0]
        step_rewards = [rewards[i].item() for i, flag in enumerate(reward_flags) if flag == 1]
        ends, count = [], 0
        for step in steps:
            count += step.count("\n") + 1
            ends.append(count - 1)
        return [step_rewards[i] for i in ends]

    return path, reference


# ---------------------------------------------------------------------------------------------------
# The formats against their references


def test_rlhflow_is_never_guessed_and_its_published_ids_are_known(rlhflow_prm):
    path, _ = rlhflow_prm
    # A plain causal LM: nothing in the checkpoint says it is a PRM.
    with pytest.raises(InputError, match=r"cannot tell the PRM format.*pass prm_format=") as err:
        load_prm(str(path), device="cpu")
    assert "\n" not in str(err.value) and "rlhflow" in str(err.value)
    config = json.loads((path / "config.json").read_text())
    for hub_id in ("RLHFlow/Llama3.1-8B-PRM-Deepseek-Data", "RLHFlow/Llama3.1-8B-PRM-Mistral-Data"):
        assert _detect_format(hub_id, config) == "rlhflow"
    assert _detect_format("peiyi9979/math-shepherd-mistral-7b-prm", config) == "math-shepherd"
    assert _detect_format("someone/Llama3.1-8B-PRM-Deepseek-Data", config) is None  # a copy: not a guess
    assert set(PUBLISHED_CAUSAL_LM_PRMS.values()) <= set(PRM_FORMATS)


def test_rlhflow_matches_the_reference(rlhflow_prm):
    path, reference = rlhflow_prm
    prm = load_prm(str(path), "rlhflow", device="cpu")
    assert isinstance(prm, PRM)
    scores = prm.score(QUESTIONS, STEPS)
    assert_scores_close(scores, [reference(q, s) for q, s in zip(QUESTIONS, STEPS)])
    assert len({round(s, 4) for pair in scores for s in pair}) > 1  # not a constant
    # One pass over the whole conversation: each scored token is followed by its assistant turn's "+",
    # the last one by "+" and <|eot_id|> (the reference's -3).
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    ids, positions = prm.encode(QUESTIONS[1], STEPS[1])
    # Llama-3.1-Instruct's template always writes its system turn; the steps come as user turns.
    assert tokenizer.decode(ids).startswith(
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n"
        "Today Date: 26 Jul 2024\n\n<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n"
        f"{QUESTIONS[1]} {STEPS[1][0]}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n+<|eot_id|>"
    )
    assert [ids[p + 1] for p in positions] == [tokenizer.encode("+")[-1]] * 3
    assert len(ids) == positions[-1] + 3 and ids[-1] == tokenizer.convert_tokens_to_ids("<|eot_id|>")
    assert prm.num_parameters > 0


def test_skywork_is_auto_detected_and_matches_the_reference(skywork_prm):
    path, reference = skywork_prm
    prm = load_prm(str(path), device="cpu")
    steps = [*STEPS[:1], ["12 - 5 = 7\n7 * 3 = 21", "The answer is 21"]]  # a step of two lines
    scores = prm.score(QUESTIONS, steps)
    assert_scores_close(scores, [reference(q, s) for q, s in zip(QUESTIONS, steps)])
    assert all(0 < s < 1 for pair in scores for s in pair)
    assert len({round(s, 4) for pair in scores for s in pair}) > 1
    explicit = load_prm(str(path), "skywork", device="cpu", dtype="float32")
    assert_scores_close(explicit.score(QUESTIONS, steps), scores)
    # A bfloat16 backbone feeds the float32 value head, as the reference's ValueHead upcasts.
    assert_scores_close(
        load_prm(str(path), device="cpu", dtype="bfloat16").score(QUESTIONS, steps), scores, 0.05
    )
    # The backbone and the value head, nothing of the LM head.
    hidden = prm.backbone.config.hidden_size
    assert prm.num_parameters == sum(p.numel() for p in prm.backbone.parameters()) + hidden + 1


@pytest.mark.parametrize(("fixture", "prm_format"), [("rlhflow_prm", "rlhflow"), ("skywork_prm", "skywork")])
def test_prefix_reuse_and_batching_keep_the_scores(request, fixture, prm_format):
    path, reference = request.getfixturevalue(fixture)
    rounds = search_rounds()
    fresh = load_prm(str(path), prm_format, device="cpu", reuse_prefixes=False)
    reused = load_prm(str(path), prm_format, device="cpu", reuse_prefixes=True)
    small_batches = load_prm(str(path), prm_format, device="cpu", reuse_prefixes=False, max_batch_tokens=300)
    without, with_reuse = run_rounds(fresh, rounds), run_rounds(reused, rounds)
    # float32 attention over a cached prefix (or another batch) sums in another order than over the whole
    # sequence: ~1e-5 apart on some CPUs (test_real_formats saw 1.007e-5); a wrong cache is off by far more.
    for scores_off, scores_on, scores_small in zip(without, with_reuse, run_rounds(small_batches, rounds)):
        assert_scores_close(scores_on, scores_off, tol=FLOAT_ORDER_TOL)
        assert_scores_close(scores_small, scores_off, tol=FLOAT_ORDER_TOL)
    assert_scores_close(with_reuse[-1], [reference(q, s) for q, s in rounds[-1]], tol=FLOAT_ORDER_TOL)
    assert fresh.num_tokens_encoded == fresh.num_tokens_requested == reused.num_tokens_requested
    assert reused.num_tokens_encoded < fresh.num_tokens_encoded / 2


# ---------------------------------------------------------------------------------------------------
# Detection: an ordinary causal LM is never a PRM

RUSSIAN = [
    "Книги лежат на полке, а руки мыли мылом.",
    "Маленькие кошки и собаки играли в парке.",
    "Ученики читали книги, решали задачки и пели песенки.",
    "Ки — это слог. Деньки стоят жаркие, речки мелкие.",
] * 8


@pytest.mark.parametrize("tokenizer_kind", ["qwen-bpe", "llama-sentencepiece"])
def test_an_ordinary_causal_lm_whose_tokenizer_has_the_shepherd_tag_is_not_a_prm(tmp_path, tokenizer_kind):
    from transformers import AutoTokenizer

    if tokenizer_kind == "qwen-bpe":
        path = build_tiny_qwen2(build_bpe_chat_tokenizer(RUSSIAN, vocab_size=400), tmp_path / "lm")
    else:
        tokenizer = build_sentencepiece_llama_tokenizer(RUSSIAN, vocab_size=300, limit_alphabet=100)
        path = build_tiny_llama_on(tokenizer, tmp_path / "lm")
    # The old rule (a causal LM whose tokenizer has the tag) would have called it math-shepherd.
    assert _shepherd_tag_id(AutoTokenizer.from_pretrained(path)) is not None
    with pytest.raises(InputError) as err:
        load_prm(str(path), device="cpu")
    message = str(err.value)
    assert "\n" not in message and message.startswith(str(path))
    assert "cannot tell the PRM format" in message and "prm_format=" in message
    assert all(name in message for name in PRM_FORMATS)
    # Named, it loads as what the user says.
    assert isinstance(load_prm(str(path), "math-shepherd", device="cpu"), PRM)


# ---------------------------------------------------------------------------------------------------
# Bad checkpoints: one line naming the checkpoint and what is missing


def _copy(path, tmp_path, name="copy"):
    target = tmp_path / name
    shutil.copytree(path, target)
    return target


@pytest.mark.parametrize("missing", ["v_head.summary.weight", "v_head.summary.bias"])
def test_skywork_without_its_value_head(skywork_prm, tmp_path, missing):
    bare = _copy(skywork_prm[0], tmp_path)
    weights = load_file(bare / "model.safetensors")
    del weights[missing]
    save_file(weights, str(bare / "model.safetensors"), metadata={"format": "pt"})
    for requested in ("auto", "skywork"):
        with pytest.raises(InputError, match=rf"^{bare}: no {missing} in the safetensors weights") as err:
            load_prm(str(bare), requested, device="cpu")
        assert "\n" not in str(err.value)


def test_skywork_with_pickled_weights_only(skywork_prm, tmp_path):
    pickled = _copy(skywork_prm[0], tmp_path)
    torch.save(load_file(pickled / "model.safetensors"), pickled / "pytorch_model.bin")
    (pickled / "model.safetensors").unlink()
    with pytest.raises(InputError, match=r"model\.safetensors.*pickles"):
        load_prm(str(pickled), device="cpu")


def test_skywork_without_a_bos_token(skywork_prm, tmp_path):
    bare = _copy(skywork_prm[0], tmp_path)
    tokenizer_config = json.loads((bare / "tokenizer_config.json").read_text())
    tokenizer_config["bos_token"] = None
    (bare / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    with pytest.raises(InputError, match=rf"^{bare}: the skywork format needs the tokenizer's bos_token"):
        load_prm(str(bare), device="cpu")


def test_rlhflow_needs_a_chat_template(rlhflow_prm, random_policy_dir, tmp_path):
    with pytest.raises(InputError, match=rf"^{random_policy_dir}: the rlhflow format needs .*chat template"):
        load_prm(str(random_policy_dir), "rlhflow", device="cpu")
    # A template that drops the assistant turns: there is no verdict token to read.
    odd = _copy(rlhflow_prm[0], tmp_path)
    template = "{% for m in messages %}{% if m['role'] == 'user' %}{{ m['content'] }}{% endif %}{% endfor %}"
    (odd / "chat_template.jinja").write_text(template)
    with pytest.raises(InputError, match=rf"^{odd}: its chat template does not render an assistant turn"):
        load_prm(str(odd), "rlhflow", device="cpu")
