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
# --ab: model B is built with the variable, model A without: MG_FNET_PROFILE=1 makes a fused network
# print its profile table when freed, so B alone prints one, over its planning forward and the 3
# timed ones. (Builds without oneDNN have no fused network: the variable set for the whole process
# prints no table there, and then --ab must print none either.)
MG_FNET_PROFILE=1 "$bench" --arch resnet18 --batch 1 --size 32 --reps 1 --threads 1 --classes 10 > /dev/null 2> "$dir/all"
tables_all=$(grep -c '^fused network profile:' "$dir/all" || true)
"$bench" --arch resnet18 --batch 1 --size 32 --reps 3 --threads 1 --classes 10 --ab MG_FNET_PROFILE=1 --trace \
  > "$dir/ab" 2> "$dir/aberr"
cat "$dir/ab" "$dir/aberr"
grep -Eq '^resnet18 batch 1 at 32x32, 1 threads, 3 A/B pairs \(B: MG_FNET_PROFILE=1\): A [0-9.]+ s/batch, [0-9.]+ images/s; B [0-9.]+ s/batch, [0-9.]+ images/s; B/A speed median [0-9.]+ \(pairs [0-9.]+-[0-9.]+\), B faster in [0-3] of 3; peak RSS of both [0-9.]+ MiB \(checksums .*\)$' "$dir/ab" ||
  { echo "--ab: unexpected result line"; exit 1; }
# the trace: 3 pairs of positive A/B milliseconds
grep -Eq '^[0-9]+\.[0-9]/[0-9]+\.[0-9] [0-9]+\.[0-9]/[0-9]+\.[0-9] [0-9]+\.[0-9]/[0-9]+\.[0-9]$' "$dir/aberr" ||
  { echo "--ab --trace: expected 3 A/B pairs"; exit 1; }
tables_ab=$(grep -c '^fused network profile:' "$dir/aberr" || true)
if [ "$tables_all" -ge 1 ]; then
  [ "$tables_ab" = 1 ] || { echo "--ab: $tables_ab profile tables, expected 1 (model B's)"; exit 1; }
  grep -q '^fused network profile: .* 3 run(s) after the first' "$dir/aberr" ||
    { echo "--ab: B's table should count 3 runs after the first"; exit 1; }
else
  [ "$tables_ab" = 0 ] || { echo "--ab: a profile table without a fused network"; exit 1; }
fi
# the median B/A speed ratio is the middle one of the trace's 3 pairs (A ms / B ms), within the trace's
# rounding of each time to 0.05 ms
med=$(sed -nE 's/.*B\/A speed median ([0-9.]+).*/\1/p' "$dir/ab")
grep -E '^[0-9]' "$dir/aberr" | head -1 | awk -v m="$med" '{
  for (i = 1; i <= 3; i++) { split($i, t, "/"); a[i] = t[1]; b[i] = t[2]; r[i] = t[1] / t[2] }
  mid = 1; for (i = 1; i <= 3; i++) { lo = 0; hi = 0
    for (j = 1; j <= 3; j++) if (j != i) { if (r[j] <= r[i]) lo++; else hi++ }
    if (lo == 1 && hi == 1) mid = i }
  d = r[mid] - m; if (d < 0) d = -d
  exit !(d <= m * (0.05 / a[mid] + 0.05 / b[mid]) + 0.00005) }' ||
  { echo "--ab: median $med is not the middle ratio of the trace"; exit 1; }
# bad options
set +e
err=$("$bench" --reps 2>&1); rc=$?
[ "$rc" = 2 ] && echo "$err" | grep -qF "option '--reps' needs a value" || { echo "missing value: rc $rc, $err"; exit 1; }
err=$("$bench" --bogus 1 2>&1); rc=$?
[ "$rc" = 2 ] && echo "$err" | grep -qF "unknown option '--bogus'" || { echo "unknown option: rc $rc, $err"; exit 1; }
err=$("$bench" --ab NOEQUALS 2>&1); rc=$?
[ "$rc" = 2 ] && echo "$err" | grep -qF -- "--ab: expected VAR=VALUE, found 'NOEQUALS'" || { echo "bad --ab: rc $rc, $err"; exit 1; }
echo "bench_infer: all checks passed"
