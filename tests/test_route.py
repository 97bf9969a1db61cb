"""``ttc route``: the compute-optimal policy file of ``ttc compute-optimal`` run on problems it never saw.

A tiny pipeline on the arithmetic task (sample -> difficulty with the question predictor, trained on
samples of other problems -> search -> select -> compute-optimal), then ``ttc route`` on problems of
another seed: each problem gets its bin's strategy, its answer is what that search setting and rule
give when run directly, the compute adds up, a partial run resumes, and bad input is refused before
anything is written.
"""

from __future__ import annotations

import json
import os
import shutil
import zlib
from collections import defaultdict
from itertools import product
from pathlib import Path

import pytest
from conftest import run_from

from ttcompute.cli import run_stage
from ttcompute.core.budget import resolve_beam_width
from ttcompute.core.errors import InputError
from ttcompute.core.grading import extract_answer, is_equivalent
from ttcompute.core.recorded_paths import resolve_tree
from ttcompute.core.selection import best_of_n, majority_vote, weighted_best_of_n
from ttcompute.core.shards import load_sharded, read_resolved_config, shard_path
from ttcompute.core.steps import aggregate
from ttcompute.data_gen.difficulty import assign_bins
from ttcompute.data_gen.question_probe import QuestionProbe, prompt_features
from ttcompute.eval.routing_policy import load_routing_policy, rule_table, save_routing_policy
from ttcompute.eval.search.search_config import SearchConfig
from ttcompute.eval.search.stage import SearchRun, search_chunk
from ttcompute.models.backends import load_backend
from ttcompute.models.generation import build_prompt
from ttcompute.models.generation_config import GeneratorConfig
from ttcompute.models.prm_formats import load_prm
from ttcompute.tasks.problem_config import ProblemConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TASK = ["--max_ops", "3"]  # problem options, shared by every stage
GENERATION = ["--max_new_tokens", "80"]
NEW = ["--num_problems", "6", "--problem_seed", "31"]  # problems no earlier stage saw


# --- the policy builder on hand-made selections ----------------------------------------------------


def test_the_rule_is_the_brute_force_best_strategy_of_each_bin_on_all_its_problems():
    problems = {f"p{i}": 1 + i % 3 for i in range(9)}
    strategies = ("majority", "best_of_n_weighted", "beam_search M=4", "unknown")
    records = []
    for (p, b), s, budget in product(problems.items(), strategies, (2, 4)):
        # Deterministic, unlike patterns per bin, strategy and budget; "unknown" (no settings) is best.
        correct = s == "unknown" or (zlib.crc32(f"{p}:{s}:{budget}".encode()) % 7) < 2 + b + strategies.index(
            s
        )
        flops = 10.0 * budget * (1 + strategies.index(s))
        records.append(
            {"problem_id": p, "strategy": s, "budget": budget, "correct": correct, "total_flops": flops}
        )
    # A strategy missing one problem of bin 1 at budget 4 does not compete there.
    records = [
        r
        for r in records
        if not (r["strategy"] == "beam_search M=4" and r["problem_id"] == "p0" and r["budget"] == 4)
    ]
    deployable = set(strategies[:3])
    rule, curves = rule_table(records, problems, deployable)
    for budget, group in product((2, 4), ("1", "2", "3")):
        members = [p for p, b in problems.items() if str(b) == group]
        scores = {}
        for s in deployable:
            rows = [
                r
                for r in records
                if r["strategy"] == s and r["budget"] == budget and r["problem_id"] in members
            ]
            if len(rows) == len(members):
                accuracy = sum(r["correct"] for r in rows) / len(rows)
                scores[s] = (-accuracy, sum(r["total_flops"] for r in rows) / len(rows), s)
        best = min(scores, key=scores.get)
        assert rule[str(budget)][group]["strategy"] == best
        assert rule[str(budget)][group]["accuracy"] == pytest.approx(-scores[best][0])
        assert rule[str(budget)][group]["num_problems"] == len(members)
        assert set(curves[group]) >= set(scores)
    assert "beam_search M=4" not in {s for s, c in curves["1"].items() if "4" in c}


