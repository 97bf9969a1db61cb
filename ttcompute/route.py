"""``ttc route``: run a compute-optimal policy (``routing_policy.json``) on new problems.

Each new question's difficulty is predicted with the predictor the policy was built with (``question``:
the probe on the policy's prompt hidden states; ``prm`` / ``prm_probe``: samples of the policy scored
by the PRM; ``none``: one bin), binned with the policy's *fixed* edges, and given the strategy its bin
gets at the budget: ``--allocation per_bin`` runs the bin's rule at ``--budget``; ``per_problem``
spreads the total ``budget x problems`` over the problems by their bins' accuracy-vs-budget curves
(:func:`~ttcompute.eval.allocation.allocate`). The search runs through ``ttc search``'s own
:func:`~ttcompute.eval.search.stage.search_chunk` with the recorded options and the answer is the one
``ttc select``'s rule picks (:func:`~ttcompute.eval.select.select_row`), graded against the gold
answer when there is one. Majority-vote strategies run without the PRM (select charges them none).

Why here and not in ``eval/``: it predicts difficulty with ``data_gen``'s predictors and searches with
``eval``'s, and a stage package never imports another one; like ``demo.py`` it composes stages.

Shards are chunks of ``--problems_per_shard`` problems: within one, the problems that run the same
search setting (and the same use of the PRM) are searched together. Every sample of a search is seeded
by its problem (best-of-N candidates, revision attempts, beam steps each have a stream of their own),
so a problem gets exactly what ``ttc search`` gave it, whatever else shares its batch: an adaptive
strategy draws the candidates ``ttc select`` evaluated it on, and stops where it stopped offline. A
killed run resumes at the first unfinished chunk (the predictions are recomputed first: deterministic,
and for ``question`` one forward pass per prompt).

Output rows (one per problem):
    problem_id, question, gold_answer, predicted_score (the predictor's: predicted pass@1 for
    ``question``, the mean PRM score for ``prm*``; null for ``none``), bin, strategy, method, budget,
    generations, answer, correct (null without a gold answer), policy_flops, prm_flops (the search's;
    0 for majority vote), predictor_flops (predicting this problem's difficulty), total_flops (their sum)

``stats.json``: accuracy (when graded), total and per-problem FLOPs and generations, strategy counts,
problems per bin.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import zlib
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pyarrow as pa
from transformers import PretrainedConfig

from ttcompute.core.budget import inference_flops
from ttcompute.core.checkpoint_identity import same_checkpoint
from ttcompute.core.errors import InputError
from ttcompute.core.grading import extract_answer, is_equivalent
from ttcompute.core.prompts import PromptContract, contract_from_flags
from ttcompute.core.selection import group_equivalent_answers, weighted_best_of_n
from ttcompute.core.sharded_stage import is_complete, run_sharded_stage
from ttcompute.core.shards import parse_shard_spec
from ttcompute.core.steps import aggregate
from ttcompute.core.stopping import StoppingRule, answered, confidences, stopped_pick
from ttcompute.data_gen.difficulty import assign_bins, prm_difficulty_scores
from ttcompute.data_gen.difficulty_config import DifficultyConfig
from ttcompute.data_gen.question_probe import QuestionProbe, parameters_through, policy_id, prompt_features
from ttcompute.eval.adaptive import Models, parse_strategy, revision_records, run_confidence
from ttcompute.eval.allocation import allocate
from ttcompute.eval.batch_allocation import GainTable, allocate_batch
from ttcompute.eval.routing_policy import load_routing_policy
from ttcompute.eval.search.adaptive_sampling import StopPlan, adaptive_best_of_n
from ttcompute.eval.search.best_of_n import add_candidates, draw_candidates, score_candidates
from ttcompute.eval.search.revision_chains import ChainStop
from ttcompute.eval.search.search_config import SearchConfig
from ttcompute.eval.search.stage import SearchRun, best_of_n_seed, outcome_rows, plan_runs, search_chunk
from ttcompute.eval.search.step_search import SearchOutcome, start_fresh
from ttcompute.eval.select import select_row
from ttcompute.models.backends import load_backend
from ttcompute.models.generation import SamplingParams, build_prompt
from ttcompute.models.generation_config import GeneratorConfig
from ttcompute.models.hf_backend import TransformersBackend
from ttcompute.models.prm_formats import load_prm
from ttcompute.models.reviser import reviser_contract
from ttcompute.route_config import RouteConfig
from ttcompute.route_stats import route_stats
from ttcompute.tasks.problem_config import ProblemConfig

logger = logging.getLogger(__name__)

ROW_SCHEMA = pa.schema(
    [
        ("problem_id", pa.string()),
        ("question", pa.string()),
        ("gold_answer", pa.string()),
        ("predicted_score", pa.float64()),
        ("bin", pa.int64()),
        ("strategy", pa.string()),
        ("method", pa.string()),
        ("budget", pa.int64()),
        ("generations", pa.int64()),
        ("answer", pa.string()),
        ("correct", pa.bool_()),
        ("policy_flops", pa.int64()),
        ("prm_flops", pa.int64()),
        ("predictor_flops", pa.int64()),
        ("total_flops", pa.int64()),
    ]
)
TREE_METHODS = ("beam_search", "lookahead", "dvts")
MAJORITY_RULES = ("majority",)


# --- what the policy file allows -------------------------------------------------------------------


def check_request(policy: dict[str, Any], problem_args: ProblemConfig, config: RouteConfig) -> PromptContract:
    """Every check that needs no model: the predictor, the flags, the task, the budget. Returns the
    policy's prompt contract.

    Raises:
        InputError: one line naming what does not fit.
    """
    where = config.policy
    predictor = policy["predictor"]
    if predictor["kind"] == "oracle":
        raise InputError(
            f"{where}: its bins are oracle difficulty, and oracle needs answers (pass@1 of graded samples): "
            "it cannot route new questions; build the policy on ttc difficulty --predictor question, prm or prm_probe"
        )
    recorded = policy["policy"]
    model = recorded["model_name_or_path"]
    if config.model_name_or_path and model and policy_id(config.model_name_or_path) != policy_id(model):
        raise InputError(
            f"ttc route: --model_name_or_path {config.model_name_or_path} is not the policy of {where} "
            f"({recorded['model_name_or_path']}); its strategies were chosen for that policy"
        )
    given = {
        "prompt_template": config.prompt_template,
        "use_chat_template": config.use_chat_template,
        "system_prompt": config.system_prompt,
    }
    record = recorded["prompt_contract"]
    contract = PromptContract.from_record(record, where) if record is not None else None
    contract = contract_from_flags(contract, given, where, "ttc route")
    for search in policy["searches"]:
        task = search["problems"].get("task")
        if task is not None and task != problem_args.task:
            raise InputError(
                f"ttc route: --task {problem_args.task}, but {where} was built on task {task} "
                f"({search['search_dir']}); a policy is not applied to another task"
            )
    for key in ("task", "probe_task"):
        task = predictor.get(key)
        if task is not None and task != problem_args.task:
            raise InputError(
                f"{where}: its {predictor['kind']} predictor was trained on task {task}, not {problem_args.task}"
            )
    # What --allocation batch and spend read, and what writes it: a policy from before has none.
    needed = {
        "batch": ("batch", "ttc select and ttc compute-optimal"),
        "spend": ("spend_points", "ttc compute-optimal"),
    }
    if config.allocation in needed:
        key, stages = needed[config.allocation]
        if not policy.get(key):
            raise InputError(
                f"{where}: no {key} (a policy from before --allocation {config.allocation}, or selections without "
                f"best-of-N candidates): rerun {stages} for it"
            )
        return contract
    if config.budget != int(config.budget):
        raise InputError(
            f"ttc route: --budget {config.budget:g}: whole generations with --allocation {config.allocation}"
        )
    budgets = sorted(int(b) for b in policy["rule"])
    if config.budget < budgets[0]:
        raise InputError(
            f"ttc route: --budget {config.budget:g} is below the cheapest budget of {where} ({budgets[0]}); "
            f"its budgets: {budgets}"
        )
    if config.allocation == "per_bin" and config.budget not in budgets:
        raise InputError(
            f"ttc route: --budget {config.budget:g} is not a budget of {where} ({budgets}); pick one, or "
            "--allocation per_problem to spread budget x problems over them"
        )
    return contract


def load_probe(policy: dict[str, Any], where: str) -> QuestionProbe:
    """The policy file's question probe, checked to belong to its policy and prompt contract."""
    probe = QuestionProbe.load(policy["predictor"]["probe_file"])
    recorded = policy["policy"]
    model = recorded["model_name_or_path"]
    if model and not same_checkpoint(probe.policy, model):
        raise InputError(
            f"{policy['predictor']['probe_file']}: a question probe of policy {probe.policy}, but {where} "
            f"routes policy {policy_id(model)}"
        )
    contract = recorded["prompt_contract"]
    if probe.prompt_contract is not None and contract is not None and probe.prompt_contract != contract:
        raise InputError(
            f"{policy['predictor']['probe_file']}: trained on prompts {probe.prompt_contract}, but {where} "
            f"searches with {recorded['prompt_contract']}"
        )
    return probe


