#!/usr/bin/env bash
# test_cli_bench.sh: `multigrain bench model|ops|data` with tiny settings (a few seconds in all):
#  - each prints its one result line with every field present, numeric and positive, and numbers
#    that agree with each other (images/s = batch / median, % of peak = GFLOP/s / peak, images =
#    batches x batch) and with the settings asked for;
#  - the GFLOP per iteration of ResNet-18 at 32x32 is torchvision's multiply-add count (x3 in train);
#  - --json writes valid JSON holding the same numbers;
#  - --help works for every subcommand; bad subcommands and options exit 2 (a missing dataset 1)
#    with a first stderr line naming the option and what was found.
set -u
fail() { echo "FAIL: $*" >&2; exit 1; }
bin=${MG_BIN:?}; py=${MG_PYTHON:-/usr/bin/python3}
tmp=$(mktemp -d "${MG_TEST_TMP:-/tmp}/bench.XXXXXX"); trap 'rm -rf "$tmp"' EXIT

# check KIND LINE_FILE JSON_FILE [key=value ...]: parses the result line, checks it and the JSON.
check() {
  "$py" - "$@" <<'PY'
import json, math, re, sys
kind, line_file, json_file = sys.argv[1:4]
want = dict(a.split("=", 1) for a in sys.argv[4:])
lines = open(line_file).read().splitlines()
if len(lines) != 1:
    sys.exit("expected one line on stdout, found %d: %r" % (len(lines), lines))
line = lines[0]
num = r"([0-9.]+(?:e[+-]?[0-9]+)?)"
pats = {
    "model": r"bench model: arch (?P<arch>\S+) batch (?P<batch>\d+) size (?P<size>\d+) mode (?P<mode>\w+) "
             r"threads (?P<threads>\d+): (?P<median_s>N) s/iter median \(min (?P<min_s>N) max (?P<max_s>N), "
             r"(?P<reps>\d+) reps\), (?P<images_per_s>N) images/s, (?P<gflops>N) GFLOP/s "
             r"\((?P<gflop_per_iter>N) GFLOP/iter\), peak RSS (?P<peak_rss_mib>N) MiB",
    "ops": r"bench ops: threads (?P<threads>\d+): FMA peak (?P<fma_peak_gflops>N) GFLOP/s \((?P<fma_width>\d+)-wide FMAs\); sgemm "
           r"(?P<sgemm_n>\d+)x\d+x\d+ (?P<sgemm_gflops>N) GFLOP/s \((?P<sgemm_pct>N)% of peak\); conv 3x3 128->128 "
           r"at 28x28 batch 8 \((?P<conv_impl>[^)]+)\) (?P<conv_gflops>N) GFLOP/s \((?P<conv_pct>N)% of peak\)",
    "data": r"bench data: (?P<images>\d+) images in (?P<batches>\d+) batches of (?P<batch>\d+) at (?P<size>\d+)x\d+, "
            r"(?P<workers>\d+) workers: (?P<images_per_s>N) images/s, (?P<images_per_cpu_s>N) images per CPU "
            r"second, consumer waited (?P<consumer_wait_s>N) of (?P<wall_s>N) s \((?P<files>\d+) files\)",
}
m = re.fullmatch(pats[kind].replace("N", num), line)
if not m:
    sys.exit("line does not have the expected fields: " + line)
f = m.groupdict()
text = {"arch", "mode", "conv_impl"}
v = {k: (x if k in text else float(x)) for k, x in f.items()}
for k, x in v.items():
    if k not in text and not (math.isfinite(x) and (x > 0 or k == "consumer_wait_s")):
        sys.exit("%s is not a positive number: %r in %s" % (k, f[k], line))
for k, x in want.items():
    if str(f[k]) != x:
        sys.exit("%s: expected %s, found %s" % (k, x, f[k]))
# the JSON holds the same numbers, to the line's rounding: 4 (median_s ...) or 3 (wall_s ...)
# significant digits, 1 decimal (rates, MiB, percentages), integers exactly
sig4, sig3 = {"median_s", "min_s", "max_s", "gflop_per_iter"}, {"consumer_wait_s", "wall_s"}
j = json.load(open(json_file))
if j.get("bench") != kind:
    sys.exit("json: bench is %r" % j.get("bench"))
for k, x in v.items():
    jk, jx = (k.replace("_pct", "_fraction_of_peak"), x / 100) if k.endswith("_pct") else (k, x)
    if jk not in j:
        sys.exit("json: no key %s" % jk)
    y = j[jk]
    if k in text or re.fullmatch(r"\d+", f[k]):
        ok = y == jx
    elif k in sig4 or k in sig3:
        ok = abs(y - jx) <= (5.01e-4 if k in sig4 else 5.01e-3) * abs(y)
    else:
        ok = abs(y - jx) <= (0.0501 / 100 if k.endswith("_pct") else 0.0501)
    if not ok:
        sys.exit("json: %s is %r, the line says %r" % (jk, y, f[k]))
# the numbers agree with each other (unrounded, from the JSON)
def close(a, b, rel):
    return abs(a - b) <= rel * abs(b)
if kind == "model":
    assert j["min_s"] <= j["median_s"] <= j["max_s"], j
    assert close(j["images_per_s"], j["batch"] / j["median_s"], 1e-9), j
    assert close(j["gflops"], j["gflop_per_iter"] / j["median_s"], 1e-9), j
    passes = 3 if j["mode"] == "train" else 1
    assert close(j["gflop_per_iter"], 2e-9 * j["forward_macs_per_image"] * j["batch"] * passes, 1e-9), j
if kind == "ops":
    assert j["fma_width"] in (8, 16), j  # AVX2 or AVX-512 (mg_cpu_fma_width)
    for op in ("sgemm", "conv"):
        assert close(j[op + "_fraction_of_peak"], j[op + "_gflops"] / j["fma_peak_gflops"], 1e-9), j
if kind == "data":
    assert j["images"] == j["batches"] * j["batch"], j
    assert j["consumer_wait_s"] <= j["wall_s"], j
    assert close(j["images_per_s"], j["images"] / j["wall_s"], 1e-9), j
for k in j:
    if isinstance(j[k], (int, float)) and not (math.isfinite(j[k]) and j[k] >= 0):
        sys.exit("json: %s is %r" % (k, j[k]))
print("%s: ok (%s)" % (kind, line))
PY
}

