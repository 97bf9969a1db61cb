"""Adaptive strategies evaluated by ``ttc select`` on saved candidates: where each rule stops, what it
answers and what it is charged, against hand computations on hand-built search rows (through the
parquet files ``ttc select`` reads); and bad requests refused before anything is written."""

from __future__ import annotations

from pathlib import Path

import pytest

from ttcompute.cli import run_stage
from ttcompute.core.errors import InputError
from ttcompute.core.shards import prepare_output, write_shard
from ttcompute.eval.adaptive import parse_strategy
from ttcompute.eval.compute_optimal import load_selections

POLICY, VERIFIER = 100, 50  # parameters: a generated token costs 200 FLOPs, a scored one 100


def best_of_n_rows(problem: str, answers, correct, scores, tokens, charged) -> list[dict]:
    """``ttc search``'s nested best-of-N rows of one problem (budgets 1, 2, 4)."""
    rows = []
    for budget in (1, 2, 4):
        rows.append(
            {
                "problem_id": problem, "method": "best_of_n", "width_setting": "", "lookahead": 0,
                "search_aggregation": "last", "budget": budget, "generations": budget, "chain_length": 0,
                "answers": answers[:budget], "correct": correct[:budget],
                "step_scores": [[s] for s in scores[:budget]], "num_tokens": tokens[:budget],
                "prm_tokens_by_candidate": charged[:budget], "subtrees": [0] * budget,
                "positions": [0] * budget, "policy_flops": 2 * POLICY * sum(tokens[:budget]),
                "prm_flops": 2 * VERIFIER * sum(charged[:budget]), "reused_samples": 0,
            }
        )  # fmt: skip
    return rows


def revision_row(problem: str) -> dict:
    """Two chains of two attempts (L = 2, N = 4), chain-major."""
    tokens, charged = [10, 11, 12, 13], [5, 6, 7, 8]
    return {
        "problem_id": problem, "method": "revisions", "width_setting": "L=2", "lookahead": 0,
        "search_aggregation": "last", "budget": 4, "generations": 4, "chain_length": 2,
        "answers": ["3", "3.0", "5", "4"], "correct": [True, True, False, False],
        "step_scores": [[0.3], [0.6], [0.9], [0.2]], "num_tokens": tokens, "prm_tokens_by_candidate": charged,
        "subtrees": [0, 0, 1, 1], "positions": [0, 1, 0, 1], "policy_flops": 2 * POLICY * sum(tokens),
        "prm_flops": 2 * VERIFIER * sum(charged), "reused_samples": 0,
    }  # fmt: skip


def beam_rows(problem: str) -> list[dict]:
    """Three independent beam-search runs (budgets 1, 2, 4; M = 2)."""
    finals = {1: (["9"], [False], [0.1]), 2: (["9", "6"], [False, True], [0.7, 0.2]),
              4: (["6", "6", "6", "9"], [True] * 3 + [False], [0.5, 0.5, 0.5, 0.1])}  # fmt: skip
    rows = []
    for budget, (answers, correct, scores) in finals.items():
        rows.append(
            {
                "problem_id": problem, "method": "beam_search", "width_setting": "2", "lookahead": 0,
                "search_aggregation": "last", "budget": budget, "generations": budget, "chain_length": 0,
                "answers": answers, "correct": correct, "step_scores": [[s] for s in scores],
                "num_tokens": [9] * budget, "prm_tokens_by_candidate": [], "subtrees": [0] * budget,
                "positions": [0] * budget, "policy_flops": 1000 * budget, "prm_flops": 100 * budget,
                "reused_samples": 0,
            }
        )  # fmt: skip
    return rows


def search_dir(tmp_path: Path, rows: list[dict]) -> Path:
    out = tmp_path / "search"
    prepare_output(
        out, "search", "test", 1, False, info={"policy_parameters": POLICY, "verifier_parameters": VERIFIER}
    )
    write_shard(out, 0, rows)
    return out


