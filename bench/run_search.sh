#!/usr/bin/env bash
# run_search.sh: runs bench_search (our k-NN vs a plain sgemm) and the numpy brute-force baseline
# on the same problem size, one after the other. Usage: bench/run_search.sh BUILD_DIR [N D Q K REPS]
set -eu
BUILD=${1:?usage: run_search.sh BUILD_DIR [N D Q K REPS]}
shift
ARGS=("${@:-}")
[ $# -gt 0 ] || ARGS=(100000 2048 1000 100 3)
HERE=$(cd "$(dirname "$0")" && pwd)
echo "== $(date -u +%FT%TZ) $(nproc) cores, OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}, load: $(cut -d' ' -f1-3 /proc/loadavg)"
"$BUILD/bench_search" "${ARGS[@]}"
echo "== load: $(cut -d' ' -f1-3 /proc/loadavg)"
/usr/bin/python3 "$HERE/search_numpy.py" "${ARGS[@]}"
echo "== load: $(cut -d' ' -f1-3 /proc/loadavg)"