def strategy_run(
    settings: dict[str, Any], budget: int, search_config: SearchConfig
) -> tuple[SearchRun, SearchConfig]:
    """The search run (and the config to run it with) behind a strategy at a budget: ``ttc search``'s
    own planning (:func:`plan_runs`) of that one setting."""
    method = settings["method"]
    changes: dict[str, Any] = {"methods": [method], "budgets": [budget]}
    if method in ("beam_search", "lookahead"):
        changes["beam_widths"] = [settings["width_setting"]]
    if method == "lookahead":
        changes["lookahead_steps"] = [settings["lookahead"]]
    if method == "dvts":
        changes["dvts_widths"] = [settings["width_setting"]]
    if method in TREE_METHODS:
        changes["search_aggregations"] = [settings["search_aggregation"]]
    if method == "revisions":
        changes["revision_lengths"] = [settings["chain_length"]]
    config = dataclasses.replace(search_config, **changes)
    runs = [
        r for r in plan_runs(config) if r.budget == budget and settings["width_setting"] in r.width_settings
    ]
    if len(runs) != 1:
        raise InputError(f"strategy {settings}: no single search run at budget {budget} (found {len(runs)})")
    return runs[0], config


def assign_strategies(
    policy: dict[str, Any], bins: dict[str, int], budget: float, allocation: str
) -> dict[str, tuple[str | None, int]]:
    """Each problem's (strategy, budget): its bin's rule at ``budget`` (``per_bin``), or the total
    ``budget x problems`` allocated over the bins' curves of chosen strategies (``per_problem``), or
    over the bins' points of static and adaptive strategies by generations actually spent (``spend``:
    a problem may be given up on, strategy None).

    Raises:
        InputError: a bin the policy has no rule for, or a total too small for the cheapest budgets.
    """
    if allocation == "spend":
        return _spend_allocation(policy, bins, budget)
    if allocation == "batch":
        return {p: (BATCH, policy["batch"]["cap"]) for p in bins}
    budget = int(budget)
    rule = {int(b): per_bin for b, per_bin in policy["rule"].items()}
    if allocation == "per_bin":
        missing = sorted({str(g) for g in bins.values()} - set(rule[budget]))
        if missing:
            raise InputError(f"the routing policy has no strategy for bin(s) {missing} at budget {budget}")
        return {p: (rule[budget][str(g)]["strategy"], budget) for p, g in bins.items()}
    curves: dict[str, dict[int, float]] = defaultdict(dict)
    for b, per_bin in rule.items():
        for group, entry in per_bin.items():
            curves[group][b] = entry["accuracy"]
    missing = sorted({str(g) for g in bins.values()} - set(curves))
    if missing:
        raise InputError(f"the routing policy has no strategy for bin(s) {missing}")
    try:
        given = allocate({p: curves[str(g)] for p, g in bins.items()}, total=budget * len(bins))
    except ValueError as err:
        raise InputError(f"--budget {budget:g} x {len(bins)} problems: {err}") from None
    return {p: (rule[b][str(bins[p])]["strategy"], b) for p, b in given.items()}


