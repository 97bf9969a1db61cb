"""Tests for ttcompute.data_gen.difficulty: quantile edges, bin assignment and the ``difficulty`` stage."""

from __future__ import annotations

import dataclasses
import json
import math
import random
from fractions import Fraction

import pyarrow.parquet as pq
import pytest

from ttcompute.core.errors import InputError
from ttcompute.core.outputs import load_difficulty
from ttcompute.core.shards import prepare_output, read_resolved_config, write_json, write_shard
from ttcompute.data_gen.difficulty import (
    DifficultyConfig,
    assign_bins,
    quantile_edges,
    run_difficulty,
)


def _brute_force_edges(values: list[float], num_bins: int) -> list[float]:
    """Linear-interpolation quantiles at k / num_bins, by hand: sort, find the position, interpolate."""
    ordered = sorted(values)
    edges = []
    for k in range(1, num_bins):
        position = Fraction(k, num_bins) * (len(ordered) - 1)
        lower = math.floor(position)
        fraction = float(position - lower)
        upper = min(lower + 1, len(ordered) - 1)
        edges.append(ordered[lower] + fraction * (ordered[upper] - ordered[lower]))
    return edges


def _brute_force_bin(value: float, edges: list[float]) -> int:
    # Bin 1 is above every edge; each edge at or above the value pushes it one bin harder.
    return 1 + sum(1 for edge in edges if edge >= value)


# --- quantile_edges ----------------------------------------------------------------------------


def test_quantile_edges_by_hand():
    # sorted [0, .25, .5, .5, .75, 1]: median at position 2.5 -> 0.5; thirds at 5/3 and 10/3.
    values = [1.0, 0.5, 0.0, 0.75, 0.5, 0.25]
    assert quantile_edges(values, 2) == [0.5]
    # position 5/3: 0.25 + 2/3 * 0.25; position 10/3: 0.5 + 1/3 * 0.25
    assert quantile_edges(values, 3) == pytest.approx([0.25 + 0.25 * 2 / 3, 0.5 + 0.25 / 3], abs=1e-12)


@pytest.mark.parametrize("num_bins", [1, 2, 3, 5, 7, 10])
def test_quantile_edges_match_brute_force_on_random_data(num_bins):
    rng = random.Random(num_bins)
    for _ in range(40):
        n = rng.randint(1, 60)
        if rng.random() < 0.5:
            values = [rng.random() for _ in range(n)]
        else:  # pass@1 of 8 samples: heavy ties
            values = [rng.randint(0, 8) / 8 for _ in range(n)]
        edges = quantile_edges(values, num_bins)
        assert len(edges) == num_bins - 1
        assert edges == pytest.approx(_brute_force_edges(values, num_bins), abs=1e-12)
        assert edges == sorted(edges)


def test_quantile_edges_of_nothing_is_an_input_error():
    with pytest.raises(InputError):
        quantile_edges([], 5)


# --- assign_bins -------------------------------------------------------------------------------


def test_assign_bins_by_hand():
    assert assign_bins([1.0, 0.5, 0.0], [0.25, 0.5, 0.75]) == [1, 3, 4]
    # A value equal to an edge goes to the harder side.
    assert assign_bins([0.6, 0.5, 0.4], [0.5]) == [1, 2, 2]
    assert assign_bins([0.3, 0.9], []) == [1, 1]


def test_bin_1_holds_the_highest_pass_at_1():
    values = [i / 99 for i in range(100)]
    bins = assign_bins(values, quantile_edges(values, 5))
    top = {v for v, b in zip(values, bins, strict=True) if b == 1}
    assert top == set(values[80:])
    assert {v for v, b in zip(values, bins, strict=True) if b == 5} == set(values[:20])


def test_uniform_grid_gives_equal_bins():
    values = [i / 99 for i in range(100)]
    bins = assign_bins(values, quantile_edges(values, 5))
    # Expected sizes from the hand-computed edges and the bin rule, not from the module.
    edges = _brute_force_edges(values, 5)
    expected = [sum(1 for v in values if _brute_force_bin(v, edges) == b) for b in range(1, 6)]
    assert expected == [20, 20, 20, 20, 20]
    assert [bins.count(b) for b in range(1, 6)] == expected