# --- the pipeline ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, small_policy_dir, likelihood_prm_dir):
    """Every stage started from a directory of its own, its paths given relative to there (issue 39);
    the search reuses the samples as best-of-N's first candidates, as the demo does."""
    root = tmp_path_factory.mktemp("route")
    policy = str(small_policy_dir)
    cwds = iter(root.parent / f"{root.name}-cwd{i}" / ("x" * (i % 3)) for i in range(100))

    def stage(name, args):
        return run_from(next(cwds), name, args)

    def sample(name, seed, n):
        stage("sample", ["--model_name_or_path", policy, "--num_problems", str(n), "--problem_seed", str(seed),
                         "--num_samples", "2", "--device", "cpu", *TASK, *GENERATION, "--output_dir", str(root / name)])  # fmt: skip
        return root / name

    train = sample("probe_train", 7, 20)
    samples = sample("samples", 11, 8)
    stage(
        "difficulty",
        ["--samples_dir", str(samples), "--predictor", "question", "--probe_train_samples_dir", str(train),
         "--num_bins", "2", "--device", "cpu", "--output_dir", str(root / "difficulty")],
    )  # fmt: skip
    stage(
        "search",
        ["--model_name_or_path", policy, "--prm", str(likelihood_prm_dir), "--num_problems", "8",
         "--problem_seed", "11", *TASK, *GENERATION, "--max_step_tokens", "30", "--budgets", "1", "2",
         "--methods", "best_of_n", "beam_search", "--beam_widths", "2", "--device", "cpu",
         "--initial_samples_dir", str(samples), "--problems_per_shard", "8", "--output_dir", str(root / "search")],
    )  # fmt: skip
    stage("select", ["--search_dir", str(root / "search"), "--difficulty_dir", str(root / "difficulty"),
                     "--output_dir", str(root / "select")])  # fmt: skip
    stage(
        "compute-optimal",
        ["--select_dirs", str(root / "select"), "--difficulty_dir", str(root / "difficulty"),
         "--bootstrap_resamples", "100", "--output_dir", str(root / "co")],
    )  # fmt: skip
    policy_file = root / "co" / "routing_policy.json"
    out = root / "routed"
    stats = stage(
        "route",
        ["--policy", str(policy_file), *NEW, *TASK, "--budget", "2", "--problems_per_shard", "4",
         "--output_dir", str(out)],
    )  # fmt: skip
    return {"root": root, "policy_file": policy_file, "out": out, "stats": stats, "prm": likelihood_prm_dir}


def route_args(pipeline, out, *extra):
    return ["--policy", str(pipeline["policy_file"]), *NEW, *TASK, "--budget", "2", "--problems_per_shard", "4",
            "--output_dir", str(out), *extra]  # fmt: skip


