"""The demo's headline over several draws of evaluation problems: does it still swing by multiples?

`make demo` decides on one draw of problems (``problem_seed`` 2024). This reruns its evaluation half
-- samples, difficulty predictors, search, selection, compute-optimal, FLOPs-matched, report -- on
other draws (``--problem_seeds``), reusing the trained PRM and reviser of a finished demo
(``--demo_dir``, passed as ``ttc demo --trained_from``: each draw costs only its evaluation),
then prints, per draw and per difficulty predictor:

* the headline -- compute-optimal over static *and adaptive* strategies on the axis of generations
  actually spent, every cost counted: the generations per problem where it reaches weighted
  best-of-N@64's accuracy (less 0.01), the saving averaged over accuracy levels, and both against the
  strongest fixed strategy (``none``: no bins, nothing to charge);
* the paper's static compute-optimal: the ratio at the largest budget and the averaged one, with and
  without the difficulty estimate's cost;

each with its 95% paired-bootstrap interval, and the spread (max / min) of each over the draws.

    .venv/bin/python bench/headline_spread.py [--demo_dir runs/demo] [--problem_seeds 2025 2026]

Every draw writes under ``<demo_dir>-seed<S>`` and resumes like the demo. About 16 minutes per draw on
2 CPU cores (400 problems; the search is most of it). Results go to ``<demo_dir>/headline_spread.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_draw(demo_dir: Path, seed: int) -> Path:
    """The demo on the problems of ``seed``, with the PRM and reviser of ``demo_dir``."""
    out = Path(f"{demo_dir}-seed{seed}")
    command = [str(REPO / ".venv" / "bin" / "ttc"), "demo", "--config", "configs/demo.yaml"]
    command += ["--problem_seed", str(seed), "--trained_from", str(demo_dir), "--output_dir", str(out)]
    subprocess.run(command, cwd=REPO, check=True)
    return out


def headline(demo_out: Path) -> dict:
    report = json.loads((demo_out / "report" / "report.json").read_text())
    adaptive = {
        predictor: {
            "spend_at_target": entry["intervals"]["spend_at_target/best_of_n"],
            "averaged": entry["intervals"]["averaged/best_of_n"],
            "spend_at_fixed": entry["intervals"]["spend_at_target/strongest_fixed"],
            "averaged_vs_fixed": entry["intervals"]["averaged/strongest_fixed"],
            "predictor_generations": entry["predictor_generations"],
        }
        for predictor, entry in (report.get("adaptive") or {}).items()
    }
    rows = {}
    for predictor, entry in report["compute_optimal_by_predictor"].items():
        intervals = entry["intervals"]
        rows[predictor] = {
            "efficiency": intervals["efficiency_vs_best_of_n"],
            "with_cost": intervals["efficiency_vs_best_of_n_with_difficulty_cost"],
            "averaged": intervals["iso_accuracy_efficiency"],
            "averaged_with_cost": intervals["iso_accuracy_efficiency_with_difficulty_cost"],
            "cost_generations": entry["difficulty_cost_generations"],
            "at_budget": entry["efficiency_at_budget"],
        }
    return {"num_problems": report.get("num_evaluation_problems"), "predictors": rows, "adaptive": adaptive}


def _fmt(interval: dict) -> str:
    if interval.get("estimate") is None:
        return "-"
    if interval.get("low") is None:
        return f"{interval['estimate']:.2f}"
    return f"{interval['estimate']:.2f} [{interval['low']:.2f}, {interval['high']:.2f}]"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo_dir", default="runs/demo", help="a finished `make demo` output")
    parser.add_argument("--problem_seeds", type=int, nargs="+", default=[2025, 2026])
    args = parser.parse_args()
    demo_dir = Path(args.demo_dir)
    if not (demo_dir / "report" / "report.json").is_file():
        print(f"{demo_dir}: no report.json; run `make demo` first", file=sys.stderr)
        return 1
    draws = {"2024 (make demo)": headline(demo_dir)}
    for seed in args.problem_seeds:
        draws[str(seed)] = headline(run_draw(demo_dir, seed))
    adaptive = sorted(next(iter(draws.values()))["adaptive"])
    print(
        "\n| draw | bins | generations at weighted best-of-N@64's accuracy | averaged over accuracies | "
        "generations at the strongest fixed strategy's | averaged vs it |"
    )
    print("|---|---|---:|---:|---:|---:|")
    for name, draw in draws.items():
        for predictor in adaptive:
            row = draw["adaptive"][predictor]
            print(
                f"| {name} | {predictor} ({row['predictor_generations']:.2f}) | {_fmt(row['spend_at_target'])} | "
                f"{_fmt(row['averaged'])} | {_fmt(row['spend_at_fixed'])} | {_fmt(row['averaged_vs_fixed'])} |"
            )
    predictors = sorted(next(iter(draws.values()))["predictors"])
    print(
        "\n| draw | problems | predictor | at the largest budget | with the difficulty cost | "
        "averaged over accuracies | with the difficulty cost |"
    )
    print("|---|---:|---|---:|---:|---:|---:|")
    for name, draw in draws.items():
        for predictor in predictors:
            row = draw["predictors"][predictor]
            print(
                f"| {name} | {draw['num_problems']} | {predictor} | {_fmt(row['efficiency'])} | "
                f"{_fmt(row['with_cost'])} | {_fmt(row['averaged'])} | {_fmt(row['averaged_with_cost'])} |"
            )
    spread = {}
    for predictor in adaptive:
        for key in ("spend_at_target", "averaged", "spend_at_fixed", "averaged_vs_fixed"):
            values = [d["adaptive"][predictor][key]["estimate"] for d in draws.values()]
            values = [v for v in values if v]
            spread[f"adaptive/{predictor}/{key}"] = round(max(values) / min(values), 3) if values else None
    for predictor in predictors:
        for key in ("efficiency", "with_cost", "averaged", "averaged_with_cost"):
            values = [d["predictors"][predictor][key]["estimate"] for d in draws.values()]
            values = [v for v in values if v]
            spread[f"{predictor}/{key}"] = round(max(values) / min(values), 3) if values else None
    print("\nspread over draws (max / min of the estimate):")
    for key, value in spread.items():
        print(f"  {key:<40} {value}")
    (demo_dir / "headline_spread.json").write_text(json.dumps({"draws": draws, "spread": spread}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
