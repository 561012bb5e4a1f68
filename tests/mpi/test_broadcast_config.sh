#!/usr/bin/env bash
# test_broadcast_config.sh: every rank starts from rank 0's state, and ranks must agree on the config.
#  1. Broadcast wins: with MG_DIST_TEST_SEED_BY_RANK=1 each rank initialises its weights with seed + rank;
#     after the broadcast the ranks report an identical state, and 2 steps give exactly (bit for bit)
#     the checkpoint of a normal 2-rank run. (That run uses dist_timeout 0 on both ranks, i.e. the
#     blocking collectives instead of the polled non-blocking ones: the same results.)
#  2. The perturbation is real: the same run without the broadcast (MG_DIST_TEST_NO_BROADCAST=1) is
#     refused by the state check ("rank 1 holds a different training state than rank 0"), non-zero exit.
#  3. A config mismatch across ranks (MPMD: rank 1 with another lr) is refused on every rank, exit 2,
#     "config hash differs from rank 0 ... all ranks must use the same config"; per-machine keys
#     (threads, dist_timeout: 0 on one rank only still gives both ranks matching collectives) may differ.
#  4. A global batch that the ranks cannot share (9 samples on 2 ranks) is a config error (exit 2).
#  5. Only rank 0 writes: one metrics.jsonl line per step and one stdout line per step.
source "$(dirname "$0")/mpi_common.sh"
opts=("${common[@]}" --epochs 1 --max-steps 2)

run_mpi 120 -np 2 "$bin" train "${opts[@]}" --out "$tmp/a" >"$tmp/a.log" 2>&1 || { cat "$tmp/a.log"; fail "2-rank run"; }
[ "$(grep -c '^epoch: ' "$tmp/a.log")" -eq 2 ] || { cat "$tmp/a.log"; fail "expected 2 step lines (rank 0 only)"; }
[ "$(grep -c '"kind":"step"' "$tmp/a/metrics.jsonl")" -eq 2 ] || fail "expected 2 step records in metrics.jsonl"

run_mpi 120 -np 2 -x MG_DIST_TEST_SEED_BY_RANK=1 "$bin" train "${opts[@]}" --set dist_timeout=0 --out "$tmp/b" >"$tmp/b.log" 2>&1 \
  || { cat "$tmp/b.log"; fail "2-rank run with per-rank seeds"; }
grep -q "identical state after the broadcast from rank 0" "$tmp/b.log" || { cat "$tmp/b.log"; fail "no broadcast line"; }

run_mpi 120 -np 2 -x MG_DIST_TEST_SEED_BY_RANK=1 -x MG_DIST_TEST_NO_BROADCAST=1 "$bin" train "${opts[@]}" \
  --out "$tmp/c" >"$tmp/c.log" 2>&1; rc=$?
[ $rc -ne 0 ] && [ $rc -ne 124 ] && [ $rc -ne 137 ] || { cat "$tmp/c.log"; fail "no broadcast: exit $rc, expected an error"; }
grep -q "rank 1 holds a different training state than rank 0" "$tmp/c.log" || { cat "$tmp/c.log"; fail "state check message"; }

"$py" - "$tmp" "$oracle" <<'PY' || fail "comparison"
import glob, os, sys
tmp, oracle = sys.argv[1:3]
sys.path.insert(0, oracle)
import numpy as np
import st_numpy
fa = sorted(glob.glob(os.path.join(tmp, "a", "checkpoints", "*")))[-1]
fb = sorted(glob.glob(os.path.join(tmp, "b", "checkpoints", "*")))[-1]
ta, tb = st_numpy.load(fa)[0], st_numpy.load(fb)[0]
assert sorted(ta) == sorted(tb)
for k in ta:
    assert np.array_equal(ta[k], tb[k]), f"{k}: per-rank initial seeds leaked through the broadcast"
print(f"broadcast: {len(ta)} tensors identical to the normal run after 2 steps")
PY

# config mismatch (MPMD: one launcher, two command lines)
run_mpi 60 -np 1 "$bin" train "${opts[@]}" --out "$tmp/m" : -np 1 "$bin" train "${opts[@]}" --lr 0.003 --out "$tmp/m" \
  >"$tmp/m.log" 2>&1; rc=$?
[ $rc -eq 2 ] || { cat "$tmp/m.log"; fail "config mismatch: exit $rc, expected 2"; }
grep -q "rank 1: config hash differs from rank 0 (.*); all ranks must use the same config" "$tmp/m.log" \
  || { cat "$tmp/m.log"; fail "mismatch message on rank 1"; }
grep -q "rank 0: config hash of rank 1 .* differs from rank 0" "$tmp/m.log" || { cat "$tmp/m.log"; fail "mismatch message on rank 0"; }
[ ! -e "$tmp/m/metrics.jsonl" ] || fail "a refused run started training"
run_mpi 60 -np 1 "$bin" -q train "${opts[@]}" --max-steps 1 --out "$tmp/t" : -np 1 "$bin" -q train "${opts[@]}" --max-steps 1 \
  --threads 2 --set dist_timeout=0 --out "$tmp/t" >"$tmp/t.log" 2>&1 || { cat "$tmp/t.log"; fail "threads/dist_timeout differing across ranks"; }

# a global batch the ranks cannot share
run_mpi 60 -np 2 "$bin" train "${opts[@]}" --batch-size 9 --out "$tmp/n" >"$tmp/n.log" 2>&1; rc=$?
[ $rc -eq 2 ] || { cat "$tmp/n.log"; fail "batch 9 on 2 ranks: exit $rc, expected 2"; }
grep -q "batch_size (9) must be a multiple of the number of ranks (2)" "$tmp/n.log" || { cat "$tmp/n.log"; fail "batch message"; }
echo ok