def _spend_allocation(
    policy: dict[str, Any], bins: dict[str, int], budget: float
) -> dict[str, tuple[str | None, int]]:
    points = policy["spend_points"]
    missing = sorted({str(g) for g in bins.values()} - set(points))
    if missing:
        raise InputError(f"the routing policy has no spend points for bin(s) {missing}")
    curves = {g: {p["generations"]: p["accuracy"] for p in entries} for g, entries in points.items()}
    options = {
        g: {p["generations"]: (p["strategy"], p["budget"]) for p in entries} for g, entries in points.items()
    }
    given = allocate({p: curves[str(g)] for p, g in bins.items()}, total=budget * len(bins))
    return {p: options[str(bins[p])][spent] for p, spent in given.items()}


# --- the models, as the searches loaded them --------------------------------------------------------


@dataclasses.dataclass
class SearchModels:
    """One recorded search's options and models."""

    gen_args: GeneratorConfig
    config: SearchConfig
    policy: Any
    prm: Any
    reviser: Any


def load_search_models(
    policy: dict[str, Any], used: set[int], config: RouteConfig, cache: dict
) -> dict[int, SearchModels]:
    """The generator options, search options, policy, PRM and reviser of every search in ``used``
    (each checkpoint loaded once, shared through ``cache``)."""
    out = {}
    for index in sorted(used):
        search = policy["searches"][index]
        generator_options = dict(search["generator"])
        if config.backend:
            generator_options["backend"] = config.backend
        if config.device:
            generator_options["device"] = config.device
        gen_args = GeneratorConfig(**generator_options)
        # Samples the search reused as best-of-N's first candidates are of its own problems, not these.
        search_config = SearchConfig(
            **{**search["search"], "initial_samples_dir": None, "initial_samples": None}
        )
        model = gen_args.model_name_or_path
        policy_backend = _backend(gen_args, model, cache) if model else None
        prm = None
        if search_config.prm:
            key = ("prm", search_config.prm, search_config.prm_format, config.device)
            if key not in cache:
                cache[key] = load_prm(
                    search_config.prm,
                    search_config.prm_format,
                    device=config.device or search_config.prm_device or gen_args.device,
                    dtype=search_config.prm_dtype,
                    max_batch_tokens=search_config.prm_max_batch_tokens,
                    max_cache_tokens=search_config.prm_cache_tokens,
                    trust_remote_code=gen_args.trust_remote_code,
                    step_separator=search_config.prm_step_separator,
                    prompt_contract=search_config.prm_prompt_contract(),
                )
            prm = cache[key]
        reviser = None
        if search_config.reviser and "revisions" in search_config.methods:
            reviser = _backend(gen_args, search_config.reviser, cache)
            reviser_contract(
                search_config.reviser,
                PretrainedConfig.get_config_dict(search_config.reviser)[0],
                gen_args.prompt_contract(),
            )
        out[index] = SearchModels(gen_args, search_config, policy_backend, prm, reviser)
    return out


