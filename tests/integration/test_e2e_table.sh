#!/usr/bin/env bash
# test_e2e_table.sh: bench/e2e_table.py (the table of bench/run.sh) on hand-made raw results, against
# values computed by hand: medians and ranges, GFLOP/s against the peak, RSS in MiB, the ratio of
# the medians and the per-round ("by round") ratios, with a failed run (empty fields) left out.
set -euo pipefail
dir=$MG_TEST_TMP/e2e_table_$$
trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir"
printf 'r50_infer_b1\tmultigrain\t1\t30\t262144\n' > "$dir/r.tsv"
printf 'r50_infer_b1\tonnxruntime\t1\t20\t327680\n' >> "$dir/r.tsv"
printf 'r50_infer_b1\tmultigrain\t2\t24\t262144\n' >> "$dir/r.tsv"
printf 'r50_infer_b1\tonnxruntime\t2\t25\t327680\n' >> "$dir/r.tsv"
printf 'r50_infer_b1\tmultigrain\t3\t27\t263168\n' >> "$dir/r.tsv"
printf 'r50_infer_b1\tonnxruntime\t3\t\t\n' >> "$dir/r.tsv"
out=$("$MG_PYTHON" "$MG_SOURCE_DIR/bench/e2e_table.py" "$dir/r.tsv" 442)
echo "$out"
# multigrain: median of 30, 24, 27; 27 x 8.18 GFLOP = 220.9 GFLOP/s, 50 % of 442; RSS 256, 256, 257 MiB
echo "$out" | grep -qxF '| ResNet-50 inference 224, batch 1 | multigrain | 27.00 (24.00-30.00) | 221 (50 %) | 256 (256-257) |  |'
# ONNX Runtime: round 3 failed; median of 20 and 25 = 22.5 (184.1 GFLOP/s, 42 %); 27 / 22.5 = 1.20,
# 256 / 320 = 0.80; rounds 1 and 2: 30 / 20 = 1.50 and 24 / 25 = 0.96, median 1.23
echo "$out" | grep -qxF '| ResNet-50 inference 224, batch 1 | onnxruntime | 22.50 (20.00-25.00) | 184 (42 %) | 320 (320-320) | 1.20x, 0.80x; by round 1.23x (0.96-1.50) |'
[ "$(echo "$out" | wc -l)" = 4 ] # header, rule, two rows: no table for benchmarks without results
