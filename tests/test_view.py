"""``ttc view``: the page's numbers against the search rows, each recomputed here on its own (votes,
weighted picks, trees, first wrong steps, flips, step-score means, the over-rated ranking); the tree a
search records; the size limit; gold labels; W&B; bad input refused in one line before anything is
written. The browser drives the page in tests/test_view_browser.py (slow)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import datasets
import pyarrow.parquet as pq
import pytest

from ttcompute.cli import main, run_stage
from ttcompute.core.errors import InputError
from ttcompute.core.grading import is_equivalent
from ttcompute.core.shards import load_sharded, prepare_output, write_shard
from ttcompute.eval.search.stage import ROW_SCHEMA

pytestmark = pytest.mark.usefixtures("one_torch_thread")

THRESHOLD = 0.3  # the likelihood PRM scores at most ~0.5: a threshold it crosses both ways


# --- a real search, and what the page says about it ------------------------------------------------


@pytest.fixture(scope="module")
def search_dir(tmp_path_factory, likelihood_prm_dir, small_policy_dir) -> Path:
    out = tmp_path_factory.mktemp("view") / "search"
    run_stage("search", [
        "--model_name_or_path", str(small_policy_dir), "--prm", str(likelihood_prm_dir), "--num_problems", "4",
        "--problem_seed", "4242", "--max_ops", "4", "--max_new_tokens", "120", "--max_step_tokens", "40",
        "--budgets", "2", "4", "--methods", "best_of_n", "beam_search", "lookahead", "dvts",
        "--lookahead_steps", "1", "--beam_widths", "2", "--dvts_widths", "2", "--problems_per_shard", "4",
        "--device", "cpu", "--output_dir", str(out),
    ])  # fmt: skip
    return out


@pytest.fixture(scope="module")
def rows(search_dir) -> list[dict]:
    return [dict(row) for row in load_sharded(search_dir)]


@pytest.fixture(scope="module")
def difficulty_dir(search_dir, rows) -> Path:
    out = search_dir.parent / "difficulty"
    out.mkdir(exist_ok=True)
    ids = sorted({r["problem_id"] for r in rows})
    datasets.Dataset.from_dict(
        {"problem_id": ids, "pass_at_1": [0.5] * len(ids), "num_samples": [4] * len(ids), "bin": [5, 5, 2, 1]}
    ).to_parquet(str(out / "difficulty.parquet"))
    return out


def page_data(page: Path) -> dict:
    """The JSON a page embeds, read back as the browser's JSON.parse would."""
    text = page.read_text(encoding="utf-8")
    match = re.search(r'<script id="ttc-data" type="application/json">(.*?)</script>', text, re.S)
    assert match is not None
    return json.loads(match.group(1))


def view(search_dir: Path, out: Path, *args: str) -> tuple[dict, dict]:
    result = run_stage("view", ["--search_dir", str(search_dir), "--output_dir", str(out), *args])
    return result, page_data(Path(result["page"]))


@pytest.fixture(scope="module")
def viewed(search_dir, difficulty_dir) -> tuple[dict, dict]:
    out = search_dir.parent / "view"
    return view(search_dir, out, "--difficulty_dir", str(difficulty_dir), "--threshold", str(THRESHOLD))


def entries_of(data: dict) -> list[dict]:
    columns = data["entries"]["columns"]
    return [dict(zip(columns, values)) for values in data["entries"]["rows"]]


def stored_row(data: dict, entry: dict) -> dict:
    return data["problems"][entry["problem"]]["rows"][entry["row"]]


def search_row_of(rows: list[dict], data: dict, entry: dict) -> dict:
    """The search row an entry lists: its problem, method, budget and strategy's width setting."""
    problem_id = data["problems"][entry["problem"]]["id"]
    strategy = data["strategies"][entry["strategy"]]
    method = stored_row(data, entry)["method"]
    found = [
        r
        for r in rows
        if r["problem_id"] == problem_id
        and r["method"] == method
        and r["budget"] == entry["budget"]
        and (method == "best_of_n" or f"M={r['width_setting']}" in strategy.split())
    ]
    assert found, (problem_id, strategy, entry["budget"])
    return found[0]


# --- independent references: written here from the task's definition, not with the viewer's code ---