def _backend(gen_args: GeneratorConfig, path: str, cache: dict):
    """A generation backend, loaded once per checkpoint and placement."""
    key = (path, gen_args.backend, tuple(sorted(gen_args.backend_kwargs().items())))
    if key not in cache:
        cache[key] = load_backend(gen_args.backend, path, **gen_args.backend_kwargs())
    return cache[key]


# --- predicting difficulty ---------------------------------------------------------------------------


def predict_difficulty(
    policy: dict[str, Any],
    problems: list,
    prompts: list[str],
    backend,
    probe: QuestionProbe | None,
    config: RouteConfig,
) -> tuple[list[float | None], list[int]]:
    """Each problem's predicted score and what predicting it cost (FLOPs), with the recorded predictor."""
    predictor = policy["predictor"]
    kind = predictor["kind"]
    if kind == "none":
        return [None] * len(problems), [0] * len(problems)
    if kind == "question":
        features, tokens = prompt_features(backend, prompts, [probe.layer])
        scores = [float(x) for x in probe.predict(features)]
        run = parameters_through(backend.model, probe.layer)  # the pass stops at the probe's layer
        return scores, [inference_flops(run, n) for n in tokens]
    # prm / prm_probe: sample like the difficulty output's samples, score them with its PRM.
    options = DifficultyConfig(**{k: v for k, v in predictor["options"].items() if k in _DIFFICULTY_FIELDS})
    sampling = predictor.get("sampling", {})
    k = options.probe_samples if kind == "prm_probe" else sampling.get("num_samples", 16)
    prm = load_prm(
        options.prm,
        options.prm_format,
        device=config.device or options.device,
        step_separator=options.prm_step_separator,
        prompt_contract=options.prm_prompt_contract(),
    )
    params = SamplingParams(
        n=k,
        temperature=sampling.get("temperature", 1.0),
        top_p=sampling.get("top_p", 1.0),
        max_tokens=sampling.get("max_new_tokens", 256),
    )
    scores, flops = [], []
    for start in range(0, len(problems), config.problems_per_shard):
        chunk = slice(start, start + config.problems_per_shard)
        seed = zlib.crc32(f"{sampling.get('seed', 0)}:route-predictor:{start}".encode())
        outputs = backend.generate(prompts[chunk], dataclasses.replace(params, seed=seed))
        for problem, completions in zip(problems[chunk], outputs):
            (score,), prm_tokens = prm_difficulty_scores(
                prm,
                [problem.question],
                [[c.text for c in completions]],
                options.step_separator,
                show_progress=False,
            )
            policy_tokens = sum(c.num_tokens for c in completions)
            scores.append(score)
            flops.append(
                inference_flops(backend.num_parameters, policy_tokens)
                + inference_flops(prm.num_parameters, prm_tokens)
            )
    return scores, flops


_DIFFICULTY_FIELDS = {f.name for f in dataclasses.fields(DifficultyConfig)}


# --- the stage ---------------------------------------------------------------------------------------


