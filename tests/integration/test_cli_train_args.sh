#!/usr/bin/env bash
# test_cli_train_args.sh: `multigrain train` argument and config handling end to end: bad option
# values and unknown options/keys exit 2 with messages naming them; --print-lr matches an
# independent Python computation of the schedule; the run folder gets the effective config.
set -u
: "${MG_BIN:?}" "${MG_TEST_TMP:?}" "${MG_SOURCE_DIR:?}"
PY=${MG_PYTHON:-/usr/bin/python3}
T="$MG_TEST_TMP/cli_train_args"
rm -rf "$T" && mkdir -p "$T"
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

# expect_exit CODE NEEDLE... -- ARGS: runs the CLI, checks the exit code and that stderr holds each needle
expect_exit() {
    local want=$1; shift
    local needles=()
    while [ "$1" != "--" ]; do needles+=("$1"); shift; done
    shift
    "$MG_BIN" "$@" >"$T/out" 2>"$T/err"
    local rc=$?
    [ "$rc" -eq "$want" ] || fail "multigrain $* exited $rc, expected $want; stderr: $(head -3 "$T/err")"
    for n in "${needles[@]}"; do
        grep -qF -- "$n" "$T/err" || fail "multigrain $*: stderr lacks '$n': $(head -3 "$T/err")"
    done
}

expect_exit 2 "--batch-size" "banana" -- train --batch-size banana
expect_exit 2 "--frobnicate" -- train --frobnicate
expect_exit 2 "--epochs" "0" -- train --epochs 0 --print-lr

printf 'batch_size: 64\nbach_size: 32\n' >"$T/unknown.yaml"
expect_exit 2 "unknown key 'bach_size'" "$T/unknown.yaml" "did you mean 'batch_size'" -- train -c "$T/unknown.yaml" --print-lr
printf '# c\nlr: 0.1\n\nbatch_size: abc\n' >"$T/badtype.yaml"
expect_exit 2 "$T/badtype.yaml: key 'batch_size': expected an integer in [1, 1048576], found 'abc' (line 4)" -- \
    train -c "$T/badtype.yaml" --print-lr
printf 'lr: 0.1\nlr: 0.2\n' >"$T/dup.yaml"
expect_exit 2 "duplicate key 'lr'" -- train -c "$T/dup.yaml" --print-lr
expect_exit 2 "unknown key 'nope'" -- train --set nope=1 --print-lr
expect_exit 2 "--set" "lr_schedule" "sideways" -- train --set lr_schedule=sideways --print-lr
expect_exit 2 "config" -- train -c "$T/does-not-exist.yaml" --print-lr
expect_exit 2 "--data" -- train --out "$T/run"
expect_exit 1 "$T/nodata" -- train --data "$T/nodata" --out "$T/run"

# Both shipped configs load; the reference one reports its THOR keys as not used yet.
expect_exit 0 -- train -c "$MG_SOURCE_DIR/configs/multigrain_resnet50.yaml" --print-lr
expect_exit 0 "damping_init" "not used yet" -- train -c "$MG_SOURCE_DIR/configs/resnet50_imagenet2012_config.yaml" --print-lr

