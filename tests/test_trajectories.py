"""``ttc revisions``: trajectories checked against brute force (edit distance, pairing, k draws)."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from ttcompute.cli import run_stage
from ttcompute.core.errors import InputError
from ttcompute.core.shards import load_sharded, prepare_output, shard_path, write_shard
from ttcompute.data_gen.trajectories import problem_trajectories, split_solutions
from ttcompute.models.reviser import format_reviser_prompt


def levenshtein(a: str, b: str) -> int:
    """Textbook dynamic programme: the reference for rapidfuzz."""
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def random_solution(rng: random.Random) -> str:
    steps = [
        f"{rng.randint(1, 99)} {rng.choice('+-*')} {rng.randint(1, 9)} = {rng.randint(1, 99)}"
        for _ in range(rng.randint(1, 4))
    ]
    return "\n\n".join([*steps, f"The answer is \\boxed{{{rng.randint(1, 99)}}}"])


def test_closest_attempt_and_distance_match_brute_force():
    rng = random.Random(0)
    for case in range(50):
        target = random_solution(rng)
        candidates = list(dict.fromkeys(random_solution(rng) for _ in range(rng.randint(1, 8))))
        distances = [levenshtein(target, c) for c in candidates]
        # max_previous 1: every trajectory with an attempt shows exactly the closest one.
        trajectories = problem_trajectories(f"c{case}", [target] * 20, candidates, max_previous=1, seed=case)
        shown = [(attempts, distance) for _, attempts, distance in trajectories if attempts]
        assert shown  # k = 1 is drawn about half the time
        for attempts, distance in shown:
            assert attempts == [candidates[distances.index(min(distances))]] and distance == min(distances)


def test_trajectories_pair_the_closest_incorrect_attempt_last():
    rng = random.Random(1)
    right = [random_solution(rng) for _ in range(6)]
    wrong = [random_solution(rng) for _ in range(3)]
    trajectories = problem_trajectories("p1", right, wrong, max_previous=4, seed=7)
    assert [t[0] for t in trajectories] == right
    assert trajectories == problem_trajectories("p1", right, wrong, max_previous=4, seed=7)
    assert trajectories != problem_trajectories("p1", right, wrong, max_previous=4, seed=8)
    for completion, attempts, distance in trajectories:
        assert len(attempts) <= 3  # capped by the incorrect solutions available
        assert len(set(attempts)) == len(attempts) and set(attempts) <= set(wrong)
        if attempts:
            distances = [levenshtein(completion, w) for w in wrong]
            assert attempts[-1] == wrong[distances.index(min(distances))]
            assert distance == min(distances)
        else:
            assert distance == -1


def test_k_is_uniform_over_0_to_4():
    rng = random.Random(2)
    wrong = [random_solution(rng) for _ in range(5)]
    ks = Counter()
    for p in range(400):
        for _, attempts, _ in problem_trajectories(
            f"p{p}", [f"right {i}" for i in range(5)], wrong, 4, seed=0
        ):
            ks[len(attempts)] += 1
    # 2000 draws, 400 expected per value; a 4-sigma band (sigma = sqrt(2000 * .2 * .8) ~ 18).
    assert set(ks) == {0, 1, 2, 3, 4} and all(abs(count - 400) < 72 for count in ks.values())


def test_split_solutions_keeps_every_correct_sample_and_merges_duplicate_incorrect_ones():
    sample = {
        "completions": ["x", " ", "y", "x", "y", "z"],
        "correct": [True, True, False, True, False, False],
    }
    assert split_solutions(sample) == (["x", "x"], ["y", "z"], 1, 1)


def test_repeated_correct_samples_each_get_their_own_draw():
    rng = random.Random(4)
    target = random_solution(rng)
    wrong = list(dict.fromkeys(random_solution(rng) for _ in range(6)))
    closest = wrong[min(range(len(wrong)), key=lambda i: levenshtein(target, wrong[i]))]
    trajectories = problem_trajectories("p", [target] * 40, wrong, max_previous=4, seed=0)
    assert len(trajectories) == 40 and all(t[0] == target for t in trajectories)
    # Every draw pairs the same closest attempt last, but k and the other attempts vary between copies.
    assert all(attempts[-1] == closest for _, attempts, _ in trajectories if attempts)
    assert len({tuple(attempts) for _, attempts, _ in trajectories}) > 10


@pytest.fixture
def samples_dir(tmp_path):
    """A tiny ``ttc sample`` output: 5 problems, one without a correct sample, one with an empty completion."""
    rng = random.Random(3)
    out = tmp_path / "samples"
    prepare_output(out, "sample", "test", 2, overwrite=False)
    rows = []
    for p in range(5):
        completions = [random_solution(rng) for _ in range(6)]
        correct = [i % 2 == 0 for i in range(6)] if p != 2 else [False] * 6
        if p == 4:
            completions[1] = ""
        rows.append({"problem_id": f"p{p}", "question": f"Start at {p}. Add 1.", "gold_answer": str(p + 1),
                     "completions": completions, "correct": correct})  # fmt: skip
    write_shard(out, 0, rows[:3])
    write_shard(out, 1, rows[3:])
    return out


def test_revisions_stage_end_to_end(samples_dir, tmp_path):
    out = tmp_path / "revisions"
    stats = run_stage(
        "revisions",
        ["--samples_dir", str(samples_dir), "--output_dir", str(out), "--problems_per_shard", "2"],
    )
    rows = [dict(r) for r in load_sharded(out)]
    assert stats["problems_without_correct_sample"] == 1 and stats["empty_completions_dropped"] == 1
    assert {r["problem_id"] for r in rows} == {"p0", "p1", "p3", "p4"}
    assert stats["num_trajectories"] == len(rows) == 4 * 3  # 3 distinct correct solutions each
    assert sum(stats["num_previous_histogram"].values()) == len(rows)
    for row in rows:
        assert row["prompt"] == format_reviser_prompt(row["question"], row["previous_attempts"])
        assert row["num_previous"] == len(row["previous_attempts"])
        assert row["completion"] not in row["previous_attempts"]
    # Resume: a lost shard is rebuilt identically; another seed is refused without --overwrite.
    shard_path(out, 1).unlink()
    run_stage(
        "revisions",
        ["--samples_dir", str(samples_dir), "--output_dir", str(out), "--problems_per_shard", "2"],
    )
    assert [dict(r) for r in load_sharded(out)] == rows
    with pytest.raises(InputError, match="different run"):
        run_stage(
            "revisions",
            [
                "--samples_dir",
                str(samples_dir),
                "--output_dir",
                str(out),
                "--seed",
                "1",
                "--problems_per_shard",
                "2",
            ],
        )


def test_malformed_sample_rows_are_skipped_and_counted_or_rejected_with_strict(tmp_path, caplog):
    samples = tmp_path / "bad"
    prepare_output(samples, "sample", "test", 1, overwrite=False)
    good = {"problem_id": "p0", "question": "Q0", "completions": ["x = 1", "y"], "correct": [True, False]}
    broken = {"problem_id": "p1", "question": "Q1", "completions": ["a", "b"], "correct": [True]}
    write_shard(samples, 0, [good, broken])
    with pytest.raises(InputError, match=r"row 1: 'completions' and 'correct' differ in length.*--strict"):
        run_stage(
            "revisions",
            ["--samples_dir", str(samples), "--output_dir", str(tmp_path / "r"), "--strict", "true"],
        )
    assert not (tmp_path / "r").exists()

    with caplog.at_level("WARNING"):
        stats = run_stage("revisions", ["--samples_dir", str(samples), "--output_dir", str(tmp_path / "r")])
    assert "row 1:" in caplog.text
    assert stats["malformed_rows_skipped"] == 1
    # p1's lone verdict is never paired with the wrong text: only p0 gives a trajectory.
    assert set(load_sharded(tmp_path / "r")["problem_id"]) == {"p0"}


def test_sigkill_mid_stage_then_rerun_and_merge_of_workers_give_the_uninterrupted_output(tmp_path):
    from killing import kill_after_shards, run_ttc, shard_bytes
    from synthetic_samples import write_synthetic_samples

    samples = tmp_path / "samples"
    write_synthetic_samples(samples, num_problems=1200, samples_per_problem=64, problems_per_shard=100)

    def args(out, *extra):
        return [
            "revisions",
            "--samples_dir",
            str(samples),
            "--output_dir",
            str(out),
            "--problems_per_shard",
            "10",
            *extra,
        ]

    whole = tmp_path / "whole"
    run_ttc(args(whole))
    killed = tmp_path / "killed"
    done_at_kill = kill_after_shards(args(killed), killed, shards=3)
    assert 3 <= len(done_at_kill) < 120
    kept = shard_bytes(killed)
    (killed / ".shard-00100.parquet.99999.tmp").write_bytes(b"PAR1 half a shard")  # a kill mid-write
    run_ttc(args(killed))
    after = shard_bytes(killed)
    assert {name: after[name] for name in kept} == kept
    assert after == shard_bytes(whole)
    assert (killed / "stats.json").read_bytes() == (whole / "stats.json").read_bytes()

    # Two workers without a shared filesystem, each its own directory, then `ttc merge`.
    nodes = [tmp_path / f"node{i}" for i in range(2)]
    for i, node in enumerate(nodes):
        result = run_stage("revisions", args(node, "--shard", f"{i}/2")[1:])
        assert result["remaining_shards"] == 60
    merged = tmp_path / "merged"
    run_stage("merge", ["--inputs", *map(str, nodes), "--output_dir", str(merged)])
    assert shard_bytes(merged) == shard_bytes(whole)
    assert (merged / "stats.json").read_bytes() == (whole / "stats.json").read_bytes()


def test_progressive_order_puts_every_attempt_by_decreasing_edit_distance():
    rng = random.Random(5)
    for case in range(30):
        target = random_solution(rng)
        wrong = list(dict.fromkeys(random_solution(rng) for _ in range(8)))
        for completion, attempts, distance in problem_trajectories(
            f"c{case}", [target] * 5, wrong, max_previous=4, seed=case, attempt_order="progressive"
        ):
            distances = [levenshtein(a, completion) for a in attempts]
            assert distances == sorted(distances, reverse=True)
            if attempts:  # the closest is still last, with its distance
                assert distances[-1] == min(levenshtein(w, target) for w in wrong) == distance
    # Off, the paper's draws are exactly what they were (the option costs no extra random draw).
    same = problem_trajectories("x", ["12"] * 9, ["10", "19", "2", "5"], 4, seed=3)
    assert same == problem_trajectories(
        "x", ["12"] * 9, ["10", "19", "2", "5"], 4, seed=3, attempt_order="closest_last"
    )


def test_correct_context_fraction_ends_that_share_of_trajectories_on_a_correct_attempt():
    rng = random.Random(6)
    right = [random_solution(rng) for _ in range(2)] * 200
    wrong = list(dict.fromkeys(random_solution(rng) for _ in range(6)))
    base = problem_trajectories("p", right, wrong, max_previous=4, seed=0)
    mixed = problem_trajectories("p", right, wrong, max_previous=4, seed=0, correct_context_fraction=0.5)
    with_attempts = [t for t in mixed if t[1]]
    kept = [t for t in with_attempts if t[1][-1] in right]
    # k > 0 is drawn in 4 of 5 trajectories; half of those end on a correct attempt (binomial, n ~ 320).
    assert len(with_attempts) == sum(1 for t in base if t[1])
    assert 0.4 < len(kept) / len(with_attempts) < 0.6
    for completion, attempts, distance in kept:
        assert completion in right and all(a in wrong for a in attempts[:-1])
        assert distance == levenshtein(attempts[-1], completion)
    # The other trajectories are the paper's: incorrect attempts only, the closest last.
    for completion, attempts, _ in with_attempts:
        if attempts[-1] not in right:
            assert all(a in wrong for a in attempts)
            assert levenshtein(attempts[-1], completion) == min(levenshtein(w, completion) for w in wrong)
    # A problem with no incorrect solution still teaches keeping a correct one.
    easy = problem_trajectories("e", right[:40], [], max_previous=4, seed=1, correct_context_fraction=1.0)
    assert any(attempts == [attempts[0]] and attempts[0] in right for _, attempts, _ in easy)
    assert all(len(attempts) <= 1 for _, attempts, _ in easy)


def test_chain_trajectories_are_the_correct_attempts_with_what_the_reviser_saw():
    from ttcompute.data_gen.trajectories import chain_trajectories

    chain = [("a", False), ("b", False), ("c", True), ("c", True), ("d", False), ("e", True)]
    # Brute force: every correct attempt t, its context the (at most) 2 attempts before it.
    expected = [(text, [x for x, _ in chain[max(0, t - 2) : t]]) for t, (text, ok) in enumerate(chain) if ok]
    assert chain_trajectories(chain, max_previous=2) == expected
    assert chain_trajectories([("x", True)], max_previous=4) == [("x", [])]
    assert chain_trajectories([("", True), ("y", False)], max_previous=4) == []


def test_chain_trajectories_leave_out_empty_attempts_as_the_chains_prompts_did():
    """An empty attempt is never shown to the reviser (revision_chains), so a trajectory's context
    holds none either: it is the context of the prompt the attempt was written from."""
    from ttcompute.data_gen.trajectories import chain_trajectories
    from ttcompute.models.reviser import MAX_ATTEMPTS_IN_CONTEXT, attempt_prompts

    chain = [("a", False), ("", False), ("b", False), ("c", True), (" ", False), ("d", False), ("e", False),
             ("f", False), ("g", True)]  # fmt: skip
    shown = attempt_prompts("Q", [t for t, _ in chain], None, len)
    expected = [(text, shown[t][1]) for t, (text, ok) in enumerate(chain) if ok]
    assert chain_trajectories(chain, max_previous=MAX_ATTEMPTS_IN_CONTEXT) == expected
    assert expected == [("c", ["a", "b"]), ("g", ["c", "d", "e", "f"])]


def test_revisions_from_a_searchs_chains(samples_dir, tmp_path):
    """``--chains_dir``: trajectories from a ``ttc search`` output's revision chains (nested budgets
    counted once), refused when the chains were prompted under another contract."""
    from ttcompute.core.prompts import DEFAULT_CONTRACT, PromptContract

    def search_output(path, contract):
        prepare_output(path, "search", "h", 1, overwrite=False, info={"prompt_contract": contract.to_dict()})
        texts = ["1 + 1 = 3", "1 + 1 = 2", "1 + 1 = 2", "1 + 1 = 4"]
        full = {"problem_id": "p0", "question": "Start at 1. Add 1.", "gold_answer": "2", "method": "revisions",
                "budget": 4, "chain_length": 2, "completions": texts, "correct": [False, True, True, False],
                "subtrees": [0, 0, 1, 1], "positions": [0, 1, 0, 1]}  # fmt: skip
        nested = {
            **full,
            "budget": 2,
            **{k: full[k][:2] for k in ("completions", "correct", "subtrees", "positions")},
        }
        other = {**full, "method": "best_of_n", "completions": ["x"], "correct": [True], "subtrees": [0],
                 "positions": [0]}  # fmt: skip
        write_shard(path, 0, [nested, full, other])

    chains = tmp_path / "search"
    search_output(chains, DEFAULT_CONTRACT)
    out = tmp_path / "restem"
    stats = run_stage("revisions", ["--samples_dir", str(samples_dir), "--chains_dir", str(chains),
                                    "--output_dir", str(out)])  # fmt: skip
    rows = [dict(r) for r in load_sharded(out)]
    # Chain 0: the correct 2nd attempt after the wrong 1st; chain 1: its correct 1st attempt, alone.
    assert [(r["completion"], r["previous_attempts"]) for r in rows] == [
        ("1 + 1 = 2", ["1 + 1 = 3"]),
        ("1 + 1 = 2", []),
    ]
    assert rows[0]["prompt"] == format_reviser_prompt("Start at 1. Add 1.", ["1 + 1 = 3"])
    assert rows[0]["edit_distance"] == 1 and rows[1]["edit_distance"] == -1
    assert stats["num_trajectories"] == 2 and stats["num_problems"] == 1
    assert stats["problems_without_correct_sample"] == 0

    recorded = tmp_path / "samples_recorded"  # samples that record their contract
    prepare_output(
        recorded, "sample", "h", 1, overwrite=False, info={"prompt_contract": DEFAULT_CONTRACT.to_dict()}
    )
    write_shard(recorded, 0, [dict(r) for r in load_sharded(samples_dir)])
    other = tmp_path / "search_other_prompt"
    search_output(other, PromptContract(prompt_template="Q: {question}\n"))
    with pytest.raises(InputError, match="different prompts"):
        run_stage("revisions", ["--samples_dir", str(recorded), "--chains_dir", str(other),
                                "--output_dir", str(tmp_path / "bad")])  # fmt: skip
    with pytest.raises(InputError, match="no revisions rows"):
        empty = tmp_path / "search_empty"
        prepare_output(
            empty, "search", "h", 1, overwrite=False, info={"prompt_contract": DEFAULT_CONTRACT.to_dict()}
        )
        write_shard(empty, 0, [{"problem_id": "p", "question": "q", "method": "best_of_n", "completions": ["x"],
                                "correct": [True], "subtrees": [0], "positions": [0], "chain_length": 0,
                                "budget": 1}])  # fmt: skip
        run_stage("revisions", ["--samples_dir", str(samples_dir), "--chains_dir", str(empty),
                                "--output_dir", str(tmp_path / "bad2")])  # fmt: skip


def _reviser_options_bench():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / "reviser_options.py"
    spec = importlib.util.spec_from_file_location("reviser_options_bench", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reviser_options_bench_options_use_only_keys_it_reads():
    """One key per meaning: a count and a switch once shared the key ``chains``, and the large
    option silently trained on the ReST^EM data as well."""
    import inspect
    import re

    bench = _reviser_options_bench()
    source = inspect.getsource(bench.main) + inspect.getsource(bench.build_reviser)
    read = set(re.findall(r'option\.get\("(\w+)"', source)) | set(re.findall(r'option\["(\w+)"\]', source))
    assert {"own_chains", "eval_chains", "base", "revisions"} <= read
    for name, option in bench.OPTIONS.items():
        assert set(option) <= read, name
        assert isinstance(option.get("own_chains", False), bool), name
        assert type(option.get("eval_chains", 1)) is int, name
        assert option.get("trajectories_of", "baseline") in bench.OPTIONS, name
        assert not option.get("copy_train") or option.get("copy_stage"), name
        if "reviser_of" in option:  # another option's reviser, searched otherwise: nothing to train
            assert set(option) <= {"reviser_of", "search", "eval_chains", "eval_problems"}, name
            assert "reviser_of" not in bench.OPTIONS[option["reviser_of"]], name
        if "stage1_of" in option:  # a shared stage-1 checkpoint must be trained the same way
            assert option["copy_train"] == bench.OPTIONS[option["stage1_of"]]["copy_train"], name


def test_copy_attempts_stage_is_each_distinct_sample_written_out_again(samples_dir, tmp_path):
    """``ttc revisions --copy_attempts N``: the copying stage -- right and wrong samples alike (the
    problem without a correct sample too), each the one attempt and the completion; the trainer's
    loader accepts it."""
    from ttcompute.core.prompts import DEFAULT_CONTRACT
    from ttcompute.trainers.revision_data import validate_revision_rows
    from ttcompute.trainers.training_data import load_training_dataset

    out = tmp_path / "copy"
    stats = run_stage(
        "revisions",
        ["--samples_dir", str(samples_dir), "--copy_attempts", "4", "--output_dir", str(out),
         "--problems_per_shard", "2"],
    )  # fmt: skip
    rows = load_training_dataset(str(out), "train")
    validate_revision_rows(rows, str(out), DEFAULT_CONTRACT)
    expected = []
    for shard in load_sharded(samples_dir):
        distinct = []
        for text in shard["completions"]:
            if text.strip() and text not in distinct and len(distinct) < 4:
                distinct.append(text)
        expected += [(shard["problem_id"], t) for t in distinct]
    assert [(r["problem_id"], r["completion"]) for r in rows] == expected
    assert "p2" in {r["problem_id"] for r in rows}  # no correct sample: still copied
    for row in rows:
        assert row["previous_attempts"] == [row["completion"]] and row["num_previous"] == 1
        assert row["edit_distance"] == 0
        assert row["prompt"] == format_reviser_prompt(row["question"], [row["completion"]])
    assert stats["num_trajectories"] == len(expected) and stats["num_previous_histogram"]["1"] == len(
        expected
    )


@pytest.mark.parametrize(
    "flags",
    [["--copy_attempts", "-1"], ["--copy_attempts", "2", "--correct_context_fraction", "0.5"],
     ["--copy_attempts", "2", "--attempt_order", "progressive"], ["--copy_attempts", "2", "--chains_dir", "x"]],
)  # fmt: skip
def test_copy_attempts_refuses_what_it_does_not_take(flags, samples_dir, tmp_path):
    with pytest.raises((ValueError, InputError), match="copy_attempts"):
        run_stage(
            "revisions", ["--samples_dir", str(samples_dir), "--output_dir", str(tmp_path / "o"), *flags]
        )


def test_revisions_from_chains_with_an_empty_attempt_train(samples_dir, tmp_path):
    """A chain whose reviser once wrote nothing: the trajectory's context holds what the prompts
    showed (not the empty attempt), and the trainer's loader accepts the rows."""
    from ttcompute.core.prompts import DEFAULT_CONTRACT
    from ttcompute.trainers.revision_data import validate_revision_rows
    from ttcompute.trainers.training_data import load_training_dataset

    chains = tmp_path / "search"
    prepare_output(
        chains, "search", "h", 1, overwrite=False, info={"prompt_contract": DEFAULT_CONTRACT.to_dict()}
    )
    texts = ["1 + 1 = 3", "", "1 + 1 = 2"]
    write_shard(chains, 0, [{"problem_id": "p0", "question": "Start at 1. Add 1.", "gold_answer": "2",
                             "method": "revisions", "budget": 3, "chain_length": 3, "completions": texts,
                             "correct": [False, False, True], "subtrees": [0, 0, 0], "positions": [0, 1, 2]}])  # fmt: skip
    out = tmp_path / "restem"
    run_stage(
        "revisions",
        ["--samples_dir", str(samples_dir), "--chains_dir", str(chains), "--output_dir", str(out)],
    )
    rows = load_training_dataset(str(out), "train")
    validate_revision_rows(rows, str(out), DEFAULT_CONTRACT)
    assert [(r["completion"], r["previous_attempts"]) for r in rows] == [("1 + 1 = 2", ["1 + 1 = 3"])]
    assert rows[0]["prompt"] == format_reviser_prompt("Start at 1. Add 1.", ["1 + 1 = 3"])