def route_rows(
    problems: list,
    assigned: dict[str, tuple[str | None, int]],
    policy: dict[str, Any],
    models: dict[int, SearchModels],
    chunk: int,
    predicted: dict[str, tuple[float | None, int, int]],
    per_problem: float = 0.0,
) -> list[dict[str, Any]]:
    """The rows of one chunk of problems: each group running one search setting searched together;
    adaptive best-of-N strategies sampled round by round together; escalations run budget by budget;
    a problem given up on spends nothing; with batch allocation, the chunk shares ``per_problem``
    samples per problem."""
    groups: dict[tuple, list[int]] = defaultdict(list)
    runs: dict[tuple, tuple[SearchRun, SearchConfig]] = {}
    sampled: dict[int, list[int]] = defaultdict(list)  # search -> adaptive best-of-N problems
    escalated: dict[tuple[int, str], list[int]] = defaultdict(list)
    chained: dict[tuple, list[int]] = defaultdict(list)  # (search, L, N, reads the verifier) -> problems
    rows: dict[int, dict[str, Any]] = {}
    batched = [i for i, p in enumerate(problems) if assigned[p.problem_id][0] == BATCH]
    if batched:
        rows |= _batch_rows(
            problems, batched, policy, models[_best_of_n_search(policy)], predicted, per_problem
        )
    for i, problem in enumerate(problems):
        strategy, budget = assigned[problem.problem_id]
        if strategy == BATCH:
            continue
        if strategy is None:
            rows[i] = _row(problem, predicted, GIVE_UP, "", 0, 0, None, None, 0, 0)
            continue
        settings = policy["strategies"][strategy]
        if settings["rule"] == "adaptive":
            adaptive = parse_strategy(settings["adaptive"])
            if adaptive.kind in ("adaptive_vote", "adaptive_prm"):
                sampled[settings["search"]].append(i)
            elif adaptive.kind == "adaptive_revisions":
                key = (settings["search"], adaptive.chain_length, adaptive.cap, adaptive.uses_verifier)
                chained[key].append(i)
            else:
                escalated[(settings["search"], strategy)].append(i)
            continue
        run, run_config = strategy_run(settings, budget, models[settings["search"]].config)
        uses_prm = settings["rule"] not in MAJORITY_RULES
        key = (settings["search"], run.key, run.budget, uses_prm)
        groups[key].append(i)
        runs[key] = (run, run_config)
    for key, members in groups.items():
        run, run_config = runs[key]
        group = [problems[i] for i in members]
        search_rows = _search_rows(models[key[0]], group, run, run_config, chunk, key[3])
        for i, problem in zip(members, group):
            strategy, budget = assigned[problem.problem_id]
            settings = policy["strategies"][strategy]
            search_row = search_rows[(problem.problem_id, settings["width_setting"])]
            (record,) = [
                r
                for r in select_row(search_row, settings["selection_aggregation"])
                if r["strategy"] == strategy
            ]
            rows[i] = _row(problem, predicted, strategy, settings["method"], budget, search_row["generations"],
                           record["answer"], record["correct"], record["policy_flops"], record["prm_flops"])  # fmt: skip
    for search, members in sampled.items():
        rows |= _sampled_rows(problems, members, assigned, policy, models[search], predicted)
    for (search, strategy), members in escalated.items():
        rows |= _escalated_rows(problems, members, strategy, policy, models[search], chunk, predicted)
    for (search, *_), members in chained.items():
        rows |= _chained_rows(problems, members, assigned, policy, models[search], chunk, predicted)
    return [rows[i] for i in range(len(problems))]


GIVE_UP = "give up"
BATCH = "batch allocation"


def _best_of_n_search(policy: dict[str, Any]) -> int:
    """The first search of the policy that drew best-of-N candidates (batch allocation draws more)."""
    for index, search in enumerate(policy["searches"]):
        if "best_of_n" in search["search"].get("methods", []):
            return index
    raise InputError(
        "the routing policy's searches ran no best_of_n: batch allocation draws best-of-N candidates"
    )


