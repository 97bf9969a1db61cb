"""The PRM and generation contracts on real tokenizer formats, not only on the character tokenizer.

Two stand-ins from :mod:`ttcompute.testing`, both trained on MATH-500 and GSM8K text shipped in
tests/data: a Qwen2.5-format byte-level BPE with its chat template (``".\\n\\n"`` is one token) and a
Llama-2-format SentencePiece-style BPE (``"▁"`` prefix space, BOS, newlines as byte tokens), each with a
tiny random model. Every test runs on both where the contract is the same for both.
"""

from __future__ import annotations

import json
import shutil
from functools import cached_property
from pathlib import Path

import pytest
import torch
from conftest import GSM8K_TEST_HEAD, MATH500, write_jsonl
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaTokenizer, Qwen2Tokenizer

from ttcompute.core.prompts import PromptContract
from ttcompute.core.steps import split_into_steps
from ttcompute.models.generation import SamplingParams, build_prompt
from ttcompute.models.hf_backend import TransformersBackend
from ttcompute.models.likelihood_prm import LikelihoodPRM
from ttcompute.models.prm import encode_steps
from ttcompute.models.prm_formats import load_prm
from ttcompute.testing import (
    LLAMA2_CHAT_TEMPLATE,
    LLAMA_BYTE_TOKENS,
    build_bpe_chat_tokenizer,
    build_sentencepiece_llama_tokenizer,
    build_tiny_llama_on,
    build_tiny_prm_on,
    build_tiny_qwen2,
)
from ttcompute.trainers.model_cards import prm_model_card
from ttcompute.trainers.prm_config import PRMConfig
from ttcompute.trainers.prm_trainer import PRMTrainer
from ttcompute.trainers.stepwise_data import IGNORE

KINDS = ("bpe", "sentencepiece")
SEPARATOR = "\n\n"
TEMPLATE = "{question}\n"  # the PRM's prompt template (ttc_prm_metadata's default)
# How strongly each stand-in policy favours newline tokens: a newline is one of ~25 BPE tokens but a
# single byte token for SentencePiece, and "\n\n" needs two of those in a row.
NEWLINE_BOOST = {"bpe": 4.0, "sentencepiece": 10.0}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="session")
def math_rows() -> list[dict]:
    return read_jsonl(MATH500)


@pytest.fixture(scope="session")
def training_texts(math_rows) -> list[str]:
    """MATH-500 problems and solutions and GSM8K's first 500 questions and answers."""
    texts = [text for row in math_rows for text in (row["problem"], row["solution"])]
    return texts + [text for row in read_jsonl(GSM8K_TEST_HEAD) for text in (row["question"], row["answer"])]


@pytest.fixture(scope="session")
def solutions(math_rows) -> list[tuple[str, list[str]]]:
    """(question, steps) of the first MATH-500 problems whose reference solution has 3+ steps (at most 5)."""
    picked = []
    for row in math_rows:
        steps = split_into_steps(row["solution"], SEPARATOR)
        if len(steps) >= 3:
            picked.append((row["problem"], steps[:5]))
        if len(picked) == 4:
            return picked
    raise AssertionError("MATH-500 has fewer than 4 solutions with 3 steps")


class StandIns:
    """Each stand-in built once per session, on first use."""

    def __init__(self, texts: list[str], tmp_path_factory) -> None:
        self.texts, self.tmp = texts, tmp_path_factory

    @cached_property
    def tokenizers(self) -> dict:
        return {
            "bpe": build_bpe_chat_tokenizer(self.texts),
            "sentencepiece": build_sentencepiece_llama_tokenizer(self.texts),
        }

    @cached_property
    def policy_dirs(self) -> dict[str, Path]:
        """Policies that favour newline tokens, so that they end a step every few tokens."""
        return {kind: self._policy(kind, "\n", NEWLINE_BOOST[kind]) for kind in KINDS}

    @cached_property
    def plain_policy_dirs(self) -> dict[str, Path]:
        """Policies with nothing favoured: they write a word first, not a newline."""
        return {kind: self._policy(kind, None, 0.0) for kind in KINDS}

    def _policy(self, kind: str, favoured_text: str | None, boost: float) -> Path:
        build = {"bpe": build_tiny_qwen2, "sentencepiece": build_tiny_llama_on}[kind]
        path = self.tmp.mktemp(f"policy_{kind}")
        return build(self.tokenizers[kind], path, seed=0, favoured_text=favoured_text, favoured_boost=boost)

    @cached_property
    def prm_dirs(self) -> dict[str, Path]:
        return {
            kind: build_tiny_prm_on(tokenizer, self.tmp.mktemp(f"prm_{kind}"), seed=1)
            for kind, tokenizer in self.tokenizers.items()
        }

    @cached_property
    def backends(self) -> dict[tuple[str, bool], TransformersBackend]:
        return {
            (kind, caching): TransformersBackend(str(path), device="cpu", enable_prefix_caching=caching)
            for kind, path in self.policy_dirs.items()
            for caching in (True, False)
        }


