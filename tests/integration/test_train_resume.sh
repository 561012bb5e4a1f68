#!/usr/bin/env bash
# test_train_resume.sh: a tiny end-to-end MultiGrain training run on generated images:
#  - the loss goes down over the epochs (metrics.jsonl);
#  - a run killed with SIGKILL after its first checkpoint and resumed with --resume gives exactly
#    the uninterrupted run's losses at every step after the checkpoint, and the same final weights;
#  - gradient accumulation keeps the optimizer steps per epoch (batch_size is per optimizer step);
#  - bad configs and bad data give one-line errors and exit codes 2 / 1.
set -u
fail() { echo "FAIL: $*" >&2; exit 1; }
bin=${MG_BIN:?}; py=${MG_PYTHON:-/usr/bin/python3}
"$py" -c "import numpy, PIL" 2>/dev/null || { echo "SKIPPED: no numpy/PIL"; exit 77; }
tmp=$(mktemp -d "${MG_TEST_TMP:-/tmp}/train.XXXXXX"); trap 'kill -9 $pid 2>/dev/null; rm -rf "$tmp"' EXIT
pid=

"$py" "${MG_SOURCE_DIR:?}/tests/common/gen_color_images.py" "$tmp/data" || fail "generator"

common=(--data "$tmp/data" --set arch=resnet18 --set num_classes=3 --set input_size=32 --batch-size 12
        --set repeated_augmentations=3 --set epoch_len_factor=1 --set augmentation=torch --set crop_scale_min=0.5
        --lr 0.02 --set lr_schedule=linear --set warmup_epochs=1 --set lr_init=0.002 --set lr_end=0.0002
        --set workers=2 --set log_every_steps=1 --set eval_every_epochs=2 --set save_checkpoint_epochs=1
        --set keep_checkpoint_max=10 --seed 3 --epochs 5)

"$bin" train "${common[@]}" --out "$tmp/a" >"$tmp/a.log" 2>&1 || { cat "$tmp/a.log"; fail "uninterrupted run"; }
grep -q "^epoch: 1 step: 1, loss is " "$tmp/a.log" || fail "no reference-style log line"
grep -q "^result: {'top_1_accuracy'" "$tmp/a.log" || fail "no evaluation line"
[ "$(ls "$tmp/a/checkpoints" | wc -l)" -eq 5 ] || fail "expected 5 checkpoints, found $(ls "$tmp/a/checkpoints")"

# interrupted run: SIGKILL once the first checkpoint exists, then resume
"$bin" train "${common[@]}" --out "$tmp/b" >"$tmp/b1.log" 2>&1 & pid=$!
for _ in $(seq 1 600); do
  ls "$tmp/b/checkpoints/"*.safetensors >/dev/null 2>&1 && break
  kill -0 $pid 2>/dev/null || break
  sleep 0.1
done
kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null; pid=
ls "$tmp/b/checkpoints/"*.safetensors >/dev/null 2>&1 || fail "no checkpoint before the kill"
# keep only the first checkpoint (the kill may have come later)
first=$(ls "$tmp/b/checkpoints/" | head -n1)
for f in "$tmp/b/checkpoints/"*; do [ "$(basename "$f")" = "$first" ] || rm -f "$f"; done
"$bin" train "${common[@]}" --out "$tmp/b" --resume "$tmp/b" >"$tmp/b2.log" 2>&1 || { cat "$tmp/b2.log"; fail "resumed run"; }
grep -q "resuming from" "$tmp/b2.log" || fail "resume not reported"

"$py" - "$tmp" "$first" "${MG_SOURCE_DIR:?}/tests/oracle" <<'PY' || fail "comparison"
import json, os, sys
tmp, first, oracle = sys.argv[1:4]
sys.path.insert(0, oracle)
import numpy as np
import st_numpy
def steps(path):
    out = {}
    for line in open(path):
        r = json.loads(line)
        if r["kind"] == "step":
            out[r["step"]] = r["loss"]  # a re-run step overwrites the killed run's line
    return out
