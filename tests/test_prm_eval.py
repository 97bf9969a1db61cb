"""``ttc eval-prm``: metric functions against hand-computed and brute-force values, then the stage on
toy PRMs (oracle, constant) and on a tiny random LlamaForTokenClassification."""

from __future__ import annotations

import doctest
import json
import logging
import random
from pathlib import Path

import pytest
from conftest import write_jsonl

from ttcompute.core.errors import InputError
from ttcompute.eval import prm_eval, prm_metrics
from ttcompute.eval.prm_eval import (
    EvalPRMConfig,
    gold_first_errors,
    label_agreement,
    load_eval_examples,
    resolve_gold,
)
from ttcompute.eval.prm_metrics import (
    best_of_n_accuracy,
    budget_sizes,
    first_error_from_labels,
    first_error_from_scores,
    processbench_metrics,
    step_labels_from_first_error,
    step_roc_auc,
)
from ttcompute.tasks.arithmetic import STEP_SEPARATOR, first_wrong_step, generate_problems, split_steps


def test_docstring_examples():
    assert doctest.testmod(prm_eval).failed == 0
    assert doctest.testmod(prm_metrics).failed == 0


# --- first errors ------------------------------------------------------------------------------


def test_first_error_from_scores_by_hand():
    assert first_error_from_scores([0.9, 0.6, 0.2, 0.1]) == 2
    assert first_error_from_scores([0.5, 0.5]) == -1  # at the threshold is not below it
    assert first_error_from_scores([0.49, 0.9]) == 0
    assert first_error_from_scores([0.9, 0.8, 0.7], threshold=0.75) == 2
    assert first_error_from_scores([]) == -1


def test_first_error_from_labels_by_hand():
    assert first_error_from_labels([0.5, 1.0, 0.0, 0.0]) == 2
    assert first_error_from_labels([0.0625, 0.5]) == -1  # a small MC value is not a bad step
    assert first_error_from_labels([True, False, True]) == 1
    assert first_error_from_labels([0, 1]) == 0


def test_step_labels_from_first_error():
    assert step_labels_from_first_error(3, 0) == [0, 0, 0]
    assert step_labels_from_first_error(3, 2) == [1, 1, 0]
    assert step_labels_from_first_error(3, -1) == [1, 1, 1]
    with pytest.raises(ValueError):
        step_labels_from_first_error(3, 3)


# --- processbench_metrics ----------------------------------------------------------------------


def test_processbench_metrics_by_hand():
    predicted = [1, 2, -1, -1, 0, -1, 3]
    gold = [1, 1, 1, -1, -1, -1, -1]
    # erroneous (gold 1, 1, 1): only the first is found exactly -> 1/3; a later or missing error is wrong.
    # correct (gold -1 x4): predicted -1 on 2 of 4 -> 1/2. F1 = 2 * (1/3) * (1/2) / (1/3 + 1/2) = 0.4.
    m = processbench_metrics(predicted, gold)
    assert m["error_accuracy"] == pytest.approx(1 / 3)
    assert m["correct_accuracy"] == pytest.approx(0.5)
    assert m["f1"] == pytest.approx(0.4)
    assert (m["num_erroneous"], m["num_correct"], m["num_error_found"], m["num_correct_passed"]) == (
        3,
        4,
        1,
        2,
    )


def test_processbench_f1_is_zero_when_one_accuracy_is_zero_and_none_when_undefined():
    m = processbench_metrics([-1, -1], [0, -1])
    assert (m["error_accuracy"], m["correct_accuracy"], m["f1"]) == (0.0, 1.0, 0.0)
    m = processbench_metrics([-1, 0], [-1, -1])  # no erroneous sample: error accuracy undefined
    assert (m["error_accuracy"], m["correct_accuracy"], m["f1"]) == (None, 0.5, None)
    with pytest.raises(ValueError):
        processbench_metrics([0], [0, 1])
    with pytest.raises(ValueError):
        processbench_metrics([], [])


# --- step_roc_auc ------------------------------------------------------------------------------