def first_wrong_by_hand(question: str, steps: list[str]) -> int:
    """The first wrong step of an arithmetic solution (-1: none), recomputed from the question's words."""
    start = int(re.match(r"Start at (\d+)\.", question).group(1))
    ops = [({"Add": "+", "Subtract": "-", "Multiply by": "*"}[w], int(b))
           for w, b in re.findall(r"(Add|Subtract|Multiply by) (\d+)\.", question)]  # fmt: skip
    value = start
    for i, step in enumerate(steps):
        if i < len(ops):
            op, b = ops[i]
            result = value + b if op == "+" else value - b if op == "-" else value * b
            if re.sub(r"\s+", "", step) != f"{value}{op}{b}={result}":
                return i
            value = result
        elif i == len(ops):
            if step.strip() != f"The answer is \\boxed{{{value}}}":
                return i
        else:
            return i
    return -1


def weighted_pick_by_hand(answers: list, scores: list[float]) -> int:
    """Weighted best-of-N by brute force: the answer whose candidates' scores sum highest (the group met
    first on ties), then its best candidate (the earliest on ties)."""
    answered = [i for i, a in enumerate(answers) if a is not None]
    if not answered:
        return max(range(len(scores)), key=lambda i: (scores[i], -i))
    sums = {i: sum(scores[j] for j in answered if is_equivalent(answers[j], answers[i])) for i in answered}
    leader = max(answered, key=lambda i: (sums[i], -i))
    group = [j for j in answered if is_equivalent(answers[j], answers[leader])]
    return max(group, key=lambda j: (scores[j], -j))


def steps_of(text: str) -> list[str]:
    return [s for s in text.split("\n\n") if s.strip()]


# --- the tree the search records --------------------------------------------------------------------


def children_of(tree: list[dict]) -> dict[int, list[int]]:
    children: dict[int, list[int]] = {i: [] for i in range(len(tree))}
    for i, node in enumerate(tree):
        assert node["parent"] < i  # parents first
        if node["parent"] >= 0:
            children[node["parent"]].append(i)
    return children


def test_the_search_records_every_beam_of_every_round(rows):
    trees = [r for r in rows if r["method"] in ("beam_search", "lookahead", "dvts")]
    assert trees and all(r["tree"] for r in trees)
    assert all(r["tree"] == [] for r in rows if r["method"] == "best_of_n")
    for row in trees:
        tree, n = row["tree"], row["num_beams"]
        children = children_of(tree)
        assert sum(node["parent"] == -1 for node in tree) == n  # N first steps
        assert max(node["round"] for node in tree) + 1 == row["rounds"]
        finals = [i for i, node in enumerate(tree) if node["status"] == "final"]
        assert sorted(tree[i]["candidate"] for i in finals) == list(range(n))  # each candidate once
        for i, node in enumerate(tree):
            # kept beams were expanded (M copies, the last ones fewer), pruned and final ones were not
            assert (node["status"] == "kept") == bool(children[i])
            for child in children[i]:
                assert tree[child]["round"] == node["round"] + 1
        for i in finals:  # a final beam's path is its candidate: the same text, the same step scores
            path, j = [], i
            while j >= 0:
                path.insert(0, tree[j])
                j = tree[j]["parent"]
            c = tree[i]["candidate"]
            assert "".join(node["text"] for node in path) == row["completions"][c]
            assert [node["score"] for node in path] == pytest.approx(row["step_scores"][c], abs=1e-6)
        if row["method"] == "dvts":
            continue
        for r in range(row["rounds"]):  # one subtree: the kept beams outrank every pruned one
            kept = [n["rank"] for n in tree if n["round"] == r and n["status"] == "kept"]
            pruned = [n["rank"] for n in tree if n["round"] == r and n["status"] == "pruned"]
            unfinished = len(kept) + len(pruned)
            assert len(kept) == math.ceil(unfinished / row["beam_width"])
            if kept and pruned:
                assert min(kept) >= max(pruned)


# --- the page's numbers -------------------------------------------------------------------------------


