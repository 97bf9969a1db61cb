"""``ttc search``: policy + PRM x methods x budgets x problems -> every final candidate and its cost.

A *run* is one search setting: a method with its hyperparameters (beam width M, lookahead k, the
aggregation that ranks beams) at one budget. Runs x chunks of problems are the shards of the output,
so a killed search resumes at the first unfinished (run, chunk), and ``--shard i/n`` workers split
them. Best-of-N is one run at the largest budget: the candidates of a smaller budget b are its first
b (nested, as in the paper), written as one row per budget with that subset's exact cost. Revision
chains nest the same way, one run per chain length L at the largest budget L divides: budget b is
its first b / L chains.

Budget (docs: guides/search.md): N generations. Best-of-N samples N solutions; beam search and DVTS
keep N beams; lookahead search with k steps gets ``N = budget // (k + 1)`` beams (and is skipped at
budgets below k + 1). A beam width is rounded down to a divisor of N
(:func:`~ttcompute.core.budget.resolve_beam_width`); the width actually used is in ``beam_width``.

Output rows (one per problem x run x budget):
    problem_id, question, gold_answer, metadata (JSON text),
    method (best_of_n | beam_search | lookahead | dvts | revisions),
    width_setting ("4", "sqrt"; "L=4" for revisions; "" for best-of-N),
    beam_width (M used; 0 for best-of-N), lookahead (k), search_aggregation, budget (nominal),
    num_beams (N), generations (N x (k + 1)),
    completions, step_scores (per candidate, per step), answers, correct, num_tokens, finish_reasons,
    subtrees (DVTS subtree or revision chain of each candidate), positions (revisions: place in its
    chain), chain_length (revisions: L; N / L chains), attempts_dropped (revisions: earlier attempts
    left out of prompts to fit the context),
    policy_tokens, lookahead_tokens, prm_tokens, prm_tokens_requested, prm_tokens_by_candidate
    (best-of-N and revisions: the PRM tokens charged to each candidate, in order, so the cost of any
    first n -- where an adaptive rule stopped -- is exact; empty for tree searches), policy_flops,
    prm_flops, total_flops, rounds, capped_steps,
    reused_samples (best-of-N with ``--initial_samples_dir``: how many of its first candidates are
    those samples, drawn before the search -- its cost columns count them as the row's own),
    tree (beam search, lookahead, DVTS: every beam of every round, parents first -- parent (index in
    the list, -1 for a first step), round, text (the step it sampled), score (the PRM's score of its
    last step), rank (what it was ranked by), status (kept | pruned | final), candidate (its index in
    the candidate lists when final, else -1); empty for best-of-N and revisions; null in searches
    written before it was recorded)
"""

from __future__ import annotations

import dataclasses
import json
import logging
import zlib
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from transformers import PretrainedConfig

from ttcompute.core.budget import beams_for_budget, inference_flops, resolve_beam_width
from ttcompute.core.checkpoint_identity import same_checkpoint
from ttcompute.core.errors import InputError
from ttcompute.core.grading import extract_answer, is_equivalent
from ttcompute.core.outputs import read_sample_solutions
from ttcompute.core.prompts import PromptContract, read_contract
from ttcompute.core.sharded_stage import is_complete, run_sharded_stage
from ttcompute.core.shards import parse_shard_spec, read_manifest, read_resolved_config
from ttcompute.eval.search.beam_search import beam_search
from ttcompute.eval.search.best_of_n import first_candidates, sample_best_of_n
from ttcompute.eval.search.dvts import dvts
from ttcompute.eval.search.lookahead import lookahead_search
from ttcompute.eval.search.revision_chains import revision_chains
from ttcompute.eval.search.search_config import (
    SearchConfig,
)
from ttcompute.eval.search.search_stats import NESTED_METHODS, search_output_stats
from ttcompute.eval.search.step_search import SearchOutcome
from ttcompute.models.backends import load_backend
from ttcompute.models.generation import Completion, build_prompt
from ttcompute.models.prm_formats import load_prm
from ttcompute.models.reviser import reviser_contract

logger = logging.getLogger(__name__)

# One beam of one round of a tree search (step_search.TreeNode).
TREE_NODE = pa.struct(
    [
        ("parent", pa.int64()),
        ("round", pa.int64()),
        ("text", pa.string()),
        ("score", pa.float64()),
        ("rank", pa.float64()),
        ("status", pa.string()),
        ("candidate", pa.int64()),
    ]
)

