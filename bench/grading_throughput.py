"""Grading throughput: the grader before its latest change vs the working tree's, side by side.

Both grade the same (output, gold) pairs in one process on one core: the case table
``tests/data/grading_cases.jsonl`` repeated ``--repeat`` times plus every MATH-500 reference
solution against its answer, in a seeded order. The old grader is ``ttcompute/core/grading.py`` at
``--old_ref`` (default: HEAD when the working tree changes the file, else the commit before the
last one that changed it), read with ``git show`` into a temporary module. Each round times both
on the same list, alternating which goes first; the best round of each is reported, as answers
(graded pairs) per second for ``grade`` and for ``extract_answer`` alone, with the ratio new/old
(target: >= 1, new no slower).

Both answer extractions are timed (``--modes``): lenient is where an unmarked output is read.

Usage: python bench/grading_throughput.py [--repeat 3] [--rounds 3] [--seed 0] [--old_ref REF] [--modes ...]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODULE = "ttcompute/core/grading.py"


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO, check=True, capture_output=True, text=True).stdout


def default_old_ref() -> str:
    changed = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", MODULE], cwd=REPO).returncode != 0
    if changed:
        return "HEAD"
    last = _git("log", "-1", "--format=%H", "--", MODULE).strip()
    return f"{last}~1"


def load_old_grading(ref: str, directory: str):
    path = Path(directory) / "grading_old.py"
    path.write_text(_git("show", f"{ref}:{MODULE}"), encoding="utf-8")
    spec = importlib.util.spec_from_file_location("grading_old", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["grading_old"] = module
    spec.loader.exec_module(module)
    return module


def load_pairs(repeat: int, seed: int) -> list[tuple[str, str]]:
    data = REPO / "tests" / "data"
    with open(data / "grading_cases.jsonl", encoding="utf-8") as f:
        cases = [json.loads(line) for line in f]
    with open(data / "math500.jsonl", encoding="utf-8") as f:
        math500 = [json.loads(line) for line in f]
    pairs = [(c["output"], c["gold"]) for c in cases] * repeat
    pairs += [(row["solution"], row["answer"]) for row in math500]
    random.Random(seed).shuffle(pairs)
    return pairs


def clear_caches(module) -> None:
    """Every round starts cold: what a grader caches (normal forms, gold parses) is kept within a
    round only, where the case table's repeats stand for a problem's N samples sharing one gold."""
    for name in ("_cached_text_and_normal_form", "_parsed_gold"):
        cached = getattr(module, name, None)
        if cached is not None:
            cached.cache_clear()


def time_grade(module, pairs: list[tuple[str, str]], mode: str) -> tuple[float, int]:
    clear_caches(module)
    start = time.perf_counter()
    correct = sum(module.grade(output, gold, mode=mode)[1] for output, gold in pairs)
    return time.perf_counter() - start, correct


def time_extract(module, pairs: list[tuple[str, str]], mode: str) -> float:
    clear_caches(module)
    start = time.perf_counter()
    for output, _ in pairs:
        module.extract_answer(output, mode)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="copies of the case table")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--old_ref", default=None, help="git ref of the old grading.py")
    parser.add_argument("--modes", nargs="+", default=["strict", "lenient"], help="answer extractions timed")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):  # one core, as a grading worker gets
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, str(REPO))
    from ttcompute.core import grading as new

    old_ref = args.old_ref or default_old_ref()
    pairs = load_pairs(args.repeat, args.seed)
    with tempfile.TemporaryDirectory() as directory:
        old = load_old_grading(old_ref, directory)
        implementations = {"old": old, "new": new}
        runs = [(name, mode) for mode in args.modes for name in implementations]
        for name, mode in runs:  # warm-up: imports, regex compilation, SymPy caches
            time_grade(implementations[name], pairs[:200], mode)
        best = {run: float("inf") for run in runs}
        best_extract = dict(best)
        correct: dict[tuple[str, str], int] = {}
        for round_index in range(args.rounds):
            for run in runs if round_index % 2 == 0 else runs[::-1]:
                name, mode = run
                seconds, correct[run] = time_grade(implementations[name], pairs, mode)
                best[run] = min(best[run], seconds)
                best_extract[run] = min(best_extract[run], time_extract(implementations[name], pairs, mode))
    print(f"{len(pairs)} (output, gold) pairs: the case table x{args.repeat} + 500 MATH-500 references")
    print(f"old = {MODULE} at {old_ref}; new = the working tree; one core, best of {args.rounds} rounds")
    print(f"{'':13} {'grade answers/s':>16} {'extract answers/s':>18} {'graded correct':>15}")
    for run in runs:
        rate, extract_rate = len(pairs) / best[run], len(pairs) / best_extract[run]
        print(f"{run[0]:4} {run[1]:8} {rate:16.0f} {extract_rate:18.0f} {correct[run]:15d}")
    for mode in args.modes:
        old_run, new_run = ("old", mode), ("new", mode)
        print(
            f"ratio new/old, {mode}: grade {best[old_run] / best[new_run]:.2f}x, "
            f"extract {best_extract[old_run] / best_extract[new_run]:.2f}x (>= 1: new no slower)"
        )


if __name__ == "__main__":
    main()
