"""``ttc search`` and ``ttc select`` end to end with the shipped small policy and a likelihood PRM."""

from __future__ import annotations

import json

import pytest

from ttcompute.cli import run_stage
from ttcompute.core.budget import inference_flops
from ttcompute.core.errors import InputError
from ttcompute.core.grading import extract_answer, is_equivalent
from ttcompute.core.selection import majority_vote, weighted_best_of_n
from ttcompute.core.shards import load_sharded, shard_path
from ttcompute.eval.select import candidate_score

POLICY_PARAMETERS = 137_792


@pytest.fixture(scope="module")
def prm_dir(likelihood_prm_dir):
    return likelihood_prm_dir


def search_args(out, prm_dir, small_policy_dir, *extra):
    return [
        "--model_name_or_path", str(small_policy_dir),
        "--prm", str(prm_dir),
        "--num_problems", "3",
        "--problem_seed", "4242",
        "--max_ops", "4",
        "--max_new_tokens", "120",
        "--max_step_tokens", "40",
        "--budgets", "1", "2", "4",
        "--lookahead_steps", "1",
        "--problems_per_shard", "2",
        "--output_dir", str(out),
        *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def search_run(tmp_path_factory, prm_dir, small_policy_dir):
    out = tmp_path_factory.mktemp("search")
    stats = run_stage("search", search_args(out, prm_dir, small_policy_dir))
    return out, stats


def pa_table(rows, schema):
    import pyarrow as pa

    return pa.Table.from_pylist(rows, schema=schema)


def rows_of(dataset):
    return [dict(row) for row in dataset]


def test_every_run_writes_its_candidates_and_exact_cost(search_run):
    out, stats = search_run
    rows = rows_of(load_sharded(out))
    # Per problem: best-of-N at budgets 1, 2, 4 (3 rows); beam search: budget 1 has M=1 under both
    # width settings (one run, 2 rows), budgets 2 and 4 two widths each (4); lookahead k=1: budget 2
    # gives 1 beam (2 rows), budget 4 gives 2 beams at M=2 and M=1 (2); DVTS at 1, 2, 4 (3).
    assert len(rows) == 3 * (3 + 6 + 4 + 3)
    assert stats["num_problems"] == 3 and stats["num_rows"] == len(rows)
    for row in rows:
        assert len(row["completions"]) == row["num_beams"] == len(row["step_scores"]) == len(row["answers"])
        assert row["generations"] == row["num_beams"] * (row["lookahead"] + 1) <= row["budget"]
        assert row["policy_flops"] == inference_flops(POLICY_PARAMETERS, row["policy_tokens"])
        assert row["prm_flops"] == inference_flops(POLICY_PARAMETERS, row["prm_tokens"])
        assert 0 < row["prm_tokens"] <= row["prm_tokens_requested"]
        for text, answer, correct, scores in zip(
            row["completions"], row["answers"], row["correct"], row["step_scores"]
        ):
            assert answer == extract_answer(text)
            assert correct == (answer is not None and is_equivalent(answer, row["gold_answer"]))
            assert all(0.0 <= s <= 1.0 for s in scores)
        if row["method"] == "lookahead":
            assert row["lookahead_tokens"] > 0
        if row["method"] != "best_of_n":
            assert row["beam_width"] >= 1 and row["num_beams"] % row["beam_width"] == 0


def test_best_of_n_budgets_are_nested_subsets(search_run):
    out, _ = search_run
    bon = {
        (r["problem_id"], r["budget"]): r for r in rows_of(load_sharded(out)) if r["method"] == "best_of_n"
    }
    for (problem, budget), row in bon.items():
        if budget < 4:
            bigger = bon[(problem, 4)]
            assert row["completions"] == bigger["completions"][:budget]
            assert row["policy_tokens"] == sum(bigger["num_tokens"][:budget])
            assert row["prm_tokens"] <= bigger["prm_tokens"]


def test_resume_after_losing_shards_gives_the_same_dataset(search_run, tmp_path, prm_dir, small_policy_dir):
    out, _ = search_run
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in out.iterdir():
        if path.is_file():
            (copy / path.name).write_bytes(path.read_bytes())
    for index in (0, 5, 11):  # as if killed before these shards were written
        shard_path(copy, index).unlink()
    # Finished by two workers (as a job array would): worker 0 takes shard 0, worker 1 shards 5, 11.
    partial = run_stage("search", search_args(copy, prm_dir, small_policy_dir, "--shard", "0/2"))
    assert partial["remaining_shards"] == 2
    run_stage("search", search_args(copy, prm_dir, small_policy_dir, "--shard", "1/2"))
    assert rows_of(load_sharded(copy)) == rows_of(load_sharded(out))


def test_the_prm_cache_size_changes_what_is_encoded_never_a_score(
    search_run, tmp_path, prm_dir, small_policy_dir
):
    out, _ = search_run
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in out.iterdir():
        if path.is_file() and not path.name.startswith("shard-"):
            (copy / path.name).write_bytes(path.read_bytes())
    # The same run (the cache size is no part of its identity), every shard redone with a tiny cache.
    run_stage("search", search_args(copy, prm_dir, small_policy_dir, "--prm_cache_tokens", "40"))
    redone, original = rows_of(load_sharded(copy)), rows_of(load_sharded(out))
    # Best-of-N's candidates never depend on scores; a tree search's could, through a rank decided by
    # a recomputed prefix's last float bits, so scores are compared wherever the candidates agree.
    assert all(
        a["completions"] == b["completions"] for a, b in zip(redone, original) if a["method"] == "best_of_n"
    )
    same = [(a, b) for a, b in zip(redone, original) if a["completions"] == b["completions"]]
    assert len(same) > len(redone) // 2
    for a, b in same:
        for x, y in zip(a["step_scores"], b["step_scores"]):
            assert x == pytest.approx(y, abs=1e-5)
    assert sum(r["prm_tokens"] for r in redone) > sum(r["prm_tokens"] for r in original)  # it evicted


def test_a_different_config_is_refused(search_run, prm_dir, small_policy_dir):
    out, _ = search_run
    with pytest.raises(InputError, match="different run"):
        run_stage("search", search_args(out, prm_dir, small_policy_dir, "--seed", "9"))


def test_select_recomputes_rules_from_saved_scores(search_run, tmp_path):
    out, _ = search_run
    run_stage(
        "select", ["--search_dir", str(out), "--output_dir", str(tmp_path / "sel"), "--aggregation", "min"]
    )
    summary = json.loads((tmp_path / "sel" / "accuracy.json").read_text())
    accuracy = summary["accuracy"]["all"]
    assert set(accuracy) == {
        "majority",
        "best_of_n",
        "best_of_n_weighted",
        "beam_search M=4",
        "beam_search M=sqrt",
        "lookahead k=1 M=4",
        "lookahead k=1 M=sqrt",
        "dvts M=4",
    }
    rows = rows_of(load_sharded(out))
    bon4 = [r for r in rows if r["method"] == "best_of_n" and r["budget"] == 4]
    by_hand_majority = sum(r["correct"][majority_vote(r["answers"])] for r in bon4) / 3
    scores = [[candidate_score(s, "min") for s in r["step_scores"]] for r in bon4]
    by_hand_weighted = (
        sum(r["correct"][weighted_best_of_n(r["answers"], sc)] for r, sc in zip(bon4, scores)) / 3
    )
    assert accuracy["majority"]["4"] == round(by_hand_majority, 4)
    assert accuracy["best_of_n_weighted"]["4"] == round(by_hand_weighted, 4)
    assert "| majority |" in (tmp_path / "sel" / "accuracy.md").read_text()
    assert (tmp_path / "sel" / "accuracy_vs_budget.png").stat().st_size > 10_000


def test_select_needs_bins_for_every_problem(search_run, tmp_path):
    import datasets

    out, _ = search_run
    difficulty = tmp_path / "difficulty"
    difficulty.mkdir()
    datasets.Dataset.from_dict(
        {"problem_id": ["nope"], "pass_at_1": [0.5], "num_samples": [4], "bin": [1]}
    ).to_parquet(str(difficulty / "difficulty.parquet"))
    with pytest.raises(InputError, match="no difficulty bin for 3"):
        run_stage("select", ["--search_dir", str(out), "--difficulty_dir", str(difficulty)])


def test_bad_search_options(tmp_path, prm_dir, small_policy_dir):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(InputError, match="problem set is empty"):
        run_stage(
            "search",
            ["--task", "gsm8k", "--dataset", str(empty), "--model_name_or_path", str(small_policy_dir),
             "--methods", "best_of_n", "--output_dir", str(tmp_path / "a")],
        )  # fmt: skip
    with pytest.raises(InputError, match="need a verifier"):
        run_stage(
            "search", ["--model_name_or_path", str(small_policy_dir), "--output_dir", str(tmp_path / "b")]
        )
    with pytest.raises(InputError, match="beam width"):
        run_stage("search", search_args(tmp_path / "c", prm_dir, small_policy_dir, "--beam_widths", "wide"))
    with pytest.raises(InputError, match="budgets must be positive"):
        run_stage("search", search_args(tmp_path / "d", prm_dir, small_policy_dir, "--budgets", "0", "4"))
    assert not any((tmp_path / name).exists() for name in "abcd")


@pytest.fixture(scope="module")
def revision_run(tmp_path_factory, prm_dir, small_policy_dir):
    """Revision chains of lengths 1, 2 and 4; the shipped policy stands in for a reviser (what is
    tested is the plumbing, not its skill)."""
    out = tmp_path_factory.mktemp("rev")
    args = search_args(out, prm_dir, small_policy_dir, "--methods", "revisions", "--reviser", str(small_policy_dir),
                       "--revision_lengths", "1", "2", "4")  # fmt: skip
    run_stage("search", args)
    return out


def test_revision_budgets_nest_with_their_exact_cost(revision_run):
    """Budget b of chain length L is the first b / L chains of L's largest budget; its row's cost is
    what those chains spent, and the search's totals count each attempt once."""
    rows = rows_of(load_sharded(revision_run))
    by_key = {(r["problem_id"], r["chain_length"], r["budget"]): r for r in rows}
    runs = set()
    for (problem, length, budget), row in by_key.items():
        top = by_key[(problem, length, 4)]
        runs.add((problem, length))
        assert row["completions"] == top["completions"][:budget]
        assert row["step_scores"] == top["step_scores"][:budget]
        assert row["policy_tokens"] == sum(top["num_tokens"][:budget])
        assert row["rounds"] == length
        assert 0 < row["prm_tokens"] <= top["prm_tokens"]
        if budget < 4:
            assert row["prm_tokens"] < top["prm_tokens"]
    stats = json.loads((revision_run / "stats.json").read_text())
    tops = [by_key[(p, length, 4)] for p, length in runs]
    assert stats["compute"]["policy_tokens"] == sum(r["policy_tokens"] for r in tops)
    assert stats["compute"]["verifier_tokens"] == sum(r["prm_tokens"] for r in tops)


def test_revision_chains_through_search_and_select(tmp_path, revision_run):
    out = revision_run
    rows = rows_of(load_sharded(out))
    first = [r for r in rows if r["problem_id"] == rows[0]["problem_id"]]
    assert sorted((r["budget"], r["chain_length"]) for r in first) == [
        (1, 1),
        (2, 1),
        (2, 2),
        (4, 1),
        (4, 2),
        (4, 4),
    ]
    assert len(rows) == 3 * 6
    for row in rows:
        length = row["chain_length"]
        assert row["width_setting"] == f"L={length}" and row["generations"] == row["budget"]
        assert row["subtrees"] == [c for c in range(row["budget"] // length) for _ in range(length)]
        assert row["positions"] == list(range(length)) * (row["budget"] // length)
        assert len(row["step_scores"]) == row["budget"]
    run_stage("select", ["--search_dir", str(out), "--output_dir", str(tmp_path / "sel")])
    summary = json.loads((tmp_path / "sel" / "accuracy.json").read_text())
    assert {"revisions L=2 majority", "revisions L=2 weighted", "revisions L=2 hierarchical"} <= set(
        summary["accuracy"]["all"]
    )
    # Each attempt once: per problem the largest budget's chains of each length (4 x L=1, 2 x L=2, 1 x L=4).
    assert summary["revisions"]["attempts_by_step"] == [3 * (4 + 2 + 1), 3 * (2 + 1), 3, 3]

    # ORM rows from those attempts, each with the prompt it was written from as its question.
    stats = run_stage(
        "orm-data", ["--search_dir", str(out), "--output_dir", str(tmp_path / "orm"), "--chain_length", "4"]
    )
    orm = rows_of(load_sharded(tmp_path / "orm"))
    chains = [r for r in rows if r["chain_length"] == 4]
    assert len(orm) == stats["num_rows"] == sum(1 for r in chains for t in r["completions"] if t.strip())
    for row in orm:
        # The history, then the question itself on the last line (the policy's own prompt).
        assert row["prompt"] == row["question"] + "\n" and row["question"].split("\n")[-1].startswith(
            "Start at"
        )
        # Attempt t saw at most t earlier attempts (fewer when the context forced some out).
        assert row["question"].count("Attempt:") <= row["position"]
        assert row["position"] > 0 or "Attempt:" not in row["question"]
        assert row["labels"] == [row["correct"]] * len(row["completions"])

    # A row whose verdicts no longer line up with its attempts is refused, never turned into labels.
    import shutil

    import pyarrow.parquet as pq

    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    table = pq.read_table(shard_path(broken, 0))
    rows0 = table.to_pylist()
    rows0[0]["correct"] = rows0[0]["correct"][1:]
    pq.write_table(pa_table(rows0, table.schema), shard_path(broken, 0))
    with pytest.raises(InputError, match="revisions row 0 .*differ in length"):
        run_stage("orm-data", ["--search_dir", str(broken), "--output_dir", str(tmp_path / "orm2")])


@pytest.mark.parametrize("prm_kind", ["token_classification", "likelihood"])
def test_orm_data_trains_a_last_step_orm_end_to_end(prm_kind, tmp_path, revision_run, small_policy_dir):
    """The README's path: ``ttc orm-data`` (bool labels, as TRL's stepwise datasets store them) ->
    ``ttc train-prm --train_on_last_step_only true``. Each held-out attempt is one evaluated step, its
    target the attempt's verdict, and the reported loss is the one recomputed here at the last step's
    separator token."""
    import datasets
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from ttcompute.trainers.training_data import split_by_problem

    orm_dir = tmp_path / "orm"
    run_stage("orm-data", ["--search_dir", str(revision_run), "--output_dir", str(orm_dir)])
    orm = load_sharded(orm_dir)
    assert str(orm.features["labels"]) == "List(Value('bool'))"
    assert 0 < sum(orm["correct"]) < len(orm)  # both verdicts occur, so a bool mix-up would show
    prm_out = tmp_path / "orm_model"
    log = run_stage(
        "train-prm",
        ["--model_name_or_path", str(small_policy_dir), "--dataset_name", str(orm_dir),
         "--prm_kind", prm_kind, "--train_on_last_step_only", "true", "--max_length", "512",
         "--max_steps", "2", "--eval_fraction", "0.34", "--report_to", "none", "--use_cpu", "true",
         "--save_strategy", "no", "--output_dir", str(prm_out)],
    )  # fmt: skip
    _, held = split_by_problem(orm, 0.34, seed=42)
    assert 0 < len(held) < len(orm)
    assert log["eval"]["eval_num_steps"] == len(held)  # one per attempt, not one per token or step
    if prm_kind == "likelihood":
        return
    tokenizer = AutoTokenizer.from_pretrained(prm_out)
    model = AutoModelForTokenClassification.from_pretrained(prm_out).eval()
    logits, targets = [], []
    for row in datasets.Dataset.from_list(list(held)):
        ids = tokenizer(row["prompt"]).input_ids
        for step in row["completions"]:
            ids += tokenizer(step + "\n\n", add_special_tokens=False).input_ids
        assert len(ids) <= 512
        with torch.no_grad():
            logits.append(model(torch.tensor([ids])).logits[0, -1, 0].item())
        targets.append(float(row["correct"]))
    loss = torch.nn.functional.binary_cross_entropy_with_logits(torch.tensor(logits), torch.tensor(targets))
    assert log["eval"]["eval_loss"] == pytest.approx(loss.item(), abs=1e-4)


# Slow (~22 s): the default suite keeps tests/test_trajectories.py's SIGKILL test of the same shard
# writer, and this file's lost-shard resume test.
@pytest.mark.slow
def test_sigkill_mid_search_then_rerun_gives_the_uninterrupted_output(
    search_run, tmp_path, prm_dir, small_policy_dir
):
    from killing import kill_after_shards, run_ttc, shard_bytes

    out, _ = search_run
    killed = tmp_path / "killed"
    args = ["search", *search_args(killed, prm_dir, small_policy_dir)]
    done_at_kill = kill_after_shards(args, killed, shards=3)
    total = len(shard_bytes(out))
    assert 3 <= len(done_at_kill) < total
    kept = shard_bytes(killed)
    (killed / ".shard-00007.parquet.99999.tmp").write_bytes(b"PAR1 half a shard")  # a kill mid-write
    run_ttc(args)
    after = shard_bytes(killed)
    assert {name: after[name] for name in kept} == kept  # finished shards are not redone
    assert after == shard_bytes(out)  # byte for byte the uninterrupted run's shards
    assert json.loads((killed / "stats.json").read_text()) == json.loads((out / "stats.json").read_text())


def test_merge_joins_worker_directories_and_writes_the_same_stats(search_run, tmp_path):
    out, _ = search_run
    workers = [tmp_path / "node0", tmp_path / "node1"]
    names = sorted(p.name for p in out.glob("shard-*.parquet"))
    for i, worker in enumerate(workers):  # as two nodes of `--shard i/2` would leave them
        worker.mkdir()
        for name in ("manifest.json", "ttc_config.yaml", *names[i::2]):
            (worker / name).write_bytes((out / name).read_bytes())
    merged = tmp_path / "merged"
    partial = run_stage("merge", ["--inputs", str(workers[0]), "--output_dir", str(merged)])
    assert partial["missing"] == list(range(1, len(names), 2)) and not (merged / "stats.json").exists()
    result = run_stage("merge", ["--inputs", str(tmp_path / "node*"), "--output_dir", str(merged)])
    assert result["missing"] == [] and result["already_present"] == len(names[::2])
    assert result["copied"] == len(names[1::2]) and result["skipped"] == len(names[::2])
    assert {p.name: p.read_bytes() for p in merged.glob("shard-*.parquet")} == {
        n: (out / n).read_bytes() for n in names
    }
    assert json.loads((merged / "stats.json").read_text()) == json.loads((out / "stats.json").read_text())
    # A directory of another run is refused, and the merged output is left as it was.
    other = tmp_path / "other"
    other.mkdir()
    manifest = json.loads((out / "manifest.json").read_text())
    (other / "manifest.json").write_text(json.dumps({**manifest, "config_hash": "0" * 16}))
    with pytest.raises(InputError, match="another run"):
        run_stage("merge", ["--inputs", str(workers[0]), str(other), "--output_dir", str(merged)])


# --- best-of-N's first candidates from a sample output (a prm_probe's samples, reused) -----------


@pytest.fixture(scope="module")
def probe_samples(tmp_path_factory, small_policy_dir):
    """Two samples of the search's problems, drawn by ``ttc sample`` with the search's options."""
    out = tmp_path_factory.mktemp("probe")
    run_stage(
        "sample",
        ["--model_name_or_path", str(small_policy_dir), "--num_problems", "3", "--problem_seed", "4242",
         "--max_ops", "4", "--max_new_tokens", "120", "--num_samples", "2", "--seed", "9",
         "--output_dir", str(out)],
    )  # fmt: skip
    return out


def test_best_of_n_reuses_initial_samples_as_its_first_candidates(
    tmp_path, prm_dir, small_policy_dir, probe_samples
):
    out = tmp_path / "reuse"
    run_stage("search", search_args(out, prm_dir, small_policy_dir, "--methods", "best_of_n",
                                    "--initial_samples_dir", str(probe_samples)))  # fmt: skip
    drawn = {row["problem_id"]: row for row in rows_of(load_sharded(probe_samples))}
    rows = rows_of(load_sharded(out))
    assert sorted({r["budget"] for r in rows}) == [1, 2, 4]
    for row in rows:
        sample = drawn[row["problem_id"]]
        reused = min(2, row["budget"])
        assert row["reused_samples"] == reused
        assert row["completions"][:reused] == sample["completions"][:reused]
        assert row["num_tokens"][:reused] == sample["num_tokens"][:reused]
        # The row's cost counts its reused candidates as its own: the same as had it drawn them.
        assert row["policy_tokens"] == sum(row["num_tokens"])
        assert len(row["completions"]) == len(row["step_scores"]) == row["budget"]
    top = {r["problem_id"]: r for r in rows if r["budget"] == 4}
    for row in rows:  # smaller budgets are still the largest's first candidates
        assert row["completions"] == top[row["problem_id"]]["completions"][: row["budget"]]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--temperature", "0.7"], "temperature=1.0, this search samples with temperature=0.7"),
        (["--max_new_tokens", "100"], "max_new_tokens=120, this search samples with max_new_tokens=100"),
        (["--prompt_template", "Q: {question}\nA:"], "sampled with prompts"),
        (["--problem_seed", "4243"], "no samples of problem"),
        (["--initial_samples", "3"], "3 samples per problem to reuse, but problem"),
        (["--initial_samples", "2", "--budgets", "1"], "the largest budget is 1"),
    ],
)
def test_initial_samples_that_are_not_this_searchs_are_refused(
    tmp_path, prm_dir, small_policy_dir, probe_samples, extra, message
):
    out = tmp_path / "refused"
    args = search_args(out, prm_dir, small_policy_dir, "--methods", "best_of_n", "--initial_samples_dir",
                       str(probe_samples), *extra)  # fmt: skip
    with pytest.raises(InputError, match=message):
        run_stage("search", args)
    assert not out.exists()


def test_initial_samples_of_another_policy_are_refused(tmp_path, prm_dir, small_policy_dir, probe_samples):
    """Compared by content (core/checkpoint_identity.py): a copy of the policy elsewhere is the policy
    that drew the samples; the same path holding other weights is not."""
    import shutil

    other = tmp_path / "other_policy"
    shutil.copytree(small_policy_dir, other)
    weights = bytearray((other / "model.safetensors").read_bytes())
    weights[-1] ^= 1
    (other / "model.safetensors").write_bytes(bytes(weights))
    out = tmp_path / "refused"
    args = search_args(
        out, prm_dir, other, "--methods", "best_of_n", "--initial_samples_dir", str(probe_samples)
    )
    with pytest.raises(InputError, match="not this search's policy"):
        run_stage("search", args)
    assert not out.exists()
    copy = tmp_path / "copy_of_the_policy"
    shutil.copytree(small_policy_dir, copy)
    run_stage("search", search_args(tmp_path / "accepted", prm_dir, copy, "--methods", "best_of_n",
                                    "--initial_samples_dir", str(probe_samples)))  # fmt: skip
    assert (tmp_path / "accepted" / "manifest.json").is_file()


def test_revision_temperature_samples_the_revisions_only(tmp_path, prm_dir, small_policy_dir):
    """``--revision_temperature 0``: each chain's first attempt is drawn as before (same seeds, same
    temperature), every revision after it is greedy -- the same context gives the same revision."""
    common = ("--methods", "revisions", "--reviser", str(small_policy_dir), "--revision_lengths", "2",
              "--budgets", "8")  # fmt: skip
    run_stage("search", search_args(tmp_path / "t1", prm_dir, small_policy_dir, *common))
    run_stage(
        "search",
        search_args(tmp_path / "t0", prm_dir, small_policy_dir, *common, "--revision_temperature", "0"),
    )
    hot = {r["problem_id"]: r for r in rows_of(load_sharded(tmp_path / "t1"))}
    cool = {r["problem_id"]: r for r in rows_of(load_sharded(tmp_path / "t0"))}
    assert "revision_temperature: 0.0" in (tmp_path / "t0" / "ttc_config.yaml").read_text()
    pairs = 0
    for problem, row in cool.items():
        first = [c for c, p in zip(row["completions"], row["positions"]) if p == 0]
        second = [c for c, p in zip(row["completions"], row["positions"]) if p == 1]
        assert first == [c for c, p in zip(hot[problem]["completions"], hot[problem]["positions"]) if p == 0]
        for i in range(len(first)):
            for j in range(i):
                if first[i] == first[j]:
                    assert second[i] == second[j]
                    pairs += 1
    assert pairs > 0  # some chains did start alike (the check above ran)