a = steps(os.path.join(tmp, "a", "metrics.jsonl")); b = steps(os.path.join(tmp, "b", "metrics.jsonl"))
ck = int(first.split("_s")[1].split(".")[0])
assert sorted(a) == list(range(1, 21)), sorted(a)
# the loss goes down: mean of the last epoch's 4 steps below the first epoch's
assert np.mean([a[s] for s in range(17, 21)]) < np.mean([a[s] for s in range(1, 5)]), a
after = [s for s in a if s > ck]
assert after, "nothing after the checkpoint"
for s in after:
    # the same arithmetic in the same order on the same inputs: bit-identical losses
    assert a[s] == b[s], f"step {s}: uninterrupted {a[s]!r}, resumed {b[s]!r}"
fa = sorted(os.listdir(os.path.join(tmp, "a", "checkpoints")))[-1]
fb = sorted(os.listdir(os.path.join(tmp, "b", "checkpoints")))[-1]
assert fa == fb, (fa, fb)
ta, _ = st_numpy.load(os.path.join(tmp, "a", "checkpoints", fa))
tb, _ = st_numpy.load(os.path.join(tmp, "b", "checkpoints", fb))
assert sorted(ta) == sorted(tb)
for k in ta:
    assert np.array_equal(ta[k], tb[k]), f"tensor {k} differs after resume"
print(f"resume ok: {len(after)} steps after the checkpoint at step {ck} identical; final weights identical")
PY

# SIGTERM: the step in progress finishes, a checkpoint is written, exit code 130
"$bin" train "${common[@]}" --out "$tmp/c" >"$tmp/c.log" 2>&1 & pid=$!
for _ in $(seq 1 600); do grep -q "^epoch: 1 step: 2," "$tmp/c.log" 2>/dev/null && break; sleep 0.1; done
kill -TERM $pid; wait $pid; rc=$?; pid=
[ $rc -eq 130 ] || { cat "$tmp/c.log"; fail "SIGTERM: exit $rc, expected 130"; }
grep -q "interrupted" "$tmp/c.log" || fail "SIGTERM: no 'interrupted' message"
ls "$tmp/c/checkpoints/"*.safetensors >/dev/null 2>&1 || fail "SIGTERM: no checkpoint written"

# fine-tuning from a weights checkpoint (optimizer state ignored, step counter from 0)
"$bin" train "${common[@]}" --epochs 2 --out "$tmp/f" --init-from "$tmp/a/checkpoints/$(ls "$tmp/a/checkpoints" | tail -n1)" \
  >"$tmp/f.log" 2>&1 || { cat "$tmp/f.log"; fail "--init-from"; }
grep -q "^epoch: 1 step: 1, loss is " "$tmp/f.log" || fail "--init-from did not start at step 1"

# gradient accumulation: batch_size is what one optimizer step sees (docs/config.md), so 2
# accumulated sub-batches of 6 give the same 4 optimizer steps per epoch as batches of 12
"$bin" train "${common[@]}" --epochs 1 --set warmup_epochs=0.5 --set grad_accum=2 --out "$tmp/g" >"$tmp/g.log" 2>&1 || { cat "$tmp/g.log"; fail "grad_accum run"; }
ng=$(grep -c '"kind": *"step"' "$tmp/g/metrics.jsonl")
[ "$ng" -eq 4 ] || fail "grad_accum=2: expected 4 optimizer steps in the epoch, found $ng"

# bad config and bad data
"$bin" train --data "$tmp/data" --out "$tmp/x" --set no_such_key=1 2>"$tmp/err"; rc=$?
[ $rc -eq 2 ] || fail "unknown key: exit $rc"
grep -q "no_such_key" "$tmp/err" || fail "unknown key message"
mkdir -p "$tmp/empty"
"$bin" train --data "$tmp/empty" --out "$tmp/d" 2>"$tmp/err"; rc=$?
[ $rc -ne 0 ] || fail "empty data accepted"
grep -q "$tmp/empty" "$tmp/err" || fail "empty data message: $(cat "$tmp/err")"
echo ok
