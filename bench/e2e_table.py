#!/usr/bin/env python3
"""e2e_table.py: the table of bench/run.sh from its raw results.

  e2e_table.py RESULTS.tsv PEAK_GFLOPS

RESULTS.tsv has one line per measurement: benchmark, contender, round, images/s, peak RSS in KiB
(tab-separated; an empty images/s or RSS field is a failed run and is left out). Prints a Markdown
table: per benchmark and contender the median and min-max images/s, the GFLOP/s that gives
(2 x multiply-adds per image, a training step counted as 3 x forward) and its fraction of
PEAK_GFLOPS (0: not measured), the median and min-max peak RSS, and for every peer the ratios
multigrain / peer of the medians (speed, RSS), of multigrain_sleep's median when that contender
ran, and "by round": the median and range of the speed ratios within each round.
Then, for the benchmarks that ran, issue 9's goals against these ratios: inference at batch 1 and
8 >= 2x PyTorch (its faster contender, NCHW or channels_last, by median) and >= 1.2x ONNX Runtime;
the training step >= 1.5x PyTorch at <= 0.6x its peak RSS. A goal is "met" when the ratio of the
medians reaches it; the by-round range shows how far single rounds strayed.
"""
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
peak = float(sys.argv[2])
# forward GFLOP per image (2 x multiply-adds); a training step counts 3x forward
gflop = {"r50_infer_b1": 8.18, "r50_infer_b8": 8.18, "r50_train_b16": 3 * 8.18,
         "r18_train_64": 3 * 3.64 * (64 / 224) ** 2, "embed": 8.18 * 500 * 375 / 224 ** 2}
names = {"r50_infer_b1": "ResNet-50 inference 224, batch 1", "r50_infer_b8": "ResNet-50 inference 224, batch 8",
         "r50_train_b16": "ResNet-50 train step 224, batch 16", "r18_train_64": "ResNet-18 train step 64, batch 96",
         "embed": "embed rect max side 500, batch 1"}


def speeds(b, w):
    return [float(r[3]) for r in rows if r[0] == b and r[1] == w and r[3]]


def rsses(b, w):
    return [float(r[4]) / 1024 for r in rows if r[0] == b and r[1] == w and r[4]]


def round_ratios(b, w):
    """multigrain / w within each round both ran in (the contenders ran minutes apart at most), which
    a slow drift of the machine's speed over the run does not move"""
    mg = {r[2]: float(r[3]) for r in rows if r[0] == b and r[1] == "multigrain" and r[3]}
    peer = {r[2]: float(r[3]) for r in rows if r[0] == b and r[1] == w and r[3]}
    return [mg[k] / peer[k] for k in mg if k in peer and peer[k] > 0]


print("| benchmark | contender | images/s median (min-max) | GFLOP/s (% peak) | peak RSS MiB median (min-max) | multigrain / peer (speed, RSS) |")
print("|---|---|---|---|---|---|")
for b in names:
    who = []
    for r in rows:
        if r[0] == b and r[1] not in who:
            who.append(r[1])
    med = {}
    for w in who:
        ips, rss = speeds(b, w), rsses(b, w)
        if not ips:
            continue
        med[w] = (statistics.median(ips), statistics.median(rss))
        g = med[w][0] * gflop[b]
        ratio = ""
        if w != "multigrain" and "multigrain" in med:
            ratio = "%.2fx, %.2fx" % (med["multigrain"][0] / med[w][0], med["multigrain"][1] / med[w][1])
            if "multigrain_sleep" in med and w != "multigrain_sleep":
                ratio += "; sleep %.2fx" % (med["multigrain_sleep"][0] / med[w][0])
            pr = round_ratios(b, w)
            if len(pr) > 1:
                ratio += "; by round %.2fx (%.2f-%.2f)" % (statistics.median(pr), min(pr), max(pr))
        print("| %s | %s | %.2f (%.2f-%.2f) | %.0f (%.0f %%) | %.0f (%.0f-%.0f) | %s |" % (
            names[b], w, med[w][0], min(ips), max(ips), g, 100 * g / peak if peak else 0,
            med[w][1], min(rss), max(rss), ratio))

# issue 9's goals: (benchmark, peer contenders (the fastest by median is taken), what, target, label)
goals = [("r50_infer_b1", ["pytorch_nchw", "pytorch_cl"], "speed", 2.0, "inference batch 1 >= 2x PyTorch"),
         ("r50_infer_b1", ["onnxruntime"], "speed", 1.2, "inference batch 1 >= 1.2x ONNX Runtime"),
         ("r50_infer_b8", ["pytorch_nchw", "pytorch_cl"], "speed", 2.0, "inference batch 8 >= 2x PyTorch"),
         ("r50_infer_b8", ["onnxruntime"], "speed", 1.2, "inference batch 8 >= 1.2x ONNX Runtime"),
         ("r50_train_b16", ["pytorch_nchw"], "speed", 1.5, "training step >= 1.5x PyTorch"),
         ("r50_train_b16", ["pytorch_nchw"], "rss", 0.6, "training peak RSS <= 0.6x PyTorch")]
lines = []
for b, peers, what, target, label in goals:
    mg = speeds(b, "multigrain") if what == "speed" else rsses(b, "multigrain")
    cand = [(statistics.median(speeds(b, w)), w) for w in peers if speeds(b, w)]
    if not mg or not cand:
        continue
    peer = max(cand)[1]
    if what == "speed":
        ratio = statistics.median(mg) / statistics.median(speeds(b, peer))
        ok = ratio >= target
        rr = round_ratios(b, peer)
        rounds = "%.2f-%.2f" % (min(rr), max(rr)) if len(rr) > 1 else ""
    else:
        pss = rsses(b, peer)
        if not pss:
            continue
        ratio = statistics.median(mg) / statistics.median(pss)
        ok = ratio <= target
        rounds = ""
    lines.append("| %s | %s | %.2fx | %s | %s |" % (label, peer, ratio, rounds, "met" if ok else "not met"))
if lines:
    print()
    print("| goal (issue 9) | peer | multigrain / peer (medians) | by round (min-max) | |")
    print("|---|---|---|---|---|")
    print("\n".join(lines))
