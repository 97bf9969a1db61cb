"""The transformers generation backend: checked against ``model.generate`` and against the softmax."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from ttcompute.core.errors import InputError
from ttcompute.core.prompts import PromptContract
from ttcompute.models.backends import load_backend
from ttcompute.models.generation import GenerationBackend, SamplingParams, build_prompt
from ttcompute.models.hf_backend import TransformersBackend, sample_next_token

PROMPTS = ["Start at 3. Add 4.\n", "Start at 17. Multiply by 2. Subtract 5. Add 9.\n", "Start at 0.\n"]
ARITHMETIC = [
    "Start at 37. Add 8. Multiply by 2. Subtract 9.\n",
    "Start at 5. Add 3.\n",
    "Start at 12. Subtract 4. Multiply by 3. Add 7. Subtract 2. Add 9.\n",
    "Start at 60. Subtract 9. Add 4.\n",
]


@pytest.fixture(scope="module")
def random_backend(random_policy_dir):
    return TransformersBackend(str(random_policy_dir), device="cpu")


@pytest.fixture(scope="module")
def small_backend(small_policy_dir):
    return TransformersBackend(str(small_policy_dir), device="cpu")


def test_backend_satisfies_the_interface(random_backend):
    assert isinstance(random_backend, GenerationBackend)
    assert random_backend.num_parameters == sum(p.numel() for p in random_backend.model.parameters())


def test_greedy_matches_transformers_generate(random_policy_dir, random_backend):
    """Left padding, positions and the KV cache are right iff greedy decoding equals HF's own."""
    tokenizer = AutoTokenizer.from_pretrained(random_policy_dir)
    model = AutoModelForCausalLM.from_pretrained(random_policy_dir)
    ours = random_backend.generate(PROMPTS, SamplingParams(n=1, temperature=0, max_tokens=24))
    for prompt, [completion] in zip(PROMPTS, ours):
        ids = tokenizer(prompt, return_tensors="pt")
        reference = model.generate(
            **ids,
            do_sample=False,
            max_new_tokens=24,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        new = reference[0, ids["input_ids"].shape[1] :].tolist()
        if tokenizer.eos_token_id in new:
            new = new[: new.index(tokenizer.eos_token_id) + 1]
        assert completion.num_tokens == len(new)
        assert completion.text == tokenizer.decode(new, skip_special_tokens=True)


def test_batch_composition_does_not_change_greedy_output(random_backend):
    together = random_backend.generate(PROMPTS, SamplingParams(temperature=0, max_tokens=16))
    alone = [random_backend.generate([p], SamplingParams(temperature=0, max_tokens=16))[0] for p in PROMPTS]
    assert [c[0].text for c in together] == [c[0].text for c in alone]


def test_sample_next_token_follows_softmax_and_top_p():
    generator = torch.Generator().manual_seed(0)
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).repeat(40_000, 1)
    counts = torch.bincount(sample_next_token(logits, 1.0, 1.0, generator), minlength=4).float() / 40_000
    assert torch.allclose(counts, torch.tensor([0.5, 0.3, 0.15, 0.05]), atol=0.01)
    # top_p=0.7 keeps the smallest prefix with mass >= 0.7: tokens 0 and 1, renormalised.
    counts = torch.bincount(sample_next_token(logits, 1.0, 0.7, generator), minlength=4).float() / 40_000
    assert torch.allclose(counts, torch.tensor([0.625, 0.375, 0.0, 0.0]), atol=0.01)
    # temperature 0.5 squares the probabilities before renormalising.
    squared = torch.tensor([0.25, 0.09, 0.0225, 0.0025])
    counts = torch.bincount(sample_next_token(logits, 0.5, 1.0, generator), minlength=4).float() / 40_000
    assert torch.allclose(counts, squared / squared.sum(), atol=0.01)


def test_n_samples_seeded_and_reproducible(random_backend):
    params = SamplingParams(n=3, temperature=1.0, max_tokens=12, seed=7)
    first = random_backend.generate(PROMPTS, params)
    assert [len(c) for c in first] == [3, 3, 3]
    again = random_backend.generate(PROMPTS, params)
    assert [[c.text for c in row] for row in first] == [[c.text for c in row] for row in again]
    other = random_backend.generate(PROMPTS, SamplingParams(n=3, temperature=1.0, max_tokens=12, seed=8))
    assert [[c.text for c in row] for row in first] != [[c.text for c in row] for row in other]


