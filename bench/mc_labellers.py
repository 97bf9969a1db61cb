"""Monte Carlo labellers side by side: rollouts per solution and agreement on the first bad step.

Reads three ``ttc label`` outputs of the *same* samples (made by bench/prm_experiment.sh): an
exhaustive run, a binary-search run, and a second exhaustive run with another seed. Prints

- rollouts per solution of each labeller and the ratio (target: binary search >= 3x fewer);
- first-bad-step agreement of binary search with exhaustive
  * on the same random draws (binary search replayed on the exhaustive run's recorded rollouts:
    any disagreement is the search's own, from values that are not monotone along a solution),
  * on independent draws (the two real runs), next to exhaustive-vs-exhaustive with another seed:
    the Monte Carlo noise ceiling no labeller can beat;
- agreement of each with the ground truth of the arithmetic task's exact step checker, and how the
  soft labels sit on truly right and truly wrong prefixes.

Usage: python bench/mc_labellers.py [runs/prm_exp]
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import yaml


def load(path: Path) -> dict[tuple[str, int], dict]:
    from ttcompute.core.shards import load_sharded

    return {(r["problem_id"], r["sample_index"]): r for r in load_sharded(path)}


def witnessed_prefixes(rows: dict[tuple[str, int], dict]) -> set[tuple[str, tuple[str, ...]]]:
    """Prefixes that a correct labelled solution continues from (the labellers' witness rule)."""
    return {
        (r["problem_id"], tuple(r["completions"][:i]))
        for r in rows.values()
        if r["correct"]
        for i in range(1, len(r["completions"]))
    }


def agreement(a: list[int], b: list[int]) -> float:
    return sum(x == y for x, y in zip(a, b)) / len(a)


def main() -> int:
    from ttcompute.data_gen.mc_labels import replay_binary_search
    from ttcompute.tasks.arithmetic import first_wrong_step

    root = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/prm_exp")
    ex, bs, ex2 = (
        load(root / name) for name in ("heldout_labels_ex", "heldout_labels_bs", "heldout_labels_ex2")
    )
    keys = sorted(set(ex) & set(bs) & set(ex2))
    if not keys:
        print(f"no solutions labelled by all three labellers under {root}", file=sys.stderr)
        return 2
    config = yaml.safe_load((root / "heldout_labels_bs" / "ttc_config.yaml").read_text())
    k, chunk = int(config["num_rollouts"]), int(config["rollout_chunk"])
    witnessed = witnessed_prefixes(ex)

    truth, first = [], {"exhaustive": [], "binary_search": [], "exhaustive_seed1": [], "replayed": []}
    rollouts = {"exhaustive": 0, "binary_search": 0, "replayed": 0}
    for key in keys:
        e, b, e2 = ex[key], bs[key], ex2[key]
        fw = first_wrong_step(e["question"], e["completions"])
        truth.append(-1 if fw is None else fw)
        first["exhaustive"].append(e["first_bad_step"])
        first["binary_search"].append(b["first_bad_step"])
        first["exhaustive_seed1"].append(e2["first_bad_step"])
        marks = [
            (e["problem_id"], tuple(e["completions"][: i + 1])) in witnessed
            for i in range(len(e["completions"]))
        ]
        step, used = replay_binary_search(e["rollout_outcomes"], e["correct"], k, chunk, marks)
        first["replayed"].append(-1 if e["correct"] else step)
        rollouts["exhaustive"] += e["num_rollouts"]
        rollouts["binary_search"] += b["num_rollouts"]
        rollouts["replayed"] += used
    n = len(keys)
    incorrect = [i for i, key in enumerate(keys) if not ex[key]["correct"]]

    def on(indices, a, b):
        return agreement([first[a][i] for i in indices], [first[b][i] for i in indices])

    print(f"{n} solutions ({len(incorrect)} incorrect) of {len({key[0] for key in keys})} problems, k={k}")
    print("rollouts per solution:")
    print(f"  exhaustive     {rollouts['exhaustive'] / n:6.1f}")
    print(
        f"  binary search  {rollouts['binary_search'] / n:6.1f}  "
        f"-> {rollouts['exhaustive'] / max(rollouts['binary_search'], 1):.1f}x fewer (target >= 3x)"
    )
    print("first-bad-step agreement with exhaustive (all solutions | incorrect ones only):")
    everyone = list(range(n))
    print(
        f"  binary search, same draws (replayed)  {on(everyone, 'replayed', 'exhaustive'):.3f} | "
        f"{on(incorrect, 'replayed', 'exhaustive'):.3f}   (target >= 0.95)"
    )
    print(
        f"  binary search, independent draws      {on(everyone, 'binary_search', 'exhaustive'):.3f} | "
        f"{on(incorrect, 'binary_search', 'exhaustive'):.3f}"
    )
    print(
        f"  exhaustive seed 1 (noise ceiling)     {on(everyone, 'exhaustive_seed1', 'exhaustive'):.3f} | "
        f"{on(incorrect, 'exhaustive_seed1', 'exhaustive'):.3f}"
    )
    print("first-bad-step agreement with the exact step checker:")
    for name in ("exhaustive", "binary_search", "exhaustive_seed1"):
        print(f"  {name:17s} {agreement(first[name], truth):.3f}")
    right = [v for key in keys for v, ok in _soft_by_truth(ex[key]) if ok]
    wrong = [v for key in keys for v, ok in _soft_by_truth(ex[key]) if not ok]
    print(
        f"soft labels (exhaustive) vs truth: mean {statistics.mean(right):.3f} on right prefixes ({100 * sum(v == 0 for v in right) / len(right):.1f}% zero), {statistics.mean(wrong):.3f} on wrong "
        f"prefixes ({100 * sum(v > 0 for v in wrong) / len(wrong):.1f}% above zero: the policy recovers from a wrong step)"
    )
    return 0


def _soft_by_truth(row: dict) -> list[tuple[float, bool]]:
    from ttcompute.tasks.arithmetic import first_wrong_step

    fw = first_wrong_step(row["question"], row["completions"])
    return [(v, fw is None or i < fw) for i, v in enumerate(row["soft_labels"])]


if __name__ == "__main__":
    sys.exit(main())
