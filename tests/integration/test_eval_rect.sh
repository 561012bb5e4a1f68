#!/usr/bin/env bash
# test_eval_rect.sh: `multigrain eval --mode rect --max-side S` against PyTorch. A MultiGrain-style
# checkpoint (7 classes) is converted with `multigrain convert`; ROOT/val/<class>/ holds PNG images
# of different aspect ratios whose longest side is already S = 64 (the rect resize is then the
# identity, so both sides see the same pixels; the resampler is tested by test_embed_classify).
# Each image is put in the class folder of its r-th ranked PyTorch class (r = 0..6 cycling), so the
# expected top-1 / top-5 are known from PyTorch's logits; classes whose logit gap to a neighbour is
# under 1e-3 are avoided (float32 summation order differs by ~1e-5).
set -u
fail() { echo "FAIL: $*" >&2; exit 1; }
bin=${MG_BIN:?}; py=${MG_PYTHON:-/usr/bin/python3}
"$py" -c "import torch, torchvision" 2>/dev/null || { echo "SKIPPED: no torch"; exit 77; }
tmp=$(mktemp -d "${MG_TEST_TMP:-/tmp}/evalrect.XXXXXX"); trap 'rm -rf "$tmp"' EXIT

"$py" - "$tmp" <<'PY' || fail "generator"
import os, sys, json
import numpy as np, torch, torchvision
from PIL import Image
d = sys.argv[1]
torch.manual_seed(7)
K = 7
net = torchvision.models.resnet18(num_classes=K)
with torch.no_grad():
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.uniform_(0.5, 1.5); m.bias.uniform_(-0.2, 0.2)
            m.running_mean.uniform_(-0.1, 0.1); m.running_var.uniform_(0.5, 1.5)
    net.fc.weight.mul_(20.0)  # spread the logits so ranks are well separated
net.eval()
p = 3.0
sd = {"features." + k: v for k, v in net.state_dict().items() if not k.startswith("fc.")}
sd["pool.p"] = torch.tensor(p)
sd["classifier.weight"] = net.fc.weight.detach().clone()
sd["classifier.bias"] = net.fc.bias.detach().clone()
torch.save({"model_state": sd}, os.path.join(d, "mg.pth"), _use_new_zipfile_serialization=False)
mean = np.array([0.485, 0.456, 0.406]); std = np.array([0.229, 0.224, 0.225])
def logits(arr):
    x = (arr.astype(np.float64) / 255.0 - mean) / std
    x = torch.tensor(x.transpose(2, 0, 1)[None], dtype=torch.float32)
    with torch.no_grad():
        f = net.layer4(net.layer3(net.layer2(net.layer1(net.maxpool(net.relu(net.bn1(net.conv1(x))))))))
        e = f.clamp(min=1e-6).pow(p).mean(dim=(2, 3)).pow(1.0 / p)
        return net.fc(e)[0].numpy()
rng = np.random.default_rng(1)
shapes = [(64, 64), (40, 64), (64, 40), (48, 64), (64, 33), (64, 56), (37, 64), (64, 64), (52, 64), (64, 45)]  # (h, w)
c1 = c5 = 0; n = 0; r = 0
for c in range(K): os.makedirs(os.path.join(d, "val", f"c{c}"))
for i, (h, w) in enumerate(shapes):
    a = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    lg = logits(a); order = np.argsort(-lg, kind="stable")
    gaps = np.diff(-lg[order])
    while True:
        rr = r % K
        ok = (rr == 0 or gaps[rr - 1] > 1e-3) and (rr == K - 1 or gaps[rr] > 1e-3)
        r += 1
        if ok: break
    cls = int(order[rr])
    Image.fromarray(a).save(os.path.join(d, "val", f"c{cls}", f"img{i}.png"))
    c1 += rr == 0; c5 += rr < 5; n += 1
json.dump({"top1": c1 / n, "top5": c5 / n, "n": n}, open(os.path.join(d, "ref.json"), "w"))
PY

"$bin" convert --from "$tmp/mg.pth" --to "$tmp/mg.safetensors" >"$tmp/conv.log" 2>&1 || { cat "$tmp/conv.log"; fail "convert"; }
"$bin" eval -c "$tmp/mg.safetensors" --data "$tmp" --mode rect --max-side 64 --json "$tmp/r.json" \
    >"$tmp/out.txt" 2>"$tmp/err.txt" || { cat "$tmp/err.txt"; fail "eval rect"; }
grep -q "^result: {'top_1_accuracy'" "$tmp/out.txt" || fail "no result line: $(cat "$tmp/out.txt")"

"$py" - "$tmp" <<'PY' || fail "comparison"
import sys, os, json, re
d = sys.argv[1]
ref = json.load(open(os.path.join(d, "ref.json")))
got = json.load(open(os.path.join(d, "r.json")))
line = [l for l in open(os.path.join(d, "out.txt")) if l.startswith("result:")][0]
t1, t5 = map(float, re.search(r"'top_1_accuracy': ([0-9.]+), 'top_5_accuracy': ([0-9.]+)", line).groups())
# the counts are exact (ranks separated by > 1e-3), the printed values have 6 decimals
for k, v in (("top1", t1), ("top5", t5)):
    assert abs(v - ref[k]) < 1e-6, (k, v, ref)
assert abs(got["top_1_accuracy"] - ref["top1"]) < 1e-6 and abs(got["top_5_accuracy"] - ref["top5"]) < 1e-6, got
assert got["images"] == ref["n"] and got["mode"] == "rect" and got["size"] == 64, got
assert 0 < ref["top1"] < 1 and ref["top1"] < ref["top5"] < 1, ref  # the test is not degenerate
print("eval rect ok", ref)
PY

# --limit counts the first N images only; a root without val/ is one error line naming it
"$bin" eval -c "$tmp/mg.safetensors" --data "$tmp" --mode rect --max-side 64 --limit 3 >"$tmp/o2" 2>/dev/null || fail "limit"
grep -q "(3 images" "$tmp/o2" || fail "limit count: $(cat "$tmp/o2")"
"$bin" eval -c "$tmp/mg.safetensors" --data "$tmp/val/c0" --mode rect 2>"$tmp/err" >/dev/null; [ $? -ne 0 ] || fail "no val/ accepted"
grep -q "val/" "$tmp/err" || fail "no val/ message: $(cat "$tmp/err")"
# --crop-pct outside (0, 1] is one usage error naming the option
for bad in 0 1.5 x; do
  "$bin" eval -c "$tmp/mg.safetensors" --data "$tmp" --crop-pct $bad 2>"$tmp/err" >/dev/null; [ $? -ne 0 ] || fail "--crop-pct $bad accepted"
  grep -q -- "--crop-pct" "$tmp/err" || fail "--crop-pct $bad message: $(cat "$tmp/err")"
done
echo ok
