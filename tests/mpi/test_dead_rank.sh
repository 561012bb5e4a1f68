#!/usr/bin/env bash
# test_dead_rank.sh: a rank that dies or hangs ends the whole job with an error, never a hang.
#  1. Rank 1 kills itself with SIGKILL when it enters its 2nd gradient all-reduce (MG_DIST_FAULT=die@2,
#     test-only): the launcher notices and stops rank 0; the job exits non-zero within 60 s.
#  2. Rank 1 hangs forever at its 2nd gradient all-reduce (MG_DIST_FAULT=hang@2) and the launcher sees
#     nothing wrong: rank 0's all-reduce gives up after dist_timeout = 3 s with a message naming the
#     collective and the timeout, and MPI_Abort ends both ranks; exit non-zero within 60 s.
# `timeout` is only the safety net of the test: reaching it (exit 124/137) is a failure.
source "$(dirname "$0")/mpi_common.sh"
opts=("${common[@]}" --epochs 1)

start=$(date +%s)
run_mpi 100 -np 2 -x MG_DIST_FAULT=die@2 "$bin" train "${opts[@]}" --out "$tmp/d" >"$tmp/d.log" 2>&1; rc=$?
took=$(( $(date +%s) - start ))
{ [ $rc -ne 0 ] && [ $rc -ne 124 ] && [ $took -lt 60 ]; } || { cat "$tmp/d.log"; fail "dead rank: exit $rc after ${took}s"; }
grep -q "rank 1: MG_DIST_FAULT: killing myself" "$tmp/d.log" || { cat "$tmp/d.log"; fail "the fault did not fire"; }
grep -q "^epoch: 1 step: 2," "$tmp/d.log" && fail "rank 0 finished step 2 without rank 1"
echo "dead rank: job ended with exit $rc after ${took}s"

start=$(date +%s)
run_mpi 100 -np 2 -x MG_DIST_FAULT=hang@2 "$bin" train "${opts[@]}" --set dist_timeout=3 --out "$tmp/h" >"$tmp/h.log" 2>&1; rc=$?
took=$(( $(date +%s) - start ))
{ [ $rc -ne 0 ] && [ $rc -ne 124 ] && [ $took -lt 60 ]; } || { cat "$tmp/h.log"; fail "hung rank: exit $rc after ${took}s"; }
grep -q "rank 0: dist: gradient all-reduce did not complete within 3 s on rank 0 of 2" "$tmp/h.log" \
  || { cat "$tmp/h.log"; fail "timeout message"; }
grep -q "rank 0: stopping all 2 ranks" "$tmp/h.log" || { cat "$tmp/h.log"; fail "abort message"; }
echo "hung rank: job ended with exit $rc after ${took}s"
echo ok