@pytest.fixture(scope="module")
def selected(tmp_path_factory) -> dict[str, dict]:
    tmp = tmp_path_factory.mktemp("adaptive")
    rows = best_of_n_rows(
        "p", ["7", "8", "7", "7"], [True, False, True, True], [0.2, 0.9, 0.3, 0.4], [10, 20, 30, 40], [15, 25, 35, 45]
    )  # fmt: skip
    out = search_dir(tmp, [*rows, revision_row("p"), *beam_rows("p")])
    named = [
        "adaptive_vote rule=beta tau=0.8 B=4",
        "adaptive_vote rule=beta tau=0.9 B=4",
        "adaptive_vote rule=dirichlet tau=0.8 B=4",
        "adaptive_vote rule=esc w=2 B=4",
        "adaptive_prm rule=best tau=0.85 B=4",
        "adaptive_prm rule=share tau=0.25 B=4",
        "adaptive_prm rule=share tau=0.5 B=2",
        "adaptive_revisions L=2 stop=accept tau=0.25 N=4 weighted",
        "adaptive_revisions L=2 stop=repeat N=4 majority",
        "escalate beam_search M=2 rule=best tau=0.6 b=1 B=4",
        "escalate beam_search M=2 rule=share tau=0.6 b=1 B=4",
    ]
    run_stage("select", ["--search_dir", str(out), "--output_dir", str(tmp / "sel"), "--adaptive", "false",
                         "--adaptive_strategies", *named])  # fmt: skip
    return {r["strategy"]: r for r in load_selections([str(tmp / "sel")])}


def test_agreement_rules_stop_where_a_hand_count_says(selected):
    # beta after 1..4 samples (7, 8, 7, 7): votes (1,0) .75, (1,1) .5, (2,1) 11/16, (3,1) 13/16 = .8125.
    beta = selected["adaptive_vote rule=beta tau=0.8 B=4"]
    assert (beta["generations"], beta["settled"], beta["answer"], beta["correct"]) == (4, True, "7", True)
    assert beta["policy_flops"] == 2 * POLICY * (10 + 20 + 30 + 40) and beta["prm_flops"] == 0
    assert beta["budget"] == 4
    # Never 0.9 within the cap: all four drawn, not settled, majority 7.
    capped = selected["adaptive_vote rule=beta tau=0.9 B=4"]
    assert (capped["generations"], capped["settled"], capped["answer"]) == (4, False, "7")
    # Two answers only: Dirichlet is Beta.
    assert selected["adaptive_vote rule=dirichlet tau=0.8 B=4"]["generations"] == 4
    # ESC, windows of 2: (7, 8) disagree, (7, 7) agree -> stop at 4.
    esc = selected["adaptive_vote rule=esc w=2 B=4"]
    assert (esc["generations"], esc["settled"], esc["answer"]) == (4, True, "7")


def test_verifier_rules_stop_and_are_charged_for_what_they_drew(selected):
    # best: 0.2, then 0.9 >= 0.85 -> two drawn; weighted vote over (7: 0.2, 8: 0.9) -> 8, wrong.
    best = selected["adaptive_prm rule=best tau=0.85 B=4"]
    assert (best["generations"], best["settled"], best["answer"], best["correct"]) == (2, True, "8", False)
    assert best["policy_flops"] == 2 * POLICY * (10 + 20)
    assert best["prm_flops"] == 2 * VERIFIER * (15 + 25)
    assert best["total_flops"] == best["policy_flops"] + best["prm_flops"]
    # share: 0.2 / 1 = 0.2 < 0.25; then 8 leads with 0.9 / 2 = 0.45 -> stop at 2.
    assert selected["adaptive_prm rule=share tau=0.25 B=4"]["generations"] == 2
    # The same rule at 0.5 never settles; its cap of 2 ends it.
    capped = selected["adaptive_prm rule=share tau=0.5 B=2"]
    assert (capped["generations"], capped["settled"], capped["budget"]) == (2, False, 2)


def test_revision_chains_stop_early_and_pay_for_the_attempts_made(selected):
    # accept 0.25: each chain's first attempt already scores >= 0.25 (0.3, 0.9): attempts 0 and 2 made,
    # weighted vote 3 (0.3) vs 5 (0.9) -> 5, wrong.
    accept = selected["adaptive_revisions L=2 stop=accept tau=0.25 N=4 weighted"]
    assert (accept["generations"], accept["answer"], accept["correct"]) == (2, "5", False)
    assert accept["policy_flops"] == 2 * POLICY * (10 + 12) and accept["prm_flops"] == 2 * VERIFIER * (5 + 7)
    # repeat: chain 0's second attempt repeats the first (3 = 3.0), chain 1 never repeats: all four
    # made; majority 3 (two votes); no verifier read, none charged.
    repeat = selected["adaptive_revisions L=2 stop=repeat N=4 majority"]
    assert (repeat["generations"], repeat["answer"], repeat["correct"], repeat["prm_flops"]) == (
        4,
        "3",
        True,
        0,
    )


