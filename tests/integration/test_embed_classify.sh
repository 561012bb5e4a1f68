#!/usr/bin/env bash
# test_embed_classify.sh: a MultiGrain-style PyTorch checkpoint (legacy serialisation, keys
# features.* / pool.p / classifier.*) goes through `multigrain convert`, then `embed` and
# `classify` on PNG images; the embeddings and class probabilities must match PyTorch's own
# evaluation of the same weights on the same pixels. 64x64 PNGs with --max-side 64 (rect) and
# --size 64 crop of a 73x64 image exercise the identity resize and the crop path.
set -u
fail() { echo "FAIL: $*" >&2; exit 1; }
bin=${MG_BIN:?}; py=${MG_PYTHON:-/usr/bin/python3}
"$py" -c "import torch, torchvision" 2>/dev/null || { echo "SKIPPED: no torch"; exit 77; }
tmp=$(mktemp -d "${MG_TEST_TMP:-/tmp}/embed.XXXXXX"); trap 'rm -rf "$tmp"' EXIT

"$py" - "$tmp" <<'PY' || fail "generator"
import os, sys, json
import numpy as np, torch, torchvision
from PIL import Image
d = sys.argv[1]
torch.manual_seed(5)
net = torchvision.models.resnet18(num_classes=5)
with torch.no_grad():
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.uniform_(0.5, 1.5); m.bias.uniform_(-0.2, 0.2)
            m.running_mean.uniform_(-0.1, 0.1); m.running_var.uniform_(0.5, 1.5)
net.eval()
p = 3.0
sd = {"features." + k: v for k, v in net.state_dict().items() if not k.startswith("fc.")}
sd["pool.p"] = torch.tensor(p)
sd["classifier.weight"] = net.fc.weight.detach().clone()
sd["classifier.bias"] = net.fc.bias.detach().clone()
torch.save({"model_state": sd}, os.path.join(d, "mg.pth"), _use_new_zipfile_serialization=False)
rng = np.random.default_rng(0)
os.makedirs(os.path.join(d, "imgs"))
mean = np.array([0.485, 0.456, 0.406]); std = np.array([0.229, 0.224, 0.225])
embs, probs = [], []
def run(arr):
    x = (arr.astype(np.float64) / 255.0 - mean) / std
    x = torch.tensor(x.transpose(2, 0, 1)[None], dtype=torch.float32)
    with torch.no_grad():
        f = net.layer4(net.layer3(net.layer2(net.layer1(net.maxpool(net.relu(net.bn1(net.conv1(x))))))))
        e = f.clamp(min=1e-6).pow(p).mean(dim=(2, 3)).pow(1.0 / p)
        logits = net.fc(e)
    return (e / (e.norm(dim=1, keepdim=True) + 1e-6))[0].numpy(), torch.softmax(logits, 1)[0].numpy()
for i in range(3):
    a = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    Image.fromarray(a).save(os.path.join(d, "imgs", f"img{i}.png"))
    e, pr = run(a); embs.append(e); probs.append(pr)
np.save(os.path.join(d, "ref_emb.npy"), np.stack(embs))
np.save(os.path.join(d, "ref_prob.npy"), np.stack(probs))
# crop path: a 73x64 (w x h) image through torchvision's own eval transform on the PIL image
# (short side to int(256/224*64) = 73, centre crop 64)
b = rng.integers(0, 256, size=(64, 73, 3), dtype=np.uint8)
Image.fromarray(b).save(os.path.join(d, "wide.png"))
import torchvision.transforms as T
t = T.Compose([T.Resize(int(256 / 224 * 64)), T.CenterCrop(64)])
arr = np.asarray(t(Image.fromarray(b)))
e, pr = run(arr)
np.save(os.path.join(d, "ref_wide_prob.npy"), pr)
PY

"$bin" convert --from "$tmp/mg.pth" --to "$tmp/mg.safetensors" >"$tmp/conv.log" 2>&1 || { cat "$tmp/conv.log"; fail "convert"; }
"$bin" embed -c "$tmp/mg.safetensors" -i "$tmp/imgs" -o "$tmp/e.npy" --max-side 64 2>"$tmp/embed.log" || { cat "$tmp/embed.log"; fail "embed"; }
[ "$(wc -l < "$tmp/e.txt")" -eq 3 ] || fail "e.txt should list 3 paths"
grep -q "img0.png" "$tmp/e.txt" || fail "e.txt paths"
"$bin" classify -c "$tmp/mg.safetensors" --max-side 64 --top 5 "$tmp"/imgs/img*.png >"$tmp/cls.txt" 2>"$tmp/cls.log" || { cat "$tmp/cls.log"; fail "classify"; }
"$bin" classify -c "$tmp/mg.safetensors" --size 64 --top 5 "$tmp/wide.png" >>"$tmp/cls.txt" 2>"$tmp/cls.log" || { cat "$tmp/cls.log"; fail "classify crop"; }

"$py" - "$tmp" <<'PY' || fail "comparison"
import sys, os, numpy as np
d = sys.argv[1]
emb = np.load(os.path.join(d, "e.npy")); ref = np.load(os.path.join(d, "ref_emb.npy"))
assert emb.shape == ref.shape and emb.dtype == np.float32, (emb.shape, emb.dtype)
# float32 network vs float32 PyTorch: summation order only; unit-norm vectors agree to ~1e-6
err = np.abs(emb - ref).max(); assert err < 1e-4, f"embedding max error {err}"
probs = {}; cur = None
for line in open(os.path.join(d, "cls.txt")):
    if not line.startswith(" "):
        cur = os.path.basename(line.strip()); probs[cur] = {}
    else:
        c, p, _ = line.strip().split("\t"); probs[cur][int(c)] = float(p)
rp = np.load(os.path.join(d, "ref_prob.npy"))
for i in range(3):
    got = probs[f"img{i}.png"]; assert len(got) == 5
    for c, p in got.items():
        assert abs(p - rp[i][c]) < 1e-4, (i, c, p, rp[i][c])
    top = max(got, key=got.get); assert top == int(np.argmax(rp[i])), (top, rp[i])
rw = np.load(os.path.join(d, "ref_wide_prob.npy"))
for c, p in probs["wide.png"].items():
    # resampling (PIL vs ours) is within 1/255 per pixel; the probabilities then agree to ~1e-3
    assert abs(p - rw[c]) < 5e-3, ("wide", c, p, rw[c])
print("embed/classify parity ok, max embedding error", err)
PY

# bad input: a missing checkpoint and an unreadable image are one-line errors, non-zero exit
"$bin" embed -c "$tmp/nope.safetensors" -i "$tmp/imgs" -o "$tmp/x.npy" 2>"$tmp/err"; [ $? -ne 0 ] || fail "missing checkpoint accepted"
grep -q "nope.safetensors" "$tmp/err" || fail "missing checkpoint message: $(cat "$tmp/err")"
echo "not an image" > "$tmp/bad.png"
"$bin" classify -c "$tmp/mg.safetensors" "$tmp/bad.png" 2>"$tmp/err" >/dev/null; [ $? -ne 0 ] || fail "bad image accepted"
grep -q "bad.png" "$tmp/err" || fail "bad image message: $(cat "$tmp/err")"
[ ! -e "$tmp/x.npy" ] || fail "failed embed left an output file"
echo ok
