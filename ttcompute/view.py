"""``ttc view``: one self-contained HTML page to read a search by -- why a beam was kept, which step the
PRM over-rated, where a revision broke a right answer.

It reads a ``ttc search`` output (run with ``--prm``) and, optionally, its ``ttc select`` output, the
``ttc difficulty`` table and an ``eval-prm`` dataset of gold step labels, and writes
``<output_dir>/viewer.html``: the data as JSON inside the page, the JavaScript and CSS libraries that
draw it (``ttcompute/view_assets/``, vendored with their licenses) inlined. No server, no CDN: the file
opens offline, from a laptop or as a W&B artifact (``--report_to wandb`` logs it as ``wandb.Html``).

The page:

1. **Problems**: one line per problem, strategy (``ttc select``'s names) and budget -- question, gold
   answer, selected answer, votes, cost -- filtered by difficulty bin, strategy, budget, right or wrong,
   and searched by text.
2. **One problem**: a tree search as its tree (every beam of every round, coloured by its PRM score,
   kept / pruned / final, final beams with their answers); best-of-N's candidates grouped by answer with
   the weighted vote; revision chains attempt by attempt with the verifier's scores and the flips
   (right -> wrong, wrong -> right). Where the step truth is known (the arithmetic task's checker, or
   gold labels), the first wrong step is marked beside the PRM's first low score.
3. **Aggregates**: the PRM's mean score of right and wrong steps by step index; the over-rated steps
   (wrong, scored at or above ``--threshold``), ranked, each linking to its problem.

Every number is recomputed from the rows here (:mod:`ttcompute.view_data`); the JavaScript draws and
filters. A page over ``--max_mb`` holds a seeded sample of the problems (those of the top over-rated
steps first) and says what it left out; the aggregate views always cover every problem.

Why here and not in ``eval/``: it reads the outputs of search, select, difficulty and an eval-prm
dataset, and renders none of them back into a stage; like ``route.py`` it sits above the stages.

Output (``output_dir``, default ``<search_dir>/view``): ``viewer.html``, ``ttc_config.yaml``.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ttcompute._version import __version__
from ttcompute.core.config import config_to_dict, save_resolved_config
from ttcompute.core.errors import InputError
from ttcompute.core.outputs import open_search_output
from ttcompute.core.shards import ShardReader, read_resolved_config
from ttcompute.core.tracking import StageTracker
from ttcompute.eval.compute_optimal import load_selections
from ttcompute.eval.prm_eval import load_eval_examples
from ttcompute.eval.select import load_bins
from ttcompute.view_config import ViewConfig
from ttcompute.view_data import (
    ENTRY_COLUMNS,
    NESTED,
    ArithmeticChecker,
    GoldLabels,
    StepTruth,
    StepVerdicts,
    fit_problems,
    json_size,
    row_entries,
    row_view,
)

logger = logging.getLogger(__name__)

ASSETS = "view_assets"
# The libraries inlined into the page, in load order (view_assets/README.md: versions, sources, licenses).
SCRIPTS = ("d3-color.min.js", "d3-interpolate.min.js", "d3-scale-chromatic.min.js", "d3-hierarchy.min.js",
           "chart.umd.min.js", "tabulator.min.js", "viewer.js")  # fmt: skip
STYLES = ("tabulator.min.css", "viewer.css")
PAGE = "viewer.html"
# (package, version, license file): named with their licenses at the foot of the page.
LIBRARIES = (("tabulator-tables", "6.5.3", "tabulator-tables.LICENSE"), ("chart.js", "4.6.2", "chart.js.LICENSE.md"),
             ("d3-hierarchy", "3.1.3", "d3-hierarchy.LICENSE"), ("d3-scale-chromatic", "3.1.1", "d3-scale-chromatic.LICENSE"),
             ("d3-interpolate", "3.0.2", "d3-interpolate.LICENSE"), ("d3-color", "3.1.1", "d3-color.LICENSE"))  # fmt: skip
SOURCE_MAP = re.compile(r"^\s*(//# sourceMappingURL=\S+|/\*# sourceMappingURL=\S+ \*/)\s*$", re.MULTILINE)
COLUMNS = ["problem_id", "question", "gold_answer", "method", "width_setting", "beam_width", "lookahead",
           "search_aggregation", "budget", "num_beams", "generations", "completions", "step_scores", "answers",
           "correct", "finish_reasons", "subtrees", "positions", "chain_length", "policy_tokens", "prm_tokens",
           "policy_flops", "prm_flops", "total_flops", "rounds"]  # fmt: skip
# Bytes a tree node or a step adds to the page besides its text (ids, scores, separators): what the
# first pass estimates a problem's share of the page from.
NODE_BYTES, STEP_BYTES = 24, 10


@dataclass
class RowPlan:
    """Where each search row goes: its problem, the stored row it is listed under, whether it is that
    stored row (the largest nested budget; the first of identical tree runs)."""

    problems: list[str] = field(default_factory=list)
    problem_of_row: list[int] = field(default_factory=list)
    stored_of_row: list[int] = field(default_factory=list)  # local index among the problem's stored rows
    is_stored: list[bool] = field(default_factory=list)
    stored_count: list[int] = field(default_factory=list)
    estimated_bytes: list[int] = field(default_factory=list)  # per problem


def plan_rows(reader: ShardReader, has_tree: bool) -> tuple[RowPlan, int]:
    """First pass, over light columns and text lengths only: each row's problem and stored row, each
    problem's estimated share of the page, and how many step scores the search holds."""
    light = [
        "problem_id",
        "method",
        "budget",
        "chain_length",
        "beam_width",
        "lookahead",
        "search_aggregation",
    ]
    columns = light + ["completions", "step_scores"] + (["tree"] if has_tree else [])
    keys: list[tuple[Any, ...]] = []
    budgets: list[int] = []
    sizes: list[int] = []
    num_scores = 0
    for batch in reader.iter_batches(columns):
        values = batch.select(light).to_pylist()
        n = batch.num_rows
        text = _per_row(batch.column("completions"), n, lambda flat: pc.binary_length(flat))
        steps = _per_row(batch.column("step_scores"), n, lambda flat: pc.list_value_length(flat))
        size = text + steps * STEP_BYTES
        if has_tree:
            tree = batch.column("tree")
            size += _per_row(tree, n, lambda flat: pc.binary_length(pc.struct_field(flat, "text")))
            size += _per_row(tree, n, lambda flat: pa.array(np.ones(len(flat)))) * NODE_BYTES
        num_scores += int(steps.sum())
        for value, row_size in zip(values, size):
            method = value["method"]
            if method in NESTED:
                key = (value["problem_id"], method, value["chain_length"] or 0)
            else:
                key = (value["problem_id"], method, value["beam_width"], value["lookahead"],
                       value["search_aggregation"], value["budget"])  # fmt: skip
            keys.append(key)
            budgets.append(value["budget"])
            sizes.append(int(row_size))

    plan = RowPlan()
    problem_index: dict[str, int] = {}
    stored: dict[tuple[Any, ...], int] = {}  # key -> row holding it (nested: the largest budget)
    for index, key in enumerate(keys):
        problem_index.setdefault(key[0], len(problem_index))
        if key not in stored or budgets[index] > budgets[stored[key]]:
            stored[key] = index
    plan.problems = list(problem_index)
    plan.stored_count = [0] * len(plan.problems)
    plan.estimated_bytes = [0] * len(plan.problems)
    local: dict[tuple[Any, ...], int] = {}
    for key, index in sorted(stored.items(), key=lambda kv: kv[1]):
        p = problem_index[key[0]]
        local[key] = plan.stored_count[p]
        plan.stored_count[p] += 1
        plan.estimated_bytes[p] += sizes[index]
    for index, key in enumerate(keys):
        plan.problem_of_row.append(problem_index[key[0]])
        plan.stored_of_row.append(local[key])
        plan.is_stored.append(stored[key] == index)
    return plan, num_scores


