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
print("| benchmark | contender | images/s median (min-max) | GFLOP/s (% peak) | peak RSS MiB median (min-max) | multigrain / peer (speed, RSS) |")
print("|---|---|---|---|---|---|")
for b in names:
    who = []
    for r in rows:
        if r[0] == b and r[1] not in who:
            who.append(r[1])
    med = {}
    for w in who:
        ips = [float(r[3]) for r in rows if r[0] == b and r[1] == w and r[3]]
        rss = [float(r[4]) / 1024 for r in rows if r[0] == b and r[1] == w and r[4]]
        if not ips:
            continue
        med[w] = (statistics.median(ips), statistics.median(rss))
        g = med[w][0] * gflop[b]
        ratio = ""
        if w != "multigrain" and "multigrain" in med:
            ratio = "%.2fx, %.2fx" % (med["multigrain"][0] / med[w][0], med["multigrain"][1] / med[w][1])
            if "multigrain_sleep" in med and w != "multigrain_sleep":
                ratio += "; sleep %.2fx" % (med["multigrain_sleep"][0] / med[w][0])
            # paired: the speed ratio within each round (the contenders ran minutes apart at most),
            # which a slow drift of the machine's speed over the run does not move
            by_round = lambda c: {r[2]: float(r[3]) for r in rows if r[0] == b and r[1] == c and r[3]}
            mg, peer = by_round("multigrain"), by_round(w)
            pr = [mg[k] / peer[k] for k in mg if k in peer and peer[k] > 0]
            if len(pr) > 1:
                ratio += "; by round %.2fx (%.2f-%.2f)" % (statistics.median(pr), min(pr), max(pr))
        print("| %s | %s | %.2f (%.2f-%.2f) | %.0f (%.0f %%) | %.0f (%.0f-%.0f) | %s |" % (
            names[b], w, med[w][0], min(ips), max(ips), g, 100 * g / peak if peak else 0,
            med[w][1], min(rss), max(rss), ratio))
