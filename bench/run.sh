#!/usr/bin/env bash
# bench/run.sh: end-to-end comparison of multigrain with PyTorch and ONNX Runtime (issue 9).
# In one run, alternating the contenders round by round, on the same machine and thread count:
#   1. ResNet-50 inference 224x224, batch 1 and 8: multigrain (build/bench_infer) vs PyTorch
#      (eval, no_grad; channels_last as the issue asks, and plain NCHW) vs ONNX Runtime (onnxruntime-node)
#   2. ResNet-50 MultiGrain training step, batch 16, 224x224: bench_train_step vs bench/train_step_torch.py
#   3. ResNet-18 training step, batch 96, 64x64: same programs
#   4. embedding extraction, rect mode, max side 500, batch 1, generated 500x375 JPEGs: multigrain embed
#      (whole command: checkpoint load + decode + forward) vs PyTorch (PIL + forward, loop only)
# Prints median and min-max images/s and peak RSS (/usr/bin/time) per contender, the ratio
# multigrain / peer of the medians (and, "by round", the median and range of the ratios within each
# round), and achieved GFLOP/s as a fraction of the measured FMA peak.
#
# Usage: bench/run.sh [--build DIR] [--rounds N] [--threads N] [--work DIR] [--full] [--sleep] [--isa avx2]
#   --rounds N  repetitions of every measurement (default 3; ~6 min on 2 cores); --full: 5 rounds,
#               more timed iterations per process, and PyTorch channels_last at batch 8 too (slow)
#   --work DIR  scratch folder (default /tmp/multigrain_bench_e2e): onnxruntime-node is npm-installed
#               there, and the ONNX model, .pth, checkpoint and JPEGs are generated there
#   --sleep     also run multigrain's inference with OMP_WAIT_POLICY=PASSIVE (contender
#               multigrain_sleep): idle OpenMP threads sleep at once instead of spinning briefly
#               (GOMP_SPINCOUNT=10000, what inference programs set: runtime.h, docs/PERFORMANCE.md)
#   --isa avx2  an AVX2 machine on an AVX-512 one: ONEDNN_MAX_CPU_ISA=AVX2 for multigrain's and
#               PyTorch's oneDNN, OPENBLAS_CORETYPE=Haswell for both OpenBLAS; ONNX Runtime cannot be
#               capped (its MLAS picks the CPU's widest ISA itself), so its numbers stay AVX-512 ones
# Needs /usr/bin/python3 with torch + torchvision (Debian python3-torch), node + npm, /usr/bin/time;
# it installs the missing ones first (scripts/install-deps.sh --bench: root or sudo, apt-get).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
build="$here/../build"
rounds=3
threads=2
work=/tmp/multigrain_bench_e2e
full=0
sleep=
isa=
while [ $# -gt 0 ]; do
    case "$1" in
        --build) build="$2"; shift 2 ;;
        --rounds) rounds="$2"; shift 2 ;;
        --threads) threads="$2"; shift 2 ;;
        --work) work="$2"; shift 2 ;;
        --full) full=1; rounds=5; shift ;;
        --sleep) sleep=1; shift ;;
        --isa) isa="$2"; shift 2 ;;
        -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
        *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
build="$(cd "$build" && pwd)"
case "$isa" in
    "") ;;
    avx2) export ONEDNN_MAX_CPU_ISA=AVX2 DNNL_MAX_CPU_ISA=AVX2 OPENBLAS_CORETYPE=Haswell ;;
    *) echo "run.sh: --isa: expected avx2, found '$isa'" >&2; exit 2 ;;
esac
py=/usr/bin/python3
for p in bench_infer bench_train_step bench_ops multigrain; do
    [ -x "$build/$p" ] || { echo "run.sh: $build/$p missing (cmake --build $build)" >&2; exit 1; }
done
# the packages it needs (PyTorch, GNU time, node + npm): installs only what is missing, or stops
# naming what it cannot install
"$here/../scripts/install-deps.sh" --bench
# installed is not importable: another python3 first on PATH does not matter ($py is Debian's)
"$py" -c 'import torch, torchvision' 2>/dev/null ||
    { echo "run.sh: $py cannot import torch and torchvision (Debian python3-torch python3-torchvision)" >&2; exit 1; }