def _per_row(column: pa.ChunkedArray | pa.Array, num_rows: int, measure) -> np.ndarray:
    """Sum of ``measure(flattened values)`` per row of a list column (nulls count 0)."""
    flat = pc.list_flatten(column)
    if len(flat) == 0:
        return np.zeros(num_rows)
    values = pc.fill_null(measure(flat), 0).to_numpy(zero_copy_only=False).astype(float)
    return np.bincount(pc.list_parent_indices(column).to_numpy(), weights=values, minlength=num_rows)


def selection_inputs(config: ViewConfig) -> tuple[str, dict[tuple[str, str, int], dict[str, Any]]]:
    """The selection aggregation and the select output's records by (problem, strategy, budget)."""
    if not config.select_dir:
        return config.aggregation or "last", {}
    records = load_selections([config.select_dir])
    chosen = read_resolved_config(config.select_dir).get("aggregation") or "last"
    if config.aggregation is not None and config.aggregation != chosen:
        raise InputError(
            f"--aggregation {config.aggregation}: {config.select_dir} selected with aggregation {chosen}; "
            "leave it out, or view without --select_dir"
        )
    return chosen, {(r["problem_id"], r["strategy"], int(r["budget"])): r for r in records}


def step_truth(config: ViewConfig, questions: list[str]) -> tuple[StepTruth | None, str]:
    """Where first wrong steps come from, and a line saying so on the page."""
    if config.eval_prm_dataset:
        examples, kind = load_eval_examples(config.eval_prm_dataset, config.eval_prm_split)
        labels = GoldLabels(examples)
        source = "ProcessBench labels" if kind == "processbench" else "MC labels (first value 0)"
        return labels, f"gold step labels of {config.eval_prm_dataset} ({source}, {len(examples)} solutions)"
    checker = ArithmeticChecker()
    if any(checker.readable(q) for q in questions):
        return checker, "the arithmetic task's exact step checker"
    return None, (
        "none: not the arithmetic task, and no --eval_prm_dataset of gold step labels (first wrong steps, "
        "right/wrong step scores and over-rated steps need one)"
    )


