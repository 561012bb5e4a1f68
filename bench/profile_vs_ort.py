#!/usr/bin/python3
"""profile_vs_ort.py: ResNet-50 layer by layer, multigrain's fused network against ONNX Runtime, in one run.

Runs ONNX Runtime (bench/ort_profile.js, its profiler on) and then build/bench_infer with
MG_FNET_PROFILE=1 on the same machine, batch, input size and thread count, and prints per convolution
both contenders' milliseconds per run (ONNX Runtime: the median over the runs after two warm-ups; ours:
the mean over the runs after the first), their difference and our kernel, then the other ops and the
totals. Convolutions are matched by (output channels, kernel, input size, output size) in network
order: ONNX Runtime runs the downsampling 1x1 after a block's second layer, we run it first.

    /usr/bin/python3 bench/profile_vs_ort.py [--work /tmp/mgb] [--build build] [--threads 1]
                                              [--batch 1] [--size 224] [--reps 30]

--work is bench/run.sh's scratch folder (resnet50.onnx, and onnxruntime-node under ort/node_modules;
bench/run.sh --work DIR makes both). docs/PERFORMANCE.md ("The stem and its pooling in one pass") has
an example. A diagnostic: each contender's profiler adds a little time per op.
"""
import argparse
import collections
import glob
import json
import os
import re
import subprocess
import sys
import tempfile

CONV_RE = re.compile(r"\s*(\d+)\s+([\d.]+)\s+[\d.]+\s+[\d.]+\s+conv\s+(\d+)->(\d+) (\d+)x\d+/(\d+)(\+pool)? "
                     r"(\d+)x\d+->(\d+)x\d+\s+(.*)")
OTHER_RE = re.compile(r"\s*(\d+)\s+([\d.]+)\s+[\d.]+\s+[\d.]+\s+(\w+)\s+(.*)")


def ort_profile(args, tmp):
    model = os.path.join(args.work, "resnet50.onnx")
    modules = os.path.join(args.work, "ort", "node_modules")
    if not os.path.exists(model) or not os.path.isdir(os.path.join(modules, "onnxruntime-node")):
        sys.exit(f"profile_vs_ort.py: --work {args.work}: expected resnet50.onnx and ort/node_modules/onnxruntime-node "
                 "(bench/run.sh --work DIR makes them)")
    here = os.path.dirname(os.path.abspath(__file__))
    out = subprocess.run(["node", os.path.join(here, "ort_profile.js"), model, str(args.batch), str(args.size),
                          str(args.reps), str(args.threads), os.path.join(tmp, "ort")],
                         env=dict(os.environ, NODE_PATH=modules), capture_output=True, text=True)
    files = glob.glob(os.path.join(tmp, "ort*.json"))
    if out.returncode != 0 or not files:
        sys.exit(f"profile_vs_ort.py: ONNX Runtime's run failed: {out.stderr.strip()[-500:]}")
    events = json.load(open(files[0]))
    runs = collections.OrderedDict()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            runs.setdefault(e["name"], []).append(e)
    convs, other = collections.defaultdict(list), collections.OrderedDict()
    for name, evs in runs.items():
        durs = sorted(e["dur"] for e in evs[2:]) or [evs[-1]["dur"]]
        ms = durs[len(durs) // 2] / 1000.0
        a = evs[0]["args"]
        if a["op_name"] == "Conv":
            x, w = a["input_type_shape"][0]["float"], a["input_type_shape"][1]["float"]
            y = a["output_type_shape"][0]["float"]
            convs[(w[0], w[2], x[2], y[2])].append(ms)
        else:
            other[a["op_name"]] = other.get(a["op_name"], 0.0) + ms
    return convs, other


def ours_profile(args):
    exe = os.path.join(args.build, "bench_infer")
    if not os.access(exe, os.X_OK):
        sys.exit(f"profile_vs_ort.py: {exe} missing (cmake --build {args.build})")
    out = subprocess.run([exe, "--arch", "resnet50", "--batch", str(args.batch), "--size", str(args.size), "--reps",
                          str(args.reps), "--threads", str(args.threads)], env=dict(os.environ, MG_FNET_PROFILE="1"),
                         capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"profile_vs_ort.py: bench_infer failed: {out.stderr.strip()[-500:]}")
    return (out.stdout + out.stderr).splitlines()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", default="/tmp/multigrain_bench_e2e")
    ap.add_argument("--build", default="build")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--reps", type=int, default=30)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ort_convs, ort_other = ort_profile(args, tmp)
    lines = ours_profile(args)
    print(f"ResNet-50 batch {args.batch} at {args.size}, {args.threads} thread(s), {args.reps} runs; ms per run")
    print(f"{'op':>3} {'convolution':<28} {'ours':>7} {'ORT':>7} {'ours-ORT':>8}  our kernel")
    ours_total = ort_total = 0.0
    ours_other = collections.OrderedDict()
    for line in lines:
        m = CONV_RE.match(line)
        if not m:
            o = OTHER_RE.match(line)
            if o and o.group(3) in ("maxpool", "reorder"):
                ours_other[o.group(3)] = ours_other.get(o.group(3), 0.0) + float(o.group(2))
            elif "images/s" in line or "profile:" in line:
                print("#", line.strip())
            continue
        i, ms, ci, co, r, s, pool, h, oh, impl = m.groups()
        ms = float(ms)
        # a stem with its pooling: ONNX Runtime has the convolution and the pooling apart
        key = (int(co), int(r), int(h), (int(h) + 2 * (int(r) // 2) - int(r)) // int(s) + 1 if pool else int(oh))
        ort = ort_convs[key].pop(0) if ort_convs.get(key) else float("nan")
        if pool:
            ort += ort_other.pop("MaxPool", 0.0)
        ours_total += ms
        ort_total += ort if ort == ort else 0.0
        shape = f"{ci}->{co} {r}x{r}/{s}{' +pool' if pool else ''} {h}"
        print(f"{i:>3} {shape:<28} {ms:7.3f} {ort:7.3f} {ms - ort:+8.3f}  {impl.strip()}")
    for k, v in ours_other.items():
        ours_total += v
        ort_v = ort_other.pop("MaxPool", float("nan")) if k == "maxpool" else float("nan")
        ort_total += ort_v if ort_v == ort_v else 0.0
        print(f"{'':>3} {k:<28} {v:7.3f} {ort_v:7.3f}")
    print(f"{'':>3} {'convolutions and pooling':<28} {ours_total:7.3f} {ort_total:7.3f}   ORT / ours "
          f"{ort_total / ours_total:.3f}")
    # the head (GeM, classifier, L2 norm) runs outside our fused network's profile
    print(f"{'':>3} {'ORT head (' + ', '.join(ort_other) + ')':<28} {'':>7} {sum(ort_other.values()):7.3f}")


if __name__ == "__main__":
    main()
