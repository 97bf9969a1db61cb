"""Adaptive strategies offline and online agree: ``ttc select`` evaluates a stopping rule on the
candidates ``ttc search`` saved, ``ttc route`` runs the same rule while it generates -- and on the same
problems and seeds both stop at the same sample, give the same answer and are charged the same FLOPs,
though route batches the problems otherwise (other chunks, and only the problems of one strategy).

Also: each adaptive record's spend recomputed independently from the search rows, and the tiny
pipeline's compute-optimal on the spend axis writing points ``ttc route --allocation spend`` runs.
"""

from __future__ import annotations

import json
from collections import Counter
from fractions import Fraction

import pytest

from ttcompute.cli import run_stage
from ttcompute.core.grading import is_equivalent
from ttcompute.core.recorded_paths import resolve_tree
from ttcompute.core.shards import load_sharded
from ttcompute.eval.adaptive import parse_strategy
from ttcompute.eval.compute_optimal import load_selections
from ttcompute.eval.routing_policy import save_routing_policy

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PROBLEMS = ["--num_problems", "6", "--problem_seed", "11", "--max_ops", "5"]
GENERATION = ["--max_new_tokens", "120", "--device", "cpu"]


def _read_policy(path):
    """A policy file's JSON with its recorded paths absolute (they are relative to the file)."""
    return resolve_tree(json.loads(path.read_text()), path)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, small_policy_dir, likelihood_prm_dir):
    root = tmp_path_factory.mktemp("adaptive_route")
    policy = str(small_policy_dir)
    run_stage(
        "search",
        ["--model_name_or_path", policy, "--prm", str(likelihood_prm_dir), "--reviser", policy,
         "--methods", "best_of_n", "beam_search", "revisions", "--beam_widths", "2", "--revision_lengths", "2", "4",
         "--budgets", "1", "2", "4", "--max_step_tokens", "30", *PROBLEMS, *GENERATION,
         "--problems_per_shard", "6", "--output_dir", str(root / "search")],
    )  # fmt: skip
    run_stage("select", ["--search_dir", str(root / "search"), "--output_dir", str(root / "select")])
    run_stage("compute-optimal", ["--select_dirs", str(root / "select"), "--bootstrap_resamples", "100",
                                  "--output_dir", str(root / "co")])  # fmt: skip
    records = load_selections([str(root / "select")])
    return {"root": root, "records": records, "search": list(load_sharded(root / "search"))}


def _varied(records, kind: str) -> str:
    """The strategy of ``kind`` whose stopping point varies most over the problems (then by name)."""
    spend: dict[str, set] = {}
    for r in records:
        if r["strategy"].startswith(kind):
            spend.setdefault(r["strategy"], set()).add(r["generations"])
    return max(sorted(spend), key=lambda s: len(spend[s]))


KINDS = [
    "adaptive_vote rule=beta",
    "adaptive_vote rule=esc",
    "adaptive_prm rule=best",
    "adaptive_prm rule=share",
    "adaptive_revisions L=2 stop=accept",
    "adaptive_revisions L=4 stop=repeat",
    "escalate beam_search M=2 rule=best",
]


@pytest.mark.parametrize("kind", KINDS)
def test_route_runs_a_rule_online_as_select_evaluated_it(pipeline, tmp_path, kind):
    root, records = pipeline["root"], pipeline["records"]
    name = _varied(records, kind)
    strategy = parse_strategy(name)
    settings = json.loads((root / "select" / "strategies.json").read_text())["strategies"][name]
    policy = _read_policy(root / "co" / "routing_policy.json")
    assert policy["predictor"]["kind"] == "none"
    # Every problem gets this strategy: one point besides giving up, one generation per problem to spend.
    policy["strategies"][name] = {**settings, "search": 0}
    policy["spend_points"] = {
        "1": [{"generations": 0.0, "accuracy": 0.0, "strategy": None, "budget": 0},
              {"generations": 1.0, "accuracy": 1.0, "strategy": name, "budget": strategy.cap}]
    }  # fmt: skip
    path = tmp_path / "routing_policy.json"
    save_routing_policy(policy, path)
    # Other chunks than the search's (6 problems in one): a problem's samples must not depend on them.
    run_stage("route", ["--policy", str(path), *PROBLEMS, "--allocation", "spend", "--budget", "1",
                        "--device", "cpu", "--problems_per_shard", "4", "--output_dir", str(tmp_path / "routed")])  # fmt: skip
    offline = {r["problem_id"]: r for r in records if r["strategy"] == name}
    rows = list(load_sharded(tmp_path / "routed"))
    assert len(rows) == 6 and {r["strategy"] for r in rows} == {name}
    for row in rows:
        want = offline[row["problem_id"]]
        assert row["generations"] == want["generations"], row["problem_id"]
        assert row["answer"] == want["answer"], row["problem_id"]
        assert row["correct"] == want["correct"]
        assert (row["policy_flops"], row["prm_flops"]) == (want["policy_flops"], want["prm_flops"]), row[
            "problem_id"
        ]
        assert row["budget"] == strategy.cap and row["predictor_flops"] == 0


def test_the_rules_compared_online_stop_at_different_points(pipeline):
    # Otherwise agreeing online would prove little: some rule stops early on some problems only.
    records = pipeline["records"]
    varied = [
        len({r["generations"] for r in records if r["strategy"] == _varied(records, kind)}) for kind in KINDS
    ]
    assert max(varied) >= 2


def beta_tail(lead: int, second: int) -> Fraction:
    """P(Bin(lead + second + 1, 1/2) <= lead), exactly."""
    from math import comb

    n = lead + second + 1
    return Fraction(sum(comb(n, k) for k in range(lead + 1)), 2**n)


