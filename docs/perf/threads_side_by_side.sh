#!/bin/bash
# Two quickstart trainings side by side (100 steps, no validation, seeds 1 and 2), each with a fixed
# intra-op thread count or "auto" (no OMP_NUM_THREADS: trm_core/training/cpu_share.py decides), the
# second started DELAY s after the first; "none" runs the first alone. Prints each run's wall s and
# the thread changes its log recorded (docs/performance-cpu-step.md, "Threads that fit the load").
#   docs/perf/threads_side_by_side.sh T1 T2 [DELAY]     e.g.  2 2 · 1 1 · auto auto 10 · 2 none
# Run from the repo root with the venv active, nothing else running.
set -u
D=/tmp/threads-ab; mkdir -p $D
t1=$1; t2=$2; delay=${3:-0}
for i in 1 2; do
  python docs/perf/profile_set.py profiles/quickstart.toml $D/p$i.toml train.seed=$i train.max_steps=100 \
    train.eval_every=1000 train.checkpoint_every=1000 early_stopping.enabled=false
  rm -rf $D/r$i
done
run() {
  local i=$1 t=$2 s; s=$(date +%s.%N)
  if [ "$t" = auto ]; then trm-tui train $D/p$i.toml --run-dir $D/r$i > $D/l$i.log 2>&1
  else OMP_NUM_THREADS=$t trm-tui train $D/p$i.toml --run-dir $D/r$i > $D/l$i.log 2>&1; fi
  echo "run $i, threads $t: wall $(python -c "print(round($(date +%s.%N) - $s, 1))") s"
}
run 1 "$t1" &
if [ "$t2" != none ]; then sleep "$delay"; run 2 "$t2" & fi
wait
grep -h "CPU thread" $D/l1.log $D/l2.log || true