mkdir -p "$work"
if [ ! -d "$work/ort/node_modules/onnxruntime-node" ]; then
    echo "run.sh: npm install onnxruntime-node into $work/ort" >&2
    mkdir -p "$work/ort"
    (cd "$work/ort" && { [ -f package.json ] || echo '{"name":"mg-bench-ort","version":"1.0.0","private":true}' > package.json; } &&
        ONNXRUNTIME_NODE_INSTALL_CUDA=skip npm install --no-audit --no-fund onnxruntime-node >/dev/null)
fi
if [ ! -f "$work/resnet50.safetensors" ] || [ ! -f "$work/resnet50.onnx" ]; then
    echo "run.sh: exporting models and writing JPEGs into $work" >&2
    "$py" "$here/e2e_torch.py" prepare "$work" >/dev/null 2>&1
    "$build/multigrain" --quiet convert --from "$work/resnet50.pth" --to "$work/resnet50.safetensors" --p 3 >/dev/null
fi
nimg=$(ls "$work/images" | grep -c '\.jpg$')

# batch 1: 20 timed forwards also by default (8 before 2026-11-29 21:40 UTC): at ~33 ms each, one
# hiccup of this VM (a 55 ms forward) moved an 8-forward mean by 7 %
if [ "$full" = 1 ]; then r1=20; r8=6; rt=5; r18=5; else r1=20; r8=3; rt=2; r18=3; fi
export OMP_NUM_THREADS="$threads" MG_BENCH_THREADS="$threads"
res="$work/results.tsv"
: > "$res"
log="$work/run.log"
: > "$log"