# ---- model: training step and inference -------------------------------------------------------
"$bin" bench model --arch resnet18 --batch 2 --size 32 --reps 2 --mode train --threads 1 --json "$tmp/train.json" \
  >"$tmp/train.out" 2>"$tmp/err" || { cat "$tmp/err"; fail "bench model --mode train"; }
check model "$tmp/train.out" "$tmp/train.json" arch=resnet18 batch=2 size=32 mode=train threads=1 reps=2 ||
  fail "bench model train"
"$bin" bench model --arch resnet18 --batch 2 --size 32 --reps 3 --warmup 0 --mode infer -j 1 --json "$tmp/infer.json" \
  >"$tmp/infer.out" 2>"$tmp/err" || { cat "$tmp/err"; fail "bench model --mode infer"; }
check model "$tmp/infer.out" "$tmp/infer.json" arch=resnet18 batch=2 size=32 mode=infer threads=1 reps=3 ||
  fail "bench model infer"
# torchvision's ResNet-18 at 32x32: 37523456 multiply-adds with 1000 classes (infer), 37016576 with 10 (train)
"$py" -c '
import json, sys
t, i = (json.load(open(sys.argv[k])) for k in (1, 2))
assert t["forward_macs_per_image"] == 37016576 and abs(t["gflop_per_iter"] - 2 * 37016576 * 2 * 3 * 1e-9) < 1e-12, t
assert i["forward_macs_per_image"] == 37523456 and abs(i["gflop_per_iter"] - 2 * 37523456 * 2 * 1e-9) < 1e-12, i
' "$tmp/train.json" "$tmp/infer.json" || fail "GFLOP per iteration"

# ---- ops ----------------------------------------------------------------------------------------
if "$bin" bench ops --seconds 0.2 --threads 1 --json "$tmp/ops.json" >"$tmp/ops.out" 2>"$tmp/err"; then
  check ops "$tmp/ops.out" "$tmp/ops.json" threads=1 sgemm_n=1024 || fail "bench ops"
