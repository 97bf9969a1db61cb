#!/usr/bin/env bash
# Issue 5's "must show": a reviser trained on the small policy's own trajectories, then revision chains
# on the held-out problems of bench/search_experiment.sh: pass@1 at revision steps 0..(L-1), the
# fraction of correct answers a revision turns incorrect, and accuracy vs budget for chain lengths
# from fully parallel (L = 1) to fully sequential (L = N) with majority, weighted and hierarchical
# selection. Needs the PRM of bench/prm_experiment.sh and the bins of bench/search_experiment.sh.
# Usage: bash bench/revision_experiment.sh [PRM_DIR] [OUT_DIR]   (resumable)
set -euo pipefail
PRM=${1:-runs/prm_exp/prm_likelihood}
OUT=${2:-runs/rev_exp2}
TTC=${TTC:-.venv/bin/ttc}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
mkdir -p "$OUT"
$TTC sample --config configs/sample.yaml --num_problems 2000 --problem_seed 12000 --num_samples 64 \
  --seed 5 --output_dir "$OUT/train_samples"
$TTC revisions --config configs/revisions.yaml --samples_dir "$OUT/train_samples" --output_dir "$OUT/trajectories"
[ -f "$OUT/reviser/training_log.json" ] || \
  $TTC train-reviser --config configs/reviser.yaml --model_name_or_path ttcompute/checkpoints/policy_small \
    --dataset_name "$OUT/trajectories" --output_dir "$OUT/reviser"
$TTC search --config configs/search.yaml --prm "$PRM" --methods best_of_n revisions --reviser "$OUT/reviser" \
  --num_problems 100 --problem_seed 9000 --budgets 1 2 4 8 16 32 64 --revision_lengths 1 2 4 8 16 32 64 \
  --output_dir "$OUT/search"
DIFFICULTY=${DIFFICULTY:-runs/search_exp/difficulty}
$TTC select --search_dir "$OUT/search" ${DIFFICULTY:+--difficulty_dir "$DIFFICULTY"} --output_dir "$OUT/select"
echo "DONE: $OUT/select/accuracy.md (revision steps, flips, accuracy per bin) and accuracy_vs_budget.png"

# The other verifier: an ORM trained on the reviser's own attempts with their history in context.
# Revision chains on 300 *training* problems -> ORM rows -> a likelihood ORM over the reviser (last
# step only) -> revision chains on the held-out problems selected with it (verifier sees the history).
$TTC search --config configs/search.yaml --prm "$PRM" --methods revisions --reviser "$OUT/reviser" \
  --num_problems 300 --problem_seed 13000 --budgets 8 --revision_lengths 8 --output_dir "$OUT/search_train"
$TTC orm-data --search_dir "$OUT/search_train" --output_dir "$OUT/orm_data"
[ -f "$OUT/orm/training_log.json" ] || \
  $TTC train-prm --config configs/prm.yaml --prm_kind likelihood --model_name_or_path "$OUT/reviser" \
    --train_on_last_step_only true --dataset_name "$OUT/orm_data" --output_dir "$OUT/orm"
$TTC search --config configs/search.yaml --prm "$OUT/orm" --verifier_context history --methods revisions \
  --reviser "$OUT/reviser" --num_problems 100 --problem_seed 9000 --budgets 1 2 4 8 16 32 64 \
  --revision_lengths 1 2 4 8 16 32 64 --output_dir "$OUT/search_orm"
$TTC select --search_dir "$OUT/search_orm" ${DIFFICULTY:+--difficulty_dir "$DIFFICULTY"} --output_dir "$OUT/select_orm"
echo "DONE: $OUT/select_orm/accuracy.md (revisions selected by the history ORM)"