ROW_SCHEMA = pa.schema(
    [
        ("problem_id", pa.string()),
        ("question", pa.string()),
        ("gold_answer", pa.string()),
        ("metadata", pa.string()),
        ("method", pa.string()),
        ("width_setting", pa.string()),
        ("beam_width", pa.int64()),
        ("lookahead", pa.int64()),
        ("search_aggregation", pa.string()),
        ("budget", pa.int64()),
        ("num_beams", pa.int64()),
        ("generations", pa.int64()),
        ("completions", pa.list_(pa.string())),
        ("step_scores", pa.list_(pa.list_(pa.float64()))),
        ("answers", pa.list_(pa.string())),
        ("correct", pa.list_(pa.bool_())),
        ("num_tokens", pa.list_(pa.int64())),
        ("finish_reasons", pa.list_(pa.string())),
        ("subtrees", pa.list_(pa.int64())),
        ("positions", pa.list_(pa.int64())),
        ("chain_length", pa.int64()),
        ("attempts_dropped", pa.int64()),
        ("policy_tokens", pa.int64()),
        ("lookahead_tokens", pa.int64()),
        ("prm_tokens", pa.int64()),
        ("prm_tokens_requested", pa.int64()),
        ("prm_tokens_by_candidate", pa.list_(pa.int64())),
        ("policy_flops", pa.int64()),
        ("prm_flops", pa.int64()),
        ("total_flops", pa.int64()),
        ("rounds", pa.int64()),
        ("capped_steps", pa.int64()),
        ("reused_samples", pa.int64()),
        ("tree", pa.list_(TREE_NODE)),
    ]
)


@dataclass(frozen=True)
class SearchRun:
    """One search setting at one budget (best-of-N: at the largest budget, all budgets as subsets)."""

    method: str
    budget: int
    num_beams: int
    beam_width: int = 0
    lookahead: int = 0
    aggregation: str = "last"
    width_settings: tuple[str, ...] = ("",)
    chain_length: int = 0

    @property
    def key(self) -> str:
        key = f"{self.method}:N={self.num_beams}:M={self.beam_width}:k={self.lookahead}:{self.aggregation}"
        return key + (f":L={self.chain_length}" if self.chain_length else "")


def plan_runs(config: SearchConfig) -> list[SearchRun]:
    """Every run of a config, cheapest budgets first; settings that resolve alike run once.

    >>> runs = plan_runs(SearchConfig(prm="p", budgets=[4, 16], lookahead_steps=[3], dvts_widths=["4"]))
    >>> [(r.method, r.budget, r.num_beams, r.beam_width, r.width_settings) for r in runs]  # doctest: +NORMALIZE_WHITESPACE
    [('best_of_n', 16, 16, 0, ('',)),
     ('beam_search', 4, 4, 4, ('4',)), ('beam_search', 4, 4, 2, ('sqrt',)),
     ('lookahead', 4, 1, 1, ('4', 'sqrt')), ('dvts', 4, 4, 4, ('4',)),
     ('beam_search', 16, 16, 4, ('4', 'sqrt')), ('lookahead', 16, 4, 4, ('4',)),
     ('lookahead', 16, 4, 2, ('sqrt',)), ('dvts', 16, 16, 4, ('4',))]
    """
    runs: dict[tuple, SearchRun] = {}

    def add(method, budget, num_beams, lookahead, aggregation, setting):
        # Settings that resolve to the same width at this N are one run, written under each setting.
        width = resolve_beam_width(num_beams, setting)
        key = (method, budget, num_beams, width, lookahead, aggregation)
        if key in runs:
            if setting not in runs[key].width_settings:
                previous = runs[key]
                runs[key] = SearchRun(*key[:5], aggregation, (*previous.width_settings, setting))
            return
        runs[key] = SearchRun(method, budget, num_beams, width, lookahead, aggregation, (setting,))

    if "best_of_n" in config.methods:
        top = config.budgets[-1]
        runs[("best_of_n",)] = SearchRun("best_of_n", top, top)
    for budget in config.budgets:
        for aggregation in config.search_aggregations:
            if "beam_search" in config.methods:
                for setting in config.beam_widths:
                    add("beam_search", budget, budget, 0, aggregation, setting)
            if "lookahead" in config.methods:
                for k in config.lookahead_steps:
                    beams = beams_for_budget(budget, k)
                    for setting in config.beam_widths if beams else []:
                        add("lookahead", budget, beams, k, aggregation, setting)
            if "dvts" in config.methods:
                for setting in config.dvts_widths:
                    add("dvts", budget, budget, 0, aggregation, setting)
    if "revisions" in config.methods:  # ranking aggregation plays no part: one run per length L,
        for length in sorted(set(config.revision_lengths)):  # at its largest budget (budgets nest)
            fitting = revision_budgets(config.budgets, length)
            if fitting:
                top = fitting[-1]
                runs[("revisions", length)] = SearchRun(
                    "revisions", top, top, width_settings=(f"L={length}",), chain_length=length
                )
    return list(runs.values())