# --print-lr against an independent computation of the reference formulas.
check_lr() { # name, python expression of lr(i) given S, T, W; then CLI args
    local name=$1 expr=$2; shift 2
    if ! "$MG_BIN" train "$@" --print-lr >"$T/$name.txt" 2>"$T/$name.err"; then
        fail "$name: --print-lr failed: $(cat "$T/$name.err")"
        return
    fi
    "$PY" - "$T/$name.txt" "$expr" <<'PYEOF' || fail "$name: printed schedule differs from the Python computation"
import math, sys
path, expr = sys.argv[1], sys.argv[2]
rows = [l.split() for l in open(path) if l.strip() and not l.startswith('#')]
hdr = [l for l in open(path) if l.startswith('# lr schedule')][0].split()
S = int(hdr[hdr.index('steps') - 1])           # "... : S steps per epoch, E epochs, T steps, warm-up W steps"
E = int(hdr[hdr.index('epochs,') - 1])
W = int(hdr[hdr.index('warm-up') + 1])
T = S * E
bad = 0
for r in rows:
    i, ep, lr = int(r[0]), float(r[1]), float(r[2])
    ref = eval(expr, {"math": math, "i": i, "S": S, "T": T, "W": W})
    # rows carry 9 significant digits (%.9g): allow 1e-8 relative
    if abs(lr - ref) > 1e-8 * abs(ref) + 1e-15 or abs(ep - i / S) > 1e-6:
        print("step %d: printed lr %r epoch %r, expected %r" % (i, lr, ep, ref)); bad += 1
print("%s: %d rows checked" % (path, len(rows)))
sys.exit(1 if bad or not rows else 0)
PYEOF
}
# reference "Linear": warm-up lr_init -> lr_max over W, then linear decay to lr_end
check_lr linear "0.01 + (0.5 - 0.01) * i / W if i < W else 0.5 - (0.5 - 0.001) * (i - W) / (T - W)" \
    --set lr_decay_mode=Linear --set lr_init=0.01 --set lr_max=0.5 --set lr_end=0.001 --set warmup_epochs=2 \
    --epochs 10 --steps-per-epoch 7 --lr-every 1
# reference cosine variant
check_lr cosine "0.0 + (0.4 - 0.0) / W * (i + 1) if i < W else 0.4 * ((T - i) / (T - W) * 0.5 * (1 + math.cos(math.pi * 2 * 0.47 * i / (T - W))) + 0.00001)" \
    --set lr_schedule=cosine --set lr=0.4 --set warmup_epochs=3 --epochs 10 --steps-per-epoch 9 --lr-every 1
# THOR polynomial with the x0.5 at epochs 39 and 40
check_lr thor "0.045 * (1 - ((i + 1) / S) / 70) ** 6 * (0.5 if (i + 1) / S >= 39 else 1) * (0.5 if (i + 1) / S >= 40 else 1)" \
    --set optimizer=Thor --set lr_init=0.045 --set lr_decay=6 --set lr_end_epoch=70 --epochs 45 --steps-per-epoch 5 --lr-every 1
# the recipe: 0.2, x0.1 from 0-based epochs 30, 60, 90; ImageNet steps per epoch from the images
check_lr recipe "0.2 * 0.1 ** sum(1 for d in (30, 60, 90) if i // S >= d)" \
    -c "$MG_SOURCE_DIR/configs/multigrain_resnet50.yaml"
grep -q "^# lr schedule step: 5005 steps per epoch" "$T/recipe.txt" || fail "recipe: expected 5005 steps per epoch"
[ "$(grep -vc '^#' "$T/recipe.txt")" -eq 121 ] || fail "recipe: expected 120 epoch boundaries + last step"

# A run folder: config validated, data folder checked, RUN_DIR/config.yaml written, then the
# empty class folder is reported (exit 1, not 0) before any training.
mkdir -p "$T/data/train/class0"
expect_exit 1 "no .jpg/.jpeg/.png file" -- train -c "$MG_SOURCE_DIR/configs/multigrain_resnet50.yaml" --data "$T/data" \
    --out "$T/run" --set epochs=7 --batch-size 64
[ -f "$T/run/config.yaml" ] || fail "run folder has no config.yaml"
grep -q "^epochs: 7" "$T/run/config.yaml" || fail "config.yaml lacks the --set epochs"
grep -q "^batch_size: 64" "$T/run/config.yaml" || fail "config.yaml lacks --batch-size"
grep -q "^# config hash: [0-9a-f]\{16\}" "$T/run/config.yaml" || fail "config.yaml lacks the hash"
# the written config is itself a valid config
expect_exit 0 -- train -c "$T/run/config.yaml" --print-lr --steps-per-epoch 3

[ "$fails" -eq 0 ] || { echo "$fails failure(s)"; exit 1; }
echo "ok"
