"""Adaptive strategies on saved search candidates: where each rule stops, what it answers, what it spent.

Every static strategy fixes its budget before it sees a sample. An adaptive one samples a problem in
rounds up to a cap and lets a stopping rule (:mod:`ttcompute.core.stopping`) decide after each round.
Best-of-N budgets nest -- the first n of a problem's candidates are what n samples would have given --
so each rule is evaluated here on the candidates ``ttc search`` saved, in seconds, and charged exactly
what it drew: the policy tokens of its first n candidates and, when its rule reads the verifier, the
PRM tokens charged to them (``prm_tokens_by_candidate``). ``ttc route`` runs the same rules online
and draws the same candidates (best-of-N seeds each candidate on its own,
:func:`~ttcompute.eval.search.best_of_n.candidate_seeds`).

Strategy names (``ttc select``'s strategy column; the record's ``budget`` is the cap, its
``generations`` what was spent):

* ``adaptive_vote rule=beta tau=0.95 B=64`` -- answer agreement (``beta``, ``dirichlet``;
  ``adaptive_vote rule=esc w=4 B=64`` samples in windows of 4); majority vote when it stops; no PRM.
* ``adaptive_prm rule=share tau=0.9 B=16`` -- verifier confidence (``share``, ``best``); weighted
  best-of-N when it stops.
* ``adaptive_revisions L=4 stop=accept tau=0.9 N=16 weighted`` -- the N / L revision chains of a
  ``revisions`` row, each stopped at the first attempt the verifier scores >= tau
  (``stop=repeat``: at the first attempt whose answer repeats the one before); the attempts made are
  selected by ``weighted`` best-of-N, ``hierarchical`` or ``majority`` (no PRM: a repeat rule with
  majority reads no score). Chains are sequential, so a chain stopped at attempt t is the first t + 1
  attempts of the saved chain.
* ``escalate beam_search M=4 rule=share tau=0.9 b=2 B=16`` -- a tree search at budget b, run again at
  the next budget of the search (2b, ...) while the verifier is unsure of its answer (its rule's
  confidence over the final beams below tau), up to B. Tree-search budgets do not nest: every run
  made is charged. The answer is the last run's (weighted best-of-N over its final beams).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ttcompute.core.budget import inference_flops
from ttcompute.core.errors import InputError
from ttcompute.core.grading import is_equivalent
from ttcompute.core.outputs import revision_chains_of
from ttcompute.core.selection import (
    group_equivalent_answers,
    hierarchical_best_of_n,
    majority_vote,
    weighted_best_of_n,
)
from ttcompute.core.stopping import (
    AGREEMENT_RULES,
    VERIFIER_RULES,
    StoppingRule,
    answered,
    confidences,
    stop_point,
    stopped_pick,
)

KINDS = ("adaptive_vote", "adaptive_prm", "adaptive_revisions", "escalate")
REVISION_STOPS = ("accept", "repeat")
REVISION_SELECTIONS = ("weighted", "hierarchical", "majority")
DEFAULT_TAUS = (0.5, 0.7, 0.8, 0.9, 0.95, 0.99)


@dataclass(frozen=True)
class AdaptiveStrategy:
    """One adaptive strategy (see the module docstring for the names).

    ``cap``: B, the most samples (vote, prm), the largest run (escalate), or N, the revisions row's
    budget; ``rule``: the stopping rule (vote, prm) or the confidence read after each run (escalate,
    ``share`` or ``best``); revisions: ``chain_length``, ``stop``, ``tau`` (accept) and ``selection``;
    escalate: ``tree`` (the tree search's strategy name) and ``start`` (b).
    """

    kind: str
    cap: int
    rule: StoppingRule | None = None
    chain_length: int = 0
    stop: str = ""
    tau: float = 1.0
    selection: str = ""
    tree: str = ""
    start: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown adaptive kind {self.kind!r}; choose one of {KINDS}")
        if self.cap < 1:
            raise ValueError(f"the cap must be >= 1, got {self.cap}")
        if self.kind == "adaptive_vote" and (self.rule is None or self.rule.rule not in AGREEMENT_RULES):
            raise ValueError(f"adaptive_vote takes an agreement rule {AGREEMENT_RULES}")
        if self.kind in ("adaptive_prm", "escalate") and (
            self.rule is None or self.rule.rule not in VERIFIER_RULES
        ):
            raise ValueError(f"{self.kind} takes a verifier rule {VERIFIER_RULES}")
        if self.kind == "adaptive_revisions":
            if self.stop not in REVISION_STOPS or self.selection not in REVISION_SELECTIONS:
                raise ValueError(
                    f"adaptive_revisions takes stop= {REVISION_STOPS} and a selection {REVISION_SELECTIONS}"
                )
            if self.chain_length < 1 or self.cap % self.chain_length:
                raise ValueError(f"N={self.cap} must be a multiple of L={self.chain_length}")
            if not 0 < self.tau <= 1:
                raise ValueError(f"tau must be in (0, 1], got {self.tau}")
        if self.kind == "escalate" and not (self.tree and 1 <= self.start < self.cap):
            raise ValueError(f"escalate needs a tree search and 1 <= b < B, got b={self.start}, B={self.cap}")

    @property
    def name(self) -> str:
        if self.kind in ("adaptive_vote", "adaptive_prm"):
            knob = f"w={self.rule.window}" if self.rule.rule == "esc" else f"tau={_num(self.rule.tau)}"
            return f"{self.kind} rule={self.rule.rule} {knob} B={self.cap}"
        if self.kind == "adaptive_revisions":
            tau = f" tau={_num(self.tau)}" if self.stop == "accept" else ""
            return f"adaptive_revisions L={self.chain_length} stop={self.stop}{tau} N={self.cap} {self.selection}"
        return f"escalate {self.tree} rule={self.rule.rule} tau={_num(self.rule.tau)} b={self.start} B={self.cap}"

    @property
    def uses_verifier(self) -> bool:
        if self.kind == "adaptive_vote":
            return False
        if self.kind == "adaptive_revisions":
            return self.stop == "accept" or self.selection != "majority"
        return True


def _num(value: float) -> str:
    return f"{value:g}"


_KNOB = re.compile(r"^(\w+)=(.+)$")


def parse_strategy(name: str) -> AdaptiveStrategy:
    """An adaptive strategy from its name.

    >>> parse_strategy("adaptive_vote rule=beta tau=0.95 B=64").name
    'adaptive_vote rule=beta tau=0.95 B=64'
    >>> parse_strategy("escalate beam_search M=4 rule=best tau=0.9 b=2 B=16").tree
    'beam_search M=4'

    Raises:
        ValueError: not an adaptive strategy's name, naming what is wrong.
    """
    words = name.split()
    if not words or words[0] not in KINDS:
        raise ValueError(f"{name!r}: an adaptive strategy starts with one of {KINDS}")
    kind, rest = words[0], words[1:]
    knobs: dict[str, str] = {}
    loose: list[str] = []
    for word in rest:
        match = _KNOB.match(word)
        # The tree search's own settings (M=4, k=3, rank=min) are part of its name, not knobs.
        if match and match.group(1) in ("rule", "tau", "w", "B", "b", "L", "N", "stop"):
            knobs[match.group(1)] = match.group(2)
        else:
            loose.append(word)
    try:
        if kind in ("adaptive_vote", "adaptive_prm"):
            rule = knobs.get("rule", "")
            stopping = StoppingRule(rule, float(knobs.get("tau", 1.0)), int(knobs.get("w", 1)))
            strategy = AdaptiveStrategy(kind, int(knobs["B"]), stopping)
        elif kind == "adaptive_revisions":
            if len(loose) != 1:
                raise ValueError("name one selection: weighted, hierarchical or majority")
            strategy = AdaptiveStrategy(
                kind, int(knobs["N"]), chain_length=int(knobs["L"]), stop=knobs.get("stop", ""),
                tau=float(knobs.get("tau", 1.0)), selection=loose[0],
            )  # fmt: skip
        else:
            stopping = StoppingRule(knobs.get("rule", ""), float(knobs.get("tau", 1.0)))
            strategy = AdaptiveStrategy(
                kind, int(knobs["B"]), stopping, tree=" ".join(loose), start=int(knobs["b"])
            )
    except KeyError as err:
        raise ValueError(f"{name!r}: missing {err.args[0]}=") from None
    except ValueError as err:
        raise ValueError(f"{name!r}: {err}") from None
    if strategy.name != " ".join(words):
        raise ValueError(f"{name!r}: write it as {strategy.name!r}")
    return strategy


def strategy_grid(
    caps: Sequence[int],
    revision_rows: Sequence[tuple[int, int]],
    tree_budgets: dict[str, Sequence[int]],
    rules: Sequence[str],
    taus: Sequence[float] = DEFAULT_TAUS,
    windows: Sequence[int] = (2, 4),
    verifier_taus: Sequence[float] | None = None,
    escalation_caps: Sequence[int] | None = None,
) -> list[AdaptiveStrategy]:
    """Every rule of ``rules`` at every tau (esc: every window below the cap) and cap; revision
    chains of every (L, N) saved (L >= 2), stopped on a repeat and -- with a verifier rule among
    ``rules`` -- on acceptance at every tau; and every tree setting escalated from each of its
    budgets to each larger one (up to ``escalation_caps``' largest, default all) by every verifier
    rule of ``rules`` at every tau. The verifier rules take ``verifier_taus`` (default ``taus``): a
    verifier's scores have a scale of their own.

    >>> [s.name for s in strategy_grid([4], [], {}, ["beta", "esc"], taus=[0.9], windows=[2])]
    ['adaptive_vote rule=beta tau=0.9 B=4', 'adaptive_vote rule=esc w=2 B=4']
    """
    verifier_taus = taus if verifier_taus is None else verifier_taus
    with_verifier = any(rule in VERIFIER_RULES for rule in rules)
    out: list[AdaptiveStrategy] = []
    for cap in sorted(set(caps)):
        for rule in rules:
            if rule == "esc":
                out += [
                    AdaptiveStrategy("adaptive_vote", cap, StoppingRule("esc", 1.0, w))
                    for w in windows
                    if w < cap
                ]
                continue
            kind = "adaptive_prm" if rule in VERIFIER_RULES else "adaptive_vote"
            grid = verifier_taus if rule in VERIFIER_RULES else taus
            out += [AdaptiveStrategy(kind, cap, StoppingRule(rule, tau)) for tau in grid]
    for length, budget in sorted(set(revision_rows)):
        if length < 2:
            continue  # one attempt per chain: nothing to stop
        out.append(AdaptiveStrategy("adaptive_revisions", budget, chain_length=length, stop="repeat",
                                    selection="majority"))  # fmt: skip
        if with_verifier:
            out.append(AdaptiveStrategy("adaptive_revisions", budget, chain_length=length, stop="repeat",
                                        selection="weighted"))  # fmt: skip
            out += [
                AdaptiveStrategy("adaptive_revisions", budget, chain_length=length, stop="accept", tau=tau,
                                 selection="weighted")
                for tau in verifier_taus
            ]  # fmt: skip
    for tree, budgets in sorted(tree_budgets.items()):
        top = max(escalation_caps) if escalation_caps else max(budgets, default=0)
        ordered = sorted(b for b in set(budgets) if b <= top)
        for i, start in enumerate(ordered):
            for cap in ordered[i + 1 :]:
                for rule in rules:
                    if rule in VERIFIER_RULES:
                        out += [
                            AdaptiveStrategy("escalate", cap, StoppingRule(rule, tau), tree=tree, start=start)
                            for tau in verifier_taus
                        ]
    return out


# --- evaluating on saved rows ---------------------------------------------------------------------


@dataclass
class Models:
    """What a search's rows are charged with: the policy's and the verifier's parameter counts."""

    policy_parameters: int
    verifier_parameters: int


def _record(
    row: dict[str, Any], strategy: AdaptiveStrategy, index: int, spent: int, policy_flops: int, prm_flops: int,
    settled: bool, reused_samples: int = 0,
) -> dict[str, Any]:  # fmt: skip
    """A selection record: ``row``'s candidate ``index`` answers, ``spent`` generations were drawn."""
    return {
        "problem_id": row["problem_id"],
        "strategy": strategy.name,
        "method": row["method"],
        "budget": strategy.cap,
        "generations": spent,
        "selected": index,
        "answer": row["answers"][index],
        "correct": bool(row["correct"][index]),
        "policy_flops": policy_flops,
        "prm_flops": prm_flops,
        "total_flops": policy_flops + prm_flops,
        "settled": settled,
        "reused_samples": reused_samples,
    }


def _charged(
    models: Models, strategy: AdaptiveStrategy, policy_tokens: int, prm_tokens: int
) -> tuple[int, int]:
    """The FLOPs of the tokens drawn and (when the strategy reads the verifier) scored."""
    prm = inference_flops(models.verifier_parameters, prm_tokens) if strategy.uses_verifier else 0
    return inference_flops(models.policy_parameters, policy_tokens), prm


def sampled_records(
    row: dict[str, Any],
    scores: list[float],
    strategies: Sequence[AdaptiveStrategy],
    models: Models,
) -> list[dict[str, Any]]:
    """The records of the vote and prm strategies on one problem's best-of-N candidates (``row``: its
    row of the largest budget; ``scores``: each candidate's aggregated score).

    Raises:
        InputError: a cap above the candidates saved, or a per-candidate cost missing.
    """
    answers = row["answers"]
    groups = group_equivalent_answers(answers)
    has = answered(answers)
    charged = row.get("prm_tokens_by_candidate") or []
    read: dict[tuple[str, int], list[float]] = {}  # one reading per rule and window, whatever its tau
    records = []
    for strategy in strategies:
        if strategy.cap > len(answers):
            raise InputError(
                f"problem {row['problem_id']}: {strategy.name} caps at {strategy.cap} samples, but the search "
                f"saved {len(answers)} (its largest best-of-N budget)"
            )
        rule = strategy.rule
        key = (rule.rule, rule.window)
        if key not in read:
            read[key] = confidences(rule, groups, has, scores if rule.needs_verifier else None)
        drawn, settled = stop_point(read[key], rule.tau, strategy.cap, rule.round_size)
        index = stopped_pick(rule, answers, scores if rule.needs_verifier else None, groups, drawn)
        flops = _charged(models, strategy, sum(row["num_tokens"][:drawn]), sum(charged[:drawn]))
        reused = min(int(row.get("reused_samples") or 0), drawn)
        records.append(_record(row, strategy, index, drawn, *flops, settled, reused))
    return records


def revision_records(
    row: dict[str, Any], scores: list[float], strategies: Sequence[AdaptiveStrategy], models: Models
) -> list[dict[str, Any]]:
    """The records of the revision strategies whose (L, N) is this ``revisions`` row's."""
    answers = row["answers"]
    groups = group_equivalent_answers(answers)
    has = answered(answers)
    charged = row.get("prm_tokens_by_candidate") or []
    records = []
    for strategy in strategies:
        kept: list[int] = []
        for chain in revision_chains_of(row):
            for t, index in enumerate(chain):
                kept.append(index)
                if strategy.stop == "accept" and scores[index] >= strategy.tau:
                    break
                before = chain[t - 1] if t else None
                # Compared directly, as a chain stopped online compares its last two answers.
                repeats = before is not None and has[index] and has[before]
                if strategy.stop == "repeat" and repeats and is_equivalent(answers[index], answers[before]):
                    break
        kept.sort()
        sub_answers = [answers[i] for i in kept]
        sub_groups = [groups[i] for i in kept]
        if strategy.selection == "majority":
            pick = majority_vote(sub_answers, groups=sub_groups)
        elif strategy.selection == "weighted":
            pick = weighted_best_of_n(sub_answers, [scores[i] for i in kept], groups=sub_groups)
        else:
            pick = hierarchical_best_of_n(
                sub_answers, [scores[i] for i in kept], [row["subtrees"][i] for i in kept]
            )
        flops = _charged(
            models, strategy, sum(row["num_tokens"][i] for i in kept), sum(charged[i] for i in kept)
        )
        records.append(_record(row, strategy, kept[pick], len(kept), *flops, len(kept) < len(answers)))
    return records


def run_confidence(
    rule: StoppingRule,
    answers: Sequence[str | None],
    scores: Sequence[float],
    groups: Sequence[int] | None = None,
) -> float:
    """The verifier's confidence in a finished run's answer: ``share`` (the weighted leader's summed
    scores over the final candidates) or ``best`` (the top score).

    >>> run_confidence(StoppingRule("share", 0.5), ["4", "4", "5"], [0.5, 0.25, 0.75])
    0.25
    """
    groups = group_equivalent_answers(answers) if groups is None else groups
    return confidences(rule, groups, answered(answers), list(scores))[-1]


def escalation_record(
    runs: dict[int, dict[str, Any]],
    scores_of: dict[int, list[float]],
    strategy: AdaptiveStrategy,
    read: dict[tuple[int, str], Any] | None = None,
) -> dict[str, Any] | None:
    """One problem's escalation record from its tree-search rows (``runs``: budget -> row of the
    strategy's setting); None when a budget between b and B is missing. ``read``: a cache of each
    run's groups, pick and confidences, shared by the strategies of one problem."""
    read = {} if read is None else read

    def groups_of(budget: int) -> list[int]:
        if (budget, "groups") not in read:
            read[(budget, "groups")] = group_equivalent_answers(runs[budget]["answers"])
        return read[(budget, "groups")]

    ladder = sorted(b for b in runs if strategy.start <= b <= strategy.cap)
    if not ladder or ladder[0] != strategy.start or ladder[-1] != strategy.cap:
        return None
    spent, policy_flops, prm_flops = 0, 0, 0
    for budget in ladder:
        row = runs[budget]
        spent += row["generations"]
        policy_flops += row["policy_flops"]
        prm_flops += row["prm_flops"]
        scores = scores_of[budget]
        if budget == strategy.cap:
            break
        if (budget, strategy.rule.rule) not in read:
            read[(budget, strategy.rule.rule)] = run_confidence(
                strategy.rule, row["answers"], scores, groups_of(budget)
            )
        if read[(budget, strategy.rule.rule)] >= strategy.rule.tau:
            break
    if (budget, "pick") not in read:
        read[(budget, "pick")] = weighted_best_of_n(row["answers"], scores, groups=groups_of(budget))
    return _record(
        row, strategy, read[(budget, "pick")], spent, policy_flops, prm_flops, budget < strategy.cap
    )


# --- a search's rows -> every adaptive strategy's records ------------------------------------------


@dataclass
class SearchRows:
    """A search output's rows as the adaptive strategies read them, per problem: the best-of-N row of
    the largest budget, the ``revisions`` rows by (L, N), and each tree setting's rows by budget."""

    best_of_n: dict[str, dict[str, Any]]
    revisions: dict[tuple[str, int, int], dict[str, Any]]
    trees: dict[tuple[str, str], dict[int, dict[str, Any]]]
    best_of_n_budgets: set[int]

    @classmethod
    def of(cls, rows: Sequence[dict[str, Any]], tree_name) -> SearchRows:
        """``tree_name(row)``: the strategy name of a tree-search row (``ttc select``'s)."""
        best: dict[str, dict[str, Any]] = {}
        budgets: set[int] = set()
        revisions: dict[tuple[str, int, int], dict[str, Any]] = {}
        trees: dict[tuple[str, str], dict[int, dict[str, Any]]] = {}
        for row in rows:
            problem = row["problem_id"]
            if row["method"] == "best_of_n":
                budgets.add(row["budget"])
                if problem not in best or row["budget"] > best[problem]["budget"]:
                    best[problem] = row
            elif row["method"] == "revisions":
                revisions[(problem, row["chain_length"], row["budget"])] = row
            else:
                trees.setdefault((problem, tree_name(row)), {})[row["budget"]] = row
        return cls(best, revisions, trees, budgets)

    @property
    def revision_settings(self) -> list[tuple[int, int]]:
        return sorted({(length, budget) for _, length, budget in self.revisions})

    @property
    def tree_budgets(self) -> dict[str, list[int]]:
        out: dict[str, set[int]] = {}
        for (_, tree), runs in self.trees.items():
            out.setdefault(tree, set()).update(runs)
        return {tree: sorted(budgets) for tree, budgets in out.items()}

    @property
    def has_costs(self) -> bool:
        """Whether each candidate's cost is saved (``num_tokens``, ``prm_tokens_by_candidate``): a
        search from before adaptive strategies has no per-candidate PRM cost."""
        rows = [*self.best_of_n.values(), *self.revisions.values()]
        return bool(rows) and all(
            len(r.get("num_tokens") or []) == len(r.get("prm_tokens_by_candidate") or []) == len(r["answers"])
            for r in rows
        )

    @property
    def has_scores(self) -> bool:
        return any(any(r["step_scores"]) for r in self.best_of_n.values()) or any(
            any(r["step_scores"]) for r in self.revisions.values()
        )


def check_strategies(strategies: Sequence[AdaptiveStrategy], rows: SearchRows, where: str) -> None:
    """Refuse, in one line and before anything is written, a strategy the search cannot feed: a cap
    above its candidates, a verifier with none, a revisions (L, N) or a tree setting it did not run."""
    largest = max(rows.best_of_n_budgets, default=0)
    sampled = any(s.kind != "escalate" for s in strategies)
    if sampled and not rows.has_costs:
        raise InputError(
            f"{where}: no per-candidate cost saved (num_tokens, prm_tokens_by_candidate: a search from before "
            "adaptive strategies); rerun ttc search to evaluate best-of-N or revision stopping rules"
        )
    for strategy in strategies:
        if strategy.kind in ("adaptive_vote", "adaptive_prm"):
            if not rows.best_of_n:
                raise InputError(
                    f"{where}: {strategy.name} samples best-of-N candidates; the search ran no best_of_n"
                )
            if strategy.cap > largest:
                raise InputError(
                    f"{where}: {strategy.name} caps at {strategy.cap} samples, above the {largest} the search "
                    "saved per problem (its largest best-of-N budget)"
                )
        elif strategy.kind == "adaptive_revisions":
            if (strategy.chain_length, strategy.cap) not in rows.revision_settings:
                raise InputError(
                    f"{where}: {strategy.name}: the search has no revisions of L={strategy.chain_length} at "
                    f"N={strategy.cap} (it has {rows.revision_settings})"
                )
        else:
            budgets = rows.tree_budgets.get(strategy.tree, [])
            if strategy.start not in budgets or strategy.cap not in budgets:
                raise InputError(
                    f"{where}: {strategy.name}: the search ran {strategy.tree!r} at budgets {budgets}"
                )
        if strategy.uses_verifier and not rows.has_scores:
            raise InputError(
                f"{where}: {strategy.name} reads verifier scores, and the search ran without --prm"
            )


def adaptive_records(
    rows: SearchRows, strategies: Sequence[AdaptiveStrategy], score_of, models: Models
) -> list[dict[str, Any]]:
    """Every strategy's record on every problem it applies to (``score_of(row)``: the row's
    candidate scores under the selection aggregation)."""
    sampled = [s for s in strategies if s.kind in ("adaptive_vote", "adaptive_prm")]
    records: list[dict[str, Any]] = []
    for row in rows.best_of_n.values() if sampled else []:
        records += sampled_records(row, score_of(row), sampled, models)
    by_setting: dict[tuple[int, int], list[AdaptiveStrategy]] = {}
    for s in strategies:
        if s.kind == "adaptive_revisions":
            by_setting.setdefault((s.chain_length, s.cap), []).append(s)
    for (_, length, budget), row in rows.revisions.items():
        if (length, budget) in by_setting:
            records += revision_records(row, score_of(row), by_setting[(length, budget)], models)
    escalations = [s for s in strategies if s.kind == "escalate"]
    for (_, tree), runs in rows.trees.items():
        mine = [s for s in escalations if s.tree == tree]
        if not mine:
            continue
        scores = {budget: score_of(row) for budget, row in runs.items()}
        read: dict[tuple[int, str], float] = {}
        for strategy in mine:
            record = escalation_record(runs, scores, strategy, read)
            if record is not None:
                records.append(record)
    return records