def test_ties_go_to_the_same_bin_whatever_the_order():
    rng = random.Random(0)
    values = [rng.randint(0, 8) / 8 for _ in range(200)]
    edges = quantile_edges(values, 5)
    # Heavy ties make some edge fall exactly on a value: the case the rule is about.
    assert set(edges) & set(values)
    bin_of = dict(zip(values, assign_bins(values, edges), strict=True))
    for value, b in bin_of.items():
        assert b == _brute_force_bin(value, edges)
    for seed in range(20):
        shuffled = values[:]
        random.Random(seed).shuffle(shuffled)
        shuffled_edges = quantile_edges(shuffled, 5)
        assert shuffled_edges == edges
        for value, b in zip(shuffled, assign_bins(shuffled, shuffled_edges), strict=True):
            assert b == bin_of[value]


@pytest.mark.parametrize("value", [0.0, 0.25, 1.0])
def test_all_equal_values_land_in_one_bin(value):
    values = [value] * 30
    bins = assign_bins(values, quantile_edges(values, 5))
    # Every edge equals the value, so all go to the hardest side of every edge.
    assert bins == [5] * 30


def test_random_values_follow_the_rule():
    rng = random.Random(1)
    values = [rng.random() for _ in range(300)]
    edges = sorted(rng.random() for _ in range(4))
    assert assign_bins(values, edges) == [_brute_force_bin(v, edges) for v in values]


# --- the difficulty stage ----------------------------------------------------------------------


def _row(problem_id: str, correct: list[bool]) -> dict:
    return {
        "problem_id": problem_id,
        "question": f"question of {problem_id}",
        "completions": ["x"] * len(correct),
        "correct": correct,
        "num_tokens": [5] * len(correct),
    }


def _sample_dir(path, shards: list[list[dict]], config_hash: str = "0123456789abcdef"):
    prepare_output(path, "sample", config_hash, len(shards), overwrite=False)
    for index, rows in enumerate(shards):
        if rows is not None:
            write_shard(path, index, rows)
    return path


T, F = True, False
# pass@1: 1.0, 0.75, 0.5 (2 samples), 0.5, 0.25, 0.0 (8 samples)
HAND_SHARDS = [
    [_row("p1", [T, T, T, T]), _row("p2", [T, T, T, F]), _row("p3", [T, F])],
    [_row("p4", [F, T, F, T]), _row("p5", [F, F, T, F]), _row("p6", [F] * 8)],
]


def test_run_difficulty_on_a_hand_made_sample_dir(tmp_path):
    samples = _sample_dir(tmp_path / "samples", HAND_SHARDS)
    write_json(samples / "stats.json", {"compute": {"policy_tokens": 123}})
    out = tmp_path / "difficulty"
    result = run_difficulty(DifficultyConfig(samples_dir=str(samples), output_dir=str(out), num_bins=2))

    table = pq.read_table(out / "difficulty.parquet")
    assert table.column_names == ["problem_id", "pass_at_1", "predicted_score", "num_samples", "bin"]
    assert table.column("predicted_score").to_pylist() == [None] * 6  # the oracle predicts nothing
    assert table.column("problem_id").to_pylist() == ["p1", "p2", "p3", "p4", "p5", "p6"]
    assert table.column("pass_at_1").to_pylist() == [1.0, 0.75, 0.5, 0.5, 0.25, 0.0]
    assert table.column("num_samples").to_pylist() == [4, 4, 2, 4, 4, 8]
    # Median 0.5 is the edge; the two 0.5s sit on it and go to the harder bin.
    assert table.column("bin").to_pylist() == [1, 1, 2, 2, 2, 2]
    assert load_difficulty(out)["bin"] == [1, 1, 2, 2, 2, 2]

    assert json.loads((out / "bin_edges.json").read_text()) == {
        "metric": "pass_at_1",
        "edges": [0.5],
        "num_bins": 2,
        "bin_1": "easiest",
    }
    stats = json.loads((out / "stats.json").read_text())
    assert stats["bin_sizes"] == {"1": 2, "2": 4}
    assert stats["mean_pass_at_1_by_bin"] == {"1": 0.875, "2": 0.3125}
    assert stats["estimation_compute"] == {"policy_tokens": 123}
    assert result["num_problems"] == 6
    resolved = read_resolved_config(out)  # recorded relative to the file, read back absolute
    assert resolved["num_bins"] == 2 and resolved["samples_dir"] == str(samples)


