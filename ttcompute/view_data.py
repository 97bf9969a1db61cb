"""What ``ttc view``'s page shows, recomputed from a search's rows: selections and votes, trees, revision
flips, first wrong steps and first low scores, and the PRM's verdicts over every step.

Everything here is a function of the rows (``ttc search``'s columns, :mod:`ttcompute.eval.search.stage`),
so the page never shows a number the rows do not give. The viewer's JavaScript only draws and filters.

Rows are *stored* once and *listed* many times. Best-of-N and revision rows nest (the candidates of
budget b are the first b of the largest budget's row), so a problem keeps the largest one and a listed
budget points at its first ``n`` candidates; a tree-search run written under two width settings is one
stored row. Every listed entry is a ``ttc select`` strategy of one row (:func:`select_row`, the rule
``ttc select`` applies).

Step truth: the arithmetic task's exact checker (:func:`~ttcompute.tasks.arithmetic.first_wrong_step`),
or gold labels of an ``eval-prm`` dataset matched on the question and the steps. A step is *right*
while its prefix is right (before the first wrong step) and *wrong* from the first wrong step on --
``ttc eval-prm``'s step-level convention. Each distinct prefix of a problem counts once in the
aggregate views (best-of-N's nested rows and a beam's shared prefixes would count it many times).
"""

from __future__ import annotations

import functools
import json
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ttcompute.core.errors import InputError
from ttcompute.core.grading import is_equivalent
from ttcompute.core.outputs import revision_chains_of
from ttcompute.core.selection import group_equivalent_answers, has_answer
from ttcompute.core.steps import split_into_steps
from ttcompute.eval.prm_eval import EvalExample
from ttcompute.eval.prm_metrics import first_error_from_labels, first_error_from_scores
from ttcompute.eval.select import candidate_score, select_row
from ttcompute.tasks.arithmetic import first_wrong_step, parse_question

NESTED = ("best_of_n", "revisions")
TREE_METHODS = ("beam_search", "lookahead", "dvts")
STATUS_CODES = {"kept": "k", "pruned": "p", "final": "f"}
# Scores on the page: 4 decimals (0.0001 apart is below anything a reader compares; full floats would
# double the file). Every derived number (votes, sums, means) is computed from the full floats.
DIGITS = 4

ENTRY_COLUMNS = ("problem", "row", "strategy", "budget", "n", "selected", "answer", "correct", "votes",
                 "weight", "weight_total", "generations", "total_flops", "right_to_wrong", "wrong_to_right")  # fmt: skip


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), DIGITS)


@functools.lru_cache(maxsize=1 << 16)
def _equivalent(answer: str, other: str) -> bool:
    # A problem's answers repeat across its rows (nested budgets, every method), and an answer that is
    # no plain number goes to math-verify (~20 ms): each pair is graded once per process.
    return is_equivalent(answer, other)


def answer_groups(answers: Sequence[str | None]) -> list[int]:
    """:func:`~ttcompute.core.selection.group_equivalent_answers`, each pair of answers compared once."""
    return group_equivalent_answers(answers, _equivalent)


# --- step truth ----------------------------------------------------------------------------------


class StepTruth(Protocol):
    """Where a solution first goes wrong: the index of its first wrong step, -1 when every step is
    right, None when unknown (a question the checker cannot read, steps no label covers)."""

    name: str

    def first_wrong(self, question: str, steps: Sequence[str]) -> int | None: ...


class ArithmeticChecker:
    """The arithmetic task's exact step checker: every prefix of an arithmetic problem is judged.

    >>> ArithmeticChecker().first_wrong("Start at 3. Add 4. Multiply by 2.", ["3 + 4 = 7", "7 * 2 = 15"])
    1
    >>> ArithmeticChecker().first_wrong("What is 2 + 2?", ["4"]) is None
    True
    """

    name = "checker"

    def __init__(self) -> None:
        self._readable: dict[str, bool] = {}

    def readable(self, question: str) -> bool:
        if question not in self._readable:
            try:
                parse_question(question)
                self._readable[question] = True
            except InputError:
                self._readable[question] = False
        return self._readable[question]

    def first_wrong(self, question: str, steps: Sequence[str]) -> int | None:
        if not self.readable(question):
            return None
        wrong = first_wrong_step(question, list(steps))
        return -1 if wrong is None else wrong


