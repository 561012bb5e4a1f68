#!/usr/bin/env bash
# prepare-fashion-mnist.sh: turns Debian's dataset-fashion-mnist (gzip IDX files under
# /usr/share/datasets/fashion-mnist) into inputs multigrain reads directly:
#   OUT/idx/{train,t10k}-{images,labels}.idx   uncompressed IDX (mg_dataset_read_idx)
#   OUT/train/<k>_<name>/<i>.png, OUT/val/...   ImageNet folder layout (with --png; needs python3 + PIL)
# Class folders are prefixed with the label so that sorted order = Fashion-MNIST label order.
# Usage: scripts/prepare-fashion-mnist.sh OUT [--png] [--limit N]   (N images per split, default all)
set -euo pipefail
out=${1:?usage: prepare-fashion-mnist.sh OUT [--png] [--limit N]}
shift
png=0; limit=0
while [ $# -gt 0 ]; do
  case "$1" in
    --png) png=1 ;;
    --limit) limit=${2:?--limit needs a number}; shift ;;
    *) echo "prepare-fashion-mnist.sh: unknown option '$1'" >&2; exit 2 ;;
  esac
  shift
done
src=/usr/share/datasets/fashion-mnist
[ -f "$src/train-images-idx3-ubyte.gz" ] || { echo "prepare-fashion-mnist.sh: $src missing: apt-get install dataset-fashion-mnist" >&2; exit 1; }
mkdir -p "$out/idx"
for split in train t10k; do
  zcat "$src/$split-images-idx3-ubyte.gz" > "$out/idx/$split-images.idx"
  zcat "$src/$split-labels-idx1-ubyte.gz" > "$out/idx/$split-labels.idx"
done
echo "prepare-fashion-mnist: IDX files in $out/idx"
[ "$png" = 1 ] || exit 0
"${MG_PYTHON:-/usr/bin/python3}" - "$out" "$limit" <<'PY'
import os, sys
import numpy as np
from PIL import Image
out, limit = sys.argv[1], int(sys.argv[2])
names = ["0_tshirt_top", "1_trouser", "2_pullover", "3_dress", "4_coat", "5_sandal", "6_shirt", "7_sneaker", "8_bag", "9_ankle_boot"]
for split, folder in (("train", "train"), ("t10k", "val")):
    img = np.fromfile(os.path.join(out, "idx", split + "-images.idx"), dtype=np.uint8)[16:].reshape(-1, 28, 28)
    lab = np.fromfile(os.path.join(out, "idx", split + "-labels.idx"), dtype=np.uint8)[8:]
    n = len(lab) if limit <= 0 else min(limit, len(lab))
    for c in names:
        os.makedirs(os.path.join(out, folder, c), exist_ok=True)
    for i in range(n):
        Image.fromarray(img[i], "L").save(os.path.join(out, folder, names[lab[i]], "%05d.png" % i))
    print("prepare-fashion-mnist: %d PNGs in %s" % (n, os.path.join(out, folder)))
PY
