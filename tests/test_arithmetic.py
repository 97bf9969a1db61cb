"""Tests for ttcompute.tasks.arithmetic: the generator's knobs, its reference solutions and the step checker.

Expected values are recomputed here in plain Python (no ``apply_op`` / ``reference_steps``), so a bug in
the module's own arithmetic cannot make its tests agree with it.
"""

from __future__ import annotations

import random

import pytest

from ttcompute.core.errors import InputError
from ttcompute.tasks.arithmetic import (
    ArithmeticConfig,
    first_wrong_step,
    generate_problems,
    parse_question,
    split_steps,
)

QUESTION = "Start at 3. Add 4. Multiply by 2. Subtract 5."
# 3 + 4 = 7, 7 * 2 = 14, 14 - 5 = 9, computed by hand.
RIGHT = ["3 + 4 = 7", "7 * 2 = 14", "14 - 5 = 9", "The answer is \\boxed{9}"]


def _simulate(start: int, ops: list[tuple[str, int]]) -> list[int]:
    """Running values after each operation, computed without the module."""
    values, value = [], start
    for op, operand in ops:
        if op == "+":
            value = value + operand
        elif op == "-":
            value = value - operand
        elif op == "*":
            value = value * operand
        else:
            raise AssertionError(f"unexpected op {op!r}")
        values.append(value)
    return values


def _solution_text(start: int, ops: list[tuple[str, int]]) -> str:
    lines, value = [], start
    for (op, operand), result in zip(ops, _simulate(start, ops), strict=True):
        lines.append(f"{value} {op} {operand} = {result}")
        value = result
    lines.append("The answer is \\boxed{" + str(value) + "}")
    return "\n\n".join(lines)


# --- generation --------------------------------------------------------------------------------


def test_same_seed_and_config_give_identical_problems():
    cfg = ArithmeticConfig(min_ops=2, max_ops=5, ops=("+", "*"))
    first = generate_problems(60, seed=7, cfg=cfg)
    second = generate_problems(60, seed=7, cfg=ArithmeticConfig(min_ops=2, max_ops=5, ops=("+", "*")))
    assert first == second
    assert len({p.problem_id for p in first}) == 60


def test_different_seeds_give_different_problems():
    a = [p.question for p in generate_problems(60, seed=1)]
    b = [p.question for p in generate_problems(60, seed=2)]
    # 60 random chains of 1-8 ops coinciding by chance is out of the question; most must differ.
    assert sum(x != y for x, y in zip(a, b, strict=True)) > 50


def test_default_config_problems_are_generated_with_ids_from_seed():
    problems = generate_problems(3, seed=11)
    assert [p.problem_id for p in problems] == ["arith-11-0", "arith-11-1", "arith-11-2"]


KNOB_CONFIGS = [
    ArithmeticConfig(),
    ArithmeticConfig(min_ops=3, max_ops=3),
    ArithmeticConfig(min_ops=1, max_ops=12, max_operand=5, max_value=30),
    ArithmeticConfig(ops=("+",), max_ops=6, max_operand=20, max_value=500),
    ArithmeticConfig(ops=("*", "-"), min_ops=2, max_ops=6, max_operand=4, max_value=50),
    ArithmeticConfig(ops=("*",), min_ops=1, max_ops=3, max_operand=3, max_value=99),
    ArithmeticConfig(ops=("-",), min_ops=4, max_ops=4, max_operand=9, max_value=40),
    ArithmeticConfig(min_ops=2, max_ops=4, max_operand=2, max_value=2),
]


@pytest.mark.parametrize(
    "cfg",
    KNOB_CONFIGS,
    ids=lambda c: f"{c.min_ops}-{c.max_ops}ops_{c.max_operand}_{c.max_value}_{''.join(c.ops)}",
)
def test_generated_problems_respect_every_knob(cfg):
    problems = generate_problems(250, seed=5, cfg=cfg)
    seen_num_ops, seen_ops = set(), set()
    for problem in problems:
        start, ops = parse_question(problem.question)
        # parse_question is checked against a plain count of the question's sentences.
        assert problem.question.count(".") == len(ops) + 1
        assert cfg.min_ops <= len(ops) <= cfg.max_ops
        assert problem.metadata["num_ops"] == len(ops)
        assert 0 <= start <= cfg.max_value
        for op, operand in ops:
            assert op in cfg.ops
            assert (2 if op == "*" else 1) <= operand <= cfg.max_operand, (problem.question, op, operand)
        values = _simulate(start, ops)
        assert all(0 <= v <= cfg.max_value for v in values), (problem.question, values)
        assert problem.answer == str(values[-1])
        assert problem.solution == _solution_text(start, ops)
        seen_num_ops.add(len(ops))
        seen_ops.update(op for op, _ in ops)
    # The knobs are ranges, not just upper bounds: every count and every op is drawn.
    assert seen_num_ops == set(range(cfg.min_ops, cfg.max_ops + 1))
    assert seen_ops == set(cfg.ops)


def test_reference_solutions_and_all_their_prefixes_are_right():
    cfg = ArithmeticConfig(min_ops=1, max_ops=10)
    for problem in generate_problems(300, seed=3, cfg=cfg):
        steps = split_steps(problem.solution)
        assert len(steps) == problem.metadata["num_ops"] + 1
        for end in range(len(steps) + 1):
            assert first_wrong_step(problem.question, steps[:end]) is None, (problem.question, steps[:end])