def test_edges_of_one_run_bin_another_sample_set(tmp_path):
    first = _sample_dir(tmp_path / "train_samples", HAND_SHARDS)
    run_difficulty(DifficultyConfig(samples_dir=str(first), output_dir=str(tmp_path / "train"), num_bins=2))

    # pass@1 1.0, 1.0, 1.0, 0.75, 0.5: its own median would be 1.0, the reused edge is 0.5.
    second_rows = [
        _row("q1", [T, T, T, T]),
        _row("q2", [T, T, T, T]),
        _row("q3", [T, T, T, T]),
        _row("q4", [T, T, F, T]),
        _row("q5", [T, F, F, T]),
    ]
    second = _sample_dir(tmp_path / "test_samples", [second_rows[:2], second_rows[2:]])
    out = tmp_path / "test"
    run_difficulty(
        DifficultyConfig(
            samples_dir=str(second),
            output_dir=str(out),
            num_bins=2,
            bin_edges_file=str(tmp_path / "train" / "bin_edges.json"),
        )
    )
    assert load_difficulty(out)["bin"] == [1, 1, 1, 1, 2]
    assert json.loads((out / "bin_edges.json").read_text())["edges"] == [0.5]

    # Without the edges file the same samples get their own edge, 1.0 (the median), and different bins:
    # every value is <= 1.0, so all go to the harder side and bin 1 stays empty.
    run_difficulty(DifficultyConfig(samples_dir=str(second), output_dir=str(tmp_path / "own"), num_bins=2))
    assert json.loads((tmp_path / "own" / "bin_edges.json").read_text())["edges"] == [1.0]
    assert load_difficulty(tmp_path / "own")["bin"] == [2, 2, 2, 2, 2]


def test_missing_shards_are_an_input_error(tmp_path):
    samples = _sample_dir(tmp_path / "samples", [HAND_SHARDS[0], None, HAND_SHARDS[1]])
    out = tmp_path / "difficulty"
    with pytest.raises(InputError, match=r"\[1\]"):
        run_difficulty(DifficultyConfig(samples_dir=str(samples), output_dir=str(out)))
    assert not out.exists()


def test_not_a_sample_dir_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="manifest"):
        run_difficulty(DifficultyConfig(samples_dir=str(tmp_path), output_dir=str(tmp_path / "out")))


def test_num_bins_mismatch_with_edges_file_is_an_input_error(tmp_path):
    samples = _sample_dir(tmp_path / "samples", HAND_SHARDS)
    edges_file = tmp_path / "bin_edges.json"
    write_json(edges_file, {"metric": "pass_at_1", "edges": [0.5], "num_bins": 2, "bin_1": "easiest"})
    with pytest.raises(InputError, match="bin_edges.json") as err:
        run_difficulty(
            DifficultyConfig(
                samples_dir=str(samples),
                output_dir=str(tmp_path / "out"),
                num_bins=5,
                bin_edges_file=str(edges_file),
            )
        )
    assert "5" in str(err.value)
    assert not (tmp_path / "out" / "difficulty.parquet").exists()


def test_a_problem_without_samples_is_an_input_error(tmp_path):
    samples = _sample_dir(tmp_path / "samples", [[_row("p1", [T]), _row("p2", [])]])
    with pytest.raises(InputError, match="p2"):
        run_difficulty(DifficultyConfig(samples_dir=str(samples), output_dir=str(tmp_path / "out")))


