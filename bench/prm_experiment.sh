#!/usr/bin/env bash
# Issue 3's "must show" numbers on the arithmetic task with the small policy, end to end:
#   samples -> MC labels (exhaustive + binary search) -> PRM training -> eval-prm against the exact
#   step checker and best-of-16 vs majority-of-16. Every stage is sharded/resumable: rerun to continue.
# Usage: bash bench/prm_experiment.sh [OUT_DIR]   (about 1 h on 2 CPU cores)
set -euo pipefail
OUT=${1:-runs/prm_exp}
TTC=${TTC:-.venv/bin/ttc}
POLICY=ttcompute/checkpoints/policy_small
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
mkdir -p "$OUT"

# Train / held-out / best-of-N problems come from disjoint problem seeds.
$TTC sample --config configs/sample.yaml --model_name_or_path $POLICY --num_problems 256 \
  --problem_seed 5000 --num_samples 8 --output_dir "$OUT/train_samples"
$TTC label --config configs/label.yaml --samples_dir "$OUT/train_samples" \
  --max_solutions_per_problem 4 --output_dir "$OUT/train_labels"

$TTC sample --config configs/sample.yaml --model_name_or_path $POLICY --num_problems 100 \
  --problem_seed 6000 --num_samples 4 --output_dir "$OUT/heldout_samples"
$TTC label --config configs/label.yaml --samples_dir "$OUT/heldout_samples" \
  --output_dir "$OUT/heldout_labels_ex"
$TTC label --config configs/label.yaml --samples_dir "$OUT/heldout_samples" \
  --labeller binary_search --output_dir "$OUT/heldout_labels_bs"
# A second exhaustive pass with fresh rollouts: the noise ceiling for any labeller's agreement.
$TTC label --config configs/label.yaml --samples_dir "$OUT/heldout_samples" --seed 1 \
  --output_dir "$OUT/heldout_labels_ex2"

$TTC sample --config configs/sample.yaml --model_name_or_path $POLICY --num_problems 200 \
  --problem_seed 7000 --num_samples 16 --output_dir "$OUT/bon_samples"
# Problems to calibrate the PRM's ProcessBench threshold on (the truth there is the step checker).
$TTC sample --config configs/sample.yaml --model_name_or_path $POLICY --num_problems 60 \
  --problem_seed 8000 --num_samples 4 --output_dir "$OUT/calib_samples"
$TTC label --config configs/label.yaml --samples_dir "$OUT/calib_samples" \
  --labeller binary_search --output_dir "$OUT/calib_labels"
echo "LABELS DONE"

# More training problems for the PRM (the first 256 are the train_labels above).
$TTC sample --config configs/sample.yaml --model_name_or_path $POLICY --num_problems 512 \
  --problem_seed 5500 --num_samples 8 --output_dir "$OUT/train_samples2"
$TTC label --config configs/label.yaml --samples_dir "$OUT/train_samples2" \
  --max_solutions_per_problem 4 --output_dir "$OUT/train_labels2"
echo "MORE LABELS DONE"

# The PRM: the small policy with a one-logit head, trained on the soft labels of 768 problems.
$TTC train-prm --config configs/prm.yaml --dataset_name "$OUT/train_labels,$OUT/train_labels2" \
  --output_dir "$OUT/prm"
# ProcessBench F1 against the step checker (threshold picked on the calibration problems), step
# ROC-AUC, MC-label agreement, and best-of-16 with the PRM vs majority vote.
$TTC eval-prm --prm "$OUT/prm" --dataset "$OUT/heldout_labels_ex" --gold checker \
  --calibration_dataset "$OUT/calib_labels" --samples_dir "$OUT/bon_samples" --output_dir "$OUT/prm_eval"
# The likelihood-feature PRM on the same labels (the small policy's token log-probs, calibrated).
$TTC train-prm --config configs/prm.yaml --prm_kind likelihood \
  --dataset_name "$OUT/train_labels,$OUT/train_labels2" --output_dir "$OUT/prm_likelihood"
$TTC eval-prm --prm "$OUT/prm_likelihood" --dataset "$OUT/heldout_labels_ex" --gold checker \
  --calibration_dataset "$OUT/calib_labels" --samples_dir "$OUT/bon_samples" \
  --output_dir "$OUT/prm_likelihood_eval"
echo "ALL DONE: python bench/mc_labellers.py $OUT; python bench/likelihood_verifier.py $OUT;"
echo "          python bench/prm_trainer_throughput.py"