def test_any_context_draws_attempts_from_the_other_samples_as_they_came():
    """``--context_attempts any``: per correct sample, k uniform in 0..4 attempts drawn without
    replacement from the problem's *other* non-empty samples -- right ones and repeats included, so a
    repeated answer shows as often as it was sampled."""
    from ttcompute.data_gen.trajectories import sampled_context_trajectories

    rng = random.Random(8)
    right = random_solution(rng)
    wrong = [random_solution(rng) for _ in range(3)]
    completions = [right, wrong[0], "", right, wrong[0], wrong[1], right, wrong[2]] * 25
    correct = [text == right for text in completions]
    rows = sampled_context_trajectories("p", completions, correct, max_previous=4, seed=3)
    assert [c for c, _, _ in rows] == [right] * correct.count(True)  # one per correct sample
    ks = Counter(len(attempts) for _, attempts, _ in rows)
    assert set(ks) == set(range(5)) and min(ks.values()) > 0.1 * len(rows)
    shown = Counter(a for _, attempts, _ in rows for a in attempts)
    assert "" not in shown and set(shown) == {right, *wrong}
    # Drawn from the other samples in proportion to how often each was sampled: of the 174 other
    # non-empty samples of a correct one, 74 are right, 50 are wrong[0], 25 each wrong[1], wrong[2].
    total = sum(shown.values())
    assert abs(shown[right] / total - 74 / 174) < 0.05 and abs(shown[wrong[0]] / total - 50 / 174) < 0.05
    for _, attempts, distance in rows:
        assert distance == (levenshtein(attempts[-1], right) if attempts else -1)
    # Same seed, same rows; another seed, other draws.
    assert rows == sampled_context_trajectories("p", completions, correct, 4, seed=3)
    assert rows != sampled_context_trajectories("p", completions, correct, 4, seed=4)
    # Never more attempts than there are other samples.
    small = sampled_context_trajectories("q", [right, wrong[0]], [True, False], 4, seed=0)
    assert all(attempts in ([], [wrong[0]]) for _, attempts, _ in small)