def test_the_policy_file_records_what_routing_needs(pipeline):
    policy = json.loads(pipeline["policy_file"].read_text())
    search = read_resolved_config(pipeline["root"] / "search")
    loaded = load_routing_policy(pipeline["policy_file"])  # recorded paths resolved against the file
    assert loaded["policy"]["model_name_or_path"] == search["model_name_or_path"]
    assert loaded["searches"][0]["search"]["prm"] == str(pipeline["prm"])
    assert policy["policy"]["prompt_contract"] == {
        "prompt_template": "{question}\n", "use_chat_template": False, "system_prompt": None
    }  # fmt: skip
    assert policy["searches"][0]["problems"]["task"] == "arithmetic"
    predictor = policy["predictor"]
    edges = json.loads((pipeline["root"] / "difficulty" / "bin_edges.json").read_text())["edges"]
    assert predictor["kind"] == "question" and predictor["edges"] == edges
    assert predictor["probe_file"] == "question_probe.json"
    assert (pipeline["policy_file"].parent / "question_probe.json").read_text() == (
        pipeline["root"] / "difficulty" / "question_probe.json"
    ).read_text()
    assert set(policy["rule"]) == {"1", "2"}
    strategies = json.loads((pipeline["root"] / "select" / "strategies.json").read_text())["strategies"]
    static = {name for name, settings in strategies.items() if settings["rule"] != "adaptive"}
    assert static == {"majority", "best_of_n", "best_of_n_weighted", "beam_search M=2"}
    assert all(strategies[name]["adaptive"] == name for name in set(strategies) - static)
    assert strategies["beam_search M=2"]["beam_width"] == {"1": 1, "2": 2}
    for per_bin in policy["rule"].values():
        for entry in per_bin.values():
            assert policy["strategies"][entry["strategy"]]["rule"] in (
                "majority",
                "best_of_n",
                "best_of_n_weighted",
                "tree",
            )


def _recompute(pipeline, budget=2, policy_file=None):
    """Independently: bins from the probe and the fixed edges, then each chunk's groups of one setting
    searched directly with search_chunk and the selection rule applied by core.selection."""
    policy = json.loads((policy_file or pipeline["policy_file"]).read_text())
    recorded = read_resolved_config(pipeline["root"] / "search")
    gen_args = GeneratorConfig(**{k: recorded[k] for k in ("model_name_or_path", "max_new_tokens", "temperature", "top_p")},
                               device="cpu")  # fmt: skip
    config = SearchConfig(
        **{k: recorded[k] for k in ("prm", "max_step_tokens", "step_separator", "seed", "max_rounds")}
    )
    backend = load_backend("transformers", gen_args.model_name_or_path, device="cpu")
    prm = load_prm(config.prm, device="cpu")
    problems = ProblemConfig(num_problems=6, problem_seed=31, max_ops=3).load()
    prompts = [build_prompt(p.question, gen_args.prompt_contract(), backend.tokenizer) for p in problems]
    probe = QuestionProbe.load(pipeline["policy_file"].parent / "question_probe.json")
    features, _ = prompt_features(backend, prompts, [probe.layer])
    bins = assign_bins([float(x) for x in probe.predict(features)], policy["predictor"]["edges"])
    expected = {}
    for chunk in range(2):
        groups = defaultdict(list)
        for i in range(chunk * 4, min(chunk * 4 + 4, 6)):
            strategy = policy["rule"][str(budget)][str(bins[i])]["strategy"]
            groups[
                (
                    strategy in ("best_of_n", "best_of_n_weighted"),
                    strategy == "majority",
                    strategy.startswith("beam"),
                )
            ].append((i, strategy))
        for members in groups.values():
            strategy = members[0][1]
            settings = policy["strategies"][strategy]
            if settings["method"] == "best_of_n":
                run = SearchRun("best_of_n", budget, budget)
            else:
                width = resolve_beam_width(budget, settings["width_setting"])
                run = SearchRun("beam_search", budget, budget, width, 0, "last", (settings["width_setting"],))
            group = [problems[i] for i, _ in members]
            uses_prm = strategy != "majority"
            chunk_config = SearchConfig(
                **{**vars(config), "budgets": [budget], "methods": ["best_of_n", "beam_search"]}
            )
            ((searched, outcomes),) = search_chunk(
                group, [prompts[i] for i, _ in members], run, chunk_config, backend, prm if uses_prm else None,
                gen_args, chunk,
            )  # fmt: skip
            assert searched == budget
            for (i, strategy), outcome in zip(members, outcomes):
                answers = [extract_answer(c.text) for c in outcome.candidates]
                scores = [
                    aggregate(c.step_scores, "last") if c.step_scores else 0.0 for c in outcome.candidates
                ]
                if strategy == "majority":
                    pick = majority_vote(answers)
                elif strategy == "best_of_n":
                    pick = best_of_n(scores)
                else:  # best_of_n_weighted and a tree search's final beams
                    pick = weighted_best_of_n(answers, scores)
                answer = answers[pick]
                expected[problems[i].problem_id] = {
                    "bin": bins[i],
                    "strategy": strategy,
                    "answer": answer,
                    "correct": answer is not None and is_equivalent(answer, problems[i].answer),
                    "policy_flops": 2 * backend.num_parameters * outcome.policy_tokens,
                    "prm_flops": 2 * prm.num_parameters * outcome.prm_tokens if uses_prm else 0,
                }
    return expected, bins


