#!/bin/bash
# run_loaded.sh: issue 9's loaded-machine check, end to end: with another process keeping one core
# busy (`yes > /dev/null`), is multigrain at 2 threads at least as fast as at 1 thread? Interleaved
# rounds of ResNet-50 inference (batch 1 and 8, 224) and the ResNet-50 MultiGrain training step
# (batch 16, 224), each at 1 and 2 threads; prints every run and the medians with the ratio
# 2 threads / 1 thread (>= 1 means the second thread never hurts; issue 9's goal, marked met or not).
#   usage: bench/run_loaded.sh [BUILD_DIR]   (env: ROUNDS=3 BUSY=1 TRAIN=1)
set -euo pipefail
BUILD=${1:-build}
for p in bench_infer bench_train_step; do
  [ -x "$BUILD/$p" ] || { echo "run_loaded.sh: $BUILD/$p not found (build first: make)" >&2; exit 1; }
done
. "$(dirname "$0")/busy.sh"
busy_warn "$(busy_share)" before # the load must be ours alone
OUT=$(mktemp)
trap 'rm -f "$OUT"; [ -n "${YPID:-}" ] && kill "$YPID" 2>/dev/null || true' EXIT
if [ "${BUSY:-1}" = 1 ]; then yes > /dev/null & YPID=$!; fi
ips() { sed -nE 's/.* ([0-9.]+) images\/s.*/\1/p' | tail -1; }
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg); busy core: ${BUSY:-1}"
for round in $(seq "${ROUNDS:-3}"); do
  for th in 1 2; do
    for b in 1 8; do
      # batch 1: 30 forwards (~2 s), so that the fused network's switch to fewer threads under load
      # (model.c fused_threads, decided within the first 0.2 s) is not most of the timed window
      v=$("$BUILD/bench_infer" --arch resnet50 --batch $b --size 224 --reps $(( b == 1 ? 30 : 6 )) --threads $th | ips)
      echo "infer-b$b $th $v" | tee -a "$OUT"
    done
    if [ "${TRAIN:-1}" = 1 ]; then
      v=$("$BUILD/bench_train_step" --arch resnet50 --batch 16 --size 224 --steps 2 --threads $th | ips)
      echo "train-b16 $th $v" | tee -a "$OUT"
    fi
  done
done
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR) { m = int((NR + 1) / 2); print (NR % 2 ? v[m] : (v[m] + v[m + 1]) / 2) } }'; }
echo "medians over ${ROUNDS:-3} rounds (images/s):"
for k in infer-b1 infer-b8 train-b16; do
  a=$(awk -v k=$k '$1 == k && $2 == 1 { print $3 }' "$OUT" | median)
  c=$(awk -v k=$k '$1 == k && $2 == 2 { print $3 }' "$OUT" | median)
  [ -n "$a" ] && [ -n "$c" ] || continue
  # issue 9's goal: two threads at least as fast as one (the medians, unrounded)
  printf "  %-10s 1 thread %7s   2 threads %7s   2T/1T %s\n" $k "$a" "$c" "$(awk -v a="$a" -v c="$c" 'BEGIN {
    r = sprintf("%.3f", c / a); printf "%s (goal >= 1: %s)", r, ((c + 0 >= a + 0) ? "met" : "not met") }')"
done