def test_each_records_spend_is_recomputed_from_the_rows(pipeline):
    """Independently of eval/adaptive.py: the stop point of every beta and best-score record by a
    direct re-implementation (votes counted with the grader's equivalence, exact binomial tails), and
    its FLOPs from the search row's per-candidate tokens and the parameters its own totals imply."""
    top = {}
    for row in pipeline["search"]:
        if row["method"] == "best_of_n" and row["budget"] > top.get(row["problem_id"], {}).get("budget", 0):
            top[row["problem_id"]] = row
    checked = Counter()
    for record in pipeline["records"]:
        name = record["strategy"]
        if not name.startswith(("adaptive_vote rule=beta", "adaptive_prm rule=best")):
            continue
        strategy = parse_strategy(name)
        row = top[record["problem_id"]]
        answers = row["answers"]
        policy_params = row["policy_flops"] // (2 * sum(row["num_tokens"]))
        prm_params = row["prm_flops"] // (2 * sum(row["prm_tokens_by_candidate"]))
        drawn = strategy.cap
        for n in range(1, strategy.cap + 1):
            if strategy.kind == "adaptive_prm":
                reached = max(s[-1] if s else 0.0 for s in row["step_scores"][:n]) >= strategy.rule.tau
            else:
                reps: list[str] = []
                votes: list[int] = []
                for a in answers[:n]:
                    if a is None or not a.strip():
                        continue
                    hit = next((i for i, rep in enumerate(reps) if is_equivalent(a, rep)), None)
                    if hit is None:
                        reps.append(a)
                        votes.append(1)
                    else:
                        votes[hit] += 1
                votes.sort(reverse=True)
                reached = bool(votes) and beta_tail(votes[0], votes[1] if len(votes) > 1 else 0) >= Fraction(
                    strategy.rule.tau
                )
            if reached:
                drawn = n
                break
        assert record["generations"] == drawn, name
        assert record["policy_flops"] == 2 * policy_params * sum(row["num_tokens"][:drawn])
        expected_prm = 2 * prm_params * sum(row["prm_tokens_by_candidate"][:drawn])
        assert record["prm_flops"] == (expected_prm if strategy.kind == "adaptive_prm" else 0)
        checked[strategy.kind] += 1
    assert checked["adaptive_vote"] >= 6 * 6 and checked["adaptive_prm"] >= 6 * 6


def test_the_spend_axis_and_its_points_are_written(pipeline):
    summary = json.loads((pipeline["root"] / "co" / "compute_optimal.json").read_text())
    spend = summary["spend"]
    assert spend["num_problems"] == 6 and spend["curve"]
    for point in spend["curve"]:
        assert 0 <= point["accuracy"] <= 1 and point["generations"] >= 0
    assert (pipeline["root"] / "co" / "spend.png").is_file()
    assert (pipeline["root"] / "co" / "spend_by_bin.png").is_file()
    points = json.loads((pipeline["root"] / "co" / "routing_policy.json").read_text())["spend_points"]
    assert points["1"][0]["strategy"] is None  # giving up is always a point


def test_batch_allocation_online_draws_what_it_would_offline(pipeline, tmp_path):
    """``ttc route --allocation batch`` on the searched problems (one chunk): each problem draws as many
    samples as the same gain table allocates on the saved candidates, and gets their verdict and cost."""
    import datasets

    from ttcompute.eval.batch_allocation import GainTable, allocate_saved

    root = pipeline["root"]
    policy = _read_policy(root / "co" / "routing_policy.json")
    prefixes = {
        r["problem_id"]: r for r in datasets.Dataset.from_parquet(str(root / "select" / "prefixes.parquet"))
    }
    # Six problems leave the learned table nearly empty: a table whose gains depend on the state instead,
    # so that problems draw unequally (the point is that online draws what offline allocates).
    middle = sorted(r["confidence"][0] for r in prefixes.values())[3]
    table = GainTable({0: [middle]}, {(0, 0): 0.4, (0, 1): 0.05, (1, -1): 0.2, (2, -1): 0.01})
    policy["batch"] |= table.to_dict()
    path = tmp_path / "routing_policy.json"
    save_routing_policy(policy, path)
    counts = allocate_saved(prefixes, table, 2.5 * len(prefixes))
    assert sum(counts.values()) <= 2.5 * 6 and len(set(counts.values())) >= 2
    run_stage("route", ["--policy", str(path), *PROBLEMS, "--allocation", "batch", "--budget", "2.5",
                        "--device", "cpu", "--problems_per_shard", "6", "--output_dir", str(tmp_path / "batch")])  # fmt: skip
    for row in load_sharded(tmp_path / "batch"):
        prefix, n = prefixes[row["problem_id"]], counts[row["problem_id"]]
        assert row["generations"] == n, row["problem_id"]
        assert row["correct"] == prefix["correct"][n - 1]
        assert (row["policy_flops"], row["prm_flops"]) == (
            prefix["policy_flops"][n - 1],
            prefix["prm_flops"][n - 1],
        )


@pytest.mark.parametrize("allocation, key", [("spend", "spend_points"), ("batch", "batch")])
def test_a_policy_without_what_an_allocation_reads_is_refused(pipeline, tmp_path, allocation, key):
    from ttcompute.core.errors import InputError

    policy = _read_policy(pipeline["root"] / "co" / "routing_policy.json")
    del policy[key]
    path = tmp_path / "routing_policy.json"
    save_routing_policy(policy, path)
    with pytest.raises(InputError, match=f"no {key} "):
        run_stage("route", ["--policy", str(path), *PROBLEMS, "--allocation", allocation, "--budget", "1.5",
                            "--device", "cpu", "--output_dir", str(tmp_path / "out")])  # fmt: skip
    assert not (tmp_path / "out").exists()