def test_each_new_problem_runs_its_bins_strategy_and_gets_what_that_search_gives(pipeline):
    rows = list(load_sharded(pipeline["out"]))
    assert [r["problem_id"] for r in rows] == [p.problem_id for p in ProblemConfig(**dict(zip(
        ("num_problems", "problem_seed", "max_ops"), (6, 31, 3)))).load()]  # fmt: skip
    seen = {p for p in load_sharded(pipeline["root"] / "search")["problem_id"]}
    assert not seen & {r["problem_id"] for r in rows}  # problems the policy never saw
    expected, bins = _recompute(pipeline)
    for row in rows:
        want = expected[row["problem_id"]]
        got = {k: row[k] for k in want}
        assert got == want
        assert row["budget"] == 2 and row["generations"] == 2
        assert row["total_flops"] == row["policy_flops"] + row["prm_flops"] + row["predictor_flops"]
        assert row["predictor_flops"] > 0 and row["policy_flops"] > 0
    stats = pipeline["stats"]
    assert stats["num_problems"] == 6
    assert stats["accuracy"] == round(sum(r["correct"] for r in rows) / 6, 4)
    assert stats["compute"]["total_flops"] == sum(r["total_flops"] for r in rows)
    assert sum(stats["strategies"].values()) == 6 and stats["generations"] == 12
    assert json.loads((pipeline["out"] / "stats.json").read_text())["accuracy"] == stats["accuracy"]


def test_a_tree_search_strategy_is_routed_like_its_search_too(pipeline, tmp_path):
    out = tmp_path / "budget1"
    run_stage("route", route_args(pipeline, out, "--budget", "1"))
    rows = list(load_sharded(out))
    expected, _ = _recompute(pipeline, budget=1)
    assert {row["problem_id"]: {k: row[k] for k in expected[row["problem_id"]]} for row in rows} == expected
    assert "beam_search" in {row["method"] for row in rows}  # else this proves less


def test_best_of_n_strategies_are_routed_like_their_search_too(pipeline, tmp_path):
    """The rule edited to weighted best-of-N in one bin and majority vote in the other (the searched
    problems chose tree search everywhere): each problem gets what its best-of-N candidates give."""

    def edit(policy):
        for rule in policy["rule"].values():
            for group, entry in rule.items():
                entry["strategy"] = "best_of_n_weighted" if group == "1" else "majority"
        for name in ("best_of_n_weighted", "majority"):
            policy["strategies"][name] = json.loads(
                (pipeline["root"] / "select" / "strategies.json").read_text()
            )["strategies"][name] | {"search": 0}

    path = _edited_policy(pipeline, tmp_path, edit)
    out = tmp_path / "bon"
    run_stage("route", ["--policy", str(path), *NEW, *TASK, "--budget", "2", "--problems_per_shard", "4",
                        "--output_dir", str(out)])  # fmt: skip
    rows = list(load_sharded(out))
    expected, _ = _recompute(pipeline, budget=2, policy_file=path)
    assert {row["problem_id"]: {k: row[k] for k in expected[row["problem_id"]]} for row in rows} == expected
    assert {row["method"] for row in rows} == {"best_of_n"}