# --- first_wrong_step on hand-made solutions ----------------------------------------------------


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        (RIGHT, None),
        ([], None),
        (RIGHT[:2], None),
        # wrong result of the second step
        (["3 + 4 = 7", "7 * 2 = 15", "15 - 5 = 10", "The answer is \\boxed{10}"], 1),
        # wrong operand copied from the question
        (["3 + 5 = 8", "8 * 2 = 16", "16 - 5 = 11", "The answer is \\boxed{11}"], 0),
        (["3 + 4 = 7", "7 * 3 = 21"], 1),
        # wrong running value carried: step 1 right, step 2 starts from another number
        (["3 + 4 = 7", "8 * 2 = 16", "16 - 5 = 11", "The answer is \\boxed{11}"], 1),
        # wrong operation
        (["3 + 4 = 7", "7 + 2 = 9"], 1),
        (["3 + 4 = 7", "7 x 2 = 14"], 1),
        # operands swapped: not the stated operation on the running value
        (["3 + 4 = 7", "2 * 7 = 14"], 1),
        # a step skipped
        (["3 + 4 = 7", "14 - 5 = 9", "The answer is \\boxed{9}"], 1),
        # answer given early, in place of step 2
        (["3 + 4 = 7", "The answer is \\boxed{7}"], 1),
        (["3 + 4 = 7", "The answer is \\boxed{9}"], 1),
        # wrong final boxed value
        (RIGHT[:3] + ["The answer is \\boxed{10}"], 3),
        # answer not boxed
        (RIGHT[:3] + ["The answer is 9"], 3),
        # anything after the answer, even the answer again
        (RIGHT + ["14 - 5 = 9"], 4),
        (RIGHT + ["The answer is \\boxed{9}"], 4),
        # garbage text
        (["3 + 4 = 7", "7 * 2 = 14", "so now we subtract"], 2),
        (["hello"], 0),
        (["3 + 4 = 7", ""], 1),
        # spacing variations are fine
        (["3+4=7", "  7 *2 =  14 ", "14-5 = 9", "The answer is \\boxed{9}  "], None),
        (["\n3 + 4 = 7"], None),
    ],
)
def test_first_wrong_step_on_hand_made_solutions(steps, expected):
    assert first_wrong_step(QUESTION, steps) == expected


def test_first_wrong_step_on_a_split_solution_with_extra_blank_lines():
    text = "3 + 4 = 7\n\n\n\n7 * 2 = 14\n\n14 - 5 = 9\n\nThe answer is \\boxed{9}\n\n"
    steps = split_steps(text)
    assert steps == ["3 + 4 = 7", "7 * 2 = 14", "14 - 5 = 9", "The answer is \\boxed{9}"]
    assert first_wrong_step(QUESTION, steps) is None


def test_corrupting_one_random_step_is_found_at_that_step():
    rng = random.Random(0)
    problems = generate_problems(400, seed=9, cfg=ArithmeticConfig(min_ops=1, max_ops=10))
    for problem in problems:
        steps = split_steps(problem.solution)
        index = rng.randrange(len(steps))
        delta = rng.choice([-1, 1]) * rng.randint(1, 50)
        if index < len(steps) - 1:
            left, result = steps[index].rsplit(" = ", 1)
            corrupted = f"{left} = {int(result) + delta}"
        else:
            corrupted = "The answer is \\boxed{" + str(int(problem.answer) + delta) + "}"
        bad = steps[:index] + [corrupted] + steps[index + 1 :]
        assert first_wrong_step(problem.question, bad) == index, (problem.question, bad)
        # The steps after it (still copied from the right solution) do not matter.
        assert first_wrong_step(problem.question, bad[: index + 1]) == index


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "What is 2 + 2?",
        "",
        "Start at 3. Divide by 2.",
        "Start at -3. Add 4.",
        "Start at 3. Add 4",
        "Start at three. Add 4.",
        "Start at 3. Add 4. And then some.",
    ],
)
def test_parse_question_rejects_non_arithmetic_text(text):
    with pytest.raises(InputError, match="not an arithmetic question"):
        parse_question(text)


def test_first_wrong_step_rejects_non_arithmetic_question():
    with pytest.raises(InputError):
        first_wrong_step("What is 2 + 2?", ["2 + 2 = 4"])


def test_parse_question_reads_every_op_word():
    assert parse_question("Start at 12. Multiply by 3. Subtract 10. Add 7.") == (
        12,
        [("*", 3), ("-", 10), ("+", 7)],
    )
    assert parse_question("Start at 0.") == (0, [])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_ops": 0},
        {"min_ops": 5, "max_ops": 4},
        {"ops": ("/",)},
        {"ops": ("+", "^")},
        {"ops": ()},
        {"max_operand": 1},
        {"max_operand": 10, "max_value": 9},
    ],
)
def test_arithmetic_config_rejects_bad_knobs(kwargs):
    with pytest.raises(ValueError):
        ArithmeticConfig(**kwargs)


def test_arithmetic_config_accepts_a_list_of_ops():
    assert ArithmeticConfig(ops=["*", "-"]).ops == ("*", "-")


def test_infeasible_knobs_are_rejected_not_recursed_on():
    cfg = ArithmeticConfig(ops=("*",))  # 2**7 > 99: 7 or 8 multiplications cannot stay <= 99
    with pytest.raises(ValueError, match="cannot build"):
        generate_problems(20, seed=0, cfg=cfg)
    # Through the problem loader the same knobs are a one-line input error.
    from ttcompute.core.errors import InputError
    from ttcompute.tasks.sources import load_problems

    with pytest.raises(InputError, match="arithmetic task: cannot build"):
        load_problems("arithmetic", None, "test", 20, ops=("*",))
    # Feasible knobs with only multiplication work.
    assert len(generate_problems(20, seed=0, cfg=ArithmeticConfig(ops=("*",), max_ops=4))) == 20