@pytest.fixture(scope="session")
def stand_ins(training_texts, tmp_path_factory) -> StandIns:
    return StandIns(training_texts, tmp_path_factory)


def prm_tokenizer(stand_ins: StandIns, kind: str):
    # From the saved files, as train_prm (from the base model) and load_prm (from the PRM) load it.
    return AutoTokenizer.from_pretrained(stand_ins.prm_dirs[kind])


def policy_prompt(question: str, backend: TransformersBackend) -> str:
    """The policy's prompt as `ttc sample` builds it: the chat template where the tokenizer has one."""
    chat = bool(getattr(backend.tokenizer, "chat_template", None))
    return build_prompt(question, PromptContract("{question}\n", chat), backend.tokenizer)


# --------------------------------------------------------------------------------------------------
# f. The stand-ins themselves


def test_bpe_stand_in_merges_the_step_separator_into_bigger_tokens(stand_ins, training_texts):
    tokenizer = stand_ins.tokenizers["bpe"]
    vocab = tokenizer.get_vocab()
    # Byte-level: "\n" is "Ċ", " " is "Ġ". Learnt from MATH text, not added by hand.
    assert {"ĊĊ", ".ĊĊ", "$.ĊĊ"} <= set(vocab)
    assert tokenizer.convert_ids_to_tokens(tokenizer("Hence $x=3$.\n\nSo")["input_ids"])[-2:] == [
        "$.ĊĊ",
        "So",
    ]
    # " \n\n" never occurs in this text, so no merge can hold it (Qwen2.5's real vocabulary has one).
    assert " \n\n" not in "".join(training_texts)
    # Special tokens of Qwen2.5, no BOS, nothing appended.
    assert tokenizer.convert_ids_to_tokens([0, 1, 2]) == ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) == (
        None,
        "<|im_end|>",
        "<|endoftext|>",
    )
    assert tokenizer("3 + 4")["input_ids"] == tokenizer("3 + 4", add_special_tokens=False)["input_ids"]
    chat_ids = tokenizer("<|im_start|>user\nHi<|im_end|>")["input_ids"]
    assert chat_ids[0] == 1 and chat_ids[-1] == 2  # the chat markers are single special tokens
    assert tokenizer.decode(chat_ids) == "<|im_start|>user\nHi<|im_end|>"


def test_sentencepiece_stand_in_adds_bos_a_prefix_space_and_byte_tokens(stand_ins):
    saved = AutoTokenizer.from_pretrained(stand_ins.policy_dirs["sentencepiece"])
    for tokenizer in (stand_ins.tokenizers["sentencepiece"], saved):
        assert isinstance(tokenizer, LlamaTokenizer)
        assert tokenizer.convert_ids_to_tokens([0, 1, 2, 3, 13, 258]) == [
            "<unk>",
            "<s>",
            "</s>",
            "<0x00>",
            "<0x0A>",
            "<0xFF>",
        ]
        tokens = tokenizer.convert_ids_to_tokens(tokenizer("Find x.\n\nThen")["input_ids"])
        assert tokens[0] == "<s>" and tokens[1].startswith("▁")  # BOS, then the prefix space
        newline = tokens.index("<0x0A>")
        assert tokens[newline : newline + 2] == ["<0x0A>", "<0x0A>"]  # a newline has no piece
        assert not tokens[newline + 2].startswith("▁")  # the prefix space is the first word's only
        assert "</s>" not in tokens
        # A character outside the kept alphabet is its UTF-8 bytes, and decodes back.
        ids = tokenizer("é", add_special_tokens=False)["input_ids"]
        assert tokenizer.convert_ids_to_tokens(ids)[-2:] == ["<0xC3>", "<0xA9>"]
        assert tokenizer.decode(ids) == "é"
    assert len(LLAMA_BYTE_TOKENS) == 256