@pytest.mark.parametrize("rate", [None, 1.0])
def test_any_context_stage_end_to_end(rate, samples_dir, tmp_path):
    from ttcompute.core.prompts import DEFAULT_CONTRACT
    from ttcompute.trainers.revision_data import validate_revision_rows
    from ttcompute.trainers.training_data import load_training_dataset

    out = tmp_path / "any"
    stats = run_stage(
        "revisions",
        ["--samples_dir", str(samples_dir), "--context_attempts", "any", "--output_dir", str(out),
         "--problems_per_shard", "2", *(["--correct_attempt_rate", str(rate)] if rate else [])],
    )  # fmt: skip
    rows = load_training_dataset(str(out), "train")
    validate_revision_rows(rows, str(out), DEFAULT_CONTRACT)
    samples = {s["problem_id"]: s for s in load_sharded(samples_dir)}
    assert len(rows) == sum(sum(s["correct"]) for s in samples.values()) == stats["num_trajectories"]
    for row in rows:
        sample = samples[row["problem_id"]]
        assert row["completion"] in [t for t, ok in zip(sample["completions"], sample["correct"]) if ok]
        for attempt in row["previous_attempts"]:
            assert attempt in sample["completions"]
        if rate == 1.0 and sum(sample["correct"]) > len(row["previous_attempts"]):  # enough right ones
            assert all(a in sample["completions"] and sample["correct"][sample["completions"].index(a)]
                       for a in row["previous_attempts"])  # fmt: skip
        assert row["prompt"] == format_reviser_prompt(row["question"], row["previous_attempts"])