def _batch_rows(
    problems, members, policy, m: SearchModels, predicted, per_problem: float
) -> dict[int, dict[str, Any]]:
    """Batch allocation, online: ``per_problem`` samples per member in all, one first for each, then
    one at a time to the problem whose state promises the most (the policy's gain table)."""
    batch = policy["batch"]
    table = GainTable.from_dict(batch)
    rule = StoppingRule(batch["rule"])
    aggregation = next(iter(policy["strategies"].values()), {}).get("selection_aggregation", "last")
    group = {problems[i].problem_id: problems[i] for i in members}
    ids = list(group)
    contract = m.gen_args.prompt_contract()
    prompts = {
        p: build_prompt(group[p].question, contract, getattr(m.policy, "tokenizer", None)) for p in ids
    }
    outcome = {
        p: SearchOutcome([], rounds=0, prm_tokens_by_candidate=[], prm_tokens_requested_by_candidate=[])
        for p in ids
    }
    answers: dict[str, list[str | None]] = {p: [] for p in ids}
    scores: dict[str, list[float]] = {p: [] for p in ids}
    start_fresh(m.policy, m.prm if rule.needs_verifier else None)

    def draw(chosen: list[str]) -> None:
        first = [len(answers[p]) for p in chosen]
        drawn = draw_candidates(
            [prompts[p] for p in chosen], m.policy, chosen, first, 1, temperature=m.gen_args.temperature,
            top_p=m.gen_args.top_p, max_tokens=m.gen_args.max_new_tokens, seed=best_of_n_seed(m.config.seed),
        )  # fmt: skip
        for p, completions in zip(chosen, drawn):
            add_candidates(outcome[p], completions, m.config.step_separator)
            answers[p] += [extract_answer(c.text, m.gen_args.answer_extraction) for c in completions]
        if rule.needs_verifier:
            score_candidates(
                [group[p].question for p in chosen], [outcome[p] for p in chosen], first, m.prm, chosen
            )
            for p, start in zip(chosen, first):
                scores[p] += [aggregate(c.step_scores, aggregation) if c.step_scores else 0.0
                              for c in outcome[p].candidates[start:]]  # fmt: skip

    def confidence(p: str) -> float:
        return confidences(rule, group_equivalent_answers(answers[p]), answered(answers[p]),
                           scores[p] if rule.needs_verifier else None)[-1]  # fmt: skip

    allocate_batch(
        ids, table, per_problem * len(ids), batch["cap"], draw, confidence, lambda p: len(answers[p])
    )
    rows = {}
    for i in members:
        p = problems[i].problem_id
        pick = stopped_pick(rule, answers[p], scores[p] if rule.needs_verifier else None,
                            group_equivalent_answers(answers[p]), len(answers[p]))  # fmt: skip
        answer = answers[p][pick]
        prm_flops = inference_flops(m.prm.num_parameters, outcome[p].prm_tokens) if rule.needs_verifier else 0
        rows[i] = _row(problems[i], predicted, BATCH, "best_of_n", batch["cap"], len(answers[p]), answer,
                       answer is not None and is_equivalent(answer, problems[i].answer),
                       inference_flops(m.policy.num_parameters, outcome[p].policy_tokens), prm_flops)  # fmt: skip
    return rows


def _row(problem, predicted, strategy, method, budget, generations, answer, correct, policy_flops, prm_flops):
    score, group_bin, predictor_flops = predicted[problem.problem_id]
    return {
        "problem_id": problem.problem_id,
        "question": problem.question,
        "gold_answer": problem.answer,
        "predicted_score": score,
        "bin": group_bin,
        "strategy": strategy,
        "method": method,
        "budget": budget,
        "generations": generations,
        "answer": answer,
        # Ungraded without a gold answer; a problem given up on has no answer, so it is wrong.
        "correct": (bool(correct) if correct is not None else False) if problem.answer else None,
        "policy_flops": policy_flops,
        "prm_flops": prm_flops,
        "predictor_flops": predictor_flops,
        "total_flops": policy_flops + prm_flops + predictor_flops,
    }


def _search_rows(
    m: SearchModels, group: list, run: SearchRun, run_config: SearchConfig, chunk: int, uses_prm: bool
):
    """``ttc search``'s rows of one run on a group of problems, by (problem id, width setting)."""
    prm = m.prm if uses_prm else None
    generator = m.reviser if run.method == "revisions" else m.policy
    contract = m.gen_args.prompt_contract()
    prompts = [build_prompt(p.question, contract, getattr(generator, "tokenizer", None)) for p in group]
    results = search_chunk(group, prompts, run, run_config, m.policy, prm, m.gen_args, chunk, m.reviser)
    outcomes = next(o for b, o in results if b == run.budget)
    search_rows = outcome_rows(
        group,
        run,
        run.budget,
        outcomes,
        generator.num_parameters,
        prm.num_parameters if prm is not None else 0,
        m.gen_args.answer_extraction,
    )
    # A run written under several width settings has a row per problem and setting.
    return {(row["problem_id"], row["width_setting"]): row for row in search_rows}


def _sampled_rows(
    problems, members, assigned, policy, m: SearchModels, predicted
) -> dict[int, dict[str, Any]]:
    """Adaptive best-of-N strategies, online: every member sampled round by round under its own rule
    and cap (:func:`~ttcompute.eval.search.adaptive_sampling.adaptive_best_of_n`), together."""
    strategies = [
        parse_strategy(policy["strategies"][assigned[problems[i].problem_id][0]]["adaptive"]) for i in members
    ]
    plans = [StopPlan(s.rule, s.cap) for s in strategies]
    group = [problems[i] for i in members]
    contract = m.gen_args.prompt_contract()
    prompts = [build_prompt(p.question, contract, getattr(m.policy, "tokenizer", None)) for p in group]
    aggregation = policy["strategies"][assigned[group[0].problem_id][0]]["selection_aggregation"]
    results = adaptive_best_of_n(
        [p.question for p in group], prompts, m.policy, m.prm if any(s.uses_verifier for s in strategies) else None,
        [p.problem_id for p in group], plans, temperature=m.gen_args.temperature, top_p=m.gen_args.top_p,
        max_tokens=m.gen_args.max_new_tokens, step_separator=m.config.step_separator,
        seed=best_of_n_seed(m.config.seed), aggregation=aggregation, answer_extraction=m.gen_args.answer_extraction,
    )  # fmt: skip
    rows = {}
    for i, problem, strategy, result in zip(members, group, strategies, results):
        answers = result.answers
        scores = result.scores if strategy.uses_verifier else None
        pick = stopped_pick(strategy.rule, answers, scores, group_equivalent_answers(answers), len(answers))
        prm_flops = (
            inference_flops(m.prm.num_parameters, result.outcome.prm_tokens) if strategy.uses_verifier else 0
        )
        correct = answers[pick] is not None and is_equivalent(answers[pick], problem.answer)
        rows[i] = _row(problem, predicted, strategy.name, "best_of_n", strategy.cap, len(answers), answers[pick],
                       correct, inference_flops(m.policy.num_parameters, result.outcome.policy_tokens), prm_flops)  # fmt: skip
    return rows


