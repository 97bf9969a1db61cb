"""The built-in ``arithmetic`` task: chains of integer operations with exactly checkable steps.

A problem reads ``Start at 37. Add 8. Multiply by 2. Subtract 9.``; its reference solution is one
line per operation (``37 + 8 = 45``), steps separated by a blank line, then
``The answer is \\boxed{81}`` -- the step and answer conventions of MATH solutions, so every stage
runs unchanged on both. Because each step can be recomputed, the task gives ground-truth process
labels (the first wrong step) against which MC labels, PRMs and search are tested.

Difficulty knobs: the number of operations, the operand size and the operation mix. Intermediate
values stay in ``[0, max_value]`` (the generator only draws operations that keep them there), so
small models face small numbers and their mistakes come from carrying, multiplying and keeping
track of a long chain -- errors compound with the number of operations.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

from ttcompute.core.errors import InputError
from ttcompute.tasks.problem import Problem

STEP_SEPARATOR = "\n\n"

_WORDS = {"+": "Add", "-": "Subtract", "*": "Multiply by"}
_PARSE_OP = {"Add": "+", "Subtract": "-", "Multiply by": "*"}
_QUESTION_RE = re.compile(r"^Start at (\d+)\.((?: (?:Add|Subtract|Multiply by) \d+\.)*)$")
_OP_RE = re.compile(r" (Add|Subtract|Multiply by) (\d+)\.")
_STEP_RE = re.compile(r"^\s*(-?\d+)\s*([+\-*])\s*(-?\d+)\s*=\s*(-?\d+)\s*$")
_ANSWER_RE = re.compile(r"^\s*The answer is \\boxed\{(-?\d+)\}\s*$")


@dataclass
class ArithmeticConfig:
    """Knobs of the generator.

    Attributes:
        min_ops: Fewest operations in a problem (>= 1).
        max_ops: Most operations in a problem; the count is drawn uniformly in [min_ops, max_ops].
        max_operand: Operands are drawn from 1..max_operand (2..max_operand for multiplication).
        max_value: Every intermediate value stays in [0, max_value].
        ops: The operation mix, a subset of ``+ - *``.
    """

    min_ops: int = 1
    max_ops: int = 8
    max_operand: int = 9
    max_value: int = 99
    ops: tuple[str, ...] = field(default=("+", "-", "*"))

    def __post_init__(self) -> None:
        self.ops = tuple(self.ops)
        if not 1 <= self.min_ops <= self.max_ops:
            raise ValueError(f"need 1 <= min_ops <= max_ops, got {self.min_ops}, {self.max_ops}")
        if self.max_operand < 2 or self.max_value < self.max_operand:
            raise ValueError("need 2 <= max_operand <= max_value")
        unknown = set(self.ops) - set(_WORDS)
        if not self.ops or unknown:
            raise ValueError(f"ops must be a non-empty subset of '+', '-', '*'; got {self.ops}")


def _valid_operands(value: int, op: str, cfg: ArithmeticConfig) -> list[int]:
    if op == "+":
        return [b for b in range(1, cfg.max_operand + 1) if value + b <= cfg.max_value]
    if op == "-":
        return [b for b in range(1, cfg.max_operand + 1) if value - b >= 0]
    # x0 and x1 teach nothing; x of 0 stays 0.
    if value == 0:
        return []
    return [b for b in range(2, cfg.max_operand + 1) if value * b <= cfg.max_value]


def apply_op(value: int, op: str, operand: int) -> int:
    if op == "+":
        return value + operand
    if op == "-":
        return value - operand
    if op == "*":
        return value * operand
    raise ValueError(f"unknown operation {op!r}")


def format_question(start: int, ops: list[tuple[str, int]]) -> str:
    return " ".join([f"Start at {start}."] + [f"{_WORDS[op]} {b}." for op, b in ops])


def parse_question(question: str) -> tuple[int, list[tuple[str, int]]]:
    """Inverse of :func:`format_question`.

    >>> parse_question("Start at 3. Add 4. Multiply by 2.")
    (3, [('+', 4), ('*', 2)])
    """
    match = _QUESTION_RE.match(question.strip())
    if match is None:
        raise InputError(f"not an arithmetic question: {question[:80]!r}")
    ops = [(_PARSE_OP[word], int(num)) for word, num in _OP_RE.findall(match.group(2))]
    return int(match.group(1)), ops


def reference_steps(start: int, ops: list[tuple[str, int]]) -> list[str]:
    """The reference solution as a list of steps, the last one stating the answer."""
    steps, value = [], start
    for op, b in ops:
        result = apply_op(value, op, b)
        steps.append(f"{value} {op} {b} = {result}")
        value = result
    steps.append(f"The answer is \\boxed{{{value}}}")
    return steps


def generate_problem(
    rng: random.Random, cfg: ArithmeticConfig, num_ops: int | None = None, max_attempts: int = 1000
):
    """Draw (start, ops) with every intermediate value in [0, max_value].

    Raises:
        ValueError: no chain of ``num_ops`` operations fits the knobs (e.g. eight multiplications
            by >= 2 below 100), after ``max_attempts`` random restarts.
    """
    num_ops = rng.randint(cfg.min_ops, cfg.max_ops) if num_ops is None else num_ops
    for _ in range(max_attempts):
        value = rng.randint(0, cfg.max_value)
        start, ops = value, []
        for _ in range(num_ops):
            choices = [(op, _valid_operands(value, op, cfg)) for op in cfg.ops]
            choices = [(op, operands) for op, operands in choices if operands]
            if not choices:  # e.g. ops=('*',) once the value is too large: restart the chain
                break
            op, operands = rng.choice(choices)
            b = rng.choice(operands)
            ops.append((op, b))
            value = apply_op(value, op, b)
        else:
            return start, ops
    raise ValueError(
        f"cannot build {num_ops} operations from {cfg.ops} with operands <= {cfg.max_operand} "
        f"and values <= {cfg.max_value}; lower max_ops or widen the knobs"
    )


def generate_problems(num_problems: int, seed: int = 0, cfg: ArithmeticConfig | None = None) -> list[Problem]:
    """``num_problems`` problems, identical for the same seed and config."""
    cfg = cfg or ArithmeticConfig()
    rng = random.Random(seed)
    problems = []
    for i in range(num_problems):
        start, ops = generate_problem(rng, cfg)
        steps = reference_steps(start, ops)
        problems.append(
            Problem(
                problem_id=f"arith-{seed}-{i}",
                question=format_question(start, ops),
                answer=steps[-1][len("The answer is \\boxed{") : -1],
                solution=STEP_SEPARATOR.join(steps),
                metadata={"num_ops": len(ops)},
            )
        )
    return problems


def split_steps(solution: str) -> list[str]:
    """Steps of a solution: the text between blank lines, empty pieces dropped."""
    return [step for step in solution.split(STEP_SEPARATOR) if step.strip()]


def first_wrong_step(question: str, steps: list[str]) -> int | None:
    """Index of the first wrong step of a (possibly partial) solution, or None if all are right.

    Step ``i < num_ops`` is right when it states operation ``i`` applied to the true running value
    with the true result (spacing may vary); the step after the last operation is right when it is
    ``The answer is \\boxed{<true value>}``. An answer given early, a missing or extra step, or any
    other text counts as a wrong step at its position. A correct prefix of a correct solution has no
    wrong step, so the checker labels partial solutions too.

    >>> first_wrong_step("Start at 3. Add 4. Multiply by 2.", ["3 + 4 = 7", "7 * 2 = 15"])
    1
    """
    start, ops = parse_question(question)
    value = start
    for i, step in enumerate(steps):
        if i < len(ops):
            op, b = ops[i]
            match = _STEP_RE.match(step)
            expected = apply_op(value, op, b)
            if match is None or (
                int(match.group(1)),
                match.group(2),
                int(match.group(3)),
                int(match.group(4)),
            ) != (
                value,
                op,
                b,
                expected,
            ):
                return i
            value = expected
        elif i == len(ops):
            match = _ANSWER_RE.match(step)
            if match is None or int(match.group(1)) != value:
                return i
        else:
            return i  # anything after the answer
    return None


def stepwise_rows(num_problems: int = 200, seed: int = 0, wrong_fraction: float = 0.5) -> list[dict]:
    """Step-labelled solutions in TRL's stepwise-supervision shape (``prompt``, ``completions``,
    ``labels``), labelled exactly by :func:`first_wrong_step`: a toy dataset to train a PRM on in a
    minute, with no download.

    Each problem gives its reference solution, or (with probability ``wrong_fraction``) a wrong one:
    one operation's result is off by 1 to 3 and the solution carries on from the wrong value, as a
    model's mistake would. Steps before the first wrong one are labelled True, the rest False. The
    prompt is the question and a newline (the PRM's default prompt template, ``"{question}\\n"``).

    >>> rows = stepwise_rows(4, seed=1)
    >>> sorted(rows[0])
    ['completions', 'labels', 'prompt']
    >>> all(len(r["completions"]) == len(r["labels"]) for r in rows)
    True
    """
    if num_problems < 1:
        raise InputError(f"num_problems must be at least 1, got {num_problems}")
    if not 0.0 <= wrong_fraction <= 1.0:
        raise InputError(f"wrong_fraction must be in [0, 1], got {wrong_fraction}")
    cfg = ArithmeticConfig()
    rng = random.Random(seed)
    rows = []
    for _ in range(num_problems):
        start, ops = generate_problem(rng, cfg)
        question = format_question(start, ops)
        if rng.random() < wrong_fraction:
            at = rng.randrange(len(ops))
            steps, value = [], start
            for i, (op, b) in enumerate(ops):
                result = apply_op(value, op, b) + (rng.choice([-3, -2, -1, 1, 2, 3]) if i == at else 0)
                steps.append(f"{value} {op} {b} = {result}")
                value = result
            steps.append(f"The answer is \\boxed{{{value}}}")
        else:
            steps = reference_steps(start, ops)
        wrong = first_wrong_step(question, steps)
        labels = [wrong is None or i < wrong for i in range(len(steps))]
        rows.append({"prompt": f"{question}\n", "completions": steps, "labels": labels})
    return rows
