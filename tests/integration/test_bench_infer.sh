#!/usr/bin/env bash
# test_bench_infer.sh: bench/bench_infer end to end on a small network (ResNet-18 at 32x32, well
# under a second): one result line; --trace prints one time per timed forward, whose mean is the
# s/batch the result line reports (the line's mean and the trace are the same measurements); the
# images/s is batch / that mean; bad options fail with a message naming the option and exit 2.
set -euo pipefail
bench=$MG_BUILD_DIR/bench_infer
[ -x "$bench" ] || { echo "bench_infer not built"; exit 77; }
dir=$MG_TEST_TMP/bench_infer_$$
trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir"
"$bench" --arch resnet18 --batch 2 --size 32 --reps 5 --threads 1 --classes 10 --trace > "$dir/out" 2> "$dir/err"
cat "$dir/out" "$dir/err"
line=$(cat "$dir/out")
echo "$line" | grep -Eq '^resnet18 batch 2 at 32x32, 1 threads: [0-9.]+ s/batch \(best [0-9.]+\), [0-9.]+ images/s, peak RSS [0-9.]+ MiB \(checksum .*\), 0 of 5 forwards on fewer threads \(load\)$'
mean=$(echo "$line" | sed -nE 's/.*threads: ([0-9.]+) s\/batch.*/\1/p')
ips=$(echo "$line" | sed -nE 's/.* ([0-9.]+) images\/s.*/\1/p')
# the trace: 5 positive times in ms (no 's': one thread asked, so none can run on fewer)
[ "$(wc -l < "$dir/err")" = 1 ]
awk '{ if (NF != 5) exit 1; for (i = 1; i <= NF; i++) if ($i !~ /^[0-9]+\.[0-9]$/ || $i <= 0) exit 1 }' "$dir/err"
# their mean equals the line's s/batch: the trace rounds each to 0.05 ms, the line to 0.05 ms
awk -v m="$mean" '{ s = 0; for (i = 1; i <= NF; i++) s += $i; d = s / NF - 1000 * m; if (d < 0) d = -d; exit !(d <= 0.1) }' "$dir/err" ||
  { echo "trace mean differs from the reported $mean s/batch"; exit 1; }
# images/s = 2 / mean: both printed from the same unrounded mean, the mean to 0.00005 s and the rate
# to 0.005, so they agree within those roundings (relative 0.00005 / mean + 0.005 / rate)
awk -v m="$mean" -v r="$ips" 'BEGIN { e = 2 / m; d = (r - e) / e; if (d < 0) d = -d; exit !(d <= 0.00005 / m + 0.005 / r) }' ||
  { echo "images/s $ips is not 2 / $mean"; exit 1; }
# bad options
set +e
err=$("$bench" --reps 2>&1); rc=$?
[ "$rc" = 2 ] && echo "$err" | grep -qF "option '--reps' needs a value" || { echo "missing value: rc $rc, $err"; exit 1; }
err=$("$bench" --bogus 1 2>&1); rc=$?
[ "$rc" = 2 ] && echo "$err" | grep -qF "unknown option '--bogus'" || { echo "unknown option: rc $rc, $err"; exit 1; }
echo "bench_infer: all checks passed"