def revision_budgets(budgets: list[int], length: int) -> list[int]:
    """The budgets that chains of ``length`` attempts fill exactly (N / L whole chains).

    >>> revision_budgets([1, 2, 4, 8, 16], 4)
    [4, 8, 16]
    """
    return [b for b in sorted(budgets) if b >= length and b % length == 0]


def search_seed(seed: int, run: SearchRun) -> int:
    """The seed of a tree-search run: stable across processes and worker layouts. Each beam's step is
    seeded on its own from it and its problem (:func:`~ttcompute.eval.search.step_search.beam_seed`),
    so neither the chunk nor the other problems of a batch change a problem's search: ``ttc route``
    reruns it exactly."""
    return zlib.crc32(f"{seed}:{run.key}".encode())


def best_of_n_seed(seed: int) -> int:
    """Best-of-N's seed: each candidate is seeded on its own from it, the problem and its index
    (:func:`~ttcompute.eval.search.best_of_n.candidate_seeds`) -- not from the run (its largest budget)
    or the chunk, so ``ttc route`` draws a problem's candidates exactly as this search did, however
    it batches them and however many it draws.

    >>> best_of_n_seed(0) == best_of_n_seed(0) != best_of_n_seed(1)
    True
    """
    return zlib.crc32(f"{seed}:best_of_n".encode())


def revisions_seed(seed: int, chain_length: int) -> int:
    """Revision chains' seed for chains of ``chain_length``: each attempt is seeded on its own from it
    (:func:`~ttcompute.eval.search.revision_chains.attempt_seed`), so, as for best-of-N, neither the
    budget nor the chunk changes a problem's chains.

    >>> revisions_seed(0, 4) != revisions_seed(0, 8)
    True
    """
    return zlib.crc32(f"{seed}:revisions:L={chain_length}".encode())


def search_chunk(
    problems,
    prompts,
    run: SearchRun,
    config: SearchConfig,
    policy,
    prm,
    gen_args,
    chunk: int,
    reviser=None,
    initial: dict[str, list[Completion]] | None = None,
    stops=None,
):
    """Run one search setting on one chunk of problems: ``[(budget, outcome per problem)]``.

    ``initial``: best-of-N's first candidates per problem id (:func:`initial_solutions`); ``stops``:
    revisions, per problem, when its chains stop early (``ttc route``'s adaptive revision chains)."""
    questions = [p.question for p in problems]
    ids = [p.problem_id for p in problems]
    seed = search_seed(config.seed, run)
    if run.method == "revisions":
        outcomes = revision_chains(
            questions,
            reviser,
            prm,
            num_chains=run.num_beams // run.chain_length,
            chain_length=run.chain_length,
            temperature=gen_args.temperature,
            top_p=gen_args.top_p,
            max_tokens=gen_args.max_new_tokens,
            contract=gen_args.prompt_contract(),
            step_separator=config.step_separator,
            seed=revisions_seed(config.seed, run.chain_length),
            verifier_context=config.verifier_context,
            problem_ids=ids,
            revision_temperature=config.revision_temperature,
            stops=stops,
        )
        if stops is not None:  # chains stopped early hold fewer attempts than the budget: not nested
            return [(run.budget, outcomes)]
        nested = [b for b in revision_budgets(config.budgets, run.chain_length) if b <= run.budget]
        return [(b, [first_candidates(o, b) for o in outcomes]) for b in nested]
    if run.method == "best_of_n":
        outcomes = sample_best_of_n(
            questions,
            prompts,
            policy,
            prm,
            n=run.num_beams,
            temperature=gen_args.temperature,
            top_p=gen_args.top_p,
            max_tokens=gen_args.max_new_tokens,
            step_separator=config.step_separator,
            seed=best_of_n_seed(config.seed),
            problem_ids=ids,
            initial=[initial[i] for i in ids] if initial else None,
        )
        return [(b, [first_candidates(o, b) for o in outcomes]) for b in config.budgets]
    options = dict(
        num_beams=run.num_beams,
        beam_width=run.beam_width,
        max_rounds=config.max_rounds,
        max_step_tokens=config.max_step_tokens,
        max_tokens=gen_args.max_new_tokens,
        temperature=gen_args.temperature,
        top_p=gen_args.top_p,
        step_separator=config.step_separator,
        aggregation=run.aggregation,
        seed=seed,
        filter_duplicates=config.filter_duplicates,
        problem_ids=ids,
    )
    methods = {"beam_search": beam_search, "dvts": dvts}
    if run.method == "lookahead":
        outcomes = lookahead_search(questions, prompts, policy, prm, lookahead=run.lookahead, **options)
    else:
        outcomes = methods[run.method](questions, prompts, policy, prm, **options)
    return [(run.budget, outcomes)]