def test_chat_template_renders_a_conversation_as_qwen2_5_does(stand_ins):
    saved = AutoTokenizer.from_pretrained(stand_ins.policy_dirs["bpe"])
    messages = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is 1+1?"},
        {"role": "assistant", "content": "2"},
    ]
    expected = (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nWhat is 1+1?<|im_end|>\n"
        "<|im_start|>assistant\n2<|im_end|>\n"
    )
    # Without a system message, Qwen2.5-Math-Instruct's own default system prompt.
    expected_default = (
        "<|im_start|>system\nPlease reason step by step, and put your final answer within \\boxed{}.<|im_end|>\n"
        "<|im_start|>user\nWhat is 1+1?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    for tokenizer in (stand_ins.tokenizers["bpe"], saved):
        assert isinstance(tokenizer, Qwen2Tokenizer)
        assert tokenizer.apply_chat_template(messages, tokenize=False) == expected
        rendered = tokenizer.apply_chat_template(messages[1:2], tokenize=False, add_generation_prompt=True)
        assert rendered == expected_default
        ids = tokenizer(expected)["input_ids"]
        assert ids[0] == tokenizer.convert_tokens_to_ids("<|im_start|>")  # special tokens stay whole
        assert tokenizer.decode(ids) == expected


@pytest.mark.parametrize("kind", KINDS)
def test_stand_in_checkpoints_load_with_the_auto_classes(stand_ins, kind):
    path = stand_ins.policy_dirs[kind]
    assert (path / "model.safetensors").is_file()
    model = AutoModelForCausalLM.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert type(model).__name__ == {"bpe": "Qwen2ForCausalLM", "sentencepiece": "LlamaForCausalLM"}[kind]
    assert model.config.vocab_size == len(tokenizer)
    assert tokenizer("x = 1")["input_ids"] == stand_ins.tokenizers[kind]("x = 1")["input_ids"]
    prm_config = json.loads((stand_ins.prm_dirs[kind] / "config.json").read_text())
    assert prm_config["architectures"][0].endswith("ForTokenClassification")
    assert prm_config["ttc_prm"]["step_separator"] == SEPARATOR


# --------------------------------------------------------------------------------------------------
# a, e. The PRM's tokens: the same in training and scoring, each label on a token its step owns


def train_row(question: str, steps: list[str]) -> dict:
    return {"prompt": TEMPLATE.format(question=question), "completions": steps, "labels": [1.0] * len(steps)}


def record_backbone_inputs(prm) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(input ids, attention mask) of every forward pass the PRM's engine runs, padding included."""
    calls: list[tuple[torch.Tensor, torch.Tensor]] = []
    prm.backbone.register_forward_pre_hook(
        lambda module, args, kwargs: calls.append((kwargs["input_ids"], kwargs["attention_mask"])),
        with_kwargs=True,
    )
    return calls


@pytest.mark.parametrize("kind", KINDS)
def test_prm_train_time_and_score_time_token_ids_are_identical(stand_ins, solutions, kind):
    tokenizer = prm_tokenizer(stand_ins, kind)
    prm = load_prm(str(stand_ins.prm_dirs[kind]), device="cpu", reuse_prefixes=False)
    calls = record_backbone_inputs(prm)
    for question, steps in solutions:
        trained = PRMTrainer.tokenize(train_row(question, steps), tokenizer, SEPARATOR, max_length=4096)
        assert not trained["truncated"]
        labelled = [i for i, v in enumerate(trained["labels"]) if v != IGNORE]
        ids, positions = prm.encode(question, steps)
        assert (ids, positions) == (trained["input_ids"], labelled)
        assert (ids, positions) == encode_steps(
            tokenizer, TEMPLATE.format(question=question), steps, SEPARATOR
        )
        calls.clear()
        prm.score([question], [steps])
        (fed, mask), *more = calls
        assert not more
        assert fed[0][mask[0].bool()].tolist() == trained["input_ids"]  # what the model really ran


@pytest.mark.parametrize("kind", KINDS)
def test_each_label_sits_on_a_token_its_step_owns(stand_ins, solutions, kind):
    tokenizer = prm_tokenizer(stand_ins, kind)
    for question, steps in solutions:
        prompt = TEMPLATE.format(question=question)
        trained = PRMTrainer.tokenize(train_row(question, steps), tokenizer, SEPARATOR, max_length=4096)
        ids = trained["input_ids"]
        labelled = [i for i, v in enumerate(trained["labels"]) if v != IGNORE]
        prompt_ids = tokenizer(prompt)["input_ids"]
        assert ids[: len(prompt_ids)] == prompt_ids
        starts = [len(prompt_ids)] + [p + 1 for p in labelled[:-1]]
        for step, start, position in zip(steps, starts, labelled):
            piece = step + SEPARATOR
            # The tokens from the previous label (exclusive) to this one are exactly this piece: no
            # token reaches into the previous or the next step.
            assert tokenizer.decode(ids[start : position + 1]) == piece
            # The labelled token is the piece's last: it has seen the whole step and its separator.
            label_text = tokenizer.decode([ids[position]])
            assert label_text and piece.endswith(label_text)
        assert labelled[-1] == len(ids) - 1


@pytest.mark.parametrize("kind", KINDS)
def test_prm_reads_exactly_the_solution_text(stand_ins, solutions, kind):
    tokenizer = prm_tokenizer(stand_ins, kind)
    for question, steps in solutions:
        prompt = TEMPLATE.format(question=question)
        ids, _ = encode_steps(tokenizer, prompt, steps, SEPARATOR)
        text = prompt + "".join(step + SEPARATOR for step in steps)
        assert tokenizer.decode(ids, skip_special_tokens=True) == text


@pytest.mark.parametrize("kind", KINDS)
def test_the_model_cards_own_code_scores_as_load_prm_does(stand_ins, solutions, tmp_path, kind):
    # A user scores with the card's snippet and plain transformers: it must build the ids we train on.
    path = stand_ins.prm_dirs[kind]
    config = PRMConfig(
        output_dir=str(tmp_path), model_name_or_path=str(path), dataset_name="data", use_cpu=True
    )
    card = prm_model_card(config, json.loads((path / "config.json").read_text())["ttc_prm"], str(path))
    snippet = card.split("```python\n", 1)[1].split("```", 1)[0]
    prm = load_prm(str(path), device="cpu")
    for question, steps in solutions[:4]:
        scope = {"question": question, "steps": steps}
        exec(snippet, scope)
        assert scope["step_scores"] == pytest.approx(prm.score([question], [steps])[0], abs=1e-5)


# --------------------------------------------------------------------------------------------------
# b. Prefix-KV reuse in the PRM changes no score


@pytest.mark.parametrize("kind", KINDS)
def test_the_likelihood_prm_reads_each_steps_own_tokens(stand_ins, solutions, kind):
    # Its feature is the least likely token of the steps so far, separators excluded. A step's own
    # tokens, defined here by text position: those that start inside the step's text (a BPE ".\n\n"
    # starts inside it; SentencePiece's "<0x0A>" bytes of the separator do not).
    path = stand_ins.policy_dirs[kind]
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    prm = LikelihoodPRM(
        model, tokenizer, step_separator=SEPARATOR, contract=PromptContract(TEMPLATE), reuse_prefixes=False
    )
    questions, all_steps = [q for q, _ in solutions], [steps for _, steps in solutions]
    for question, steps, got in zip(questions, all_steps, prm.features(questions, all_steps)):
        prompt = TEMPLATE.format(question=question)
        ids, positions = encode_steps(tokenizer, prompt, steps, SEPARATOR)
        with torch.no_grad():
            logprobs = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), dim=-1)
        token_logprob = [None] + [float(logprobs[t - 1, ids[t]]) for t in range(1, len(ids))]
        begin, running, expected = len(tokenizer(prompt).input_ids), 0.0, []
        for step, end in zip(steps, positions):
            piece = ids[begin : end + 1]
            own = [begin + k for k in range(len(piece)) if len(tokenizer.decode(piece[:k])) < len(step)]
            assert own and own[0] == begin
            # The engine's boundary is the same one (a fixed separator length was one token off for
            # SentencePiece and cut merged step text for BPE).
            assert len(piece) - prm._trailing_separator_tokens(tuple(piece)) == len(own)
            running = min(running, min(token_logprob[t] for t in own))
            expected.append(running)
            begin = end + 1
        assert got == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("kind", KINDS)