class GoldLabels:
    """Gold first wrong steps of labelled solutions, found again by question and steps (whitespace
    around a step ignored): a prefix of a labelled solution is judged too, its first wrong step being
    the solution's when it falls inside the prefix.

    >>> gold = GoldLabels([EvalExample("x", "Q", ["a", "b", "c"], processbench_label=1)])
    >>> gold.first_wrong("Q", ["a"]), gold.first_wrong("Q", ["a", " b "]), gold.first_wrong("Q", ["z"])
    (-1, 1, None)
    """

    name = "labels"

    def __init__(self, examples: Sequence[EvalExample]) -> None:
        # question -> trie: step -> [children, wrong]; the first label of a prefix seen wins
        self._tries: dict[str, dict[str, list[Any]]] = {}
        for example in examples:
            first = (
                example.processbench_label
                if example.processbench_label is not None
                else first_error_from_labels(example.mc_labels or [])
            )
            node = self._tries.setdefault(example.question.strip(), {})
            for index, step in enumerate(example.steps):
                entry = node.setdefault(step.strip(), [{}, first != -1 and index >= first])
                node = entry[0]

    def __len__(self) -> int:
        return len(self._tries)

    def first_wrong(self, question: str, steps: Sequence[str]) -> int | None:
        node = self._tries.get(question.strip())
        if node is None:
            return None
        for index, step in enumerate(steps):
            entry = node.get(step.strip())
            if entry is None:
                return None
            if entry[1]:
                return index
            node = entry[0]
        return -1


def is_right(first_wrong: int | None, index: int) -> bool | None:
    """Whether step ``index`` is right under ``ttc eval-prm``'s convention (right before the first wrong
    step, wrong from it on); None when the truth is unknown.

    >>> [is_right(1, i) for i in range(3)], is_right(-1, 5), is_right(None, 0)
    ([True, False, False], True, None)
    """
    if first_wrong is None:
        return None
    return first_wrong == -1 or index < first_wrong


# --- the verdicts over every step: aggregates and over-rated steps -----------------------------------


@dataclass
class StepVerdicts:
    """Every distinct (problem, prefix) the PRM scored, counted once: mean score of right and wrong steps
    by step index, per method and over all, and the over-rated steps -- first wrong steps the PRM scored
    at or above ``threshold``."""

    threshold: float
    # (method or "all", step index, right) -> [score sum, count]
    sums: dict[tuple[str, int, bool], list[float]] = field(
        default_factory=lambda: defaultdict(lambda: [0.0, 0])
    )
    seen: set[int] = field(default_factory=set)  # hashes of (method or "all", problem, prefix): ~10^6 of them
    overrated: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)

    def add(
        self,
        method: str,
        problem: int,
        prefix: int,
        index: int,
        score: float,
        right: bool | None,
        first_wrong_here: bool,
        step: str,
        where: tuple[int, int, str, int],
    ) -> None:
        """One scored prefix: ``prefix`` its hash, ``index`` its last step's, ``score`` that step's score;
        ``where``: (problem, stored row, "candidate" | "node", index) it was seen at."""
        if right is None:
            return
        for group in (method, "all"):
            key = hash((group, problem, prefix))
            if key not in self.seen:
                self.seen.add(key)
                total = self.sums[(group, index, right)]
                total[0] += score
                total[1] += 1
        if first_wrong_here and score >= self.threshold:
            record = self.overrated.get((problem, prefix))
            if record is None:
                record = self.overrated[(problem, prefix)] = {
                    "problem": problem, "index": index, "step": step.strip(), "score": score,
                    "methods": set(), "rows": set(), "where": where,
                }  # fmt: skip
            record["methods"].add(method)
            record["rows"].add(where[:2])

    def by_step(self) -> dict[str, dict[str, list[Any]]]:
        """Per method (and ``all``): step indices and, for right and wrong steps, mean score and count."""
        out: dict[str, dict[str, list[Any]]] = {}
        groups = sorted({g for g, _, _ in self.sums}, key=lambda g: (g != "all", g))
        for group in groups:
            indices = sorted({i for g, i, _ in self.sums if g == group})
            entry: dict[str, list[Any]] = {"index": indices}
            for right, name in ((True, "right"), (False, "wrong")):
                totals = [self.sums.get((group, i, right), [0.0, 0]) for i in indices]
                entry[f"{name}_mean"] = [_round(s / n) if n else None for s, n in totals]
                entry[f"{name}_n"] = [int(n) for _, n in totals]
            out[group] = entry
        return out

    def ranked_overrated(self, top: int) -> list[dict[str, Any]]:
        """The ``top`` over-rated steps, highest score first (then seen in more rows, then by problem)."""
        ranked = sorted(
            self.overrated.values(), key=lambda r: (-r["score"], -len(r["rows"]), r["problem"], r["index"])
        )
        return [
            {
                "problem": r["problem"],
                "index": r["index"],
                "step": r["step"],
                "score": _round(r["score"]),
                "methods": sorted(r["methods"]),
                "rows": len(r["rows"]),
                "where": list(r["where"]),
            }
            for r in ranked[:top]
        ]