@pytest.mark.parametrize(
    "flags",
    [["--context_attempts", "some"], ["--context_attempts", "any", "--correct_context_fraction", "0.5"],
     ["--context_attempts", "any", "--attempt_order", "progressive"],
     ["--context_attempts", "any", "--chains_dir", "x"], ["--context_attempts", "any", "--copy_attempts", "2"]],
)  # fmt: skip
def test_any_context_refuses_what_it_does_not_take(flags, samples_dir, tmp_path):
    with pytest.raises((ValueError, InputError), match="context_attempts"):
        run_stage(
            "revisions", ["--samples_dir", str(samples_dir), "--output_dir", str(tmp_path / "o"), *flags]
        )


def test_reviser_options_bench_flip_rates_by_step_match_brute_force(tmp_path):
    """The bench's per-step flip counts, from shuffled search rows, against a direct count of the
    chains as written (chain c's attempt at step t)."""
    from ttcompute.core.shards import prepare_output

    bench = _reviser_options_bench()
    rng = random.Random(5)
    truth = {}
    rows = []
    for p in range(6):
        verdicts = [[rng.random() < 0.5 for _ in range(5)] for _ in range(3)]  # 3 chains of 5
        truth[f"p{p}"] = verdicts
        order = [(c, t) for c in range(3) for t in range(5)]
        rng.shuffle(order)
        rows.append({"problem_id": f"p{p}", "question": "q", "method": "revisions", "budget": 15,
                     "chain_length": 5, "completions": ["x"] * 15, "correct": [verdicts[c][t] for c, t in order],
                     "subtrees": [c for c, _ in order], "positions": [t for _, t in order]})  # fmt: skip
    out = tmp_path / "search"
    prepare_output(out, "search", "h", 1, overwrite=False, info={})
    write_shard(out, 0, rows)
    outcomes = bench.step_outcomes(out)
    for problem, verdicts in truth.items():
        got = outcomes[problem]
        for t in range(5):
            assert got[f"step{t}"] == pytest.approx(sum(v[t] for v in verdicts) / 3)
        for t in range(1, 5):
            pairs = Counter((v[t - 1], v[t]) for v in verdicts)
            expected = {"cc": pairs[True, True], "ci": pairs[True, False], "ic": pairs[False, True],
                        "ii": pairs[False, False]}  # fmt: skip
            assert {k: got[f"{k}{t}"] for k in expected} == expected
        assert sum(got[f"ci{t}"] for t in range(1, 5)) == got["ci"]
    summary = bench.summarize(outcomes, None, seed=0)
    all_pairs = Counter((v[t - 1], v[t]) for verdicts in truth.values() for v in verdicts for t in (2,))
    assert summary["correct_to_incorrect_by_step"][1] == round(
        all_pairs[True, False] / (all_pairs[True, False] + all_pairs[True, True]), 3
    )


