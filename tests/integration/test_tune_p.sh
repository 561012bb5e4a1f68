#!/usr/bin/env bash
# test_tune_p.sh: `multigrain tune-p` on a tiny generated val/ split (12 smooth-pattern 80x80 PNGs at --size 64, i.e. 2x2 final maps where GeM depends on p, random-
# weight MultiGrain-style ResNet-18 converted from PyTorch): it must score every p of --p-list in
# order, pick the argmax of the printed mAP values (first on ties), and write a checkpoint whose
# pool.p tensor and `p` metadata are p* with every other tensor unchanged (read with numpy). The
# printed mAP of p* is cross-checked against `retrieval-eval --dataset copies` of the written
# checkpoint with the same queries (same seed, sizes): the same copy protocol must give the same value.
set -u
fail() { echo "FAIL: $*" >&2; exit 1; }
bin=${MG_BIN:?}; py=${MG_PYTHON:-/usr/bin/python3}
"$py" -c "import torch, torchvision, PIL" 2>/dev/null || { echo "SKIPPED: no torch"; exit 77; }
tmp=$(mktemp -d "${MG_TEST_TMP:-/tmp}/tunep.XXXXXX"); trap 'rm -rf "$tmp"' EXIT

"$py" - "$tmp" <<'PY' || fail "generator"
import os, sys
import numpy as np, torch, torchvision
from PIL import Image
d = sys.argv[1]
torch.manual_seed(4)
net = torchvision.models.resnet18(num_classes=3)
sd = {"features." + k: v for k, v in net.state_dict().items() if not k.startswith("fc.")}
sd["pool.p"] = torch.tensor(3.0)
sd["classifier.weight"] = net.fc.weight.detach().clone(); sd["classifier.bias"] = net.fc.bias.detach().clone()
torch.save({"model_state": sd}, os.path.join(d, "mg.pth"))
rng = np.random.default_rng(5)
for i in range(12):
    yy, xx = np.mgrid[0:80, 0:80] / 80.0
    f = rng.uniform(0.5, 4, size=(3, 2)); ph = rng.uniform(0, 6.3, size=3)
    a = np.stack([128 + 110 * np.sin(2 * np.pi * (f[c, 0] * xx + f[c, 1] * yy) + ph[c]) for c in range(3)], -1)
    os.makedirs(os.path.join(d, "val", f"c{i % 3}"), exist_ok=True)
    Image.fromarray(a.astype(np.uint8)).save(os.path.join(d, "val", f"c{i % 3}", f"im{i}.png"))
PY
"$bin" convert --from "$tmp/mg.pth" --to "$tmp/mg.safetensors" >"$tmp/conv.log" 2>&1 || { cat "$tmp/conv.log"; fail "convert"; }
opts=(--size 64 --queries 12 --database 12 --scale-min 0.3 --seed 9 --copies 2)
"$bin" tune-p -c "$tmp/mg.safetensors" --root "$tmp" "${opts[@]}" --p-list 1,2.5,4,6 --out "$tmp/best.safetensors" \
  >"$tmp/out.txt" 2>"$tmp/err.txt" || { cat "$tmp/err.txt"; fail "tune-p"; }
"$bin" retrieval-eval -c "$tmp/best.safetensors" --dataset copies --root "$tmp" "${opts[@]}" >"$tmp/re.txt" 2>/dev/null \
  || fail "retrieval-eval copies of the written checkpoint"

"$py" - "$tmp" <<'PY' || { cat "$tmp/out.txt"; fail "comparison"; }
import os, sys, re, json, struct
import numpy as np
d = sys.argv[1]
out = open(os.path.join(d, "out.txt")).read()
rows = [(float(p), float(m)) for p, m in re.findall(r"^p ([0-9.]+): mAP ([0-9.]+) recall@1", out, re.M)]
assert [p for p, _ in rows] == [1, 2.5, 4, 6], rows
best = float(re.search(r"^best: p\* = ([0-9.]+) \(mAP ([0-9.]+)\)", out, re.M).group(1))
maps = [m for _, m in rows]
assert len(set(maps)) > 1, ("degenerate: p changes nothing", rows)
assert best == rows[int(np.argmax(maps))][0], (best, rows)  # argmax of printed values, first on ties
def load(path):
    raw = open(path, "rb").read(); n = struct.unpack("<Q", raw[:8])[0]; h = json.loads(raw[8:8 + n])
    t = {k: raw[8 + n + v["data_offsets"][0]: 8 + n + v["data_offsets"][1]] for k, v in h.items() if k != "__metadata__"}
    return h["__metadata__"], t
m0, t0 = load(os.path.join(d, "mg.safetensors")); m1, t1 = load(os.path.join(d, "best.safetensors"))
assert np.frombuffer(t1["pool.p"], "<f4")[0] == np.float32(best), np.frombuffer(t1["pool.p"], "<f4")
assert float(m1["p"]) == best, m1["p"]
assert set(t0) == set(t1) and all(t0[k] == t1[k] for k in t0 if k != "pool.p"), "other tensors changed"
# the same protocol on the written checkpoint: identical queries and network, so identical mAP
# (both printed; tune-p with 6 decimals, retrieval-eval in percent with 2)
re_map = float(re.search(r"mAP ([0-9.]+)%", open(os.path.join(d, "re.txt")).read()).group(1)) / 100
assert abs(re_map - max(maps)) < 0.5e-4 + 1e-9, (re_map, max(maps))
print("tune-p ok", rows, "p* =", best)
PY
"$bin" tune-p -c "$tmp/mg.safetensors" --root "$tmp" --p-list 1,banana 2>"$tmp/err" >/dev/null; [ $? -eq 2 ] || fail "bad --p-list exit"
grep -q -- "--p-list" "$tmp/err" || fail "bad --p-list message: $(cat "$tmp/err")"
echo ok