def run_view(config: ViewConfig) -> dict[str, Any]:
    """The ``ttc view`` stage: read, check, compute, then write ``viewer.html`` (and log it to W&B)."""
    search_dir = config.search_dir
    reader = open_search_output(search_dir, COLUMNS)
    has_tree = "tree" in reader.column_names
    plan, num_scores = plan_rows(reader, has_tree)
    if num_scores == 0:
        raise InputError(
            f"{search_dir}: field step_scores: no candidate has a step score (a search run without --prm); "
            "ttc view shows the PRM's verdicts"
        )
    aggregation, selected_by_select = selection_inputs(config)
    questions: dict[int, dict[str, Any]] = {}
    bins = load_bins(config.difficulty_dir, set(plan.problems)) if config.difficulty_dir else {}
    if not bins and selected_by_select:
        bins = {p: r["bin"] for (p, _, _), r in selected_by_select.items() if r.get("bin") is not None}

    # Which problems the page can hold, from the first pass's estimates (every problem when they fit;
    # 1.5x: an estimate may run low): only their rows are kept as page data while the rows stream past.
    frame = page_frame()
    room = int(config.max_mb * 1e6) - len(frame.encode())
    estimated = dict(enumerate(plan.estimated_bytes))
    candidates = set(fit_problems(estimated, int(room * 1.5), config.seed))

    separator = read_resolved_config(search_dir).get("step_separator") or "\n\n"
    first_questions = [row["question"] for row in reader.rows(0, min(len(reader), 64), ["question"])]
    truth, truth_note = step_truth(config, first_questions)
    verdicts = StepVerdicts(config.threshold)
    views: dict[tuple[int, int], dict[str, Any]] = {}
    # Per problem, its entries as lists in ENTRY_COLUMNS' order (a dict per entry would be ~1 kB each).
    entries: dict[int, list[list[Any]]] = defaultdict(list)
    strategies: dict[str, int] = {}
    judged = [0, 0]  # final candidates whose first wrong step is known, all final candidates
    columns = COLUMNS + (["tree"] if has_tree else [])
    index = 0
    for batch in reader.iter_batches(columns, batch_size=64):
        for row in batch.to_pylist():
            p, stored = plan.problem_of_row[index], plan.stored_of_row[index]
            questions.setdefault(
                p, {"id": row["problem_id"], "question": row["question"], "gold": row["gold_answer"]}
            )
            for entry in row_entries(row, aggregation):
                _check_against_select(entry, row["problem_id"], selected_by_select, config.select_dir)
                strategies.setdefault(entry["strategy"], len(strategies))
                entry.update(problem=p, row=stored, strategy=strategies[entry["strategy"]])
                entries[p].append([entry[c] for c in ENTRY_COLUMNS])
            if plan.is_stored[index]:
                view = row_view(row, p, stored, separator, aggregation, truth, verdicts)
                judged[0] += sum(w is not None for w in view["first_wrong"])
                judged[1] += len(view["first_wrong"])
                if p in candidates:
                    views[(p, stored)] = view
            index += 1

    overrated = verdicts.ranked_overrated(config.top_overrated)
    forced = list(dict.fromkeys(r["problem"] for r in overrated))
    missing = [p for p in forced if p not in candidates]
    if missing:  # the over-rated steps' problems are shown whatever the sample: read their rows again
        views.update(_views_of(reader, plan, set(missing), columns, separator, aggregation, truth, config))
        candidates |= set(missing)
    rows_of: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for (p, _), view in sorted(views.items(), key=lambda item: item[0]):  # a problem's rows in stored order
        rows_of[p].append(view)
    sizes = {p: json_size(rows_of[p]) + json_size(entries[p]) for p in candidates}
    # The aggregates, the strategy names and the meta (a few kB) share the room with the problems.
    fixed = json_size(verdicts.by_step()) + json_size(overrated) + json_size(list(strategies)) + 4096
    shown = fit_problems(sizes, room - fixed, config.seed, first=forced)

    page_index = {p: i for i, p in enumerate(shown)}
    problems = [{**questions[p], "bin": _bin(bins.get(plan.problems[p])), "rows": rows_of[p]} for p in shown]
    listed = [[page_index[p], *entry[1:]] for p in shown for entry in entries[p]]  # problem: its page index
    for record in overrated:
        record["problem_id"] = plan.problems[record["problem"]]
        record["problem"] = page_index.get(record["problem"])
        record["where"][0] = record["problem"]
    left_out = len(plan.problems) - len(shown)
    meta = {
        "title": f"ttc view: {search_dir}",
        "version": __version__,
        "search_dir": str(search_dir),
        "select_dir": config.select_dir,
        "difficulty_dir": config.difficulty_dir,
        "eval_prm_dataset": config.eval_prm_dataset,
        "truth": truth.name if truth else None,
        "truth_note": truth_note,
        "judged_candidates": judged[0],
        "candidates": judged[1],
        "aggregation": aggregation,
        "threshold": config.threshold,
        "separator": separator,
        "trees_recorded": has_tree,
        "problems_total": len(plan.problems),
        "problems_shown": len(shown),
        "rows_total": len(reader),
        "rows_shown": sum(plan.problem_of_row[i] in page_index for i in range(len(reader))),
        "entries_total": sum(map(len, entries.values())),
        "entries_shown": len(listed),
        "max_mb": config.max_mb,
        "seed": config.seed,
        "left_out": (
            f"{left_out} of {len(plan.problems)} problems left out to keep the page under {config.max_mb:g} MB "
            f"(a sample with seed {config.seed}; the problems of the top over-rated steps are kept); the "
            "aggregate views cover every problem"
            if left_out
            else ""
        ),
    }
    data = {
        "meta": meta,
        "problems": problems,
        "strategies": list(strategies),
        "entries": {"columns": list(ENTRY_COLUMNS), "rows": listed},
        "aggregates": {"by_step": verdicts.by_step(), "overrated": overrated},
    }
    out = Path(config.output_dir or Path(search_dir) / "view")
    out.mkdir(parents=True, exist_ok=True)
    save_resolved_config(out, "view", config)
    page = out / "viewer.html"
    tmp = out / f".viewer.html.{os.getpid()}.tmp"
    tmp.write_text(render_page(data, frame), encoding="utf-8")
    tmp.replace(page)
    summary = {
        "problems": len(plan.problems),
        "problems_shown": len(shown),
        "rows": len(reader),
        "megabytes": round(page.stat().st_size / 1e6, 3),
        "overrated_steps": len(verdicts.overrated),
    }
    logger.info(
        "Viewer of %d search rows (%d of %d problems shown, %.1f MB) -> %s",
        len(reader), len(shown), len(plan.problems), summary["megabytes"], page,
    )  # fmt: skip
    if config.report_to == "wandb":
        log_page(config, out, page, summary)
    return {"output_dir": str(out), "page": str(page), **summary}