elif grep -q "no AVX2/FMA\|only on x86" "$tmp/err"; then
  echo "bench ops: this CPU cannot measure the FMA peak: $(head -n1 "$tmp/err")"
else
  cat "$tmp/err"; fail "bench ops"
fi

# ---- data ---------------------------------------------------------------------------------------
data_skipped=
if "$py" -c "import numpy, PIL" 2>/dev/null; then
  "$py" "${MG_SOURCE_DIR:?}/tests/common/gen_color_images.py" "$tmp/data" || fail "generator"   # 48 train PNGs
  "$bin" bench data --data "$tmp/data" --size 32 --batch 12 --batches 5 --workers 2 --json "$tmp/data.json" \
    >"$tmp/data.out" 2>"$tmp/err" || { cat "$tmp/err"; fail "bench data"; }
  check data "$tmp/data.out" "$tmp/data.json" images=60 batches=5 batch=12 size=32 workers=2 files=48 ||
    fail "bench data"
else
  data_skipped=1
fi

# ---- help and errors ----------------------------------------------------------------------------
for sub in "" model ops data; do
  "$bin" bench $sub --help >"$tmp/out" 2>&1 || fail "bench $sub --help exited non-zero"
  grep -q '^usage: multigrain bench model' "$tmp/out" || fail "bench $sub --help: no usage"
done
# expect_error CODE PATTERN ARGS...: exit CODE, nothing on stdout, first stderr line matches PATTERN
expect_error() {
  local code=$1 pat=$2; shift 2
  "$bin" "$@" >"$tmp/out" 2>"$tmp/err"; local rc=$?
  [ $rc -eq "$code" ] || fail "'$*': exit $rc, expected $code ($(head -n1 "$tmp/err"))"
  [ ! -s "$tmp/out" ] || fail "'$*': printed on stdout: $(head -n1 "$tmp/out")"
  head -n1 "$tmp/err" | grep -q -- "^multigrain: .*$pat" || fail "'$*': first stderr line: $(head -n1 "$tmp/err")"
}
expect_error 2 "bench: expected a subcommand (model, ops or data)" bench
expect_error 2 "unknown subcommand 'frob'" bench frob
expect_error 2 "--batch: expected an integer in \[1, 4096\], found '*0'*$" bench model --batch 0
expect_error 2 "--batch: expected at least 2 with --mode train.*found 1" bench model --mode train --batch 1
expect_error 2 "--arch: unknown architecture 'nosuch': expected resnet18" bench model --arch nosuch
expect_error 2 "--mode: expected infer or train, found 'foo'" bench model --mode foo
expect_error 2 "--reps: expected an integer.*found 'many'" bench model --reps many
expect_error 2 "bench ops: unknown option '--arch'" bench ops --arch resnet18
expect_error 2 "--seconds: expected .*found '*0'*$" bench ops --seconds 0
expect_error 2 "bench data: --data ROOT is required" bench data --batches 2
expect_error 2 "--workers: expected an integer.*found '*0'*$" bench data --data "$tmp" --workers 0
expect_error 1 "--data: $tmp/missing: no train/ folder" bench data --data "$tmp/missing"
expect_error 2 "bench model: unexpected argument 'extra'" bench model extra
# an unwritable --json: the result line is printed, then the error naming the file
"$bin" bench model --arch resnet18 --batch 1 --size 16 --reps 1 -j 1 --json "$tmp/no/dir/x.json" \
  >"$tmp/out" 2>"$tmp/err"; rc=$?
[ $rc -eq 1 ] || fail "unwritable --json: exit $rc, expected 1"
grep -q '^bench model: arch resnet18 batch 1 size 16 mode infer' "$tmp/out" || fail "unwritable --json: no result line"
head -n1 "$tmp/err" | grep -q -- "^multigrain: --json $tmp/no/dir/x.json" || fail "unwritable --json: $(head -n1 "$tmp/err")"
if [ -n "$data_skipped" ]; then
  echo "SKIPPED: bench data needs numpy and PIL to generate its images (the rest passed)"; exit 77
fi
echo "cli bench: ok"
