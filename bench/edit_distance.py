"""Edit-distance pairing for revision trajectories: rapidfuzz (what ``ttc revisions`` uses) vs a
pure-Python dynamic programme, side by side on the same strings, and the extrapolated time for the
paper's scale (64 samples x 12k problems).

Each synthetic problem has 64 MATH-length solutions (~1,000 characters, sharing most of their text
as real samples of one problem do), half correct; a problem costs one correct x incorrect distance
matrix (32 x 32). The Python reference runs on a few pairs only (it is ~4 orders of magnitude slower)
and its per-pair time is scaled.

Usage: python bench/edit_distance.py [--problems 200] [--length 1000]
"""

from __future__ import annotations

import argparse
import random
import time


def python_levenshtein(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def solutions(rng: random.Random, length: int, count: int) -> list[str]:
    base = [rng.choice("0123456789+-*= \\n") for _ in range(length)]
    out = []
    for _ in range(count):
        text = list(base)
        for _ in range(length // 20):  # ~5% of characters differ between samples
            text[rng.randrange(length)] = rng.choice("0123456789")
        out.append("".join(text))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", type=int, default=200)
    parser.add_argument("--length", type=int, default=1000)
    args = parser.parse_args()
    from ttcompute.data_gen.trajectories import problem_trajectories

    rng = random.Random(0)
    problems = [solutions(rng, args.length, 64) for _ in range(args.problems)]
    start = time.perf_counter()
    for index, samples in enumerate(problems):
        problem_trajectories(f"p{index}", samples[:32], samples[32:], max_previous=4, seed=0)
    ours = (time.perf_counter() - start) / args.problems

    pairs = [(problems[0][i], problems[0][32 + i]) for i in range(3)]
    start = time.perf_counter()
    for a, b in pairs:
        python_levenshtein(a, b)
    python_per_pair = (time.perf_counter() - start) / len(pairs)
    python_per_problem = python_per_pair * 32 * 32

    print(f"{args.problems} problems x 64 solutions of {args.length} characters (32 correct x 32 incorrect):")
    print(f"  ttc revisions pairing (rapidfuzz): {ours * 1e3:.2f} ms per problem")
    print(
        f"  pure-Python DP:                    {python_per_problem * 1e3:.0f} ms per problem (from {len(pairs)} pairs)"
    )
    print(f"  ratio: {python_per_problem / ours:.0f}x")
    print(
        f"  12k problems: {ours * 12_000:.1f} s with rapidfuzz vs {python_per_problem * 12_000 / 3600:.1f} h in Python"
    )


if __name__ == "__main__":
    main()