def test_every_entry_is_the_row_s_pick_with_its_votes(viewed, rows):
    result, data = viewed
    entries = entries_of(data)
    assert result["problems_shown"] == result["problems"] == 4
    strategies = {data["strategies"][e["strategy"]] for e in entries}
    assert {
        "majority",
        "best_of_n_weighted",
        "beam_search M=2",
        "lookahead k=1 M=2",
        "dvts M=2",
    } <= strategies
    checked = 0
    for entry in entries:
        row = search_row_of(rows, data, entry)
        answers = row["answers"]
        scores = [s[-1] if s else 0.0 for s in row["step_scores"]]
        assert entry["n"] == len(answers) == row["num_beams"]
        strategy = data["strategies"][entry["strategy"]]
        if strategy == "majority":
            continue
        if strategy != "best_of_n":  # weighted best-of-N: best-of-N's weighted rule and every tree search's
            assert entry["selected"] == weighted_pick_by_hand(answers, scores), (strategy, entry)
        s = entry["selected"]
        assert entry["answer"] == answers[s] and entry["correct"] == row["correct"][s]
        same = [j for j in range(len(answers)) if answers[j] is not None and answers[s] is not None
                and is_equivalent(answers[j], answers[s])] or [s]  # fmt: skip
        assert entry["votes"] == len(same)
        assert entry["weight"] == pytest.approx(sum(scores[j] for j in same), abs=1e-4)
        assert entry["weight_total"] == pytest.approx(
            sum(x for x, a in zip(scores, answers) if a is not None), abs=1e-4
        )
        assert entry["generations"] == row["generations"] and entry["total_flops"] > 0
        checked += 1
    assert checked > 20


def test_nested_budgets_list_the_first_candidates_of_one_stored_row(viewed, rows):
    _, data = viewed
    for index, problem in enumerate(data["problems"]):
        (stored,) = [r for r in problem["rows"] if r["method"] == "best_of_n"]
        largest = next(r for r in rows if r["problem_id"] == problem["id"] and r["method"] == "best_of_n"
                       and r["budget"] == 4)  # fmt: skip
        assert stored["answer"] == largest["answers"]
        assert stored["steps"] == [steps_of(t) for t in largest["completions"]]
        listed = {
            e["n"] for e in entries_of(data) if e["problem"] == index and stored is problem["rows"][e["row"]]
        }
        assert listed == {2, 4}
        for budget in (2,):  # a smaller budget's row holds the first candidates of the largest
            small = next(r for r in rows if r["problem_id"] == problem["id"] and r["method"] == "best_of_n"
                         and r["budget"] == budget)  # fmt: skip
            assert small["completions"] == largest["completions"][:budget]


def test_trees_on_the_page_hold_the_parquet_s_nodes_and_scores(viewed, rows):
    _, data = viewed
    seen = 0
    for problem in data["problems"]:
        for stored in problem["rows"]:
            if "tree" not in stored:
                continue
            row = next(r for r in rows if r["problem_id"] == problem["id"] and r["method"] == stored["method"]
                       and r["budget"] == stored["budget"] and r["beam_width"] == stored["beam_width"])  # fmt: skip
            tree = stored["tree"]
            assert stored["tree_source"] == "recorded"
            assert len(tree["parent"]) == len(row["tree"])
            assert tree["parent"] == [n["parent"] for n in row["tree"]]
            assert tree["score"] == [round(n["score"], 4) for n in row["tree"]]
            assert tree["status"] == "".join(n["status"][0] for n in row["tree"])
            assert tree["candidate"] == [n["candidate"] for n in row["tree"]]
            # the nodes where a path first goes wrong, by the hand checker, and first scores low
            wrong, low = set(), set()
            for i in range(len(row["tree"])):
                path = []
                j = i
                while j >= 0:
                    path.insert(0, row["tree"][j])
                    j = row["tree"][j]["parent"]
                before = steps_of("".join(n["text"] for n in path[:-1]))
                mine = first_wrong_by_hand(row["question"], steps_of("".join(n["text"] for n in path)))
                if mine >= len(before):
                    wrong.add(i)
                if path[-1]["score"] < THRESHOLD and all(n["score"] >= THRESHOLD for n in path[:-1]):
                    low.add(i)
            assert set(tree["first_wrong"]) == wrong and set(tree["first_low"]) == low
            # the rank a beam was kept by is shown where it is not the step's own score (a rollout's)
            if any(abs(n["rank"] - n["score"]) > 1e-9 for n in row["tree"]):
                assert stored["method"] == "lookahead" and tree["rank"] == [
                    round(n["rank"], 4) for n in row["tree"]
                ]
            else:
                assert "rank" not in tree
            seen += 1
    assert seen == 4 * 6  # beam search and DVTS at N = 2 and 4, lookahead with 1 and 2 beams


