#!/bin/bash
# Time to accuracy of one profile and seed, from a fresh run directory (docs/performance.md):
#   docs/perf/time_to_accuracy.sh LABEL PROFILE SEED [section.key=value …]
# trains into /tmp/tta/r-LABEL, prints "LABEL | seed | wall s | CPU s | load | how it ended | exact, calculator"
# (500 held-out problems). Run from the repo root with the venv active; nothing else running.
# CPU s = user + system seconds of the training process (a load-robust figure on a shared machine);
# load = the 1-minute load average when training started.
set -u
label=$1; prof=$2; seed=$3; shift 3
mkdir -p /tmp/tta && rm -rf "/tmp/tta/r-$label"
python docs/perf/profile_set.py "$prof" "/tmp/tta/$label.toml" "train.seed=$seed" "$@"
load=$(cut -d" " -f1 /proc/loadavg)
s=$(date +%s.%N)
/usr/bin/time -f "%U %S" -o "/tmp/tta/$label.cpu" \
  trm-tui train "/tmp/tta/$label.toml" --run-dir "/tmp/tta/r-$label" > "/tmp/tta/$label.log" 2>&1
e=$(date +%s.%N)
cpu=$(awk '{print $1 + $2}' "/tmp/tta/$label.cpu" | tail -1)
acc=$(trm-tui eval "/tmp/tta/r-$label" --split test --limit 500 --calculator 2>&1 | grep -m1 "accuracy" | tr -s " │")
end=$(grep -o "finished at step [0-9]*\|early-stopped at step [0-9]*" "/tmp/tta/$label.log" | head -1)
echo "$label | seed $seed | wall $(python -c "print(round($e - $s, 1))") s | CPU $cpu s | load $load | $end | $acc"