def _bin(value: Any) -> int | None:
    return None if value is None else int(value)


def _check_against_select(
    entry: dict[str, Any],
    problem_id: str,
    records: dict[tuple[str, str, int], dict[str, Any]],
    where: str | None,
) -> None:
    """A select output must be this search's: its pick of every strategy the rows give is the rows' pick."""
    record = records.get((problem_id, entry["strategy"], entry["budget"]))
    if record is not None and int(record["selected"]) != entry["selected"]:
        raise InputError(
            f"{where}: selections.parquet: problem {problem_id!r}, {entry['strategy']} at budget {entry['budget']} "
            f"selected candidate {record['selected']}, the search rows give {entry['selected']} "
            "(a select output of another search?)"
        )


def _views_of(reader, plan: RowPlan, wanted: set[int], columns, separator, aggregation, truth, config):
    """The stored rows of the ``wanted`` problems (a second read; their verdicts are counted already)."""
    views = {}
    scratch = StepVerdicts(config.threshold)
    index = 0
    for batch in reader.iter_batches(columns, batch_size=64):
        problems = plan.problem_of_row[index : index + batch.num_rows]
        keep = [i for i, p in enumerate(problems) if p in wanted and plan.is_stored[index + i]]
        if keep:
            for i, row in zip(keep, batch.take(pa.array(keep)).to_pylist()):
                p, stored = plan.problem_of_row[index + i], plan.stored_of_row[index + i]
                views[(p, stored)] = row_view(row, p, stored, separator, aggregation, truth, scratch)
        index += batch.num_rows
    return views