def prefix_hashes(steps: Sequence[str], start: int = 0) -> list[int]:
    """A hash per prefix of ``steps`` (whitespace around a step ignored), chained from ``start``: the
    prefixes of a big search are counted without holding their text."""
    out, current = [], start
    for step in steps:
        current = hash((current, step.strip()))
        out.append(current)
    return out


# --- one stored row --------------------------------------------------------------------------------


def row_label(row: dict[str, Any]) -> str:
    """A stored row's name in the page's run selector.

    >>> row_label({"method": "beam_search", "beam_width": 4, "lookahead": 0, "search_aggregation": "last",
    ...            "budget": 16, "chain_length": 0})
    'beam_search M=4 N=16'
    >>> row_label({"method": "revisions", "chain_length": 4, "budget": 64, "beam_width": 0, "lookahead": 0,
    ...            "search_aggregation": "last"})
    'revisions L=4 (up to N=64)'
    """
    method = row["method"]
    if method == "best_of_n":
        return f"best_of_n (up to N={row['budget']})"
    if method == "revisions":
        return f"revisions L={row['chain_length']} (up to N={row['budget']})"
    parts = [method]
    if method == "lookahead":
        parts.append(f"k={row['lookahead']}")
    parts.append(f"M={row['beam_width']}")
    if row["search_aggregation"] != "last":
        parts.append(f"rank={row['search_aggregation']}")
    parts.append(f"N={row['budget']}")
    return " ".join(parts)


def row_view(
    row: dict[str, Any],
    problem: int,
    stored: int,
    separator: str,
    aggregation: str,
    truth: StepTruth | None,
    verdicts: StepVerdicts,
) -> dict[str, Any]:
    """The page's record of one stored row: its candidates (steps, scores, answers, vote scores, answer
    groups, first wrong step and first low score), revision chains, and for a tree search its tree; the
    row's scored prefixes go into ``verdicts``."""
    question = row["question"]
    threshold = verdicts.threshold
    steps = [split_into_steps(text or "", separator) for text in row["completions"]]
    scores = [list(s or []) for s in row["step_scores"]]
    wrong = [truth.first_wrong(question, s) if truth else None for s in steps]
    method = row["method"]
    view: dict[str, Any] = {
        "method": method,
        "label": row_label(row),
        "budget": row["budget"],
        "beam_width": row["beam_width"],
        "lookahead": row["lookahead"],
        "chain_length": row.get("chain_length") or 0,
        "rounds": row["rounds"],
        "cost": {
            name: row.get(name) for name in ("generations", "policy_tokens", "prm_tokens", "total_flops")
        },
        "answer": list(row["answers"]),
        "correct": [int(bool(c)) for c in row["correct"]],
        "vote_score": [_round(candidate_score(s, aggregation)) for s in scores],
        "group": answer_groups(row["answers"]),
        "scores": [[_round(x) for x in s] for s in scores],
        "first_wrong": wrong,
        "first_low": [first_error_from_scores(s, threshold) for s in scores],
        "finish": list(row.get("finish_reasons") or []),
    }
    if method == "revisions":
        view["chains"] = revision_chains_of(row)
    tree = row.get("tree")
    if method in TREE_METHODS:
        if tree:  # recorded by the search: every beam of every round
            nodes = _recorded_tree(tree)
            view["tree_source"] = "recorded"
        else:  # a search from before trees were recorded: what the final candidates share
            nodes = _tree_of_finals(steps, scores)
            view["tree_source"] = "finals"
        view["tree"] = _tree_view(
            nodes, question, separator, truth, threshold, method, problem, stored, verdicts
        )
        view["node"] = _leaf_of_candidates(nodes, len(steps))
    else:
        view["steps"] = steps
    for c, (candidate_steps, candidate_scores) in enumerate(zip(steps, scores)):
        hashes = prefix_hashes(candidate_steps)
        for index, (step, score, prefix) in enumerate(zip(candidate_steps, candidate_scores, hashes)):
            verdicts.add(method, problem, prefix, index, score, is_right(wrong[c], index),
                         wrong[c] == index, step, (problem, stored, "candidate", c))  # fmt: skip
    return view