def _chained_rows(
    problems, members, assigned, policy, m: SearchModels, chunk, predicted
) -> dict[int, dict[str, Any]]:
    """Adaptive revision chains, online: the N / L chains of every member, each stopped at its rule
    (the verifier accepts an attempt, or an answer repeats), then selected over the attempts made."""
    names = [assigned[problems[i].problem_id][0] for i in members]
    strategies = [parse_strategy(policy["strategies"][name]["adaptive"]) for name in names]
    settings = policy["strategies"][names[0]]
    aggregation = settings["selection_aggregation"]
    stops = [ChainStop(s.stop, s.tau, aggregation, m.gen_args.answer_extraction) for s in strategies]
    uses_prm = any(s.uses_verifier for s in strategies)
    run, run_config = strategy_run(settings, strategies[0].cap, m.config)
    group = [problems[i] for i in members]
    contract = m.gen_args.prompt_contract()
    prompts = [build_prompt(p.question, contract, getattr(m.reviser, "tokenizer", None)) for p in group]
    prm = m.prm if uses_prm else None
    ((_, outcomes),) = search_chunk(group, prompts, run, run_config, m.policy, prm, m.gen_args, chunk, m.reviser,
                                    stops=stops)  # fmt: skip
    search_rows = outcome_rows(
        group, run, run.budget, outcomes, m.reviser.num_parameters, prm.num_parameters if prm is not None else 0,
        m.gen_args.answer_extraction,
    )  # fmt: skip
    models = Models(m.reviser.num_parameters, prm.num_parameters if prm is not None else 0)
    rows = {}
    for i, problem, name, strategy, row in zip(members, group, names, strategies, search_rows):
        scores = [aggregate(s, aggregation) if s else 0.0 for s in row["step_scores"]]
        # The chains were stopped as they ran, so the rule read offline on the attempts made keeps them
        # all; it gives the selection. The charge is what was generated and scored.
        (record,) = revision_records(row, scores, [strategy], models)
        rows[i] = _row(problem, predicted, name, "revisions", strategy.cap, len(row["answers"]), record["answer"],
                       record["correct"], row["policy_flops"], row["prm_flops"] if strategy.uses_verifier else 0)  # fmt: skip
    return rows


def _escalated_rows(
    problems, members, name, policy, m: SearchModels, chunk, predicted
) -> dict[int, dict[str, Any]]:
    """An escalation, online: the tree search at b for every member, again at the next budget of its
    search for those whose verifier is unsure of the answer, up to B; every run charged."""
    strategy = parse_strategy(policy["strategies"][name]["adaptive"])
    settings = policy["strategies"][name]
    aggregation = settings["selection_aggregation"]
    ladder = [b for b in m.config.budgets if strategy.start <= b <= strategy.cap]
    spent = {i: [0, 0, 0] for i in members}  # generations, policy FLOPs, PRM FLOPs
    pending, rows = list(members), {}
    for budget in ladder:
        run, run_config = strategy_run(settings, budget, m.config)
        group = [problems[i] for i in pending]
        search_rows = _search_rows(m, group, run, run_config, chunk, True)
        still = []
        for i, problem in zip(pending, group):
            row = search_rows[(problem.problem_id, settings["width_setting"])]
            for k, column in enumerate(("generations", "policy_flops", "prm_flops")):
                spent[i][k] += row[column]
            scores = [aggregate(s, aggregation) if s else 0.0 for s in row["step_scores"]]
            if (
                budget < strategy.cap
                and run_confidence(strategy.rule, row["answers"], scores) < strategy.rule.tau
            ):
                still.append(i)
                continue
            pick = weighted_best_of_n(row["answers"], scores)
            generations, policy_flops, prm_flops = spent[i]
            rows[i] = _row(problem, predicted, name, settings["method"], strategy.cap, generations,
                           row["answers"][pick], row["correct"][pick], policy_flops, prm_flops)  # fmt: skip
        pending = still
    return rows


