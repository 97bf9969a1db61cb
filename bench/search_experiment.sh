#!/usr/bin/env bash
# Issue 4's "must show": accuracy vs budget of best-of-N (majority / plain / weighted), beam search
# (M = 4 and sqrt N), lookahead (k = 3) and DVTS, per difficulty bin, on held-out arithmetic problems
# with the small policy and the likelihood PRM of bench/prm_experiment.sh. Resumable: rerun to continue.
# Usage: bash bench/search_experiment.sh [PRM_DIR] [OUT_DIR]   (about 10 min on 2 CPU cores)
set -euo pipefail
PRM=${1:-runs/prm_exp/prm_likelihood}
OUT=${2:-runs/search_exp}
TTC=${TTC:-.venv/bin/ttc}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
mkdir -p "$OUT"
# Oracle difficulty of the same problems from 32 independent samples each (another seed than search).
$TTC sample --config configs/sample.yaml --num_problems 100 --problem_seed 9000 --num_samples 32 \
  --seed 123 --output_dir "$OUT/samples"
$TTC difficulty --samples_dir "$OUT/samples" --output_dir "$OUT/difficulty"
$TTC search --config configs/search.yaml --prm "$PRM" --num_problems 100 --problem_seed 9000 \
  --budgets 1 2 4 8 16 32 64 128 --output_dir "$OUT/search"
$TTC select --search_dir "$OUT/search" --difficulty_dir "$OUT/difficulty" --output_dir "$OUT/select"
echo "DONE: $OUT/select/accuracy.md and accuracy_vs_budget.png"