def _recorded_tree(tree: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "parent": int(n["parent"]),
            "round": int(n["round"]),
            "text": n["text"] or "",
            "score": n["score"],
            "rank": n["rank"],
            "status": n["status"],
            "candidate": int(n["candidate"]),
        }
        for n in tree
    ]


def _tree_of_finals(steps: list[list[str]], scores: list[list[float]]) -> list[dict[str, Any]]:
    """A tree of the final candidates alone: shared prefixes merged, each candidate's last step its own
    node (a search that recorded no tree cannot show what it pruned)."""
    nodes: list[dict[str, Any]] = []
    inner: dict[tuple[int, str], int] = {}
    for c, (candidate_steps, candidate_scores) in enumerate(zip(steps, scores)):
        parent = -1
        for index, step in enumerate(candidate_steps):
            score = candidate_scores[index] if index < len(candidate_scores) else None
            last = index == len(candidate_steps) - 1
            key = (parent, step)
            if not last and key in inner:
                parent = inner[key]
                continue
            nodes.append({"parent": parent, "round": index, "text": step, "score": score, "rank": None,
                          "status": "final" if last else "kept", "candidate": c if last else -1})  # fmt: skip
            if not last:
                inner[key] = len(nodes) - 1
            parent = len(nodes) - 1
    return nodes


def _leaf_of_candidates(nodes: list[dict[str, Any]], count: int) -> list[int | None]:
    leaf: list[int | None] = [None] * count
    for index, node in enumerate(nodes):
        if 0 <= node["candidate"] < count:
            leaf[node["candidate"]] = index
    return leaf


def _tree_view(
    nodes: list[dict[str, Any]],
    question: str,
    separator: str,
    truth: StepTruth | None,
    threshold: float,
    method: str,
    problem: int,
    stored: int,
    verdicts: StepVerdicts,
) -> dict[str, Any]:
    """The tree, columnar (a node's fields in parallel lists: a 64-beam search has ~10^3 nodes), with
    the nodes where a path first goes wrong (``first_wrong``) and first scores low (``first_low``)."""
    path_steps: list[list[str]] = []
    path_hashes: list[list[int]] = []
    path_wrong: list[int | None] = []
    path_low: list[bool] = []
    first_wrong_nodes, first_low_nodes = [], []
    for index, node in enumerate(nodes):
        parent = node["parent"]
        before = path_steps[parent] if parent >= 0 else []
        before_hashes = path_hashes[parent] if parent >= 0 else []
        added = split_into_steps(node["text"], separator)  # a step, or none (an empty last sample)
        steps = before + added
        hashes = before_hashes + prefix_hashes(added, before_hashes[-1] if before_hashes else 0)
        wrong = truth.first_wrong(question, steps) if truth else None
        low_before = path_low[parent] if parent >= 0 else False
        low = node["score"] is not None and node["score"] < threshold
        path_steps.append(steps)
        path_hashes.append(hashes)
        path_wrong.append(wrong)
        path_low.append(low_before or low)
        if wrong is not None and wrong >= len(before) and wrong < len(steps):
            first_wrong_nodes.append(index)
        if low and not low_before:
            first_low_nodes.append(index)
        if added and node["score"] is not None:
            last = len(steps) - 1
            verdicts.add(method, problem, hashes[-1], last, node["score"], is_right(wrong, last),
                         wrong == last, steps[-1], (problem, stored, "node", index))  # fmt: skip
    view = {
        "parent": [n["parent"] for n in nodes],
        "round": [n["round"] for n in nodes],
        "text": [n["text"] for n in nodes],
        "score": [_round(n["score"]) for n in nodes],
        "status": "".join(STATUS_CODES[n["status"]] for n in nodes),
        "candidate": [n["candidate"] for n in nodes],
        "first_wrong": first_wrong_nodes,
        "first_low": first_low_nodes,
    }
    # The rank is the score itself unless a rollout (lookahead) or another aggregation ranked the beams.
    if any(
        n["rank"] is not None and n["score"] is not None and abs(n["rank"] - n["score"]) > 1e-9 for n in nodes
    ):
        view["rank"] = [_round(n["rank"]) for n in nodes]
    return view