def _file_digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def run_route(problem_args: ProblemConfig, config: RouteConfig) -> dict[str, Any]:
    """The ``ttc route`` stage: validate everything, load the models, predict, bin, then every
    unfinished chunk of problems of this worker, then the stats."""
    parse_shard_spec(config.shard)
    policy = load_routing_policy(config.policy)
    contract = check_request(policy, problem_args, config)
    probe = load_probe(policy, config.policy) if policy["predictor"]["kind"] == "question" else None
    problems = problem_args.load()
    if not problems:
        raise InputError("ttc route: the problem set is empty")
    # Every search any strategy of the rule comes from (per_problem may use any budget).
    if config.allocation == "spend":
        named = {p["strategy"] for points in policy["spend_points"].values() for p in points if p["strategy"]}
    elif config.allocation == "batch":
        named = set()
    else:
        budgets = [int(config.budget)] if config.allocation == "per_bin" else [int(b) for b in policy["rule"]]
        named = {entry["strategy"] for b in budgets for entry in policy["rule"][str(b)].values()}
    used = {policy["strategies"][strategy]["search"] for strategy in named}
    if config.allocation == "batch":
        used.add(_best_of_n_search(policy))
    # Models load before anything is written: a bad path leaves no manifest behind.
    cache: dict = {}
    models = load_search_models(policy, used, config, cache)
    main = next((m.policy for m in models.values() if m.policy is not None), None)
    if main is None:  # a policy of revisions only: the predictor reads the reviser's prompts
        main = next(m.reviser for m in models.values())
    if probe is not None and probe.policy_parameters != main.num_parameters:
        raise InputError(
            f"{policy['predictor']['probe_file']}: trained on a policy of {probe.policy_parameters} parameters, "
            f"the policy has {main.num_parameters}"
        )
    prompts = [build_prompt(p.question, contract, getattr(main, "tokenizer", None)) for p in problems]
    predictor_backend = main
    if probe is not None and not isinstance(main, TransformersBackend):
        # Hidden states of the prompt come from transformers (vLLM does not return them).
        predictor_backend = load_backend(
            "transformers", policy["policy"]["model_name_or_path"], device=config.device
        )
    logger.info(
        "Predicting the difficulty of %d problems (%s predictor)", len(problems), policy["predictor"]["kind"]
    )
    scores, predictor_flops = predict_difficulty(policy, problems, prompts, predictor_backend, probe, config)
    edges = policy["predictor"]["edges"]
    bins = assign_bins(scores, edges) if policy["predictor"]["kind"] != "none" else [1] * len(problems)
    assigned = assign_strategies(
        policy, {p.problem_id: b for p, b in zip(problems, bins)}, config.budget, config.allocation
    )
    predicted = {p.problem_id: (s, b, f) for p, s, b, f in zip(problems, scores, bins, predictor_flops)}
    chunks = [
        problems[i : i + config.problems_per_shard]
        for i in range(0, len(problems), config.problems_per_shard)
    ]
    logger.info(
        "Routing %d problems at budget %g (%s): bins %s, strategies %s",
        len(problems),
        config.budget,
        config.allocation,
        dict(sorted(Counter(bins).items())),
        dict(sorted(Counter(s for s, _ in assigned.values()).items())),
    )
    hash_extra = {"routing_policy": _file_digest(config.policy)}
    if probe is not None:
        hash_extra["question_probe"] = _file_digest(policy["predictor"]["probe_file"])
    stats = run_sharded_stage(
        "route",
        (problem_args, config),
        output_dir=config.output_dir,
        shard=config.shard,
        overwrite=config.overwrite,
        num_shards=len(chunks),
        schema=ROW_SCHEMA,
        build_shard=lambda j: route_rows(chunks[j], assigned, policy, models, j, predicted, config.budget),
        stats=route_stats,
        info={
            "routing_policy": str(Path(config.policy).resolve()),
            "predictor": policy["predictor"]["kind"],
            "budget": config.budget,
            "allocation": config.allocation,
            "prompt_contract": contract.to_dict(),
        },
        hash_extra=hash_extra,
        # Where the policy file lies changes nothing: its content is hashed (hash_extra).
        hash_ignore=("policy",),
        progress="Routing",
        describe_shard=lambda j: f"{len(chunks[j])} problems",
    )
    if is_complete(stats):
        logger.info(
            "Route done: %d problems, accuracy %s, %.3g FLOPs per problem (%s) -> %s",
            stats["num_problems"],
            stats["accuracy"],
            stats["total_flops_per_problem"],
            stats["strategies"],
            config.output_dir,
        )
    return stats