def test_prm_scores_with_and_without_prefix_reuse_agree(stand_ins, solutions, kind):
    path = str(stand_ins.prm_dirs[kind])
    reusing = load_prm(path, device="cpu", reuse_prefixes=True)
    plain = load_prm(path, device="cpu", reuse_prefixes=False)
    rounds = max(len(steps) for _, steps in solutions)
    for t in range(1, rounds + 1):  # as beam search asks: every question's first t steps, then t + 1
        pairs = [(q, steps[:t]) for q, steps in solutions if len(steps) >= t]
        questions, prefixes = [q for q, _ in pairs], [s for _, s in pairs]
        with_reuse, without = reusing.score(questions, prefixes), plain.score(questions, prefixes)
        assert [len(s) for s in with_reuse] == [len(s) for s in prefixes]
        for a, b in zip(with_reuse, without):
            # float32 attention over a cached prefix sums in another order than over the whole
            # sequence: 1.007e-5 apart on an AMD EPYC (a wrong cache is off by orders more).
            assert a == pytest.approx(b, abs=5e-5)
    assert reusing.num_tokens_encoded < reusing.num_tokens_requested // 2  # the cache really served
    assert plain.num_tokens_encoded == plain.num_tokens_requested
    scores = [s for row in plain.score([q for q, _ in solutions], [s for _, s in solutions]) for s in row]
    assert max(scores) - min(scores) > 0.05  # a test on scores that all sit at 0.5 would prove little