# measure BENCH CONTENDER ROUND -- command...: appends "bench contender round images/s rss_kb" to $res
measure() {
    local bench="$1" who="$2" round="$3"; shift 4
    local out ips rss t0 t1
    t0=$(date +%s.%N)
    out=$(/usr/bin/time -f "RSS_KB %M" "$@" 2>&1) || { echo "run.sh: $bench/$who failed:" >&2; echo "$out" >&2; return 0; }
    t1=$(date +%s.%N)
    echo "== $bench $who round $round: $*" >> "$log"
    echo "$out" >> "$log"
    rss=$(echo "$out" | sed -n 's/^RSS_KB \([0-9]*\).*/\1/p' | tail -1)
    ips=$(echo "$out" | sed -n 's/.*images_per_s=\([0-9.]*\).*/\1/p; s/.* \([0-9.]*\) images\/s.*/\1/p' | tail -1)
    if [ "$bench" = embed ] && [ "$who" = multigrain ]; then
        ips=$(awk -v n="$nimg" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", n / (b - a) }')
    fi
    printf '%s\t%s\t%s\t%s\t%s\n' "$bench" "$who" "$round" "$ips" "$rss" >> "$res"
    printf '  %-16s %-22s round %s: %8s images/s, peak RSS %6.0f MiB\n' "$bench" "$who" "$round" "$ips" \
        "$(awk -v k="$rss" 'BEGIN { print k / 1024 }')" >&2
}

# the FMA peak: the best of 3 measurements (a single one was sometimes 40 % low on this VM)
peak=$(for i in 1 2 3; do "$build/bench_ops" --threads "$threads" --layers zzz-none 2>&1 |
    sed -n 's/.*measured FMA peak \([0-9.]*\) GFLOP.*/\1/p' | head -1; done | sort -g | tail -1)
ortv=$(sed -n 's/.*"version": *"\([^"]*\)".*/\1/p' "$work/ort/node_modules/onnxruntime-node/package.json" | head -1)
torchv=$("$py" -c 'import torch, torchvision; print(torch.__version__, torchvision.__version__)' 2>/dev/null)
. "$here/busy.sh" # busy_share, busy_warn: is another process keeping the machine busy?
busy0=$(busy_share)
busy_warn "$busy0" before
start=$(date -u '+%Y-%m-%d %H:%M:%S UTC')
load0=$(cut -d' ' -f1-3 /proc/loadavg)
T0=$(date +%s)
for r in $(seq 1 "$rounds"); do
    echo "run.sh: round $r of $rounds" >&2
    measure r50_infer_b1 multigrain "$r" -- "$build/bench_infer" --arch resnet50 --batch 1 --size 224 --reps $r1 --threads "$threads"
    if [ -n "$sleep" ]; then
        measure r50_infer_b1 multigrain_sleep "$r" -- env OMP_WAIT_POLICY=PASSIVE "$build/bench_infer" --arch resnet50 --batch 1 --size 224 --reps $r1 --threads "$threads"
    fi
    measure r50_infer_b1 pytorch_nchw "$r" -- "$py" "$here/e2e_torch.py" infer resnet50 1 224 $r1 nchw
    measure r50_infer_b1 pytorch_cl "$r" -- "$py" "$here/e2e_torch.py" infer resnet50 1 224 2 cl
    measure r50_infer_b1 onnxruntime "$r" -- env NODE_PATH="$work/ort/node_modules" node "$here/infer_ort.js" "$work/resnet50.onnx" 1 224 $r1 "$threads"
    measure r50_infer_b8 multigrain "$r" -- "$build/bench_infer" --arch resnet50 --batch 8 --size 224 --reps $r8 --threads "$threads"
    if [ -n "$sleep" ]; then
        measure r50_infer_b8 multigrain_sleep "$r" -- env OMP_WAIT_POLICY=PASSIVE "$build/bench_infer" --arch resnet50 --batch 8 --size 224 --reps $r8 --threads "$threads"
    fi
    measure r50_infer_b8 pytorch_nchw "$r" -- "$py" "$here/e2e_torch.py" infer resnet50 8 224 $r8 nchw
    if [ "$full" = 1 ]; then
        measure r50_infer_b8 pytorch_cl "$r" -- "$py" "$here/e2e_torch.py" infer resnet50 8 224 1 cl
    fi
    measure r50_infer_b8 onnxruntime "$r" -- env NODE_PATH="$work/ort/node_modules" node "$here/infer_ort.js" "$work/resnet50.onnx" 8 224 $r8 "$threads"
    measure r50_train_b16 multigrain "$r" -- "$build/bench_train_step" --arch resnet50 --batch 16 --size 224 --steps $rt --threads "$threads"
    measure r50_train_b16 pytorch_nchw "$r" -- "$py" "$here/train_step_torch.py" --arch resnet50 --batch 16 --size 224 --steps $rt
    measure r18_train_64 multigrain "$r" -- "$build/bench_train_step" --arch resnet18 --batch 96 --size 64 --steps $r18 --threads "$threads"
    measure r18_train_64 pytorch_nchw "$r" -- "$py" "$here/train_step_torch.py" --arch resnet18 --batch 96 --size 64 --steps $r18
    measure embed multigrain "$r" -- "$build/multigrain" --quiet embed -c "$work/resnet50.safetensors" -i "$work/images" \
        -o "$work/emb.npy" --mode rect --max-side 500 -j "$threads"
    measure embed pytorch_nchw "$r" -- "$py" "$here/e2e_torch.py" embed "$work/images" 500 nchw
done
T1=$(date +%s)
busy1=$(busy_share)
busy_warn "$busy1" after
echo
echo "bench/run.sh, $start, $rounds rounds, $threads threads, $(( T1 - T0 )) s; load average before $load0, after $(cut -d' ' -f1-3 /proc/loadavg); busy without us (2 s, all cores) before $busy0 %, after $busy1 %"
echo "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); torch/torchvision $torchv; onnxruntime-node $ortv; FMA peak ($threads threads, bench_ops) ${peak:-?} GFLOP/s"
[ -n "$isa" ] && echo "ISA cap: $isa for multigrain and PyTorch (ONEDNN_MAX_CPU_ISA, OPENBLAS_CORETYPE); ONNX Runtime uncapped"
echo
"$py" "$here/e2e_table.py" "$res" "${peak:-0}"
echo
echo "raw results: $res; program output: $log"