def test_candidates_carry_scores_first_wrong_step_and_first_low_score(viewed, rows):
    _, data = viewed
    for problem in data["problems"]:
        for stored in problem["rows"]:
            row = next(r for r in rows if r["problem_id"] == problem["id"] and r["method"] == stored["method"]
                       and r["budget"] == stored["budget"] and r["beam_width"] == stored["beam_width"])  # fmt: skip
            for c, text in enumerate(row["completions"]):
                scores = row["step_scores"][c]
                assert stored["scores"][c] == [round(s, 4) for s in scores]
                assert stored["vote_score"][c] == (round(scores[-1], 4) if scores else 0.0)
                assert stored["first_wrong"][c] == first_wrong_by_hand(row["question"], steps_of(text))
                assert stored["first_low"][c] == next((i for i, s in enumerate(scores) if s < THRESHOLD), -1)
                assert stored["correct"][c] == int(row["correct"][c])


def prefix_verdicts(rows: list[dict]) -> dict[tuple[str, tuple[str, ...]], tuple[float, bool, bool]]:
    """Every distinct (problem, prefix) any row holds, from candidates and tree nodes: its last step's
    score, whether that step is right, whether it is the first wrong one."""
    found: dict[tuple[str, tuple[str, ...]], tuple[float, bool, bool]] = {}

    def add(row: dict, steps: list[str], score: float) -> None:
        key = (row["problem_id"], tuple(s.strip() for s in steps))
        wrong = first_wrong_by_hand(row["question"], steps)
        index = len(steps) - 1
        found.setdefault(key, (score, wrong == -1 or index < wrong, wrong == index))

    for row in rows:
        for text, scores in zip(row["completions"], row["step_scores"]):
            steps = steps_of(text)
            for t in range(len(steps)):
                add(row, steps[: t + 1], scores[t])
        for i, node in enumerate(row["tree"] or []):
            path, j = [], i
            while j >= 0:
                path.insert(0, row["tree"][j]["text"])
                j = row["tree"][j]["parent"]
            if steps_of(node["text"]):
                add(row, steps_of("".join(path)), node["score"])
    return found


def test_score_of_right_and_wrong_steps_by_index_and_the_over_rated_ranking(viewed, rows):
    _, data = viewed
    found = prefix_verdicts(rows)
    by_index: dict[tuple[int, bool], list[float]] = {}
    for (_, steps), (score, right, _) in found.items():
        by_index.setdefault((len(steps) - 1, right), []).append(score)
    page = data["aggregates"]["by_step"]["all"]
    assert page["index"] == sorted({i for i, _ in by_index})
    for k, index in enumerate(page["index"]):
        for right, name in ((True, "right"), (False, "wrong")):
            scores = by_index.get((index, right), [])
            assert page[f"{name}_n"][k] == len(scores)
            if scores:
                assert page[f"{name}_mean"][k] == pytest.approx(sum(scores) / len(scores), abs=1e-4)
    assert sum(page["wrong_n"]) > 0 and sum(page["right_n"]) > 0

    overrated = sorted(
        ((score, problem, steps) for (problem, steps), (score, _, first) in found.items() if first and score >= THRESHOLD),
        key=lambda x: -x[0],
    )  # fmt: skip
    listed = data["aggregates"]["overrated"]
    assert len(listed) == len(overrated) > 0
    assert [r["score"] for r in listed] == [round(s, 4) for s, _, _ in overrated]
    assert {(r["problem_id"], r["index"], r["step"]) for r in listed} == {
        (problem, len(steps) - 1, steps[-1]) for _, problem, steps in overrated
    }
    for record in listed:  # each links to a row of its problem that holds the step
        problem = data["problems"][record["problem"]]
        assert problem["id"] == record["problem_id"]
        stored = problem["rows"][record["where"][1]]
        kind, index = record["where"][2], record["where"][3]
        if kind == "node":
            assert stored["tree"]["text"][index].strip() == record["step"]
        else:
            assert stored["scores"][index][record["index"]] == record["score"]


def test_bins_filter_values_come_from_the_difficulty_table(viewed, rows):
    _, data = viewed
    bins = dict(zip(sorted({r["problem_id"] for r in rows}), [5, 5, 2, 1]))
    assert {p["id"]: p["bin"] for p in data["problems"]} == bins
    assert (
        data["meta"]["truth"] == "checker" and data["meta"]["judged_candidates"] == data["meta"]["candidates"]
    )