# --------------------------------------------------------------------------------------------------
# c, d. Step-by-step generation through the transformers backend's prefix cache


def step_by_step(backend: TransformersBackend, prompts: list[str], params: SamplingParams, rounds: int):
    """Beam-search-like rounds: every prompt extended by each of its completions, then one completion
    per prompt per round. Returns every round's completions."""
    backend.clear_prefix_cache()
    history = []
    for round_index in range(rounds):
        round_params = params if round_index == 0 else SamplingParams(**{**vars(params), "n": 1})
        completions = backend.generate(prompts, round_params)
        history.append([[(c.text, c.finish_reason, c.num_tokens) for c in row] for row in completions])
        prompts = [
            p + c.text for p, row in zip(prompts, completions) for c in row if c.finish_reason == "stop"
        ]
        if not prompts:
            break
    return history


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "temperature",
    [
        pytest.param(0.0, id="greedy"),
        pytest.param(1.0, id="sampled"),
    ],
)
def test_step_generation_with_prefix_cache_equals_generation_without(stand_ins, solutions, kind, temperature):
    cached, uncached = stand_ins.backends[(kind, True)], stand_ins.backends[(kind, False)]
    prompts = [policy_prompt(question, cached) for question, _ in solutions[:3]]
    params = SamplingParams(n=2, temperature=temperature, max_tokens=16, stop=[SEPARATOR], seed=0)
    before = cached.num_prompt_tokens, cached.num_prompt_tokens_run
    with_cache = step_by_step(cached, prompts, params, rounds=3)
    finishes = [f for round_ in with_cache for row in round_ for _, f, _ in row]
    assert finishes.count("stop") >= 4 and len(with_cache) == 3  # steps ended, later rounds ran
    asked, run = cached.num_prompt_tokens - before[0], cached.num_prompt_tokens_run - before[1]
    assert run < asked  # the cache served part of the later rounds' prompts
    assert with_cache == step_by_step(uncached, prompts, params, rounds=3)


@pytest.mark.parametrize("kind", KINDS)
def test_seeded_samples_do_not_depend_on_what_the_prefix_cache_holds(stand_ins, solutions, kind):
    backend = stand_ins.backends[(kind, True)]
    params = SamplingParams(n=1, temperature=1.0, max_tokens=16, stop=[SEPARATOR], seed=0)
    short, long = "Find $x$.\n", policy_prompt(solutions[0][0], backend)
    backend.clear_prefix_cache()
    extended = next(
        short + step.text
        for step in first_steps(backend, short, params)
        if cache_serves(backend, short + step.text)
    )
    assert len(backend.encode([extended])[0]) < len(backend.encode([long])[0])
    with_prefix_cached = backend.generate([extended, long], params)
    backend.clear_prefix_cache()
    assert backend.generate([extended, long], params) == with_prefix_cached


def first_steps(backend: TransformersBackend, prompt: str, params: SamplingParams):
    """Completions of ``prompt`` that stopped at the separator, one per seed."""
    for seed in range(50):
        (completion,) = backend.generate([prompt], SamplingParams(**{**vars(params), "seed": seed}))[0]
        if completion.finish_reason == "stop":
            yield completion


