#!/usr/bin/env bash
# run_data.sh: data-pipeline benchmark: multigrain's bench_data against torchvision + PIL on the same
# real JPEG photos in one run, alternating contenders, one thread each; prints images/s (wall and
# CPU) and the ratio. Photos: Debian's ukui-wallpapers package (installed here if missing and we
# are root), cut into 4:3 crops and resized to ImageNet-like 500x375 JPEG (quality 90).
# Usage: bench/run_data.sh [BUILD_DIR] [SECONDS_PER_ROUND] [ROUNDS] [MODE] [SIZE]
#   MODE train|torch|eval; SIZE 500x375 (default, ImageNet-like) or full (the wallpapers' own size,
#   one JPEG per wallpaper: shows the DCT-domain downscaling); DCT=0 in the environment disables it.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}
secs=${2:-5}
rounds=${3:-3}
mode=${4:-train}
size=${5:-500x375}
py=${MG_PYTHON:-/usr/bin/python3}
bin=$build/bench_data
[ -x "$bin" ] || { echo "run_data.sh: $bin not built (cmake --build $build --target bench_data)" >&2; exit 1; }
src=/usr/share/backgrounds
if ! dpkg-query -W -f='${Status}' ukui-wallpapers 2>/dev/null | grep -q 'install ok installed'; then
  if [ "$(id -u)" -eq 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ukui-wallpapers >/dev/null
  else
    echo "run_data.sh: needs the Debian package ukui-wallpapers (apt-get install ukui-wallpapers)" >&2; exit 1
  fi
fi
imgs=${MG_BENCH_DATA_DIR:-${TMPDIR:-/tmp}/mg_bench_data}_$size
if [ ! -f "$imgs/.done" ]; then
  mkdir -p "$imgs"
  "$py" - "$src" "$imgs" "$size" <<'PY'
import os, sys
from PIL import Image
src, out, size = sys.argv[1], sys.argv[2], sys.argv[3]
files = sorted(f for f in os.listdir(src) if f.lower().endswith((".jpg", ".jpeg", ".png")))
k = 0
for f in files:
    with Image.open(os.path.join(src, f)) as im:
        im = im.convert("RGB")
        W, H = im.size
        if size == "full":
            im.save(os.path.join(out, "img%03d.jpg" % k), quality=90)
            k += 1
            continue
        # 8 different 4:3 windows per wallpaper (scales 1, 0.7, 0.5 at several positions)
        for s, fx, fy in ((1, .5, .5), (.7, 0, 0), (.7, 1, 1), (.7, 1, 0), (.5, .2, .7), (.5, .8, .3), (.5, .5, .5), (.4, .3, .3)):
            h = int(min(H, W * 3 / 4) * s); w = h * 4 // 3
            x = int((W - w) * fx); y = int((H - h) * fy)
            im.crop((x, y, x + w, y + h)).resize((500, 375), Image.BICUBIC).save(os.path.join(out, "img%03d.jpg" % k), quality=90)
            k += 1
print("run_data.sh: prepared %d JPEGs (%s, q90) from %d files of %s" % (k, size, len(files), src))
PY
  touch "$imgs/.done"
fi
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
mg_sum=0; tv_sum=0
for r in $(seq 1 "$rounds"); do
  dct_flag=""; [ "${DCT:-1}" = 0 ] && dct_flag=--no-dct
  a=$(OMP_NUM_THREADS=1 "$bin" "$imgs" --seconds "$secs" --mode "$mode" $dct_flag); echo "round $r: $a"
  b=$(OMP_NUM_THREADS=1 "$py" "$here/bench/data_torchvision.py" "$imgs" --seconds "$secs" --mode "$mode"); echo "round $r: $b"
  mg_sum=$(awk -v s="$mg_sum" -v l="$a" 'BEGIN{split(l,f," "); for(i in f) if (f[i] ~ /^cpu_img_s=/) {sub("cpu_img_s=","",f[i]); print s+f[i]}}')
  tv_sum=$(awk -v s="$tv_sum" -v l="$b" 'BEGIN{split(l,f," "); for(i in f) if (f[i] ~ /^cpu_img_s=/) {sub("cpu_img_s=","",f[i]); print s+f[i]}}')
done
awk -v m="$mg_sum" -v t="$tv_sum" -v r="$rounds" -v mode="$mode" 'BEGIN{printf "mode=%s mean images per CPU-second: multigrain %.1f, torchvision %.1f, ratio %.2fx\n", mode, m/r, t/r, m/t}'
