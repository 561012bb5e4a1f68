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
printf 'r50_infer_b1\tpytorch_nchw\t1\t12\t400000\n' >> "$dir/r.tsv"
printf 'r50_infer_b1\tpytorch_nchw\t2\t14\t400000\n' >> "$dir/r.tsv"
printf 'r50_infer_b1\tpytorch_cl\t1\t10\t400000\n' >> "$dir/r.tsv"
printf 'r50_infer_b1\tpytorch_cl\t2\t16\t400000\n' >> "$dir/r.tsv"
printf 'r50_infer_b1\tpytorch_cl\t3\t15\t400000\n' >> "$dir/r.tsv"
printf 'r50_train_b16\tmultigrain\t1\t8\t1310720\n' >> "$dir/r.tsv"
printf 'r50_train_b16\tpytorch_nchw\t1\t5\t2097152\n' >> "$dir/r.tsv"
out=$("$MG_PYTHON" "$MG_SOURCE_DIR/bench/e2e_table.py" "$dir/r.tsv" 442)
echo "$out"
# multigrain: median of 30, 24, 27; 27 x 8.18 GFLOP = 220.9 GFLOP/s, 50 % of 442; RSS 256, 256, 257 MiB
echo "$out" | grep -qxF '| ResNet-50 inference 224, batch 1 | multigrain | 27.00 (24.00-30.00) | 221 (50 %) | 256 (256-257) |  |'
# ONNX Runtime: round 3 failed; median of 20 and 25 = 22.5 (184.1 GFLOP/s, 42 %); 27 / 22.5 = 1.20,
# 256 / 320 = 0.80; rounds 1 and 2: 30 / 20 = 1.50 and 24 / 25 = 0.96, median 1.23
echo "$out" | grep -qxF '| ResNet-50 inference 224, batch 1 | onnxruntime | 22.50 (20.00-25.00) | 184 (42 %) | 320 (320-320) | 1.20x, 0.80x; by round 1.23x (0.96-1.50) |'
# table: header, rule, 4 rows at batch 1, 2 for training; a blank line; the goals: header, rule, 4
# rows (no goal rows for batch 8, which has no results)
[ "$(echo "$out" | wc -l)" = 15 ]
# PyTorch: NCHW median 13, channels_last median 15: the goal takes channels_last; 27 / 15 = 1.80,
# rounds 30 / 10 = 3.00, 24 / 16 = 1.50, 27 / 15 = 1.80
echo "$out" | grep -qxF '| inference batch 1 >= 2x PyTorch | pytorch_cl | 1.80x | 1.50-3.00 | not met |'
# ONNX Runtime 27 / 22.5 = 1.2 exactly: met
echo "$out" | grep -qxF '| inference batch 1 >= 1.2x ONNX Runtime | onnxruntime | 1.20x | 0.96-1.50 | met |'
# training 8 / 5 = 1.60 (one round: no range); RSS 1280 / 2048 MiB = 0.625 > 0.6
echo "$out" | grep -qxF '| training step >= 1.5x PyTorch | pytorch_nchw | 1.60x |  | met |'
echo "$out" | grep -qxF '| training peak RSS <= 0.6x PyTorch | pytorch_nchw | 0.62x |  | not met |'