def test_the_page_is_self_contained(viewed):
    result, _ = viewed
    text = Path(result["page"]).read_text(encoding="utf-8")
    assert "Tabulator" in text and "Chart.js v4.6.2" in text and "d3-hierarchy" in text
    # nothing is fetched: no external script, stylesheet or source map
    assert not re.search(r"<script[^>]+src=|<link[^>]+href=|sourceMappingURL", text)
    assert "MIT License" in text and "ISC" in text or "Permission to use, copy, modify" in text
    assert (Path(result["output_dir"]) / "ttc_config.yaml").is_file()


def test_the_page_s_files_ship_in_the_wheel():
    import fnmatch

    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the dev extra brings tomli
        import tomli as tomllib

    from ttcompute.view import LIBRARIES, PAGE, SCRIPTS, STYLES

    repo = Path(__file__).resolve().parents[1]
    globs = tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "ttcompute"
    ]
    assets = repo / "ttcompute" / "view_assets"
    needed = [*SCRIPTS, *STYLES, PAGE, *(license for _, _, license in LIBRARIES)]
    for name in needed:
        assert (assets / name).is_file(), name
        assert any(fnmatch.fnmatch(f"view_assets/{name}", g) for g in globs), f"{name} is not package data"
    readme = (assets / "README.md").read_text()
    assert all(f"| {version} |" in readme and name in readme for name, version, _ in LIBRARIES)


# --- revision chains: hand-built rows through parquet ---------------------------------------------------


def search_output(path: Path, rows: list[dict]) -> Path:
    """``rows`` written as a finished ttc search output (every column of the stage's schema)."""
    prepare_output(path, "search", "test", 1, False)
    defaults = {name: None for name in ROW_SCHEMA.names}
    write_shard(path, 0, [{**defaults, **row} for row in rows], ROW_SCHEMA)
    return path


def revision_row(budget: int, correct: list[bool], subtrees: list[int], positions: list[int]) -> dict:
    answers = ["7" if c else "8" for c in correct][:budget]
    return {
        # the gold answer as text the page must carry whole: "</script>" and "<!--" would end its JSON early
        "problem_id": "p", "question": "Start at 3. Add 4.", "gold_answer": "7 </script><!--", "metadata": "{}",
        "method": "revisions", "width_setting": "L=3", "beam_width": 0, "lookahead": 0,
        "search_aggregation": "last", "budget": budget, "num_beams": budget, "generations": budget,
        "completions": [f"3 + 4 = {a}\n\nThe answer is \\boxed{{{a}}}" for a in answers],
        "step_scores": [[0.9, 0.8] if c else [0.4, 0.2] for c in correct][:budget],
        "answers": answers, "correct": correct[:budget], "num_tokens": [10] * budget,
        "finish_reasons": ["eos"] * budget, "subtrees": subtrees[:budget], "positions": positions[:budget],
        "chain_length": 3, "policy_flops": 5, "prm_flops": 3, "total_flops": 8, "rounds": 1, "tree": [],
    }  # fmt: skip


def test_revision_chains_show_their_flips(tmp_path):
    # chain 0: right, wrong, right (one each way); chain 1: wrong, wrong, right (wrong -> right)
    correct = [True, False, True, False, False, True]
    subtrees, positions = [0, 0, 0, 1, 1, 1], [0, 1, 2, 0, 1, 2]
    out = search_output(tmp_path / "search", [revision_row(b, correct, subtrees, positions) for b in (3, 6)])
    _, data = view(out, tmp_path / "view")
    (problem,) = data["problems"]
    assert problem["gold"] == "7 </script><!--"
    (stored,) = problem["rows"]
    assert stored["chains"] == [[0, 1, 2], [3, 4, 5]]
    assert stored["first_wrong"] == [-1, 0, -1, 0, 0, -1]  # "3 + 4 = 8" is wrong at its first step
    flips = {(e["n"], data["strategies"][e["strategy"]]): (e["right_to_wrong"], e["wrong_to_right"])
             for e in entries_of(data)}  # fmt: skip
    assert flips[(3, "revisions L=3 weighted")] == (1, 1)
    assert flips[(6, "revisions L=3 weighted")] == (1, 2)
    weighted = next(
        e for e in entries_of(data) if e["n"] == 6 and "weighted" in data["strategies"][e["strategy"]]
    )
    assert (weighted["answer"], weighted["votes"]) == ("7", 3)
    assert weighted["weight"] == pytest.approx(3 * 0.8) and weighted["weight_total"] == pytest.approx(
        3 * 0.8 + 3 * 0.2
    )