def test_a_partial_run_resumes_to_the_same_answers(pipeline, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(pipeline["out"], copy)
    shard_path(copy, 1).unlink()
    (copy / "stats.json").unlink()
    kept = shard_path(copy, 0).stat().st_mtime_ns
    run_stage("route", route_args(pipeline, copy))
    assert shard_path(copy, 0).stat().st_mtime_ns == kept  # not rebuilt
    assert list(load_sharded(copy)) == list(load_sharded(pipeline["out"]))
    assert json.loads((copy / "stats.json").read_text()) == json.loads(
        (pipeline["out"] / "stats.json").read_text()
    )


def test_per_problem_allocation_spends_at_most_the_total(pipeline, tmp_path):
    out = tmp_path / "alloc"
    stats = run_stage("route", route_args(pipeline, out, "--allocation", "per_problem"))
    rows = list(load_sharded(out))
    policy = json.loads(pipeline["policy_file"].read_text())
    assert sum(r["budget"] for r in rows) <= 2 * 6 and stats["generations"] == sum(
        r["generations"] for r in rows
    )
    for row in rows:
        assert row["strategy"] == policy["rule"][str(row["budget"])][str(row["bin"])]["strategy"]


def _edited_policy(pipeline, tmp_path, edit):
    policy = resolve_tree(json.loads(pipeline["policy_file"].read_text()), pipeline["policy_file"])
    edit(policy)
    path = tmp_path / "policy" / "routing_policy.json"
    path.parent.mkdir(exist_ok=True)
    save_routing_policy(policy, path)  # its paths relative to where it now is
    shutil.copyfile(
        pipeline["policy_file"].parent / "question_probe.json", path.parent / "question_probe.json"
    )
    return path


def _set(keys, value):
    def edit(policy):
        target = policy
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value

    return edit


@pytest.mark.parametrize(
    "extra, edit, message",
    [
        ([], _set(("format",), "something-else"), "not a routing policy"),
        ([], _set(("rule",), {"2": {"1": {}}}), "malformed routing policy"),
        ([], _set(("predictor", "kind"), "oracle"), "oracle needs answers"),
        (["--model_name_or_path", "other/policy"], None, "is not the policy of"),
        (["--use_chat_template", "true"], None, "contradicts the prompt contract"),
        ([], _set(("searches", 0, "problems", "task"), "gsm8k"), "built on task gsm8k"),
        ([], _set(("predictor", "probe_task"), "math"), "predictor was trained on task math"),
        ([], _set(("policy", "prompt_contract", "prompt_template"), "Q: {question}\n"), "trained on prompts"),
        ([], _set(("policy", "model_name_or_path"), "elsewhere/policy"), "a question probe of policy"),
        (["--budget", "3"], None, "not a budget of"),
        (["--budget", "0"], None, "budget"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(pipeline, tmp_path, extra, edit, message):
    policy_file = _edited_policy(pipeline, tmp_path, edit) if edit else pipeline["policy_file"]
    out = tmp_path / "out"
    args = ["--policy", str(policy_file), *NEW, *TASK, "--output_dir", str(out), *extra]
    if "--budget" not in extra:
        args += ["--budget", "2"]
    with pytest.raises(InputError) as err:
        run_stage("route", args)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert not out.exists()


def test_a_budget_below_the_cheapest_is_refused_for_per_problem_allocation_too(pipeline, tmp_path):
    policy_file = _edited_policy(pipeline, tmp_path, lambda p: p["rule"].pop("1"))
    out = tmp_path / "out"
    with pytest.raises(InputError, match="below the cheapest budget"):
        run_stage("route", ["--policy", str(policy_file), *NEW, *TASK, "--budget", "1", "--allocation",
                            "per_problem", "--output_dir", str(out)])  # fmt: skip
    assert not out.exists()


def test_a_task_read_from_another_source_is_refused(pipeline, tmp_path):
    with pytest.raises(InputError, match="built on task arithmetic"):
        run_stage("route", ["--policy", str(pipeline["policy_file"]), "--task", "gsm8k", "--dataset", "x.jsonl",
                            "--budget", "2", "--output_dir", str(tmp_path / "out")])  # fmt: skip
    assert not (tmp_path / "out").exists()


def test_a_prm_probe_policy_samples_and_scores_new_questions_and_charges_both(pipeline, tmp_path):
    root = pipeline["root"]
    run_stage(
        "difficulty",
        ["--samples_dir", str(root / "samples"), "--predictor", "prm_probe", "--prm", str(pipeline["prm"]),
         "--probe_samples", "2", "--num_bins", "2", "--device", "cpu", "--output_dir", str(tmp_path / "difficulty")],
    )  # fmt: skip
    run_stage(
        "compute-optimal",
        ["--select_dirs", str(root / "select"), "--difficulty_dir", str(tmp_path / "difficulty"),
         "--bootstrap_resamples", "100", "--output_dir", str(tmp_path / "co")],
    )  # fmt: skip
    policy = json.loads((tmp_path / "co" / "routing_policy.json").read_text())
    assert policy["predictor"]["kind"] == "prm_probe" and "probe_file" not in policy["predictor"]
    out = tmp_path / "routed"
    run_stage("route", ["--policy", str(tmp_path / "co" / "routing_policy.json"), *NEW, *TASK, "--budget", "2",
                        "--output_dir", str(out)])  # fmt: skip
    rows = list(load_sharded(out))
    edges = policy["predictor"]["edges"]
    assert [r["bin"] for r in rows] == assign_bins([r["predicted_score"] for r in rows], edges)
    for row in rows:
        assert 0.0 <= row["predicted_score"] <= 1.0
        assert row["strategy"] == policy["rule"]["2"][str(row["bin"])]["strategy"]
        assert row["total_flops"] == row["policy_flops"] + row["prm_flops"] + row["predictor_flops"]
        # Two samples of the policy and their PRM scoring: more than a prompt's forward pass.
        assert row["predictor_flops"] > 2 * 137_792 * 20


def test_an_oracle_binned_policy_is_written_but_not_routed(pipeline, tmp_path):
    root = pipeline["root"]
    run_stage("difficulty", ["--samples_dir", str(root / "samples"), "--num_bins", "2",
                             "--output_dir", str(tmp_path / "difficulty")])  # fmt: skip
    run_stage(
        "compute-optimal",
        ["--select_dirs", str(root / "select"), "--difficulty_dir", str(tmp_path / "difficulty"),
         "--bootstrap_resamples", "100", "--output_dir", str(tmp_path / "co")],
    )  # fmt: skip
    policy_file = tmp_path / "co" / "routing_policy.json"
    assert json.loads(policy_file.read_text())["predictor"]["kind"] == "oracle"
    with pytest.raises(InputError, match="oracle needs answers"):
        run_stage("route", ["--policy", str(policy_file), *NEW, *TASK, "--budget", "2",
                            "--output_dir", str(tmp_path / "out")])  # fmt: skip
    assert not (tmp_path / "out").exists()


def test_the_loaded_policy_points_at_its_probe(pipeline):
    policy = load_routing_policy(pipeline["policy_file"])
    assert policy["predictor"]["probe_file"] == str(pipeline["policy_file"].parent / "question_probe.json")


def test_a_revisions_strategy_is_routed_to_its_nested_chains(pipeline, tmp_path, small_policy_dir):
    """A policy whose rule gives every bin revision chains (L = 2) at budget 2: each new problem gets
    exactly what ``ttc search``'s revisions run at budget 2 (one chain of two attempts) and weighted
    best-of-N over its attempts give. The shipped policy stands in for a reviser (plumbing, not skill)."""
    from ttcompute.eval.search.revision_chains import revision_chains
    from ttcompute.eval.search.stage import revisions_seed

    root, reviser = pipeline["root"], str(small_policy_dir)
    run_stage(
        "search",
        ["--model_name_or_path", reviser, "--prm", str(pipeline["prm"]), "--reviser", reviser,
         "--methods", "revisions", "--revision_lengths", "1", "2", "--num_problems", "8", "--problem_seed", "11",
         *TASK, *GENERATION, "--budgets", "1", "2", "--problems_per_shard", "8", "--output_dir", str(tmp_path / "rs")],
    )  # fmt: skip
    run_stage("select", ["--search_dir", str(tmp_path / "rs"), "--difficulty_dir", str(root / "difficulty"),
                         "--output_dir", str(tmp_path / "rsel")])  # fmt: skip
    run_stage("compute-optimal", ["--select_dirs", str(root / "select"), str(tmp_path / "rsel"), "--difficulty_dir",
              str(root / "difficulty"), "--bootstrap_resamples", "100", "--output_dir", str(tmp_path / "co")])  # fmt: skip
    path = tmp_path / "co" / "routing_policy.json"
    policy = resolve_tree(json.loads(path.read_text()), path)  # recorded paths made absolute
    searches = [s["search_dir"] for s in policy["searches"]]
    assert searches == [str((root / "search").resolve()), str((tmp_path / "rs").resolve())]
    name = "revisions L=2 weighted"
    policy["strategies"][name] = json.loads((tmp_path / "rsel" / "strategies.json").read_text())[
        "strategies"
    ][name]
    policy["strategies"][name]["search"] = 1
    for entry in policy["rule"]["2"].values():
        entry["strategy"] = name
    save_routing_policy(policy, path)
    run_stage("route", ["--policy", str(path), *NEW, *TASK, "--budget", "2", "--problems_per_shard", "6",
                        "--output_dir", str(tmp_path / "routed")])  # fmt: skip
    rows = list(load_sharded(tmp_path / "routed"))
    assert {r["strategy"] for r in rows} == {name} and all(r["generations"] == 2 for r in rows)

    backend = load_backend("transformers", reviser, device="cpu")
    prm = load_prm(str(pipeline["prm"]), device="cpu")
    problems = ProblemConfig(num_problems=6, problem_seed=31, max_ops=3).load()
    seed = revisions_seed(0, 2)
    outcomes = revision_chains([p.question for p in problems], backend, prm, num_chains=1, chain_length=2,
                               max_tokens=80, seed=seed, problem_ids=[p.problem_id for p in problems])  # fmt: skip
    for row, problem, outcome in zip(rows, problems, outcomes):
        answers = [extract_answer(c.text) for c in outcome.candidates]
        scores = [aggregate(c.step_scores, "last") if c.step_scores else 0.0 for c in outcome.candidates]
        assert row["answer"] == answers[weighted_best_of_n(answers, scores)], problem.problem_id
        assert row["policy_flops"] == 2 * backend.num_parameters * outcome.policy_tokens
        assert row["prm_flops"] == 2 * prm.num_parameters * outcome.prm_tokens


def test_a_moved_run_routes_from_another_directory_and_an_old_policy_still_reads(
    pipeline, tmp_path, monkeypatch, caplog
):
    """Every path in the policy is relative to it (core/recorded_paths.py): the run and the PRM it
    names, copied together to another depth, route from an unrelated working directory with the
    original run out of the way; a policy written before the rule reads its paths from the working
    directory, with a warning."""
    import logging
    import shutil

    root, prm = pipeline["root"], Path(pipeline["prm"])
    policy = json.loads(pipeline["policy_file"].read_text())
    assert policy["searches"][0]["search_dir"] == "../search"
    assert "/searches/0/search_dir" in policy["recorded_paths"]
    moved = tmp_path / "x" / "y" / "z"
    shutil.copytree(root, moved / root.name)
    shutil.copytree(prm, moved / prm.name)  # the checkpoint sits beside the run, as it did
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    away = root.with_name(root.name + "_away")
    root.rename(away)
    try:
        run_stage("route", ["--policy", str(moved / root.name / "co" / "routing_policy.json"), *NEW, *TASK,
                            "--budget", "2", "--problems_per_shard", "6", "--output_dir", "out"])  # fmt: skip
    finally:
        away.rename(root)
    assert (tmp_path / "cwd" / "out" / "manifest.json").is_file()

    # Before the rule: paths as typed (relative to where compute-optimal ran) and no recorded_paths.
    old = resolve_tree(json.loads(pipeline["policy_file"].read_text()), pipeline["policy_file"])
    monkeypatch.chdir(root.parent)
    typed = os.path.relpath(old["searches"][0]["search_dir"])
    old["searches"][0]["search_dir"] = typed
    (tmp_path / "old").mkdir()
    old_file = tmp_path / "old" / "routing_policy.json"
    old_file.write_text(json.dumps(old))
    shutil.copy(root / "co" / "question_probe.json", tmp_path / "old")
    with caplog.at_level(logging.WARNING):
        loaded = load_routing_policy(old_file)
    assert loaded["searches"][0]["search_dir"] == typed and Path(typed).is_dir()
    assert "written before recorded paths were stored relative to it" in caplog.text
    assert str(old_file) in caplog.text


def test_an_exported_bundle_routes_anywhere_and_a_changed_file_is_refused(pipeline, tmp_path, monkeypatch):
    """``--export_policy``: the policy, its probe and every local checkpoint, copied and checksummed;
    copied elsewhere it routes with the run and the PRM out of the way; a changed byte is refused."""
    import shutil

    from ttcompute.eval.policy_bundle import bundle_listing, export_bundle

    root, prm = pipeline["root"], Path(pipeline["prm"])
    exported = export_bundle(pipeline["policy_file"], tmp_path / "bundle")
    print(f"\n{bundle_listing(tmp_path / 'bundle')}\n{exported['bytes']:,} bytes")
    copy = tmp_path / "elsewhere" / "deployed"
    shutil.copytree(tmp_path / "bundle", copy)
    policy = json.loads((copy / "routing_policy.json").read_text())
    assert policy["searches"][0]["search"]["prm"] == f"checkpoints/{prm.name}"
    assert policy["policy"]["model_name_or_path"].startswith("checkpoints/")
    assert policy["searches"][0]["search_dir"] is None  # provenance, not shipped
    assert set(policy["bundle"]["files"]) == {
        p.relative_to(copy).as_posix()
        for p in copy.rglob("*")
        if p.is_file() and p.name != "routing_policy.json"
    }
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    away = [(root, root.with_name(root.name + "_away")), (prm, prm.with_name(prm.name + "_away"))]
    for path, moved in away:
        path.rename(moved)
    try:
        run_stage("route", ["--policy", str(copy / "routing_policy.json"), *NEW, *TASK, "--budget", "2",
                            "--problems_per_shard", "6", "--output_dir", "out"])  # fmt: skip
        spec = json.loads((copy / "checkpoints" / prm.name / "likelihood_prm.json").read_text())
        assert spec["base_model"] == "../policy_small"  # the likelihood PRM's base model came along
        weights = copy / "checkpoints" / "policy_small" / "model.safetensors"
        data = bytearray(weights.read_bytes())
        data[-1] ^= 1
        weights.write_bytes(bytes(data))
        with pytest.raises(
            InputError, match="bundle file checkpoints/policy_small/model.safetensors does not match"
        ):
            run_stage("route", ["--policy", str(copy / "routing_policy.json"), *NEW, *TASK, "--budget", "2",
                                "--output_dir", "out2"])  # fmt: skip
        assert not (tmp_path / "cwd" / "out2").exists()
    finally:
        for path, moved in away:
            moved.rename(path)
    assert (tmp_path / "cwd" / "out" / "manifest.json").is_file()
    with pytest.raises(InputError, match="exists and is not empty"):
        export_bundle(pipeline["policy_file"], tmp_path / "bundle")