def test_any_context_correct_attempt_rate_sets_the_share_of_correct_attempts_shown():
    from ttcompute.data_gen.trajectories import sampled_context_trajectories

    rng = random.Random(2)
    right = random_solution(rng)
    wrong = [random_solution(rng) for _ in range(4)]
    completions = [right] * 20 + wrong * 20  # a hard problem: 20 of 100 samples right
    correct = [text == right for text in completions]
    for rate in (0.0, 0.5, 0.9, 1.0):
        rows = sampled_context_trajectories("p", completions, correct, 4, seed=1, correct_rate=rate)
        shown = [a == right for _, attempts, _ in rows for a in attempts]
        assert len(rows) == 20 and len(shown) > 25
        assert abs(sum(shown) / len(shown) - rate) < 0.12, rate
    # As sampled (no rate): a fifth of the others are right.
    rows = sampled_context_trajectories("p", completions * 5, correct * 5, 4, seed=1)
    shown = [a == right for _, attempts, _ in rows for a in attempts]
    assert abs(sum(shown) / len(shown) - 99 / 499) < 0.04
    # One correct sample and nothing else right: the rate cannot be met, the wrong pool serves.
    rows = sampled_context_trajectories("q", [right, *wrong], [True, False, False, False, False], 4, 0, 1.0)
    assert all(set(attempts) <= set(wrong) and len(set(attempts)) == len(attempts) for _, attempts, _ in rows)


@pytest.mark.parametrize(
    ("flags", "match"),
    [(["--correct_attempt_rate", "0.5"], "correct_attempt_rate"),
     (["--context_attempts", "any", "--correct_attempt_rate", "1.5"], "correct_attempt_rate")],
)  # fmt: skip
def test_correct_attempt_rate_refused_where_it_means_nothing(flags, match, samples_dir, tmp_path):
    with pytest.raises((ValueError, InputError), match=match):
        run_stage(
            "revisions", ["--samples_dir", str(samples_dir), "--output_dir", str(tmp_path / "o"), *flags]
        )
