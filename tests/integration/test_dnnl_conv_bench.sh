#!/usr/bin/env bash
# test_dnnl_conv_bench.sh: bench/bench_dnnl_conv end to end on small shapes (a smoke test, well under
# two seconds): it lists oneDNN's implementations with a time each, its output-channel slices agree
# with the whole convolution (same arithmetic per output: at most float rounding apart), --cold and
# --trunk run, and bad options fail with a one-line message naming the option.
set -euo pipefail
bench=$MG_BUILD_DIR/bench_dnnl_conv
[ -x "$bench" ] || { echo "bench_dnnl_conv not built"; exit 77; }
if ! out=$("$bench" --ic 32 --oc 64 --size 12 --slices 2 --reps 2 2>&1); then
  echo "$out"
  echo "$out" | grep -q 'has no oneDNN' && exit 77 # a build without oneDNN
  exit 1
fi
echo "$out"
echo "$out" | grep -Eq '^  direct +jit_1x1:[a-z0-9_]+ +[0-9.]+ ms +[0-9.]+ GFLOP/s$'
line=$(echo "$out" | grep -E 'whole +[0-9.]+ ms, 2 slices of 32 channels +[0-9.]+ ms')
diff=$(echo "$line" | sed -nE 's/.*max \|diff\| ([0-9.e+-]+)\)$/\1/p')
awk -v d="$diff" 'BEGIN { exit !(d != "" && d + 0 <= 1e-5) }' || { echo "slices differ by $diff"; exit 1; }
out=$("$bench" --ic 16 --oc 16 --size 10 --kernel 3 --reps 2)
echo "$out"
echo "$out" | grep -q 'winograd'
# --cold (96 MiB read before each run) times the same implementations
out=$("$bench" --ic 16 --oc 16 --size 10 --kernel 3 --reps 1 --cold)
echo "$out"
echo "$out" | grep -Eq '^  direct +[a-z0-9_:]+ +[0-9.]+ ms +[0-9.]+ GFLOP/s$'
out=$("$bench" --trunk --threads 2 --reps 1)
echo "$out"
echo "$out" | grep -Eq '^resnet50 stage convolutions \(52, batch 1\), 2 threads, 1 rounds:$'
echo "$out" | grep -Eq '^  slices \(8 per layer, 2 per Winograd layer\) +median +[0-9.]+ ms'
echo "$out" | grep -Eq '^  whole, each layer hot \(sum of second runs\) +median +[0-9.]+ ms'
for bad in "--layout nchw8" "--slices 3 --ic 16 --oc 32 --size 8" "--ic 0 --oc 16 --size 8" "--bogus 1" "--trunk --threads 65"; do
  set +e
  msg=$("$bench" --ic 16 --oc 16 --size 8 $bad 2>&1)
  rc=$?
  set -e
  echo "$bad -> $rc: $msg"
  [ "$rc" = 2 ] && [ "$(echo "$msg" | wc -l)" = 1 ] && echo "$msg" | grep -q '^bench_dnnl_conv: '
done
