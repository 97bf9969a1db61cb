"""Grading agreement with the peers' verdicts, before and after: the grader at a git ref against the
working tree's, on three case files, by source and by class.

- ``tests/data/grading_cases.jsonl``: the grader's own table (345 cases, each verdict a careful
  human grader's);
- ``tests/data/grading_cases_peer.jsonl``: the peers' test cases for issue 37's classes;
- ``bench/data/grading_heldout.jsonl``: held out -- the rest of the peers' usable test cases, never
  tuned on (``bench/data/README.md``).

Lenient extraction (``grade(output, gold, mode="lenient")``): the mode that reads unmarked outputs,
where the peers read them too. The old grader is read with ``git show`` as in
``bench/grading_throughput.py`` (default: HEAD when the working tree changes grading.py).

Usage: python bench/grading_agreement.py [--old_ref REF] [--mode lenient]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from grading_throughput import default_old_ref, load_old_grading  # noqa: E402

FILES = {
    "own table": REPO / "tests" / "data" / "grading_cases.jsonl",
    "peer classes": REPO / "tests" / "data" / "grading_cases_peer.jsonl",
    "held out": REPO / "bench" / "data" / "grading_heldout.jsonl",
}


def agreement(module, cases: list[dict], mode: str) -> list[bool]:
    return [module.grade(c["output"], c["gold"], mode=mode)[1] == c["expected"] for c in cases]


def table(title: str, cases: list[dict], verdicts: dict[str, list[bool]], key) -> list[str]:
    groups: dict[str, list[int]] = defaultdict(list)
    for i, case in enumerate(cases):
        groups[key(case)].append(i)
    lines = [f"  {title:<28} {'cases':>5} {'before':>13} {'after':>13}"]
    for name, members in sorted(groups.items(), key=lambda g: -len(g[1])):
        cells = []
        for which in ("before", "after"):
            agree = sum(verdicts[which][i] for i in members)
            cells.append(f"{agree}/{len(members)} {agree / len(members):4.0%}")
        lines.append(f"  {name:<28} {len(members):>5} {cells[0]:>13} {cells[1]:>13}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old_ref", default=None, help="git ref of the old grading.py")
    parser.add_argument("--mode", default="lenient", choices=["strict", "lenient"])
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, str(REPO))
    from ttcompute.core import grading as new

    old_ref = args.old_ref or default_old_ref()
    print(f"before = grading.py at {old_ref}; after = the working tree; {args.mode} extraction")
    with tempfile.TemporaryDirectory() as directory:
        old = load_old_grading(old_ref, directory)
        for name, path in FILES.items():
            cases = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
            verdicts = {"before": agreement(old, cases, args.mode), "after": agreement(new, cases, args.mode)}
            print(f"\n{name} ({path.relative_to(REPO)})")
            print("\n".join(table("source", cases, verdicts, lambda c: c["source"])))
            if "class" in cases[0]:
                print("\n".join(table("class", cases, verdicts, lambda c: c["class"])))
            else:
                print("\n".join(table("format", cases, verdicts, lambda c: c["format"])))
            misses = [c["id"] for c, agree in zip(cases, verdicts["after"]) if not agree]
            print(f"  after, disagrees on: {', '.join(misses) or 'none'}")


if __name__ == "__main__":
    main()