# --- listed entries: one per (row, strategy) -------------------------------------------------------


def row_entries(row: dict[str, Any], aggregation: str) -> list[dict[str, Any]]:
    """The row's ``ttc select`` strategies, each with the votes behind its pick: how many candidates
    share the selected answer (``votes`` of ``n``), the sum of their scores (``weight``) against the
    sum over every candidate with an answer (``weight_total``), and for revisions the flips between
    consecutive attempts of a chain.

    >>> row = {"problem_id": "p", "method": "best_of_n", "budget": 3, "generations": 3, "answers": ["1", "2", "1"],
    ...        "correct": [True, False, True], "step_scores": [[0.5], [0.9], [0.6]], "policy_flops": 1,
    ...        "prm_flops": 1, "total_flops": 2}
    >>> [(e["strategy"], e["selected"], e["votes"], e["weight"]) for e in row_entries(row, "last")]
    [('majority', 0, 2, 1.1), ('best_of_n', 1, 1, 0.9), ('best_of_n_weighted', 2, 2, 1.1)]
    """
    answers = row["answers"]
    scores = [candidate_score(list(s or []), aggregation) for s in row["step_scores"]]
    groups = answer_groups(answers)
    total = sum(s for s, a in zip(scores, answers) if has_answer(a))
    flips = revision_flips(row) if row["method"] == "revisions" else (0, 0)
    entries = []
    for record in select_row(row, aggregation):
        chosen = groups[record["selected"]]
        members = [i for i, g in enumerate(groups) if g == chosen]
        entries.append(
            {
                "strategy": record["strategy"],
                "budget": row["budget"],
                "n": len(answers),
                "selected": record["selected"],
                "answer": record["answer"],
                "correct": bool(record["correct"]),
                "votes": len(members),
                "weight": _round(sum(scores[i] for i in members)),
                "weight_total": _round(total),
                "generations": row["generations"],
                "total_flops": record["total_flops"],
                "right_to_wrong": flips[0],
                "wrong_to_right": flips[1],
            }
        )
    return entries


def revision_flips(row: dict[str, Any]) -> tuple[int, int]:
    """How often a revision turned a right answer wrong, and a wrong one right, over the row's chains.

    >>> revision_flips({"correct": [True, False, True, False], "subtrees": [0, 0, 0, 1], "positions": [0, 1, 2, 0]})
    (1, 1)
    """
    right_to_wrong = wrong_to_right = 0
    for chain in revision_chains_of(row):
        verdicts = [bool(row["correct"][i]) for i in chain]
        for before, after in zip(verdicts, verdicts[1:]):
            right_to_wrong += before and not after
            wrong_to_right += after and not before
    return right_to_wrong, wrong_to_right


# --- what fits in the page ---------------------------------------------------------------------------


def json_size(value: Any) -> int:
    """Bytes of ``value`` as the page embeds it (compact JSON, UTF-8)."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def fit_problems(sizes: dict[int, int], budget: int, seed: int, first: Sequence[int] = ()) -> list[int]:
    """The problems a page of ``budget`` bytes holds: every one if they fit; else ``first`` (the
    over-rated steps' problems) and then a seeded shuffle of the rest, each while it fits. Sorted.

    >>> fit_problems({0: 5, 1: 5, 2: 5}, 20, seed=0)
    [0, 1, 2]
    >>> len(fit_problems({0: 5, 1: 5, 2: 5}, 11, seed=0)), fit_problems({0: 5, 1: 5, 2: 5}, 6, seed=0, first=[2])
    (2, [2])
    """
    if sum(sizes.values()) <= budget:
        return sorted(sizes)
    rest = sorted(p for p in sizes if p not in set(first))
    random.Random(seed).shuffle(rest)
    kept, used = [], 0
    for problem in [*dict.fromkeys(p for p in first if p in sizes), *rest]:
        if used + sizes[problem] <= budget:
            kept.append(problem)
            used += sizes[problem]
    return sorted(kept)
