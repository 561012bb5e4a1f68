#!/usr/bin/env bash
# test_data_bench.sh: the data benchmark programs run end to end on a few generated JPEGs (a smoke
# test of bench/bench_data and bench/data_torchvision.py, a fraction of a second each).
set -euo pipefail
bench=$MG_BUILD_DIR/bench_data
[ -x "$bench" ] || { echo "bench_data not built"; exit 77; }
"$MG_PYTHON" -c 'import torchvision, PIL' 2>/dev/null || { echo "no torchvision"; exit 77; }
dir=$MG_TEST_TMP/data_bench_$$
trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir/imgs" "$dir/tree/cls_a" "$dir/tree/cls_b"
"$MG_PYTHON" - "$dir" <<'PY'
import sys, numpy as np
from PIL import Image
d = sys.argv[1]
rng = np.random.default_rng(0)
for i in range(4):
    a = rng.integers(0, 256, size=(375, 500, 3), dtype=np.uint8)
    Image.fromarray(a).save("%s/imgs/i%d.jpg" % (d, i), quality=90)
for c in ("cls_a", "cls_b"):
    for i in range(3):
        open("%s/tree/%s/%d.JPEG" % (d, c, i), "w").close()
PY
out=$("$bench" "$dir/imgs" --seconds 0.2)
echo "$out"
echo "$out" | grep -Eq '^multigrain mode=train dct=1 files=4 images=[1-9][0-9]* wall_img_s=[0-9.]+ cpu_img_s=[0-9.]+$'
out=$("$bench" "$dir/imgs" --seconds 0.2 --mode eval --loader 2)
echo "$out"
echo "$out" | grep -q 'multigrain loader threads=2 mode=eval'
out=$("$bench" --scan "$dir/tree")
echo "$out"
[ "$(echo "$out" | grep -c '6 files, 2 classes')" -eq 3 ]
out=$("$MG_PYTHON" "$MG_SOURCE_DIR/bench/data_torchvision.py" "$dir/imgs" --seconds 0.2)
echo "$out"
echo "$out" | grep -q '^torchvision mode=train files=4'