def test_length_finish_and_token_counts(small_backend, char_tokenizer):
    """A cap below some solutions' lengths: those end with "length" after exactly the cap's tokens, cut
    from the uncapped solution; the others, one of them ending with EOS on the cap's last token, end
    with "eos" and count the EOS. Expectations come from an uncapped run, so both cases surely occur."""
    greedy = SamplingParams(temperature=0, max_tokens=160)
    full = [c[0] for c in small_backend.generate(ARITHMETIC, greedy)]

    def retokenized(text: str) -> int:
        return len(char_tokenizer(text, add_special_tokens=False)["input_ids"])

    assert all(f.finish_reason == "eos" and f.num_tokens == retokenized(f.text) + 1 for f in full)
    lengths = sorted(f.num_tokens for f in full)
    assert len(set(lengths)) == len(lengths)
    cap = lengths[1]  # the second shortest solution's EOS is the last token the cap allows
    capped = small_backend.generate(ARITHMETIC, SamplingParams(temperature=0, max_tokens=cap))
    assert sorted(c[0].finish_reason for c in capped) == ["eos", "eos", "length", "length"]
    for [completion], uncapped in zip(capped, full):
        if uncapped.num_tokens <= cap:
            assert completion == uncapped
        else:
            assert completion.finish_reason == "length"
            assert completion.num_tokens == retokenized(completion.text) == cap
            assert uncapped.text.startswith(completion.text)


def test_token_budget_splits_batches_without_changing_results(random_policy_dir):
    big = TransformersBackend(str(random_policy_dir), device="cpu", max_batch_tokens=1 << 20)
    tiny = TransformersBackend(str(random_policy_dir), device="cpu", max_batch_tokens=40)
    params = SamplingParams(n=2, temperature=0, max_tokens=10)
    assert [[c.text for c in r] for r in big.generate(PROMPTS, params)] == [
        [c.text for c in r] for r in tiny.generate(PROMPTS, params)
    ]


def test_stop_at_step_separator_with_trained_policy(small_backend):
    """The trained policy writes one step and stops at the blank line; steps concatenate back."""
    prompt = "Start at 12. Add 5. Multiply by 2.\n"
    step_params = SamplingParams(n=4, temperature=0, max_tokens=40, stop=["\n\n"])
    [steps] = small_backend.generate([prompt], step_params)
    for step in steps:
        assert step.finish_reason == "stop"
        assert step.text.endswith("\n\n") and step.text.count("\n\n") == 1
        assert step.num_tokens == len(step.text)  # one token per character
    [[full]] = small_backend.generate([prompt], SamplingParams(temperature=0, max_tokens=120))
    assert full.finish_reason == "eos"
    assert full.text.startswith(steps[0].text)
    [[rest]] = small_backend.generate([prompt + steps[0].text], SamplingParams(temperature=0, max_tokens=120))
    assert steps[0].text + rest.text == full.text


def test_load_backend_errors():
    with pytest.raises(InputError, match="unknown backend"):
        load_backend("onnx", "x")
    with pytest.raises(InputError, match="no such model directory"):
        load_backend("transformers", "./no/such/model")
    with pytest.raises(ValueError):
        SamplingParams(top_p=0)


def test_build_prompt_with_chat_template(char_tokenizer):
    assert build_prompt("Q?", PromptContract("Problem: {question}\n")) == "Problem: Q?\n"
    tokenizer = char_tokenizer
    tokenizer.chat_template = (
        "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}<assistant>"
    )
    assert build_prompt("Q?", PromptContract("{question}", True), tokenizer) == "<user>Q?<assistant>"
    system = PromptContract("{question}", True, "Be brief.")
    assert build_prompt("Q?", system, tokenizer) == "<system>Be brief.<user>Q?<assistant>"
    tokenizer.chat_template = None


def test_rows_dropped_as_they_finish_change_no_greedy_output(small_backend):
    """Solutions of very different lengths in one batch: finished rows are compacted away mid-loop."""
    params = SamplingParams(temperature=0, max_tokens=160)
    together = small_backend.generate(ARITHMETIC, params)
    alone = [small_backend.generate([p], params)[0][0] for p in ARITHMETIC]
    assert len({c[0].num_tokens for c in together}) > 1  # the lengths differ, so compaction happened
    assert [c[0].text for c in together] == [c.text for c in alone]
    assert all(c[0].finish_reason == "eos" for c in together)


def test_prefix_cache_continues_steps_exactly(small_policy_dir):
    """Step-by-step greedy generation reusing cached prefixes = the same without the cache = one
    greedy pass over the whole solution; and the cache really saved the prompts' tokens."""
    cached = TransformersBackend(str(small_policy_dir), device="cpu", enable_prefix_caching=True)
    plain = TransformersBackend(str(small_policy_dir), device="cpu", enable_prefix_caching=False)
    step = SamplingParams(temperature=0, max_tokens=48, stop=["\n\n"])
    texts = {id(cached): [""] * len(ARITHMETIC), id(plain): [""] * len(ARITHMETIC)}
    for _ in range(8):
        for backend in (cached, plain):
            solutions = texts[id(backend)]
            outputs = backend.generate([p + s for p, s in zip(ARITHMETIC, solutions)], step)
            texts[id(backend)] = [s + out[0].text for s, out in zip(solutions, outputs)]
    full = [c[0].text for c in plain.generate(ARITHMETIC, SamplingParams(temperature=0, max_tokens=160))]
    assert texts[id(cached)] == texts[id(plain)] == full
    assert plain.num_prompt_tokens_run == plain.num_prompt_tokens
    assert cached.num_prompt_tokens_run < cached.num_prompt_tokens / 3
    cached.clear_prefix_cache()  # a cleared cache runs the whole prompt again
    prompt = ARITHMETIC[0] + texts[id(cached)][0][:20]
    before = cached.num_prompt_tokens_run
    cached.generate([prompt], step)
    assert cached.num_prompt_tokens_run - before == len(cached.encode([prompt])[0])