def outcome_rows(
    problems,
    run: SearchRun,
    budget: int,
    outcomes: list[SearchOutcome],
    policy_params: int,
    prm_params: int,
    answer_extraction: str = "strict",
    reused: int = 0,
) -> list[dict[str, Any]]:
    """Dataset rows (one per problem and width setting) for one run's outcomes, graded (answers read
    with ``answer_extraction``, see :func:`~ttcompute.core.grading.extract_answer`); ``reused``: how
    many of a best-of-N run's first candidates are initial samples."""
    rows = []
    for problem, outcome in zip(problems, outcomes):
        answers = [extract_answer(c.text, answer_extraction) for c in outcome.candidates]
        verdicts = {a: is_equivalent(a, problem.answer) for a in set(answers) if a is not None}
        policy_flops = inference_flops(policy_params, outcome.policy_tokens)
        prm_flops = inference_flops(prm_params, outcome.prm_tokens)
        num_beams = budget if run.method in NESTED_METHODS else run.num_beams
        for setting in run.width_settings:
            rows.append(
                {
                    "problem_id": problem.problem_id,
                    "question": problem.question,
                    "gold_answer": problem.answer,
                    "metadata": json.dumps(problem.metadata, sort_keys=True),
                    "method": run.method,
                    "width_setting": setting,
                    "beam_width": run.beam_width,
                    "lookahead": run.lookahead,
                    "search_aggregation": run.aggregation,
                    "budget": budget,
                    "num_beams": num_beams,
                    "generations": num_beams * (run.lookahead + 1),
                    "completions": [c.text for c in outcome.candidates],
                    "step_scores": [c.step_scores for c in outcome.candidates],
                    "answers": answers,
                    "correct": [a is not None and verdicts[a] for a in answers],
                    "num_tokens": [c.num_tokens for c in outcome.candidates],
                    "finish_reasons": [c.finish_reason for c in outcome.candidates],
                    "subtrees": [c.subtree for c in outcome.candidates],
                    "positions": [c.position for c in outcome.candidates],
                    "chain_length": run.chain_length,
                    "attempts_dropped": outcome.attempts_dropped,
                    "policy_tokens": outcome.policy_tokens,
                    "lookahead_tokens": outcome.lookahead_tokens,
                    "prm_tokens": outcome.prm_tokens,
                    "prm_tokens_requested": outcome.prm_tokens_requested,
                    "prm_tokens_by_candidate": list(outcome.prm_tokens_by_candidate or []),
                    "policy_flops": policy_flops,
                    "prm_flops": prm_flops,
                    "total_flops": policy_flops + prm_flops,
                    "rounds": outcome.rounds,
                    "capped_steps": outcome.capped_steps,
                    "reused_samples": min(reused, budget) if run.method == "best_of_n" else 0,
                    "tree": [dataclasses.asdict(node) for node in outcome.tree],
                }
            )
    return rows