def cache_serves(backend: TransformersBackend, prompt: str) -> bool:
    """Whether part of ``prompt`` would come from the prefix cache (a random model often writes a
    non-canonical tokenization, whose re-tokenized text then misses the cache)."""
    ids = backend.encode([prompt])[0]
    return backend.prefix_cache.lookup(ids, len(ids) - 1)[0] > 0


def reference_greedy(path: Path, prompt: str, max_new_tokens: int) -> tuple[list[int], list[int]]:
    """Prompt ids and greedy continuation by plain ``model.generate`` (no ttcompute code)."""
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    prompt_ids = tokenizer(prompt)["input_ids"]
    with torch.no_grad():
        out = model.generate(
            torch.tensor([prompt_ids]),
            attention_mask=torch.ones(1, len(prompt_ids), dtype=torch.long),
            do_sample=False,
            max_new_tokens=max_new_tokens,
            eos_token_id=None,  # run the full length: the reference must not stop early
            pad_token_id=0,
        )
    return prompt_ids, out[0, len(prompt_ids) :].tolist()


@pytest.mark.parametrize("stop", ["\n", "."])
def test_a_stop_string_ending_inside_a_merged_token_cuts_the_text_there(stand_ins, solutions, stop):
    path = stand_ins.policy_dirs["bpe"]
    tokenizer = stand_ins.tokenizers["bpe"]
    backend = stand_ins.backends[("bpe", True)]
    inside = 0
    for question, _ in solutions:
        prompt = policy_prompt(question, backend)
        _, generated = reference_greedy(path, prompt, max_new_tokens=24)
        text = tokenizer.decode(generated)
        if stop not in text:
            continue
        cut = text.index(stop) + len(stop)  # what a text-level stop keeps: up to and including it
        ends = [len(tokenizer.decode(generated[: k + 1])) for k in range(len(generated))]
        owner = next(k for k, end in enumerate(ends) if end >= cut)  # the token the stop ends in
        inside += ends[owner] > cut
        params = SamplingParams(temperature=0, max_tokens=24, stop=[stop])
        backend.clear_prefix_cache()
        (completion,) = backend.generate([prompt], params)[0]
        assert (completion.text, completion.finish_reason) == (text[:cut], "stop")
        assert completion.num_tokens == owner + 1
        # The next step starts from the cut text, re-tokenized: the cached prefix changes nothing.
        following = prompt + completion.text
        uncached = stand_ins.backends[("bpe", False)]
        assert backend.generate([following], params) == uncached.generate([following], params)
    assert inside >= 1, "no stop string ended inside a token: the test checked nothing it is named for"


@pytest.mark.parametrize("kind", KINDS)
def test_completion_text_is_the_text_the_model_wrote(stand_ins, solutions, kind):
    path = stand_ins.plain_policy_dirs[kind]
    tokenizer = stand_ins.tokenizers[kind]
    backend = TransformersBackend(str(path), device="cpu", enable_prefix_caching=False)
    for question, _ in solutions:
        prompt = policy_prompt(question, backend)
        prompt_ids, generated = reference_greedy(path, prompt, max_new_tokens=12)
        prompt_text = tokenizer.decode(prompt_ids, skip_special_tokens=True)
        full_text = tokenizer.decode(prompt_ids + generated, skip_special_tokens=True)
        assert full_text.startswith(prompt_text)
        (completion,) = backend.generate([prompt], SamplingParams(temperature=0, max_tokens=12))[0]
        assert completion.num_tokens == len(generated)
        assert completion.text == full_text[len(prompt_text) :]


# --------------------------------------------------------------------------------------------------
# The chat prompt of `ttc sample`