def test_a_repeated_problem_id_or_a_null_verdict_is_an_input_error(tmp_path):
    repeated = _sample_dir(tmp_path / "repeated", [[_row("p1", [T]), _row("p2", [F])], [_row("p1", [F])]])
    with pytest.raises(InputError, match="rows 0 and 2 are both problem 'p1'"):
        run_difficulty(DifficultyConfig(samples_dir=str(repeated), output_dir=str(tmp_path / "out")))
    null = _sample_dir(tmp_path / "null", [[_row("p1", [T, None])]])
    with pytest.raises(InputError, match="row 0 .*null verdict"):
        run_difficulty(DifficultyConfig(samples_dir=str(null), output_dir=str(tmp_path / "out")))
    assert not (tmp_path / "out").exists()


def test_difficulty_config_rejects_zero_bins():
    with pytest.raises(ValueError):
        DifficultyConfig(num_bins=0)


def test_failed_rerun_leaves_an_earlier_output_intact(tmp_path):
    samples = _sample_dir(tmp_path / "samples", HAND_SHARDS)
    out = tmp_path / "difficulty"
    run_difficulty(DifficultyConfig(samples_dir=str(samples), output_dir=str(out), num_bins=2))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    edges_file = tmp_path / "bin_edges.json"
    write_json(edges_file, {"metric": "pass_at_1", "edges": [0.5], "num_bins": 2, "bin_1": "easiest"})
    with pytest.raises(InputError):
        run_difficulty(
            DifficultyConfig(
                samples_dir=str(samples), output_dir=str(out), num_bins=5, bin_edges_file=str(edges_file)
            )
        )
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def _arithmetic_row(problem_id: str, start: int, completions: list[str], correct: list[bool]) -> dict:
    return {
        "problem_id": problem_id,
        "question": f"Start at {start}. Add 4.",
        "completions": completions,
        "correct": correct,
        "num_tokens": [len(c) for c in completions],
    }


@pytest.mark.parametrize("predictor", ["prm", "prm_probe"])
def test_prm_predictors_bin_by_the_mean_final_score(tmp_path, likelihood_prm_dir, predictor):
    from ttcompute.models.prm_formats import load_prm

    rows = []
    for i, start in enumerate((3, 10, 25, 40, 61, 77)):
        right = f"{start} + 4 = {start + 4}\n\nThe answer is \\boxed{{{start + 4}}}"
        wrong = f"{start} + 4 = {start + 5}\n\nThe answer is \\boxed{{{start + 5}}}"
        completions = [right, wrong, "", right][: 2 + i % 3]
        rows.append(_arithmetic_row(f"p{i}", start, completions, [c == right for c in completions]))
    samples = _sample_dir(tmp_path / "samples", [rows[:3], rows[3:]])
    write_json(samples / "stats.json", {"compute": {"policy_parameters": 1000, "policy_tokens": 99}})
    out = tmp_path / "difficulty"
    config = DifficultyConfig(
        samples_dir=str(samples), output_dir=str(out), num_bins=2, predictor=predictor,
        prm=str(likelihood_prm_dir), probe_samples=2,
    )  # fmt: skip
    stats = run_difficulty(config)

    # Independently: a fresh PRM scores each used completion alone; empty ones count as 0.
    prm = load_prm(str(likelihood_prm_dir))
    expected, generations, tokens = [], 0, 0
    for row in rows:
        used = row["completions"][:2] if predictor == "prm_probe" else row["completions"]
        finals = [prm.score([row["question"]], [c.split("\n\n")])[0][-1] if c else 0.0 for c in used]
        expected.append(sum(finals) / len(used))
        generations += len(used)
        tokens += sum(len(c) for c in used)
    table = load_difficulty(out)
    assert table["predicted_score"] == pytest.approx(expected, abs=1e-5)
    assert table["num_samples"] == ([2] * 6 if predictor == "prm_probe" else [2, 3, 4, 2, 3, 4])
    median = sorted(expected)[2:4]
    assert table["bin"] == [1 if e > sum(median) / 2 else 2 for e in expected]
    compute = stats["estimation_compute"]
    assert compute["generations"] == generations and compute["policy_tokens"] == tokens
    assert compute["policy_flops"] == 2 * 1000 * tokens
    assert (
        compute["verifier_tokens"] > 0
        and compute["total_flops"] == compute["policy_flops"] + compute["verifier_flops"]
    )
    assert set(stats["agreement_with_oracle"]) == {"same_bin", "within_one_bin", "spearman"}
    assert json.loads((out / "bin_edges.json").read_text())["metric"] == "mean_prm_score"
    # Oracle edges cannot bin a PRM score.
    with pytest.raises(InputError, match="edges of 'pass_at_1'"):
        oracle = tmp_path / "oracle"
        run_difficulty(DifficultyConfig(samples_dir=str(samples), output_dir=str(oracle), num_bins=2))
        run_difficulty(
            DifficultyConfig(
                samples_dir=str(samples),
                output_dir=str(tmp_path / "again"),
                num_bins=2,
                predictor=predictor,
                prm=str(likelihood_prm_dir),
                bin_edges_file=str(oracle / "bin_edges.json"),
            )  # fmt: skip
        )