def initial_solutions(
    config: SearchConfig, gen_args, problems, contract: PromptContract, budget: int
) -> tuple[dict[str, list[Completion]], int]:
    """Best-of-N's first candidates from ``--initial_samples_dir`` and how many per problem.

    Raises:
        InputError: the samples are not this policy's with these options and prompts, a problem has
            none or too few, or more per problem than the largest budget.
    """
    where = config.initial_samples_dir
    recorded = read_resolved_config(where)
    if read_manifest(where).get("stage") != "sample":
        raise InputError(f"{where}: not a ttc sample output (--initial_samples_dir)")
    theirs, ours = recorded.get("model_name_or_path"), gen_args.model_name_or_path
    # By what the checkpoints are, not where they sit: a copy of this policy drew the same samples.
    if theirs is None or not same_checkpoint(theirs, ours):
        raise InputError(f"{where}: sampled from {theirs}, not this search's policy {ours}")
    for name in ("temperature", "top_p", "max_new_tokens"):
        if recorded.get(name) != getattr(gen_args, name):
            raise InputError(
                f"{where}: sampled with {name}={recorded.get(name)}, this search samples with "
                f"{name}={getattr(gen_args, name)}: its samples are not candidates of this search"
            )
    theirs_contract = read_contract(where)
    if theirs_contract is None or theirs_contract != contract:
        raise InputError(
            f"{where}: sampled with prompts {theirs_contract.to_dict() if theirs_contract else None}, this "
            f"search's are {contract.to_dict()}"
        )
    solutions = read_sample_solutions(where)
    missing = [p.problem_id for p in problems if p.problem_id not in solutions]
    if missing:
        raise InputError(f"{where}: no samples of problem {missing[0]!r} ({len(missing)} problems missing)")
    count = config.initial_samples or min(len(solutions[p.problem_id]) for p in problems)
    short = [p.problem_id for p in problems if len(solutions[p.problem_id]) < count]
    if short or count > budget:
        raise InputError(
            f"{where}: {count} samples per problem to reuse, but "
            + (f"problem {short[0]!r} has fewer" if short else f"the largest budget is {budget}")
        )
    initial = {
        p.problem_id: [
            Completion(text, tokens, reason) for text, tokens, reason in solutions[p.problem_id][:count]
        ]
        for p in problems
    }
    return initial, count