def test_sample_wraps_the_question_in_the_chat_template_without_a_stray_newline(stand_ins, tmp_path):
    from ttcompute.cli import run_stage
    from ttcompute.core.shards import load_sharded

    problems = tmp_path / "problems.jsonl"
    rows = read_jsonl(MATH500)[:2]
    write_jsonl(problems, rows)
    out = tmp_path / "samples"
    args = [
        "--task",
        "math",
        "--dataset",
        str(problems),
        "--model_name_or_path",
        str(stand_ins.policy_dirs["bpe"]),
    ]
    args += [
        "--use_chat_template",
        "true",
        "--num_samples",
        "2",
        "--max_new_tokens",
        "8",
        "--output_dir",
        str(out),
    ]
    run_stage("sample", args)
    system = "Please reason step by step, and put your final answer within \\boxed{}."
    for row, sample in zip(rows, load_sharded(out)):
        # Qwen2.5-Math-Instruct's conversation, the default "{question}\n" template's newline not in it.
        assert sample["prompt"] == (
            f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{row['problem']}<|im_end|>\n"
            "<|im_start|>assistant\n"
        )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--use_chat_template", "true"], "has no chat template"),  # the SentencePiece stand-in has none
        (["--prompt_template", "Solve this."], "must contain {question}"),
    ],
)
def test_a_prompt_that_cannot_be_built_is_refused_before_anything_is_written(
    stand_ins, tmp_path, extra, message
):
    from ttcompute.cli import run_stage
    from ttcompute.core.errors import InputError

    problems = tmp_path / "problems.jsonl"
    write_jsonl(problems, read_jsonl(MATH500)[:1])
    out = tmp_path / "samples"
    args = ["--task", "math", "--dataset", str(problems), "--output_dir", str(out), "--num_samples", "1"]
    args += ["--model_name_or_path", str(stand_ins.plain_policy_dirs["sentencepiece"]), *extra]
    with pytest.raises(InputError, match=message):
        run_stage("sample", args)
    assert not out.exists()


@pytest.fixture(scope="module")
def chat_labels(stand_ins, tmp_path_factory) -> Path:
    """`ttc sample` with the chat template on the Qwen2.5-format stand-in, then `ttc label`."""
    from ttcompute.cli import run_stage
    from ttcompute.core.grading import extract_answer, is_equivalent
    from ttcompute.core.shards import ShardReader, shard_path, write_shard
    from ttcompute.data_gen.sample import SAMPLE_SCHEMA

    root = tmp_path_factory.mktemp("chat_run")
    problems = root / "problems.jsonl"
    rows = [row for row in read_jsonl(MATH500) if "\n\n" in row["solution"]][:4]
    write_jsonl(problems, rows)
    policy = str(stand_ins.policy_dirs["bpe"])
    sample_args = ["--task", "math", "--dataset", str(problems), "--model_name_or_path", policy]
    sample_args += ["--use_chat_template", "true", "--num_samples", "2", "--max_new_tokens", "8"]
    run_stage("sample", [*sample_args, "--output_dir", str(root / "samples")])
    # A random policy never reaches an answer: give each problem its reference solution as a sample (and
    # one it wrote), so that there are solutions to label. The prompts stay the ones sample built.
    samples = ShardReader(root / "samples").rows(0, len(rows))
    for sample, row in zip(samples, rows):
        sample["completions"] = [row["solution"], sample["completions"][1]]
        sample["answers"] = [extract_answer(text) for text in sample["completions"]]
        sample["correct"] = [
            a is not None and is_equivalent(a, sample["gold_answer"]) for a in sample["answers"]
        ]
    shard_path(root / "samples", 0).unlink()
    write_shard(root / "samples", 0, samples, SAMPLE_SCHEMA)
    label_args = ["--samples_dir", str(root / "samples"), "--num_rollouts", "2", "--max_new_tokens", "12"]
    run_stage("label", [*label_args, "--output_dir", str(root / "labels")])
    return root / "labels"


@pytest.mark.parametrize("prm_kind", ["token_classification", "likelihood"])
def test_train_prm_takes_the_chat_prompt_its_labels_were_sampled_with(
    stand_ins, chat_labels, tmp_path, prm_kind
):
    # The README's chat example: labels of a chat-template run train a PRM with no prompt flag (the
    # samples' ttc_config.yaml says how their prompts were built), and it scores those same prompts.
    from ttcompute.cli import run_stage
    from ttcompute.core.shards import load_sharded

    out = tmp_path / "prm"
    args = [
        "--model_name_or_path",
        str(
            stand_ins.prm_dirs["bpe"] if prm_kind == "token_classification" else stand_ins.policy_dirs["bpe"]
        ),
    ]
    args += ["--dataset_name", str(chat_labels), "--output_dir", str(out), "--prm_kind", prm_kind]
    args += [
        "--max_steps",
        "2",
        "--per_device_train_batch_size",
        "2",
        "--eval_fraction",
        "0",
        "--use_cpu",
        "true",
    ]
    run_stage("train-prm", args)
    if prm_kind == "token_classification":
        recorded = json.loads((out / "config.json").read_text())["ttc_prm"]
    else:
        recorded = json.loads((out / "likelihood_prm.json").read_text())
    assert recorded["use_chat_template"] is True and recorded["prompt_template"] == "{question}\n"

    rows = load_sharded(chat_labels)
    prm = load_prm(str(out), device="cpu")
    tokenizer = AutoTokenizer.from_pretrained(stand_ins.prm_dirs["bpe"])
    encoded = record_backbone_inputs(prm)
    prm.score([rows[0]["question"]], [rows[0]["completions"]])
    # What the PRM ran starts with the label rows' own (chat) prompt.
    prompt_ids = tokenizer(rows[0]["prompt"]).input_ids
    assert encoded[0][0][0, : len(prompt_ids)].tolist() == prompt_ids

    if prm_kind == "token_classification":
        config = PRMConfig(output_dir=str(tmp_path), model_name_or_path="m", dataset_name="d", use_cpu=True)
        card = prm_model_card(config, recorded, str(out))
        scope = {"question": rows[0]["question"], "steps": rows[0]["completions"]}
        exec(card.split("```python\n", 1)[1].split("```", 1)[0], scope)
        assert scope["step_scores"] == pytest.approx(
            prm.score([rows[0]["question"]], [rows[0]["completions"]])[0], abs=1e-5
        )


