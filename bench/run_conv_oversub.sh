#!/bin/bash
# run_conv_oversub.sh: does a 2-thread conv2d run stay at least as fast as a 1-thread run while
# another process keeps one core busy? Interleaved rounds of bench_ops at 1 and 2 threads under
# three OpenMP wait policies (PASSIVE = what mg_runtime_init sets, unset = libgomp's default
# spinning, ACTIVE), with `yes > /dev/null` burning a core (BUSY=0 to skip it). Prints one line per
# run (policy, threads, forward s, backward s) and the per-configuration medians.
#   usage: bench/run_conv_oversub.sh [BUILD_DIR]   (env: ROUNDS=4 LAYERS=l3 REPEAT=3 BUSY=1)
set -euo pipefail
B=${1:-build}/bench_ops
[ -x "$B" ] || { echo "run_conv_oversub.sh: $B not found (build first)" >&2; exit 1; }
ARGS="--no-peak --layers ${LAYERS:-l3} --repeat ${REPEAT:-3} --stat median"
OUT=$(mktemp)
trap 'rm -f "$OUT"; [ -n "${YPID:-}" ] && kill "$YPID" 2>/dev/null || true' EXIT
secs() { grep "ResNet-50 convs" | sed -E 's/.*, ([0-9.]+) s; backward .*, ([0-9.]+) s$/\1 \2/'; }
if [ "${BUSY:-1}" = 1 ]; then yes > /dev/null & YPID=$!; fi
for round in $(seq "${ROUNDS:-4}"); do
  for pol in PASSIVE unset ACTIVE; do
    for th in 1 2; do
      if [ $pol = unset ]; then r=$(env -u OMP_WAIT_POLICY MG_NO_REEXEC=1 "$B" --threads $th $ARGS | secs)
      else r=$(OMP_WAIT_POLICY=$pol "$B" --threads $th $ARGS | secs); fi
      echo "$pol $th $r" | tee -a "$OUT"
    done
  done
done
echo "medians over ${ROUNDS:-4} rounds (forward s, backward s):"
median() { sort -n | awk '{ v[NR] = $1 } END { m = int((NR + 1) / 2); print (NR % 2 ? v[m] : (v[m] + v[m + 1]) / 2) }'; }
for pol in PASSIVE unset ACTIVE; do
  for th in 1 2; do
    f=$(awk -v p=$pol -v t=$th '$1 == p && $2 == t { print $3 }' "$OUT" | median)
    b=$(awk -v p=$pol -v t=$th '$1 == p && $2 == t { print $4 }' "$OUT" | median)
    printf "  %-8s threads %d: forward %s s, backward %s s\n" $pol $th "$f" "$b"
  done
done
