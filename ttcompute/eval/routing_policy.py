"""The deployable compute-optimal policy: ``routing_policy.json``, written by ``ttc compute-optimal`` and
run on new problems by ``ttc route``.

Compute-optimal selection (Snell et al., sec. 3.2) is only useful if it can be applied to questions
whose answers nobody knows yet. This file holds everything that takes:

* ``policy``: the policy the search ran (``model_name_or_path`` as the search recorded it), its
  parameter count and the prompt contract of the search manifest (``info.prompt_contract``);
* ``searches``: for each search the strategies came from, its directory and the options that change
  what it generates (the generator's sampling options, the PRM and reviser and how they are loaded,
  step separator, round and token caps, answer extraction, verifier context, seed) and the problem
  options it ran on (``task``, ``dataset`` ...: a policy is never applied to another task);
* ``predictor``: how a new question's difficulty is predicted -- ``kind`` (``question``, ``prm``,
  ``prm_probe``, ``oracle`` or ``none`` for one bin), its recorded options, the *fixed* bin edges of
  the difficulty output (never re-quantiled on new data), the task it was trained on and, for
  ``question``, the probe, copied next to this file (``probe_file``, relative to it). ``oracle`` bins
  are recorded (a policy file is still written) but ``ttc route`` refuses them: they need answers;
* ``strategies``: each strategy's search setting and selection rule (``ttc select``'s
  ``strategies.json``) and the search it came from;
* ``rule``: for every budget and bin, the strategy chosen on *all* of the bin's problems (deployment
  uses every problem; the cross-validated choices of ``compute_optimal.json`` are for measuring), its
  accuracy and mean FLOPs there, and ``curves``: every strategy's accuracy per bin and budget (the
  per-problem allocation spreads a total budget over the chosen strategies' curves);
* ``spend_points``: per bin, static and adaptive strategies on the axis of generations actually spent
  (:func:`~ttcompute.eval.spend_optimal.bin_points` on all of the bin's problems, giving up included:
  ``strategy`` null): ``ttc route --allocation spend`` spreads a mean of generations per problem over
  them;
* ``batch``: the gain table of batch allocation (:mod:`~ttcompute.eval.batch_allocation`, learned on all
  the problems' best-of-N candidates), its confidence rule and cap: ``ttc route --allocation batch``.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections import defaultdict
from dataclasses import fields
from pathlib import Path
from typing import Any

import datasets

from ttcompute.core.checkpoint_identity import file_sha256
from ttcompute.core.errors import InputError
from ttcompute.core.recorded_paths import RECORDED_PATHS, record_tree, resolve_tree
from ttcompute.core.shards import read_manifest, read_resolved_config, write_json
from ttcompute.eval.allocation import choose_strategy
from ttcompute.eval.batch_allocation import gain_table
from ttcompute.eval.search.search_config import SearchConfig
from ttcompute.eval.select import is_adaptive
from ttcompute.eval.spend_optimal import bin_points, option_table
from ttcompute.models.generation_config import GeneratorConfig
from ttcompute.tasks.problem_config import ProblemConfig

logger = logging.getLogger(__name__)

POLICY_FORMAT = "ttcompute-routing-policy"
POLICY_VERSION = 1
POLICY_FILE = "routing_policy.json"
PROBE_FILE = "question_probe.json"
# Options that say where, by whom or how fast a search ran, or where it reported: never what it finds.
_NOT_RESULTS = {"output_dir", "overwrite", "shard", "strict", "problems_per_shard", "report_to", "wandb_project",
                "wandb_run_name", "push_to_hub", "hub_dataset_id", "hub_private_repo"}  # fmt: skip
REQUIRED = ("format", "version", "policy", "searches", "predictor", "strategies", "rule")
# An exported bundle (eval/policy_bundle.py) lists every file it holds with its sha256 here.
BUNDLE_KEY = "bundle"


def _options(recorded: dict[str, Any], config_class: type) -> dict[str, Any]:
    names = {f.name for f in fields(config_class)} - _NOT_RESULTS
    return {name: recorded[name] for name in sorted(names) if name in recorded}


def rule_table(
    records: list[dict[str, Any]],
    bins: dict[str, Any],
    deployable: set[str],
) -> tuple[dict[str, dict[str, dict[str, Any]]], dict[str, dict[str, dict[str, float]]]]:
    """The strategy chosen per budget and bin on all of the bin's problems, and every strategy's curve.

    ``records``: selections (problem_id, strategy, budget, correct, total_flops); ``bins``: problem ->
    bin; ``deployable``: the strategies whose settings are known (only they may be chosen), each
    bin's pick compute-optimal's (:func:`choose_strategy`: most accurate, ties to the cheaper). A strategy competes in
    a bin at a budget only with a result for every problem of the bin (as in compute-optimal).

    Returns ``({budget: {bin: {strategy, accuracy, mean_total_flops, num_problems}}},
    {bin: {strategy: {budget: accuracy}}})``, budgets and bins as text keys.
    """
    results: dict[tuple[int, str], dict[str, tuple[bool, float]]] = defaultdict(dict)
    for r in records:
        if r["strategy"] in deployable:
            results[(int(r["budget"]), r["strategy"])][r["problem_id"]] = (
                bool(r["correct"]),
                float(r["total_flops"]),
            )
    members: dict[str, list[str]] = defaultdict(list)
    for problem_id in sorted({r["problem_id"] for r in records}):
        members[str(bins[problem_id])].append(problem_id)
    rule: dict[str, dict[str, dict[str, Any]]] = {}
    curves: dict[str, dict[str, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
    for budget in sorted({b for b, _ in results}):
        for group in sorted(members, key=lambda g: (len(g), g)):
            problems = members[group]
            complete = {
                s: rows
                for (b, s), rows in results.items()
                if b == budget and all(p in rows for p in problems)
            }
            if not complete:
                continue
            accuracy = {s: sum(rows[p][0] for p in problems) / len(problems) for s, rows in complete.items()}
            flops = {s: sum(rows[p][1] for p in problems) / len(problems) for s, rows in complete.items()}
            pick = choose_strategy(accuracy, flops)
            rule.setdefault(str(budget), {})[group] = {
                "strategy": pick,
                "accuracy": round(accuracy[pick], 6),
                "mean_total_flops": flops[pick],
                "num_problems": len(problems),
            }
            for s in sorted(complete):
                curves[group][s][str(budget)] = round(accuracy[s], 6)
    return rule, {g: dict(v) for g, v in sorted(curves.items())}


def spend_points(
    records: list[dict[str, Any]], bins: dict[str, Any], deployable: set[str]
) -> dict[str, list[dict[str, Any]]]:
    """Per bin, on all of its problems: the best deployable option at each mean spend, giving up first."""
    table = option_table([r for r in records if r["strategy"] in deployable])
    members: dict[str, list[str]] = defaultdict(list)
    for problem_id in sorted({r["problem_id"] for r in records}):
        members[str(bins[problem_id])].append(problem_id)
    out = {}
    for group in sorted(members, key=lambda g: (len(g), g)):
        points = bin_points(table, members[group], members[group])
        out[group] = [
            {
                "generations": x,
                "accuracy": round(a, 6),
                "strategy": option[0] if option else None,
                "budget": option[1] if option else 0,
            }
            for x, (a, option) in points.items()
        ]
    return out


def _batch_record(select_dir: str, problems: set[str]) -> dict[str, Any] | None:
    """What ``ttc route --allocation batch`` reads: the gain table of all the problems' best-of-N
    prefixes (``ttc select``'s ``prefixes.parquet``) and the confidence rule it is indexed by."""
    path = Path(select_dir) / "prefixes.parquet"
    if not path.is_file():
        return None
    rows = [
        row for row in datasets.Dataset.from_parquet(str(path)).to_list() if row["problem_id"] in problems
    ]
    if not rows:
        return None
    return {
        "rule": rows[0]["rule"],
        "cap": min(len(r["correct"]) for r in rows),
        **gain_table(rows).to_dict(),
    }


def _strategy_settings(select_dirs: list[str]) -> tuple[dict[str, dict[str, Any]], list[str]] | None:
    """Every strategy's settings from the ``strategies.json`` of each select directory (a strategy
    found in several is taken from the first, as ``load_selections`` does), and the search dirs."""
    settings: dict[str, dict[str, Any]] = {}
    search_dirs: list[str] = []
    for directory in select_dirs:
        path = Path(directory) / "strategies.json"
        if not path.is_file():
            logger.warning(
                "%s: no strategies.json (written by ttc select since ttc route exists): no routing policy "
                "written; rerun ttc select",
                directory,
            )
            return None
        record = resolve_tree(json.loads(path.read_text()), path)
        if record["search_dir"] not in search_dirs:
            search_dirs.append(record["search_dir"])
        for name, values in record["strategies"].items():
            settings.setdefault(name, {**values, "search": search_dirs.index(record["search_dir"])})
    return settings, search_dirs


def _search_record(search_dir: str) -> dict[str, Any]:
    recorded = read_resolved_config(search_dir)
    info = read_manifest(search_dir)["info"]
    return {
        "search_dir": search_dir,
        "generator": _options(recorded, GeneratorConfig),
        "search": _options(recorded, SearchConfig),
        "problems": _options(recorded, ProblemConfig),
        "policy_parameters": info.get("policy_parameters"),
        "verifier_parameters": info.get("verifier_parameters"),
        "prompt_contract": info.get("prompt_contract"),
    }


def _predictor_record(difficulty_dir: str | None, out: Path) -> dict[str, Any]:
    """The predictor behind the bins: its options, fixed edges, task, and (question) the probe copied."""
    if difficulty_dir is None:
        return {"kind": "none", "edges": [], "metric": None, "num_bins": 1, "task": None}
    options = read_resolved_config(difficulty_dir)
    edges = json.loads((Path(difficulty_dir) / "bin_edges.json").read_text())
    samples = read_resolved_config(options.get("samples_dir", "")) if options.get("samples_dir") else {}
    kind = options.get("predictor", "oracle")
    record = {
        "kind": kind,
        "difficulty_dir": str(Path(difficulty_dir).resolve()),  # recorded relative to the policy file
        "options": {k: v for k, v in sorted(options.items()) if k not in ("output_dir",)},
        "edges": edges["edges"],
        "metric": edges.get("metric"),
        "num_bins": edges.get("num_bins", len(edges["edges"]) + 1),
        "task": samples.get("task"),
        # How the difficulty output's own samples were drawn: the prm predictors draw the same on new data.
        "sampling": {
            k: samples[k]
            for k in ("num_samples", "seed", "temperature", "top_p", "max_new_tokens")
            if k in samples
        },  # fmt: skip
    }
    if kind == "question":
        probe = Path(difficulty_dir) / PROBE_FILE
        shutil.copyfile(probe, out / PROBE_FILE)
        record["probe_file"] = PROBE_FILE
        train = options.get("probe_train_samples_dir")
        record["probe_task"] = read_resolved_config(train).get("task") if train else record["task"]
    return record


def build_routing_policy(
    records: list[dict[str, Any]],
    bins: dict[str, Any],
    select_dirs: list[str],
    difficulty_dir: str | None,
    out: Path,
) -> dict[str, Any] | None:
    """The routing policy of a compute-optimal run (None, logged, when a select output predates
    ``strategies.json``). ``out``: where it goes (a question probe is copied there)."""
    found = _strategy_settings(select_dirs)
    if found is None:
        return None
    settings, search_dirs = found
    static = [r for r in records if not is_adaptive(r["strategy"])]
    rule, curves = rule_table(static, bins, {s for s in settings if not is_adaptive(s)})
    spend = spend_points(records, bins, set(settings))
    searches = [_search_record(d) for d in search_dirs]
    # The policy: the model of the searches that ran one (a reviser-only search has none of its own).
    main = next((s for s in searches if s["generator"].get("model_name_or_path")), searches[0])
    used = {entry["strategy"] for per_bin in rule.values() for entry in per_bin.values()}
    used |= {point["strategy"] for points in spend.values() for point in points if point["strategy"]}
    return {
        "format": POLICY_FORMAT,
        "version": POLICY_VERSION,
        "policy": {
            "model_name_or_path": main["generator"].get("model_name_or_path"),
            "parameters": main["policy_parameters"],
            "prompt_contract": main["prompt_contract"],
        },
        "searches": searches,
        "predictor": _predictor_record(difficulty_dir, out),
        "strategies": {name: settings[name] for name in sorted(used)},
        "rule": rule,
        "curves": curves,
        "spend_points": spend,
        "batch": _batch_record(select_dirs[0], {r["problem_id"] for r in records}),
        "num_problems": len({r["problem_id"] for r in records}),
    }


def write_routing_policy(
    out: Path, config: Any, records: list[dict[str, Any]], bins: dict[str, Any]
) -> Path | None:
    """``<out>/routing_policy.json`` for ``ttc compute-optimal`` (``config``: its options)."""
    policy = build_routing_policy(records, bins, config.select_dirs, _difficulty_dir(config), out)
    if policy is None:
        return None
    save_routing_policy(policy, out / POLICY_FILE)
    logger.info("Routing policy (ttc route --policy): %s", out / POLICY_FILE)
    return out / POLICY_FILE


def save_routing_policy(policy: dict[str, Any], path: Path) -> None:
    """Write ``policy`` to ``path`` with every local path relative to the file (core/recorded_paths.py):
    it routes from any working directory, and wherever the folder moves."""
    policy[RECORDED_PATHS] = record_tree(policy, path.parent)
    write_json(path, policy)


def _difficulty_dir(config: Any) -> str | None:
    """The difficulty output behind the bins: compute-optimal's, else the one ``ttc select`` read."""
    if config.difficulty_dir:
        return config.difficulty_dir
    return read_resolved_config(config.select_dirs[0]).get("difficulty_dir")


def load_routing_policy(path: str | Path) -> dict[str, Any]:
    """A routing policy file, checked for its shape; ``probe_file`` made absolute.

    Raises:
        InputError: not a file, not JSON, not a routing policy, or a part missing or malformed.
    """
    try:
        policy = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: cannot read a routing policy ({err.__class__.__name__}: {err})") from None
    if isinstance(policy, dict) and policy.get("format") == POLICY_FORMAT:
        try:
            policy = resolve_tree(policy, path)
        except (KeyError, IndexError, TypeError, ValueError) as err:
            raise InputError(f"{path}: malformed routing policy ({RECORDED_PATHS}: {err!r})") from None
    if not isinstance(policy, dict) or policy.get("format") != POLICY_FORMAT:
        raise InputError(
            f"{path}: not a routing policy (no format {POLICY_FORMAT!r}; ttc compute-optimal writes one)"
        )
    if policy.get("version") != POLICY_VERSION:
        raise InputError(
            f"{path}: routing policy version {policy.get('version')!r}, this ttcompute reads {POLICY_VERSION}"
        )
    missing = [key for key in REQUIRED if key not in policy]
    if missing:
        raise InputError(f"{path}: malformed routing policy: missing {missing}")
    try:
        for budget, per_bin in policy["rule"].items():
            int(budget)
            for group, entry in per_bin.items():
                if entry["strategy"] not in policy["strategies"]:
                    raise KeyError(f"rule[{budget}][{group}] names unknown strategy {entry['strategy']!r}")
        for settings in policy["strategies"].values():
            policy["searches"][settings["search"]]["search"]  # noqa: B018 - the index must exist
            settings["method"], settings["rule"], settings["width_setting"]  # noqa: B018
        predictor = policy["predictor"]
        edges = [float(e) for e in predictor["edges"]]
        if edges != sorted(edges):
            raise ValueError("bin edges are not ascending")
        if predictor["kind"] == "question":
            predictor["probe_file"] = str((Path(path).parent / predictor["probe_file"]).resolve())
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as err:
        raise InputError(f"{path}: malformed routing policy ({err.__class__.__name__}: {err})") from None
    if not policy["rule"]:
        raise InputError(f"{path}: the routing policy has no rule (no strategy with its settings known)")
    if BUNDLE_KEY in policy:  # an exported bundle: every file as it was exported, or refused
        verify_bundle(policy, path)
    return policy


def verify_bundle(policy: dict[str, Any], policy_file: str | Path) -> None:
    """Raise unless every file a bundle's policy lists is there with its checksum.

    Raises:
        InputError: a file missing or changed, naming it.
    """
    listed = policy.get(BUNDLE_KEY, {}).get("files")
    if not isinstance(listed, dict):
        raise InputError(f"{policy_file}: malformed bundle record (no file list)")
    root = Path(policy_file).parent
    for relative, expected in listed.items():
        path = root / relative
        if not path.is_file():
            raise InputError(f"{policy_file}: bundle file {relative} is missing")
        found = file_sha256(path)
        if found != expected:
            raise InputError(
                f"{policy_file}: bundle file {relative} does not match its checksum "
                f"(sha256 {found[:12]}..., recorded {str(expected)[:12]}...): the bundle was changed"
            )