def test_escalation_pays_for_every_run_it_made(selected):
    # best: run at 1 scores 0.1 < 0.6 -> run at 2: 0.7 -> stop; its weighted vote picks 9 (0.7 > 0.2).
    best = selected["escalate beam_search M=2 rule=best tau=0.6 b=1 B=4"]
    assert (best["generations"], best["answer"], best["correct"], best["settled"]) == (3, "9", False, True)
    assert (best["policy_flops"], best["prm_flops"]) == (1000 + 2000, 100 + 200)
    # share: at 2 the leader has 0.7 / 2 = 0.35 < 0.6 -> the run at 4 too (its cap): 6 wins there.
    share = selected["escalate beam_search M=2 rule=share tau=0.6 b=1 B=4"]
    assert (share["generations"], share["answer"], share["correct"], share["settled"]) == (
        7,
        "6",
        True,
        False,
    )


def test_names_round_trip_and_bad_names_say_why():
    for name in ("adaptive_vote rule=esc w=4 B=64", "adaptive_revisions L=4 stop=accept tau=0.5 N=16 hierarchical",
                 "escalate lookahead k=3 M=4 rule=share tau=0.7 b=4 B=16"):  # fmt: skip
        assert parse_strategy(name).name == name
    for name, message in (
        ("adaptive_vote rule=beta tau=1.5 B=8", "tau must be in"),
        ("adaptive_vote rule=share tau=0.5 B=8", "agreement rule"),
        ("adaptive_prm rule=best tau=0.5", "missing B="),
        ("adaptive_revisions L=3 stop=accept tau=0.5 N=8 weighted", "multiple of L=3"),
        ("escalate beam_search M=4 rule=best tau=0.5 b=8 B=4", "1 <= b < B"),
        ("greedy", "starts with one of"),
    ):
        with pytest.raises(ValueError, match=message):
            parse_strategy(name)


def _refused(tmp_path: Path, rows: list[dict], *args: str, match: str) -> None:
    out = search_dir(tmp_path, rows)
    with pytest.raises((InputError, SystemExit, ValueError), match=match):
        run_stage("select", ["--search_dir", str(out), "--output_dir", str(tmp_path / "sel"), *args])
    assert not (tmp_path / "sel").exists()  # nothing written


def _rows(with_scores: bool = True) -> list[dict]:
    rows = best_of_n_rows("p", ["1", "2", "1", "1"], [True, False, True, True], [0.5] * 4, [5] * 4, [3] * 4)
    if not with_scores:
        for row in rows:
            row["step_scores"] = [[] for _ in row["answers"]]
    return rows


def test_a_tau_outside_0_1_is_refused(tmp_path):
    _refused(tmp_path, _rows(), "--adaptive_taus", "0.9", "0", match="each tau must be in")


def test_a_cap_above_the_saved_candidates_is_refused(tmp_path):
    _refused(tmp_path, _rows(), "--adaptive_caps", "8", match="caps at 8 samples, above the 4")
    _refused(tmp_path, _rows(), "--adaptive_strategies", "adaptive_vote rule=beta tau=0.9 B=16",
             match="above the 4 the search saved")  # fmt: skip


def test_a_verifier_rule_without_a_verifier_is_refused(tmp_path):
    _refused(tmp_path, _rows(with_scores=False), "--adaptive_rules", "beta", "best",
             match="best read verifier scores, and the search ran without --prm")  # fmt: skip


def test_without_a_verifier_the_default_grid_keeps_to_the_agreement_rules(tmp_path):
    out = search_dir(tmp_path, _rows(with_scores=False))
    run_stage("select", ["--search_dir", str(out), "--output_dir", str(tmp_path / "sel")])
    strategies = {r["strategy"] for r in load_selections([str(tmp_path / "sel")])}
    assert any(s.startswith("adaptive_vote") for s in strategies)
    assert not any(s.startswith(("adaptive_prm", "escalate")) for s in strategies)