def _pairwise_auc(scores, labels) -> float:
    positives = [s for s, y in zip(scores, labels) if y]
    negatives = [s for s, y in zip(scores, labels) if not y]
    wins = sum((p > n) + 0.5 * (p == n) for p in positives for n in negatives)
    return wins / (len(positives) * len(negatives))


def test_step_roc_auc_matches_pairwise_count_on_random_data():
    rng = random.Random(0)
    for trial in range(200):
        n = rng.randint(2, 40)
        labels = [rng.randint(0, 1) for _ in range(n)]
        labels[0], labels[1] = 0, 1  # both classes
        # Coarse scores in half the trials, so ties are frequent.
        scores = [round(rng.random(), 1) if trial % 2 else rng.random() for _ in range(n)]
        assert step_roc_auc(scores, labels) == pytest.approx(_pairwise_auc(scores, labels), abs=1e-12)


def test_step_roc_auc_edge_cases():
    assert step_roc_auc([0.1, 0.9], [0, 1]) == 1.0
    assert step_roc_auc([0.9, 0.1], [0, 1]) == 0.0
    assert step_roc_auc([0.3, 0.3, 0.3], [0, 1, 1]) == 0.5
    assert step_roc_auc([0.2, 0.8], [False, True]) == 1.0
    with pytest.raises(ValueError, match="both classes"):
        step_roc_auc([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="NaN"):
        step_roc_auc([float("nan"), 0.2], [0, 1])
    with pytest.raises(ValueError, match="0/1"):
        step_roc_auc([0.1, 0.2], [0, 2])


# --- best-of-N curve ---------------------------------------------------------------------------


def test_budget_sizes():
    assert budget_sizes(1) == [1]
    assert budget_sizes(4) == [1, 2, 4]
    assert budget_sizes(5) == [1, 2, 4, 5]
    assert budget_sizes(16) == [1, 2, 4, 8, 16]


def test_best_of_n_accuracy_by_hand():
    answers = [["5", "7", "7", "5"], ["1/2", "3", "0.5", None]]
    correct = [[True, False, False, True], [False, True, False, False]]
    scores = [[0.2, 0.9, 0.1, 0.4], [0.3, 0.35, 0.3, 0.99]]
    result = best_of_n_accuracy(answers, correct, scores)
    # Problem 0: n=1 -> candidate 0 (right) by every rule. n=2: best-of-N takes "7" (0.9, wrong);
    # weighted also "7" (0.9 vs 0.2); majority ties 1-1 -> earliest "5" (right). n=4: "5" 0.6 vs "7" 1.0
    # -> weighted picks "7" (wrong); best-of-N "7"; majority ties 2-2 -> "5" (right).
    # Problem 1: n=1 -> "1/2" (wrong). n=2: best-of-N "3" (right); weighted "3" 0.35 > 0.3 (right);
    # majority tie -> "1/2" (wrong). n=4: best-of-N takes the answerless 0.99 (wrong); weighted
    # "1/2"+"0.5" = 0.6 > 0.35 (wrong); majority "1/2" 2 votes (wrong). Oracle: 1, 1, 1 / 0, 1, 1.
    assert result == {
        "n": [1, 2, 4],
        "weighted_best_of_n": [0.5, 0.5, 0.0],
        "best_of_n": [0.5, 0.5, 0.0],
        "majority_vote": [0.5, 0.5, 0.5],
        "oracle": [0.5, 1.0, 1.0],
    }


def test_best_of_n_accuracy_rejects_ragged_rows():
    with pytest.raises(ValueError):
        best_of_n_accuracy([["1", "2"]], [[True]], [[0.1, 0.2]])
    with pytest.raises(ValueError):
        best_of_n_accuracy([], [], [])


# --- data: arithmetic solutions with known first errors ----------------------------------------


def _corrupt(step: str) -> str:
    """A wrong version of a step: the stated result off by one (or a wrong final answer)."""
    head, _, result = step.rpartition(" ")
    if step.startswith("The answer is"):
        value = int(step[len("The answer is \\boxed{") : -1])
        return f"The answer is \\boxed{{{value + 1}}}"
    return f"{head} {int(result) + 1}"


def _solutions(num_problems: int = 8, seed: int = 3) -> list[dict]:
    """Arithmetic solutions, every other one with a step corrupted at a known position."""
    rng = random.Random(seed)
    rows = []
    for i, problem in enumerate(generate_problems(num_problems, seed=seed)):
        steps = split_steps(problem.solution)
        first_error = -1
        if i % 2:
            first_error = rng.randrange(len(steps))
            steps[first_error] = _corrupt(steps[first_error])
        rows.append({"question": problem.question, "steps": steps, "first_error": first_error})
    return rows


def test_corrupted_solutions_have_the_intended_first_error():
    for row in _solutions():
        checker = first_wrong_step(row["question"], row["steps"])
        assert (-1 if checker is None else checker) == row["first_error"]


def _mc_labels(steps: list[str], first_error: int, noisy_at: int | None = None) -> list[float]:
    """MC-like values: positive before the first error, 0 from it on; ``noisy_at`` flips one to 0."""
    labels = [0.75 if t else 0.0 for t in step_labels_from_first_error(len(steps), first_error)]
    if noisy_at is not None:
        labels[noisy_at] = 0.0
    return labels


def _write_label_dir(path: Path, rows: list[dict]) -> Path:
    from ttcompute.core.shards import prepare_output, write_shard

    prepare_output(path, "label", "test", 1, overwrite=False)
    write_shard(path, 0, rows)
    return path


def _label_rows(solutions: list[dict], noisy_rows: tuple[int, ...] = ()) -> list[dict]:
    rows = []
    for i, s in enumerate(solutions):
        noisy_at = 0 if i in noisy_rows else None
        rows.append(
            {
                "problem_id": f"p{i}",
                "question": s["question"],
                "prompt": s["question"] + "\n",
                "completions": s["steps"],
                "labels": _mc_labels(s["steps"], s["first_error"], noisy_at),
                "correct": s["first_error"] == -1,
            }
        )
    return rows


def _processbench_rows(solutions: list[dict]) -> list[dict]:
    return [{"problem": s["question"], "steps": s["steps"], "label": s["first_error"]} for s in solutions]


def test_load_examples_detects_both_formats(tmp_path):
    solutions = _solutions()
    examples, kind = load_eval_examples(str(_write_label_dir(tmp_path / "labels", _label_rows(solutions))))
    assert kind == "stepwise" and len(examples) == len(solutions)
    assert examples[1].steps == solutions[1]["steps"] and examples[1].processbench_label is None
    examples, kind = load_eval_examples(
        str(write_jsonl(tmp_path / "pb.jsonl", _processbench_rows(solutions)))
    )
    assert kind == "processbench"
    assert [e.processbench_label for e in examples] == [s["first_error"] for s in solutions]
    examples, _ = load_eval_examples(str(tmp_path / "pb.jsonl"), limit=3)
    assert len(examples) == 3


@pytest.mark.parametrize("storage", ["jsonl", "parquet", "datasets_dir", "label_output"])
def test_bool_step_labels_read_as_their_values_from_every_storage(storage, tmp_path):
    """TRL's stepwise format stores ``labels`` as bools: each storage must give eval-prm the same
    0/1 values (and so the same first errors) as the float labels of ``ttc label``."""
    import datasets

    solutions = _solutions(6)
    rows = []
    for i, s in enumerate(solutions):
        bad = s["first_error"]
        labels = [bad == -1 or j < bad for j in range(len(s["steps"]))]
        rows.append(
            {
                "prompt": s["question"] + "\n",
                "completions": s["steps"],
                "labels": labels,
                "problem_id": f"p{i}",
            }
        )
    path = tmp_path / "steps"
    if storage == "jsonl":
        path = write_jsonl(tmp_path / "steps.jsonl", rows)
    elif storage == "parquet":
        path = tmp_path / "steps.parquet"
        datasets.Dataset.from_list(rows).to_parquet(str(path))
    elif storage == "datasets_dir":
        datasets.Dataset.from_list(rows).save_to_disk(str(path))
    else:
        path = _write_label_dir(path, rows)
    examples, kind = load_eval_examples(str(path), split="train")
    assert kind == "stepwise"
    assert [e.mc_labels for e in examples] == [[float(v) for v in r["labels"]] for r in rows]
    assert all(type(v) is float for e in examples for v in e.mc_labels)
    assert gold_first_errors("labels", examples) == [s["first_error"] for s in solutions]


def test_load_examples_reports_bad_rows(tmp_path):
    rows = _processbench_rows(_solutions(4))
    with pytest.raises(InputError, match=r"missing column\(s\) label.*missing column\(s\) question"):
        load_eval_examples(str(write_jsonl(tmp_path / "a.jsonl", [{"problem": "x", "steps": ["y"]}])))
    bad = [dict(r) for r in rows]
    bad[2]["steps"] = []
    with pytest.raises(InputError, match=r"b\.jsonl:3: field 'steps' is empty"):
        load_eval_examples(str(write_jsonl(tmp_path / "b.jsonl", bad)))
    bad = [dict(r) for r in rows]
    bad[1]["label"] = 99
    with pytest.raises(InputError, match=r"c\.jsonl:2: field 'label' = 99"):
        load_eval_examples(str(write_jsonl(tmp_path / "c.jsonl", bad)))
    bad = [dict(r) for r in rows]
    del bad[3]["problem"]
    with pytest.raises(InputError, match=r"d\.jsonl:4: field 'problem'"):
        load_eval_examples(str(write_jsonl(tmp_path / "d.jsonl", bad)))
    label_rows = _label_rows(_solutions(3))
    label_rows[1]["labels"] = label_rows[1]["labels"][:-1]
    with pytest.raises(InputError, match=r"row 1: field 'labels' has"):
        load_eval_examples(str(_write_label_dir(tmp_path / "labels", label_rows)))


def test_resolve_gold_and_first_errors(tmp_path):
    solutions = _solutions()
    truth = [s["first_error"] for s in solutions]
    labelled, _ = load_eval_examples(str(_write_label_dir(tmp_path / "labels", _label_rows(solutions))))
    processbench, _ = load_eval_examples(
        str(write_jsonl(tmp_path / "pb.jsonl", _processbench_rows(solutions)))
    )
    assert resolve_gold("auto", processbench) == "processbench"
    assert resolve_gold("auto", labelled) == "checker"  # arithmetic questions: the exact checker
    for gold, examples in (("processbench", processbench), ("checker", labelled), ("labels", labelled)):
        assert gold_first_errors(resolve_gold(gold, examples), examples) == truth
    with pytest.raises(InputError, match="no ProcessBench 'label'"):
        resolve_gold("processbench", labelled)
    with pytest.raises(InputError, match="no MC 'labels'"):
        resolve_gold("labels", processbench)
    for example in labelled:
        example.question = "What is 2 + 2?"
    assert resolve_gold("auto", labelled) == "labels"
    with pytest.raises(InputError, match="needs arithmetic questions"):
        resolve_gold("checker", labelled)


def test_label_agreement_by_hand(tmp_path):
    solutions = _solutions(4)  # rows 1 and 3 have errors
    examples, _ = load_eval_examples(
        str(_write_label_dir(tmp_path / "labels", _label_rows(solutions, noisy_rows=(0,))))
    )
    truth = [s["first_error"] for s in solutions]
    agreement = label_agreement(examples, truth)
    # Row 0 is correct but its MC label says step 0 is bad: 1 of 4 first errors disagree and one step
    # label is wrong.
    assert agreement["first_error_agreement"] == 0.75
    num_steps = sum(len(s["steps"]) for s in solutions)
    assert agreement["num_steps"] == num_steps
    assert agreement["step_agreement"] == pytest.approx((num_steps - 1) / num_steps)


def test_config_accepts_exactly_the_shared_aggregations():
    from ttcompute.core.steps import AGGREGATIONS

    for how in AGGREGATIONS:
        assert EvalPRMConfig(prm="p", dataset="d", aggregation=how).aggregation == how
    with pytest.raises(ValueError, match="aggregation must be one of"):
        EvalPRMConfig(prm="p", dataset="d", aggregation="median")


def test_config_validation():
    with pytest.raises(ValueError, match="--prm is required"):
        EvalPRMConfig(dataset="x")
    with pytest.raises(ValueError, match="--dataset is required"):
        EvalPRMConfig(prm="x")
    with pytest.raises(ValueError, match="gold"):
        EvalPRMConfig(prm="x", dataset="y", gold="oracle")
    with pytest.raises(ValueError, match="aggregation"):
        EvalPRMConfig(prm="x", dataset="y", aggregation="max")
    with pytest.raises(ValueError, match="threshold"):
        EvalPRMConfig(prm="x", dataset="y", threshold=1.5)


# --- the stage on toy PRMs ---------------------------------------------------------------------


class ToyPRM:
    """A PRM that scores steps with a plain function of (question, steps); counts characters as tokens."""

    num_parameters = 1_000
    step_separator = STEP_SEPARATOR

    def __init__(self, score_steps):
        self.score_steps = score_steps
        self.num_tokens_encoded = 0
        self.num_tokens_requested = 0

    def score(self, questions, steps):
        tokens = sum(len(q) + sum(len(s) for s in ss) for q, ss in zip(questions, steps))
        self.num_tokens_encoded += tokens
        self.num_tokens_requested += tokens
        return [self.score_steps(q, ss) for q, ss in zip(questions, steps)]


def _oracle(question: str, steps: list[str]) -> list[float]:
    wrong = first_wrong_step(question, steps)
    return [float(t) for t in step_labels_from_first_error(len(steps), -1 if wrong is None else wrong)]


def _use_toy_prm(monkeypatch, prm: ToyPRM) -> None:
    monkeypatch.setattr(prm_eval, "load_prm", lambda *args, **kwargs: prm)


def _write_samples_dir(path: Path, num_problems: int = 6, n: int = 4, seed: int = 5) -> Path:
    """A ``ttc sample``-shaped output: per problem, ``n`` reference or corrupted solutions."""
    from ttcompute.core.grading import grade
    from ttcompute.core.shards import prepare_output, write_shard

    rng = random.Random(seed)
    rows = []
    for problem in generate_problems(num_problems, seed=seed):
        completions = []
        for _ in range(n):
            steps = split_steps(problem.solution)
            if rng.random() < 0.6:
                at = rng.randrange(len(steps))
                steps[at] = _corrupt(steps[at])
            completions.append(STEP_SEPARATOR.join(steps))
        graded = [grade(c, problem.answer) for c in completions]
        rows.append(
            {
                "problem_id": problem.problem_id,
                "question": problem.question,
                "gold_answer": problem.answer,
                "completions": completions,
                "answers": [a for a, _ in graded],
                "correct": [c for _, c in graded],
            }
        )
    prepare_output(path, "sample", "test", 1, overwrite=False)
    write_shard(path, 0, rows)
    return path


def _load_rows(path: Path) -> list[dict]:
    from ttcompute.core.shards import load_sharded

    return load_sharded(path).to_list()


def test_oracle_prm_is_perfect(tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="ttcompute.eval.prm_eval")
    solutions = _solutions(10)
    dataset = _write_label_dir(tmp_path / "labels", _label_rows(solutions, noisy_rows=(0,)))
    samples = _write_samples_dir(tmp_path / "samples")
    _use_toy_prm(monkeypatch, ToyPRM(_oracle))
    out = tmp_path / "eval"
    result = prm_eval.run_eval_prm(
        EvalPRMConfig(prm="toy", dataset=str(dataset), samples_dir=str(samples), output_dir=str(out))
    )
    assert result["gold"] == "checker"
    pb = result["processbench"]
    assert (pb["f1"], pb["error_accuracy"], pb["correct_accuracy"]) == (1.0, 1.0, 1.0)
    assert (pb["num_erroneous"], pb["num_correct"]) == (5, 5)
    assert result["step_roc_auc"] == 1.0
    assert result["solution_roc_auc"] == {"last": 1.0, "min": 1.0, "prod": 1.0, "mean": 1.0}
    # The MC labels are exact except one flipped step of row 0.
    assert result["label_agreement"]["first_error_agreement"] == 0.9

    # Best-of-N: with "last", the oracle scores a flawless solution 1 and any other 0.
    sample_rows = _load_rows(samples)
    scores = [[_oracle(r["question"], split_steps(c))[-1] for c in r["completions"]] for r in sample_rows]
    expected = best_of_n_accuracy(
        [r["answers"] for r in sample_rows], [r["correct"] for r in sample_rows], scores
    )
    bon = result["best_of_n"]
    assert {k: bon[k] for k in expected} == expected
    assert bon["n"] == [1, 2, 4]
    assert bon["best_of_n"][-1] == bon["oracle"][-1]  # a flawless solution always has the right answer

    written = json.loads((out / "prm_eval.json").read_text())
    assert written["processbench"] == pb and written["best_of_n"] == bon
    assert (out / "ttc_config.yaml").is_file()
    assert "ProcessBench F1 1.000" in caplog.text and "MC labels vs checker" in caplog.text
    assert "Best-of-N at N=4" in caplog.text
    # Compute: ToyPRM charges characters; every scored solution is charged once.
    step_chars = sum(len(s["question"]) + sum(map(len, s["steps"])) for s in solutions)
    assert written["compute"]["step_eval"]["verifier_tokens"] == step_chars
    assert written["compute"]["step_eval"]["verifier_flops"] == 2 * 1_000 * step_chars
    assert written["compute"]["total"]["verifier_tokens"] == (
        step_chars + written["compute"]["best_of_n"]["verifier_tokens"]
    )


@pytest.mark.parametrize("value", [0.75, 0.25])  # exact binary fractions: means tie exactly
def test_constant_prm(tmp_path, monkeypatch, value):
    solutions = _solutions(10)
    dataset = write_jsonl(tmp_path / "pb.jsonl", _processbench_rows(solutions))
    _use_toy_prm(monkeypatch, ToyPRM(lambda q, steps: [value] * len(steps)))
    result = prm_eval.run_eval_prm(
        EvalPRMConfig(prm="toy", dataset=str(dataset), output_dir=str(tmp_path / "eval"))
    )
    assert result["gold"] == "processbench" and result["label_agreement"] is None
    pb = result["processbench"]
    if value > 0.5:  # never predicts an error: all correct solutions pass, no error is found
        assert (pb["error_accuracy"], pb["correct_accuracy"], pb["f1"]) == (0.0, 1.0, 0.0)
    else:  # predicts an error at step 0 everywhere: right only where the gold error is step 0
        errors_at_0 = sum(s["first_error"] == 0 for s in solutions)
        assert pb["error_accuracy"] == errors_at_0 / 5
        assert (pb["correct_accuracy"], pb["f1"]) == (0.0, 0.0)
    assert result["step_roc_auc"] == 0.5
    auc = result["solution_roc_auc"]
    assert (auc["last"], auc["min"], auc["mean"]) == (0.5, 0.5, 0.5)
    # A product of constants still depends on the number of steps.
    products = [value ** len(s["steps"]) for s in solutions]
    assert auc["prod"] == pytest.approx(_pairwise_auc(products, [s["first_error"] == -1 for s in solutions]))
    assert result["best_of_n"] is None


def test_bad_input_writes_nothing(tmp_path, monkeypatch):
    rows = _processbench_rows(_solutions(4))
    rows[3]["steps"] = []
    dataset = write_jsonl(tmp_path / "pb.jsonl", rows)
    loaded = []
    _use_toy_prm(monkeypatch, ToyPRM(lambda q, s: loaded.append(q) or [1.0] * len(s)))
    out = tmp_path / "eval"
    with pytest.raises(InputError, match=r"pb\.jsonl:4: field 'steps' is empty"):
        prm_eval.run_eval_prm(EvalPRMConfig(prm="toy", dataset=str(dataset), output_dir=str(out)))
    assert not out.exists() and not loaded
    # A samples_dir that is not ttc sample output is found before anything is written, too.
    good = write_jsonl(tmp_path / "good.jsonl", _processbench_rows(_solutions(4)))
    bad_samples = _write_label_dir(tmp_path / "labels", _label_rows(_solutions(2)))
    with pytest.raises(InputError, match="missing column 'answers'"):
        prm_eval.run_eval_prm(
            EvalPRMConfig(prm="toy", dataset=str(good), samples_dir=str(bad_samples), output_dir=str(out))
        )
    assert not out.exists()


# --- the stage end to end on a tiny random PRM -------------------------------------------------


@pytest.fixture(scope="module")
def tiny_prm_dir(tmp_path_factory, char_tokenizer) -> Path:
    """An untrained LlamaForTokenClassification (one logit) saved as a ttcompute PRM."""
    import torch
    from transformers import LlamaForTokenClassification

    from ttcompute.models.prm import ttc_prm_metadata
    from ttcompute.models.tiny import save_tiny, tiny_llama_config

    config = tiny_llama_config(
        len(char_tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2
    )
    config.num_labels = 1
    config.ttc_prm = ttc_prm_metadata(STEP_SEPARATOR, "{question}\n")
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny_prm")
    save_tiny(LlamaForTokenClassification(config), char_tokenizer, path)
    return path


def _threshold_in_widest_gap(scores: list[float]) -> float:
    """A threshold among the middle scores, far from any score, so float noise cannot flip a step."""
    ordered = sorted(set(scores))
    middle = range(len(ordered) // 4, 3 * len(ordered) // 4)
    i = max(middle, key=lambda j: ordered[j + 1] - ordered[j])
    return (ordered[i] + ordered[i + 1]) / 2


def test_stage_on_a_tiny_prm_matches_independent_scores(tmp_path, tiny_prm_dir, char_tokenizer):
    from ttcompute.cli import run_stage
    from ttcompute.models.prm import encode_steps, score_solutions
    from ttcompute.models.prm_formats import load_prm

    solutions = _solutions(12)
    dataset = _write_label_dir(tmp_path / "labels", _label_rows(solutions))
    samples = _write_samples_dir(tmp_path / "samples")
    questions = [s["question"] for s in solutions]
    steps = [s["steps"] for s in solutions]
    gold = [s["first_error"] for s in solutions]

    prm = load_prm(str(tiny_prm_dir), device="cpu")
    step_scores = prm.score(questions, steps)
    threshold = _threshold_in_widest_gap([x for row in step_scores for x in row])
    sample_rows = _load_rows(samples)
    flat = [(r, split_steps(c)) for r, row in enumerate(sample_rows) for c in row["completions"]]
    flat_scores = score_solutions(
        prm, [sample_rows[r]["question"] for r, _ in flat], [s for _, s in flat], "min"
    )

    out = tmp_path / "eval"
    result = run_stage(
        "eval-prm",
        [
            "--prm", str(tiny_prm_dir),
            "--dataset", str(dataset),
            "--samples_dir", str(samples),
            "--aggregation", "min",
            "--threshold", repr(threshold),
            "--device", "cpu",
            "--output_dir", str(out),
        ],
    )  # fmt: skip
    assert result["gold"] == "checker" and result["dataset_format"] == "stepwise"

    # ProcessBench, by hand from the independent scores.
    predicted = [next((i for i, x in enumerate(row) if x < threshold), -1) for row in step_scores]
    erroneous = [p == g for p, g in zip(predicted, gold) if g >= 0]
    correct = [p == -1 for p, g in zip(predicted, gold) if g == -1]
    pb = result["processbench"]
    assert pb["error_accuracy"] == pytest.approx(sum(erroneous) / len(erroneous))
    assert pb["correct_accuracy"] == pytest.approx(sum(correct) / len(correct))
    assert 0 < sum(erroneous) + sum(correct) < len(gold)  # the threshold splits: a non-trivial check

    # Step ROC-AUC against prefix correctness, by pairwise count.
    truth = [int(g == -1 or i < g) for s, g in zip(steps, gold) for i in range(len(s))]
    flat_step_scores = [x for row in step_scores for x in row]
    assert result["step_roc_auc"] == pytest.approx(_pairwise_auc(flat_step_scores, truth), abs=1e-9)
    assert result["solution_roc_auc"]["last"] == pytest.approx(
        _pairwise_auc([row[-1] for row in step_scores], [g == -1 for g in gold]), abs=1e-9
    )
    assert result["label_agreement"]["first_error_agreement"] == 1.0  # exact MC labels here

    # Best-of-N with "min" over the sampled solutions.
    scores = [[] for _ in sample_rows]
    for (r, _), score in zip(flat, flat_scores):
        scores[r].append(score)
    expected = best_of_n_accuracy(
        [row["answers"] for row in sample_rows], [row["correct"] for row in sample_rows], scores
    )
    assert {k: result["best_of_n"][k] for k in expected} == expected

    # Compute: tokens requested are the encoded requests; FLOPs 2 x parameters x tokens run.
    requested = sum(
        len(encode_steps(char_tokenizer, q + "\n", s, STEP_SEPARATOR)[0]) for q, s in zip(questions, steps)
    )
    written = json.loads((out / "prm_eval.json").read_text())
    step_compute = written["compute"]["step_eval"]
    assert step_compute["verifier_tokens_requested"] == requested
    assert step_compute["verifier_tokens"] == requested  # distinct questions: nothing to reuse
    assert step_compute["verifier_parameters"] == prm.num_parameters
    assert step_compute["verifier_flops"] == 2 * prm.num_parameters * requested
    bon_compute = written["compute"]["best_of_n"]
    assert 0 < bon_compute["verifier_tokens"] < bon_compute["verifier_tokens_requested"]  # shared prompts
    assert written["processbench"] == pb
    assert (out / "ttc_config.yaml").is_file()


def test_stage_requires_prm_and_dataset(tmp_path):
    from ttcompute.cli import run_stage

    with pytest.raises(InputError, match="--prm is required"):
        run_stage("eval-prm", ["--dataset", "x.jsonl", "--output_dir", str(tmp_path / "eval")])
    with pytest.raises(InputError, match="no such file"):
        run_stage("eval-prm", ["--prm", "x", "--dataset", str(tmp_path / "missing.jsonl")])


def test_threshold_is_calibrated_on_other_problems(tmp_path, monkeypatch):
    # A PRM whose values are low everywhere (a hard task for its policy): right steps 0.3, wrong 0.1.
    def low(question, steps):
        return [0.1 + 0.2 * t for t in _oracle(question, steps)]

    test = write_jsonl(tmp_path / "test.jsonl", _processbench_rows(_solutions(10, seed=3)))
    calib = write_jsonl(tmp_path / "calib.jsonl", _processbench_rows(_solutions(10, seed=4)))
    _use_toy_prm(monkeypatch, ToyPRM(low))
    plain = prm_eval.run_eval_prm(EvalPRMConfig(prm="toy", dataset=str(test), output_dir=str(tmp_path / "a")))
    assert plain["threshold"] == 0.5 and plain["processbench"]["correct_accuracy"] == 0.0
    result = prm_eval.run_eval_prm(
        EvalPRMConfig(
            prm="toy", dataset=str(test), calibration_dataset=str(calib), output_dir=str(tmp_path / "b")
        )
    )
    # Any cut-off in (0.1, 0.3] separates them; among ties the one nearest 0.5 wins.
    assert result["threshold"] == 0.3
    assert result["threshold_calibration"]["f1"] == 1.0
    assert result["processbench"]["f1"] == 1.0
    curve = {row["threshold"]: row["f1"] for row in result["processbench_by_threshold"]}
    assert curve[0.1] == 0.0 and curve[0.12] == 1.0 and curve[0.3] == 1.0 and curve[0.32] == 0.0
    # Calibration scoring is charged apart from the evaluation's.
    compute = result["compute"]
    assert compute["step_eval"] == plain["compute"]["step_eval"]
    assert compute["calibration"]["verifier_tokens"] > 0
    assert compute["total"]["verifier_tokens"] == (
        compute["calibration"]["verifier_tokens"] + compute["step_eval"]["verifier_tokens"]
    )
