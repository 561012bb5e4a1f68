#!/usr/bin/env bash
# test_cli_report.sh: `multigrain report` on a synthetic metrics.jsonl: writes an offline HTML page
# with one well-formed inline SVG per plot and nothing external; usage errors exit 2.
set -u
: "${MG_BIN:?}" "${MG_TEST_TMP:?}"
PY=${MG_PYTHON:-/usr/bin/python3}
T="$MG_TEST_TMP/cli_report"
rm -rf "$T" && mkdir -p "$T/run"
"$PY" - "$T/run/metrics.jsonl" <<'PYEOF'
import json, math, sys
with open(sys.argv[1], "w") as f:
    for i in range(300):
        f.write(json.dumps({"kind": "step", "epoch": 1 + i // 100, "step": i, "loss": 7 * math.exp(-i / 80),
                            "lr": 0.2 if i < 200 else 0.02, "images_per_s": 500 + i % 5}) + "\n")
    for e in range(3):
        f.write(json.dumps({"kind": "epoch", "epoch": e + 1, "step": 100 * e + 99, "loss": 3 - e}) + "\n")
        f.write(json.dumps({"kind": "eval", "epoch": e + 1, "step": 100 * e + 99, "top1": 0.1 * e, "top5": 0.3 * e}) + "\n")
PYEOF
"$MG_BIN" report "$T/run" --out "$T/page.html" || { echo "FAIL: report exited $?"; exit 1; }
"$PY" - "$T/page.html" <<'PYEOF' || exit 1
import re, sys
import xml.etree.ElementTree as ET
html = open(sys.argv[1]).read()
svgs = re.findall(r"<svg.*?</svg>", html, re.S)
# loss, epoch loss, lr, accuracy, images/s
assert len(svgs) == 5, "expected 5 plots, found %d" % len(svgs)
for s in svgs:
    root = ET.fromstring(s)  # each plot is well-formed SVG
    assert root.findall(".//{http://www.w3.org/2000/svg}polyline"), "a plot without a line"
assert "<script" not in html and "src=" not in html and "href=" not in html, "page refers to something external"
assert re.sub(r'xmlns="http://www.w3.org/2000/svg"', "", html).find("http") < 0, "page has a URL"
for title in ("Training loss", "Learning rate", "Validation accuracy", "Throughput"):
    assert title in html, title
print("ok: %d plots" % len(svgs))
PYEOF
# default output path
"$MG_BIN" report "$T/run" 2>/dev/null && [ -f "$T/run/report.html" ] || { echo "FAIL: no RUN_DIR/report.html"; exit 1; }
"$MG_BIN" report 2>/dev/null; rc=$?
[ "$rc" -eq 2 ] || { echo "FAIL: report without RUN_DIR exited $rc, expected 2"; exit 1; }
"$MG_BIN" report "$T/missing" 2>"$T/err"; rc=$?
[ "$rc" -eq 1 ] && grep -q "missing" "$T/err" || { echo "FAIL: report of a missing folder exited $rc"; exit 1; }
echo ok