def test_a_prompt_flag_that_contradicts_the_samples_is_an_error(stand_ins, chat_labels, tmp_path):
    from ttcompute.cli import run_stage
    from ttcompute.core.errors import InputError

    base = ["--model_name_or_path", str(stand_ins.prm_dirs["bpe"]), "--dataset_name", str(chat_labels)]
    for flag, message in (
        (
            ["--use_chat_template", "false"],
            r"--use_chat_template False contradicts .*\(use_chat_template True\)",
        ),
        (["--prompt_template", "Q: {question}\n"], r"contradicts .*\(prompt_template '\{question\}\\n'\)"),
        (
            ["--system_prompt", "Be brief."],
            r"--system_prompt 'Be brief.' contradicts .*\(system_prompt None\)",
        ),
    ):
        out = tmp_path / flag[0].strip("-")
        with pytest.raises(InputError, match=message):
            run_stage("train-prm", [*base, *flag, "--output_dir", str(out), "--use_cpu", "true"])
        assert not out.exists()


def test_a_chat_template_that_writes_the_bos_gets_no_second_one(stand_ins, solutions, tmp_path, monkeypatch):
    from ttcompute.models.generation import prompt_token_ids
    from ttcompute.trainers.revision_data import sft_example

    policy = tmp_path / "llama_chat"
    shutil.copytree(stand_ins.policy_dirs["sentencepiece"], policy)
    tokenizer = AutoTokenizer.from_pretrained(policy)
    tokenizer.chat_template = LLAMA2_CHAT_TEMPLATE
    tokenizer.save_pretrained(policy)
    bos = tokenizer.bos_token_id
    question, steps = solutions[0]
    prompt = build_prompt(question, PromptContract("{question}", True), tokenizer)
    assert prompt.startswith("<s>[INST] ")
    expected = prompt_token_ids(tokenizer, prompt)
    assert expected[0] == bos and expected.count(bos) == 1
    # The policy's backend, the PRM's encoder and the reviser's SFT input all see that one BOS.
    backend = TransformersBackend(str(policy), device="cpu")
    assert backend.encode([prompt]) == [expected]
    ids, _ = encode_steps(tokenizer, prompt, steps, SEPARATOR)
    assert ids[: len(expected)] == expected and ids.count(bos) == 1
    # What the reviser trains on: TRL would tokenize the text with the special tokens, <s><s>.
    assert tokenizer(prompt).input_ids[:2] == [bos, bos]
    sft_ids, mask = sft_example(tokenizer, prompt, SEPARATOR.join(steps) + tokenizer.eos_token)
    assert sft_ids[: len(expected)] == expected and sft_ids.count(bos) == 1
    assert mask == [0] * len(expected) + [1] * (len(sft_ids) - len(expected))
    # vLLM (a stand-in module: it needs CUDA) gets such a prompt as token ids, not as text to re-tokenize.
    import fake_vllm

    vllm = fake_vllm.install(monkeypatch, script=lambda prompt_ids, seed: [tokenizer.eos_token_id])
    from ttcompute.models.vllm_backend import VLLMBackend

    VLLMBackend(str(policy)).generate([prompt, "plain text"], SamplingParams(n=1, max_tokens=4))
    requests = vllm.calls[-1][1]["prompts"]
    assert requests == [{"prompt_token_ids": expected}, "plain text"] and len(vllm.engines) == 1
