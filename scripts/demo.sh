#!/usr/bin/env bash
# demo.sh: the main job on the embedded default dataset, Fashion-MNIST from Debian's
# dataset-fashion-mnist: train a MultiGrain ResNet-18 (p = 3, lambda = 0.5, m = 3) at 32x32 on the
# CPU cores, evaluate top-1 on the 10k test images, evaluate instance retrieval (strongly augmented
# test images as queries against the originals), write the HTML report, and print a summary.
# Usage: scripts/demo.sh [PATH/TO/multigrain] [OUT_DIR]   (defaults: build/multigrain, build/demo)
set -euo pipefail
bin=${1:-build/multigrain}
out=${2:-build/demo}
src=/usr/share/datasets/fashion-mnist
start=$(date +%s)
[ -x "$bin" ] || { echo "demo: $bin not found: run 'make' first" >&2; exit 1; }
[ -f "$src/train-images-idx3-ubyte.gz" ] || { echo "demo: $src is missing: apt-get install dataset-fashion-mnist" >&2; exit 1; }

data="$out/data"
mkdir -p "$data"
for split in train t10k; do
  for kind in images labels; do
    f="$data/$split-$kind-idx$([ $kind = images ] && echo 3 || echo 1)-ubyte"
    [ -s "$f" ] || { zcat "$src/$(basename "$f").gz" > "$f.tmp" && mv "$f.tmp" "$f"; }
  done
done
echo "demo: Fashion-MNIST (60000 train / 10000 test images) in $data"

run="$out/run"
rm -rf "$run"
echo "demo: training a MultiGrain ResNet-18 (configs/demo_fashion_mnist.yaml) into $run"
"$bin" train -c "$(dirname "$0")/../configs/demo_fashion_mnist.yaml" --data "$data" --out "$run"
ckpt=$(ls "$run"/checkpoints/*.safetensors | tail -n1)

echo "demo: evaluating classification on the 10000 test images"
"$bin" eval -c "$ckpt" -d "$data" --size 32 --crop-pct 1 --batch-size 100 --json "$out/eval.json" | tee "$out/eval.txt"
echo "demo: evaluating retrieval: 2000 strongly augmented test images against the 10000 originals"
"$bin" retrieval-eval -c "$ckpt" --dataset copies --root "$data" --size 32 --queries 2000 --database 10000 \
  --scale-min 0.35 --save-embeddings "$out/embeddings.npy" | tee "$out/retrieval.txt"
"$bin" report "$run" --out "$out/report.html" >/dev/null

top1=$(grep -o '^top-1: [0-9.]*%' "$out/eval.txt" | head -n1)
map=$(grep -o 'mAP [0-9.]*%' "$out/retrieval.txt" | head -n1)
r1=$(grep -o 'recall@1 [0-9.]*%' "$out/retrieval.txt" | head -n1)
secs=$(( $(date +%s) - start ))
cat <<SUMMARY

==================== multigrain demo: summary ====================
dataset      Fashion-MNIST, 10 classes, 32x32, ResNet-18, GeM p=3, lambda=0.5, m=3
$top1
retrieval    $map, $r1 (2000 augmented queries vs 10000 originals)
checkpoint   $ckpt
embeddings   $out/embeddings.npy (10000 x 512, L2-normalised, test images in order)
report       $out/report.html
metrics      $run/metrics.jsonl
time         ${secs} s
==================================================================
SUMMARY