# --- searches from before trees were recorded ----------------------------------------------------------


def test_a_search_without_recorded_trees_shows_its_final_candidates_as_a_tree(search_dir, tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    for path in search_dir.iterdir():
        if path.name.startswith("shard-"):
            table = pq.read_table(path)
            pq.write_table(table.drop_columns(["tree"]), old / path.name)
        elif path.is_file():
            (old / path.name).write_bytes(path.read_bytes())
    _, data = view(old, tmp_path / "view")
    assert data["meta"]["trees_recorded"] is False
    rows = [dict(r) for r in load_sharded(search_dir)]
    for problem in data["problems"]:
        for stored in problem["rows"]:
            if "tree" not in stored:
                continue
            tree = stored["tree"]
            assert stored["tree_source"] == "finals"
            row = next(r for r in rows if r["problem_id"] == problem["id"] and r["method"] == stored["method"]
                       and r["budget"] == stored["budget"] and r["beam_width"] == stored["beam_width"])  # fmt: skip
            steps = [tuple(steps_of(t)) for t in row["completions"]]
            # one node per distinct proper prefix of the candidates, one per candidate's last step
            inner = {s[:k] for s in steps for k in range(1, len(s))}
            assert len(tree["parent"]) == len(inner) + len(steps)
            assert tree["status"].count("f") == len(steps) and "p" not in tree["status"]


# --- gold step labels of an eval-prm dataset ----------------------------------------------------------------


def test_gold_labels_mark_the_first_wrong_step_of_the_solutions_they_hold(search_dir, rows, tmp_path):
    row = next(r for r in rows if r["method"] == "best_of_n" and r["budget"] == 4)
    labelled = steps_of(row["completions"][0])
    dataset = tmp_path / "processbench.jsonl"
    dataset.write_text(json.dumps({"problem": row["question"], "steps": labelled, "label": 1}) + "\n")
    _, data = view(search_dir, tmp_path / "view", "--eval_prm_dataset", str(dataset))
    assert data["meta"]["truth"] == "labels"
    problem = next(p for p in data["problems"] if p["id"] == row["problem_id"])
    stored = next(r for r in problem["rows"] if r["method"] == "best_of_n")
    for c, text in enumerate(row["completions"]):
        # wrong from step 1 where a candidate's first two steps are the labelled ones; else unknown
        assert stored["first_wrong"][c] == (1 if steps_of(text)[:2] == labelled[:2] else None)
    other = next(p for p in data["problems"] if p["id"] != row["problem_id"])
    assert all(w is None for r in other["rows"] for w in r["first_wrong"])
    # `ttc label`'s stepwise rows: the first step whose MC value is 0 is the first wrong one
    stepwise = tmp_path / "labels.jsonl"
    stepwise.write_text(json.dumps({"question": row["question"], "completions": labelled,
                                    "labels": [1.0] * (len(labelled) - 1) + [0.0]}) + "\n")  # fmt: skip
    _, data = view(search_dir, tmp_path / "view2", "--eval_prm_dataset", str(stepwise))
    stored = next(
        r
        for p in data["problems"]
        if p["id"] == row["problem_id"]
        for r in p["rows"]
        if r["method"] == "best_of_n"
    )
    last = len(labelled) - 1
    for c, text in enumerate(row["completions"]):
        steps = steps_of(text)
        expected = (
            last if steps[: last + 1] == labelled else (-1 if steps == labelled[: len(steps)] else None)
        )
        assert stored["first_wrong"][c] == expected


# --- the size limit -----------------------------------------------------------------------------------------


def test_a_page_over_its_size_limit_holds_a_sample_and_says_so(search_dir, viewed, tmp_path):
    full_result, full = viewed
    frame = full_result["megabytes"] * 1e6 - sum(
        len(json.dumps(p, separators=(",", ":"), ensure_ascii=False).encode()) for p in full["problems"]
    )
    limit = (frame + 0.5 * (full_result["megabytes"] * 1e6 - frame)) / 1e6  # room for about half the problems
    result, data = view(
        search_dir, tmp_path / "view", "--max_mb", f"{limit:.6f}", "--threshold", str(THRESHOLD)
    )
    assert Path(result["page"]).stat().st_size <= limit * 1e6
    assert 0 < data["meta"]["problems_shown"] < data["meta"]["problems_total"] == 4
    assert data["meta"]["left_out"].startswith(f"{4 - data['meta']['problems_shown']} of 4 problems left out")
    # the aggregates still cover every problem
    assert data["aggregates"]["by_step"] == full["aggregates"]["by_step"]
    assert [r["problem_id"] for r in data["aggregates"]["overrated"]] == [
        r["problem_id"] for r in full["aggregates"]["overrated"]
    ]
    shown = {p["id"] for p in data["problems"]}
    assert all(
        (r["problem"] is None) == (r["problem_id"] not in shown) for r in data["aggregates"]["overrated"]
    )


# --- W&B ------------------------------------------------------------------------------------------------------


def test_report_to_wandb_logs_the_page_as_html(search_dir, tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="wandb is not installed")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    result, _ = view(search_dir, tmp_path / "view", "--report_to", "wandb")
    runs = list((tmp_path / "view" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    logged = list(runs[0].glob("files/media/html/viewer_*.html"))
    assert len(logged) == 1
    assert logged[0].read_text(encoding="utf-8") == Path(result["page"]).read_text(encoding="utf-8")


# --- bad input: one line, nothing written ---------------------------------------------------------------------


def error_line(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_a_directory_that_is_not_a_search_output_is_refused(tmp_path, difficulty_dir, capsys):
    out = tmp_path / "view"
    line = error_line(capsys, ["view", "--search_dir", str(tmp_path / "nothing"), "--output_dir", str(out)])
    assert "nothing: not a ttc output directory" in line
    line = error_line(capsys, ["view", "--search_dir", str(difficulty_dir), "--output_dir", str(out)])
    assert "not a ttc output directory" in line
    samples = tmp_path / "samples"
    prepare_output(samples, "sample", "h", 1, False)
    write_shard(samples, 0, [{"problem_id": "p", "completions": ["x"]}])
    line = error_line(capsys, ["view", "--search_dir", str(samples), "--output_dir", str(out)])
    assert line.endswith("samples: a ttc sample output, not a ttc search output")
    assert not out.exists()


def test_a_search_without_step_scores_is_refused(tmp_path, small_policy_dir, capsys):
    search = tmp_path / "search"
    run_stage("search", [
        "--model_name_or_path", str(small_policy_dir), "--methods", "best_of_n", "--num_problems", "1",
        "--budgets", "2", "--max_new_tokens", "60", "--device", "cpu", "--output_dir", str(search),
    ])  # fmt: skip
    capsys.readouterr()  # the search's progress bars
    out = tmp_path / "view"
    line = error_line(capsys, ["view", "--search_dir", str(search), "--output_dir", str(out)])
    assert "field step_scores: no candidate has a step score" in line and str(search) in line
    assert not out.exists()


def test_a_select_output_of_another_search_is_refused(search_dir, tmp_path):
    select = tmp_path / "select"
    run_stage("select", ["--search_dir", str(search_dir), "--output_dir", str(select), "--adaptive", "false"])
    result, data = view(search_dir, tmp_path / "ok", "--select_dir", str(select))
    assert data["meta"]["select_dir"] == str(select) and result["problems_shown"] == 4
    table = datasets.Dataset.from_parquet(str(select / "selections.parquet")).to_list()
    bent = next(r for r in table if r["strategy"] == "best_of_n" and r["budget"] == 4)
    bent["selected"] = (bent["selected"] + 1) % 4
    datasets.Dataset.from_list(table).to_parquet(str(select / "selections.parquet"))
    with pytest.raises(
        InputError, match=r"selections.parquet: problem .* best_of_n at budget 4 selected candidate"
    ):
        view(search_dir, tmp_path / "bad", "--select_dir", str(select))
    assert not (tmp_path / "bad").exists()
    with pytest.raises(InputError, match="--aggregation min: .* selected with aggregation last"):
        view(search_dir, tmp_path / "bad", "--select_dir", str(select), "--aggregation", "min")
