#!/bin/bash
# Exact accuracy along one training trajectory (docs/performance-cpu-step.md, "The quickstart
# recipe"): trains PROFILE with seed SEED for its max_steps with no early stopping, validating and
# checkpointing every 25 steps, then scores the checkpoints at STEPS (default 225…350) on 500
# held-out problems with the calculator. Prints "step | exact | validation loss" per checkpoint.
#   docs/perf/recipe_trajectory.sh LABEL PROFILE SEED [section.key=value …]
# e.g. (the session-10 runs, on the quickstart before its re-tune):
#   OMP_NUM_THREADS=1 docs/perf/recipe_trajectory.sh b32s0 profiles/quickstart.toml 0 data.bucket_multiple=32
#   OMP_NUM_THREADS=1 docs/perf/recipe_trajectory.sh b24s0 profiles/quickstart.toml 0 data.bucket_multiple=32 train.batch_size=24
# Run from the repo root with the venv active; two at a time on 2 cores with OMP_NUM_THREADS=1.
set -u
D=/tmp/recipe-traj; mkdir -p $D
label=$1; prof=$2; seed=$3; shift 3
python docs/perf/profile_set.py "$prof" $D/$label.toml train.seed=$seed train.eval_every=25 \
  train.checkpoint_every=25 train.keep_last=30 early_stopping.enabled=false "$@"
rm -rf $D/r-$label
trm-tui train $D/$label.toml --run-dir $D/r-$label > $D/$label.log 2>&1
for st in ${STEPS:-225 250 275 300 325 350}; do
  acc=$(trm-tui eval $D/r-$label --which $st --split test --limit 500 --calculator 2>&1 | grep -m1 accuracy | tr -s " │")
  echo "$st | $acc | $(grep "^step $st:" $D/$label.log | head -1)"
done