def _asset(name: str) -> str:
    return (resources.files("ttcompute") / ASSETS / name).read_text(encoding="utf-8")


def page_frame() -> str:
    """The page without its data: the template with the libraries, our code and the licenses inlined."""
    # The maps are not shipped: a sourceMappingURL comment would only make developer tools look for one.
    styles = "\n".join(f"<style>/* {name} */\n{SOURCE_MAP.sub('', _asset(name))}</style>" for name in STYLES)
    # Inside <script>, the first "</script" ends the element whatever the JavaScript around it means.
    code = {name: SOURCE_MAP.sub("", _asset(name)).replace("</script", "<\\/script") for name in SCRIPTS}
    scripts = "\n".join(f"<script>/* {name} */\n{code[name]}</script>" for name in SCRIPTS)
    licenses = "\n".join(
        f"<h4>{name} {version}</h4><pre>{_escape(_asset(license))}</pre>"
        for name, version, license in LIBRARIES
    )
    return (
        _asset(PAGE)
        .replace("<!--STYLES-->", styles)
        .replace("<!--LICENSES-->", licenses)
        .replace("<!--SCRIPTS-->", scripts)
    )


def render_page(data: dict[str, Any], frame: str | None = None) -> str:
    """The page: ``frame`` (:func:`page_frame`) with the title and the data (JSON) filled in."""
    payload = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    # JSON in a <script type="application/json"> is text until JSON.parse: only "</" (and "<!--") could
    # end the element early; "<\\/" is the same string to JSON.
    payload = payload.replace("</", "<\\/").replace("<!--", "<\\u0021--")
    # The data goes in last, so that no placeholder spelt inside a question is filled.
    title = _escape(data["meta"]["title"])
    return (frame or page_frame()).replace("<!--TITLE-->", title).replace("<!--DATA-->", payload)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def log_page(config: ViewConfig, out: Path, page: Path, summary: dict[str, Any]) -> None:
    """``--report_to wandb``: the page as ``wandb.Html`` in the run (and as a file artifact to download)."""
    # Function-level: wandb is an optional extra, imported only when a run asks for it (StageTracker
    # refuses in one line when it is missing).
    tracker = StageTracker("view", config, config_to_dict(config), str(out))
    import wandb

    # inject=False: the page is complete as it is; W&B's own styles would only restyle it.
    tracker.log({"viewer": wandb.Html(page.read_text(encoding="utf-8"), inject=False)})
    artifact = wandb.Artifact(name=f"viewer-{tracker.run.id}", type="ttc-view")
    artifact.add_file(str(page))
    tracker.run.log_artifact(artifact)
    tracker.finish(summary)