def run_search(problem_args, gen_args, config: SearchConfig) -> dict[str, Any]:
    """The ``ttc search`` stage: every unfinished (run, chunk) shard of this worker, then stats."""
    # Revision chains are written by the reviser alone: a search of only those needs no policy.
    needs_policy = any(method != "revisions" for method in config.methods)
    if needs_policy and not gen_args.model_name_or_path:
        raise InputError("ttc search: --model_name_or_path (the policy) is required")
    parse_shard_spec(config.shard)  # a malformed --shard fails before the models load
    problems = problem_args.load()
    if not problems:
        raise InputError("ttc search: the problem set is empty")
    runs = plan_runs(config)
    if not runs:
        raise InputError(
            f"ttc search: no run fits the budgets {config.budgets} (lookahead needs budget >= k + 1)"
        )
    chunks = [
        problems[i : i + config.problems_per_shard]
        for i in range(0, len(problems), config.problems_per_shard)
    ]
    shards = [(run, c) for run in runs for c in range(len(chunks))]

    if gen_args.backend == "vllm" and needs_policy and "revisions" in config.methods:
        # vLLM documents one engine per process (each takes its share of GPU memory up front).
        raise InputError(
            "ttc search: with --backend vllm a process holds one vLLM engine, the policy or the reviser: "
            "run --methods revisions in a search of its own (its own --output_dir) and the other "
            "methods in another; ttc compute-optimal takes both selections (--select_dirs a b)"
        )
    # Load the models before touching output_dir: a typo in a path must not leave a manifest behind.
    policy = None
    if needs_policy:
        policy = load_backend(gen_args.backend, gen_args.model_name_or_path, **gen_args.backend_kwargs())
    prm = None
    if config.prm:
        prm = load_prm(
            config.prm,
            config.prm_format,
            device=config.prm_device or gen_args.device,
            dtype=config.prm_dtype,
            max_batch_tokens=config.prm_max_batch_tokens,
            max_cache_tokens=config.prm_cache_tokens,
            trust_remote_code=gen_args.trust_remote_code,
            step_separator=config.prm_step_separator,
            prompt_contract=config.prm_prompt_contract(),
        )
    contract = gen_args.prompt_contract()
    initial, reused = ({}, 0)
    if config.initial_samples_dir:
        initial, reused = initial_solutions(config, gen_args, problems, contract, config.budgets[-1])
        logger.info(
            "Best-of-N: the first %d candidates of each problem are %s's samples",
            reused,
            config.initial_samples_dir,
        )
    reviser = None
    if "revisions" in config.methods:
        reviser = load_backend(gen_args.backend, config.reviser, **gen_args.backend_kwargs())
        # The reviser's recorded prompts must be this search's: every method sees one question prompt.
        reviser_contract(config.reviser, PretrainedConfig.get_config_dict(config.reviser)[0], contract)
    generator = policy if policy is not None else reviser  # the model whose tokens a row counts
    tokenizer = getattr(generator, "tokenizer", None)
    prompts = [build_prompt(p.question, contract, tokenizer) for p in problems]
    prompt_chunks = [
        prompts[i : i + config.problems_per_shard] for i in range(0, len(prompts), config.problems_per_shard)
    ]
    prm_params = prm.num_parameters if prm is not None else 0
    logger.info(
        "Searching %d problems: %d runs (%s) x %d chunks",
        len(problems),
        len(runs),
        ", ".join(sorted({r.method for r in runs})),
        len(chunks),
    )

    def build_shard(j: int) -> list[dict[str, Any]]:
        run, c = shards[j]
        outcomes_by_budget = search_chunk(
            chunks[c], prompt_chunks[c], run, config, policy, prm, gen_args, c, reviser, initial
        )
        generator_params = (reviser if run.method == "revisions" else policy).num_parameters
        rows = []
        for budget, outcomes in outcomes_by_budget:
            rows += outcome_rows(
                chunks[c], run, budget, outcomes, generator_params, prm_params, gen_args.answer_extraction,
                reused if run.method == "best_of_n" else 0,
            )  # fmt: skip
        return rows

    def describe(j: int) -> str:
        run = shards[j][0]
        return f"{run.method} N={run.num_beams} M={run.beam_width} k={run.lookahead} L={run.chain_length}"

    stats = run_sharded_stage(
        "search",
        (problem_args, gen_args, config),
        output_dir=config.output_dir,
        shard=config.shard,
        overwrite=config.overwrite,
        num_shards=len(shards),
        schema=ROW_SCHEMA,
        build_shard=build_shard,
        stats=search_output_stats,
        info={
            "policy_parameters": generator.num_parameters,
            "verifier_parameters": prm_params,
            "malformed_rows_skipped": len(getattr(problems, "skipped", [])),
            "prompt_contract": contract.to_dict(),
        },
        # Placement, batching and cache size change no score (the cache only what a rerun would encode).
        hash_ignore=("prm_device", "prm_max_batch_tokens", "prm_cache_tokens"),
        progress="Searching",
        describe_shard=describe,
        tracking=config,
        shard_metrics=_shard_compute,
    )
    if not is_complete(stats):
        return stats
    if stats["capped_steps"]:
        logger.warning(
            "%d generations hit their token cap (--max_step_tokens %d per step, --max_new_tokens %d per "
            "solution) before the step separator %r or the end: their beams ended there. Many of them "
            "mean the caps are too small or the policy does not write this separator.",
            stats["capped_steps"],
            config.max_step_tokens,
            gen_args.max_new_tokens,
            config.step_separator,
        )
    if stats["attempts_dropped"]:
        logger.info(
            "Revisions: %d earlier attempts were left out of prompts to fit the reviser's context (oldest "
            "first; column attempts_dropped)",
            stats["attempts_dropped"],
        )
    logger.info(
        "Search done: %d rows, %d policy tokens, %d PRM tokens (%d requested), %d steps capped -> %s",
        stats["num_rows"],
        stats["compute"]["policy_tokens"],
        stats["compute"]["verifier_tokens"],
        stats["compute"]["verifier_tokens_requested"],
        stats["capped_steps"],
        config.output_dir,
    )
    return stats


def _shard_compute(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """What one (run, chunk) shard spent, for the W&B progress log: each problem's outcome once (the
    rows of other width settings repeat it; best-of-N's smaller budgets are prefixes of the largest)."""
    if not rows:
        return {}
    budget, setting = max(row["budget"] for row in rows), rows[0]["width_setting"]
    spent = [row for row in rows if row["budget"] == budget and row["width_setting"] == setting]
    return {name: sum(row[name] for row in spent) for name in ("policy_tokens", "prm_tokens", "total_flops")}