def test_prm_predictor_needs_a_prm():
    with pytest.raises(ValueError, match="needs --prm"):
        DifficultyConfig(predictor="prm")
    with pytest.raises(ValueError, match="unknown predictor"):
        DifficultyConfig(predictor="psychic")


def test_agreement_is_measured_against_another_oracle_output(tmp_path, likelihood_prm_dir):
    """--oracle_dir: a probe of few samples is compared with the pass@1 of an oracle run of more."""
    from ttcompute.data_gen.difficulty import oracle_agreement

    rows = []
    for i, start in enumerate((3, 10, 25, 40, 61, 77)):
        right = f"{start} + 4 = {start + 4}\n\nThe answer is \\boxed{{{start + 4}}}"
        wrong = f"{start} + 4 = {start + 5}\n\nThe answer is \\boxed{{{start + 5}}}"
        completions = [right, wrong][: 1 + i % 2]
        rows.append(_arithmetic_row(f"p{i}", start, completions, [c == right for c in completions]))
    samples = _sample_dir(tmp_path / "samples", [rows])
    oracle = _sample_dir(tmp_path / "many", [[_row(f"p{i}", [T] * (6 - i) + [F] * i) for i in range(6)]])
    run_difficulty(DifficultyConfig(samples_dir=str(oracle), output_dir=str(tmp_path / "oracle"), num_bins=2))
    config = DifficultyConfig(
        samples_dir=str(samples), output_dir=str(tmp_path / "probe"), num_bins=2, predictor="prm_probe",
        prm=str(likelihood_prm_dir), probe_samples=2, oracle_dir=str(tmp_path / "oracle"),
    )  # fmt: skip
    stats = run_difficulty(config)
    predicted = load_difficulty(tmp_path / "probe")["predicted_score"]
    expected = oracle_agreement([(6 - i) / 6 for i in range(6)], predicted, 2)
    assert stats["agreement_with_oracle"] == {**expected, "oracle_dir": str(tmp_path / "oracle")}
    own = oracle_agreement([r["correct"].count(True) / len(r["correct"]) for r in rows], predicted, 2)
    assert own != expected  # the samples' own pass@1 would have said something else

    # An oracle output that lacks a problem, or is not one: one line, nothing written.
    partial = _sample_dir(tmp_path / "few", [[_row(f"p{i}", [T]) for i in range(5)]])
    run_difficulty(
        DifficultyConfig(samples_dir=str(partial), output_dir=str(tmp_path / "oracle5"), num_bins=2)
    )
    for bad, message in ((tmp_path / "oracle5", "no pass@1 of problem 'p5'"), (tmp_path, "no such file")):
        out = tmp_path / f"refused-{bad.name}"
        with pytest.raises(InputError, match=message):
            run_difficulty(dataclasses.replace(config, output_dir=str(out), oracle_dir=str(bad)))
        assert not out.exists()