def test_prefix_cache_sampling_is_reproducible(small_policy_dir):
    """Seeded sampling through the cache gives the same steps as without it (same seeds, same rows)."""
    cached = TransformersBackend(str(small_policy_dir), device="cpu", enable_prefix_caching=True)
    plain = TransformersBackend(str(small_policy_dir), device="cpu", enable_prefix_caching=False)
    step = SamplingParams(n=4, temperature=1.0, max_tokens=48, stop=["\n\n"], seed=3)
    first = cached.generate(ARITHMETIC, step)
    prompts = [p + out[0].text for p, out in zip(ARITHMETIC, first)]
    again = plain.generate(ARITHMETIC, step)
    assert [[c.text for c in o] for o in first] == [[c.text for c in o] for o in again]
    second = SamplingParams(n=4, temperature=1.0, max_tokens=48, stop=["\n\n"], seed=4)
    assert [[c.text for c in o] for o in cached.generate(prompts, second)] == [
        [c.text for c in o] for o in plain.generate(prompts, second)
    ]
    assert cached.num_prompt_tokens_run < plain.num_prompt_tokens_run


def _answering_vllm(monkeypatch, tokenizer_dir):
    """``vllm`` as built from its real API (tests/fake_vllm.py): every completion answers "1" and ends."""
    import fake_vllm
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    answer = tokenizer("The answer is \\boxed{1}", add_special_tokens=False)["input_ids"] + [
        tokenizer.eos_token_id
    ]
    return fake_vllm.install(monkeypatch, script=lambda prompt_ids, seed: answer), len(answer)


def test_vllm_parallel_options_reach_vllm_from_the_command_line(monkeypatch, random_policy_dir):
    """The plumbing of ``--tensor_parallel_size`` and ``--gpu_memory_utilization``."""
    from ttcompute.core.config import parse_stage_args
    from ttcompute.models.generation_config import GeneratorConfig

    vllm, _ = _answering_vllm(monkeypatch, random_policy_dir)
    (gen_args,) = parse_stage_args(
        (GeneratorConfig,),
        [
            "--backend", "vllm", "--model_name_or_path", str(random_policy_dir),
            "--tensor_parallel_size", "4", "--gpu_memory_utilization", "0.5",
        ],
        prog="ttc sample",
    )  # fmt: skip
    load_backend(gen_args.backend, gen_args.model_name_or_path, **gen_args.backend_kwargs())
    ((_, received),) = vllm.calls
    assert received["tensor_parallel_size"] == 4 and "data_parallel_size" not in received
    assert received["gpu_memory_utilization"] == 0.5 and received["trust_remote_code"] is False
    assert received["load_format"] == "safetensors"


def test_vllm_data_parallelism_is_one_shard_worker_per_replica(random_policy_dir):
    # vLLM's offline data parallelism is one process per replica: `--shard i/n` workers, refused
    # as an LLM() argument with a message saying so.
    from ttcompute.core.config import parse_stage_args
    from ttcompute.core.errors import InputError
    from ttcompute.models.generation_config import GeneratorConfig

    args = ["--backend", "vllm", "--model_name_or_path", str(random_policy_dir), "--data_parallel_size", "2"]
    with pytest.raises(InputError, match=r"one process per replica.*--shard i/n"):
        parse_stage_args((GeneratorConfig,), args, prog="ttc sample")


def test_a_vllm_search_never_holds_two_engines(monkeypatch, random_policy_dir, tmp_path):
    from ttcompute.cli import run_stage
    from ttcompute.core.errors import InputError

    vllm, answer_tokens = _answering_vllm(monkeypatch, random_policy_dir)
    common = [
        "--backend", "vllm", "--model_name_or_path", str(random_policy_dir), "--num_problems", "2",
        "--reviser", str(random_policy_dir), "--budgets", "1",
    ]  # fmt: skip
    with pytest.raises(InputError, match="one vLLM engine"):
        run_stage(
            "search", [*common, "--methods", "best_of_n", "revisions", "--output_dir", str(tmp_path / "a")]
        )
    assert not vllm.engines and not (tmp_path / "a").exists()  # refused before any engine starts
    # Revision chains alone need only the reviser: one engine, which writes every attempt.
    result = run_stage("search", [*common, "--methods", "revisions", "--output_dir", str(tmp_path / "b")])
    assert len(vllm.engines) == 1 and vllm.engines[0].options["model"] == str(random_policy_dir)
    assert result["num_rows"] == 2 and result["compute"]["policy_tokens"] == 2 * answer_tokens
