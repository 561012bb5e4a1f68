#!/usr/bin/env bash
# test_whitened.sh: whitened MultiGrain checkpoints end to end (recipe §1.8, §2.3; docs/formats.md).
#  1. A MultiGrain-style whitened .pth made in Python (torchvision resnet18 + GeM p=3; PCA whitening
#     fitted in numpy on l2n([e, 1]) of random images' e; W' = [W | b] P^-T, b' = [W | b] m) goes
#     through `convert`; `embed` and `classify` must give numpy's l2n(Phi) and softmax(W' Phi + b')
#     (float64 reference from a float64 copy of the network).
#  2. `whiten --fold-into` on our own raw GeM vectors (`embed --pooled`) of the same unwhitened
#     network: the folded checkpoint keeps every arg-max of the unwhitened one, its logits are the
#     original ones / (||[e, 1]|| + 1e-6), and its embeddings equal the stored whitening applied to
#     l2n([e, 1]).
#  3. `embed --whiten` applies a plain whitening file (`whiten --embeddings`) and re-normalises.
#  4. Bad input: whiten.P with the wrong shape, fc width != D', normalised rows given to
#     --fold-into, a whitening of the wrong width given to embed --whiten: one-line errors.
set -u
fail() { echo "FAIL: $*" >&2; exit 1; }
bin=${MG_BIN:?}; py=${MG_PYTHON:-/usr/bin/python3}
"$py" -c "import torch, torchvision, PIL" 2>/dev/null || { echo "SKIPPED: no torch"; exit 77; }
tmp=$(mktemp -d "${MG_TEST_TMP:-/tmp}/whitened.XXXXXX"); trap 'rm -rf "$tmp"' EXIT
[ -n "${MG_KEEP_TMP:-}" ] && trap - EXIT
NFIT=1000

"$py" - "$tmp" "$NFIT" <<'PY' || fail "generator"
import os, sys, copy, collections
import numpy as np, torch, torchvision
from PIL import Image
d, NF = sys.argv[1], int(sys.argv[2])
torch.manual_seed(7)
net = torchvision.models.resnet18(num_classes=5)
with torch.no_grad():
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.uniform_(0.5, 1.5); m.bias.uniform_(-0.2, 0.2)
            m.running_mean.uniform_(-0.1, 0.1); m.running_var.uniform_(0.5, 1.5)
    # no dead (constant) channel at the GeM input: a constant channel makes the covariance singular
    net.layer4[1].bn2.bias.uniform_(0.5, 1.0)
net.eval()
p = 3.0
rng = np.random.default_rng(1)
def img(h, w):  # a coloured noise background with a few flat rectangles: varied GeM vectors
    a = rng.normal(rng.uniform(40, 215, 3), rng.uniform(5, 60), size=(h, w, 3))
    for _ in range(rng.integers(1, 4)):
        y, x = rng.integers(0, h - 4), rng.integers(0, w - 4)
        a[y:y + rng.integers(4, h // 2), x:x + rng.integers(4, w // 2)] = rng.uniform(0, 255, 3)
    return np.clip(a, 0, 255).astype(np.uint8)
mean = np.array([0.485, 0.456, 0.406]); std = np.array([0.229, 0.224, 0.225])
def pooled(model, arrs, dt):
    x = np.stack([(a.astype(np.float64) / 255.0 - mean) / std for a in arrs]).transpose(0, 3, 1, 2)
    with torch.no_grad():
        x = torch.tensor(x, dtype=dt)
        f = model.layer4(model.layer3(model.layer2(model.layer1(model.maxpool(model.relu(model.bn1(model.conv1(x))))))))
        return f.clamp(min=1e-6).pow(p).mean(dim=(2, 3)).pow(1.0 / p).double().numpy()
def l2n(x): return x / (np.linalg.norm(x, axis=-1, keepdims=True) + 1e-6)  # MultiGrain's l2n
def aug(e): return l2n(np.concatenate([e, np.ones((len(e), 1))], 1))
fit = [img(32, 32) for _ in range(NF)]
test = [img(48, 48) for _ in range(6)]
for sub, arrs in (("fit", fit), ("test", test)):
    os.makedirs(os.path.join(d, sub))
    for i, a in enumerate(arrs): Image.fromarray(a).save(os.path.join(d, sub, f"{i:04d}.png"))
net64 = copy.deepcopy(net).double()
e = pooled(net64, fit, torch.float64)
# A classifier with varied arg-max on these images: centred, scaled random directions.
with torch.no_grad():
    Wr = rng.normal(size=(5, 512)) / e.std(0) / np.sqrt(512) * 3
    net.fc.weight.copy_(torch.tensor(Wr)); net.fc.bias.copy_(torch.tensor(-Wr @ e.mean(0)))
net64 = copy.deepcopy(net).double()
W = net.fc.weight.detach().double().numpy(); b = net.fc.bias.detach().double().numpy()
# PCA whitening of l2n([e, 1]) (sklearn PCA(whiten=True): covariance with N-1, P = U / sqrt(lambda))
u = aug(e); m = u.mean(0)
lam, U = np.linalg.eigh(np.cov(u, rowvar=False, ddof=1))
o = np.argsort(lam)[::-1]; lam, U = lam[o], U[:, o]
P = U / np.sqrt(lam)
A = np.concatenate([W, b[:, None]], 1)
Wp = np.linalg.solve(P, A.T).T  # [W | b] P^-T
bp = A @ m
m32, P32, Wp32, bp32 = (x.astype(np.float32) for x in (m, P, Wp, bp))
feats = {"features." + k: v for k, v in net.state_dict().items() if not k.startswith("fc.")}
def save(name, extra):
    sd = collections.OrderedDict(feats); sd["pool.p"] = torch.tensor(p); sd.update(extra)
    torch.save({"model_state": sd}, os.path.join(d, name), _use_new_zipfile_serialization=False)
t = torch.tensor
save("mg.pth", {"classifier.weight": net.fc.weight.detach().clone(), "classifier.bias": net.fc.bias.detach().clone()})
white = {"classifier.weight": t(Wp32), "classifier.bias": t(bp32),
         "whitening.pca.pca_m": t(m32), "whitening.pca.pca_P": t(P32)}
save("mgw.pth", white)
save("bad_P.pth", dict(white, **{"whitening.pca.pca_P": t(P32[:512])}))        # [512, 513]: no row for the 1
save("bad_fc.pth", dict(white, **{"classifier.weight": t(Wp32[:, :100].copy())}))  # [5, 100] vs D' = 513
# References on the test images: float64 network, the stored float32 whitening and classifier.
def ref(model, dt):
    et = pooled(model, test, dt)
    phi = (aug(et) - m32) @ P32.astype(np.float64)
    lg = phi @ Wp32.T.astype(np.float64) + bp32
    pr = np.exp(lg - lg.max(1, keepdims=True)); pr /= pr.sum(1, keepdims=True)
    return l2n(phi), pr, et @ W.T + b
emb64, pr64, lg64 = ref(net64, torch.float64)
emb32, pr32, _ = ref(net, torch.float32)
np.save(os.path.join(d, "ref_emb.npy"), emb64); np.save(os.path.join(d, "ref_prob.npy"), pr64)
np.save(os.path.join(d, "ref_logits.npy"), lg64)
print(f"generator: cond(cov) {lam[0] / lam[-1]:.3g}; PyTorch float32 vs float64: embedding "
      f"{np.abs(emb32 - emb64).max():.3g}, probability {np.abs(pr32 - pr64).max():.3g}; test arg-max {lg64.argmax(1)}")
PY

run() { "$bin" --quiet "$@" 2>"$tmp/err.log" || { cat "$tmp/err.log"; fail "$*"; }; }
expect_err() {  # expect_err NEEDLE CMD...: non-zero exit and a message containing NEEDLE
    local needle=$1; shift
    if "$bin" --quiet "$@" >/dev/null 2>"$tmp/err.log"; then fail "accepted: $*"; fi
    grep -qF -- "$needle" "$tmp/err.log" || fail "error for '$*' lacks '$needle': $(cat "$tmp/err.log")"
    [ "$(grep -c . "$tmp/err.log")" -le 2 ] || fail "error for '$*' is not short: $(cat "$tmp/err.log")"
}
classify() {  # classify CKPT OUT: top-5 (all classes) of the test images
    "$bin" --quiet classify -c "$1" --mode rect --max-side 48 --top 5 "$tmp"/test/*.png >"$2" 2>"$tmp/err.log" \
        || { cat "$tmp/err.log"; fail "classify $1"; }
}

# 1. converted MultiGrain whitened checkpoint vs numpy / PyTorch
run convert --from "$tmp/mgw.pth" --to "$tmp/mgw.safetensors"
run convert --from "$tmp/mg.pth" --to "$tmp/mg.safetensors"
run embed -c "$tmp/mgw.safetensors" -i "$tmp/test" -o "$tmp/w_emb.npy" --max-side 48
classify "$tmp/mgw.safetensors" "$tmp/w_cls.txt"
classify "$tmp/mg.safetensors" "$tmp/cls.txt"

# 2. fold with our own tools: raw GeM vectors of the fit images -> whiten --fold-into
run embed -c "$tmp/mg.safetensors" -i "$tmp/fit" -o "$tmp/fit_pooled.npy" --max-side 32 --pooled
run embed -c "$tmp/mg.safetensors" -i "$tmp/fit" -o "$tmp/fit_emb.npy" --max-side 32
run embed -c "$tmp/mg.safetensors" -i "$tmp/test" -o "$tmp/test_pooled.npy" --max-side 48 --pooled
run embed -c "$tmp/mg.safetensors" -i "$tmp/test" -o "$tmp/test_emb.npy" --max-side 48
run whiten --embeddings "$tmp/fit_pooled.npy" --fold-into "$tmp/mg.safetensors" --out "$tmp/folded.safetensors"
run embed -c "$tmp/folded.safetensors" -i "$tmp/test" -o "$tmp/f_emb.npy" --max-side 48
classify "$tmp/folded.safetensors" "$tmp/f_cls.txt"

# 3. plain embedding whitening (64 leading components) applied by embed --whiten
run whiten --embeddings "$tmp/fit_emb.npy" --out "$tmp/plain_w.safetensors" --dim 64
run embed -c "$tmp/mg.safetensors" -i "$tmp/test" -o "$tmp/pw_emb.npy" --max-side 48 --whiten "$tmp/plain_w.safetensors"

"$py" - "$tmp" "$MG_SOURCE_DIR/tests/oracle" <<'PY' || fail "comparison"
import sys, os, numpy as np
d = sys.argv[1]; sys.path.insert(0, sys.argv[2])
import st_numpy
def load_st(path):
    r = st_numpy.load(path)
    return r[0] if isinstance(r, tuple) else r
def l2n(x): return x / (np.linalg.norm(x, axis=-1, keepdims=True) + 1e-6)
def aug(e): e = e.astype(np.float64); return l2n(np.concatenate([e, np.ones((len(e), 1))], 1))
def probs(path):
    out, cur = {}, None
    for line in open(path):
        if not line.startswith(" "): cur = os.path.basename(line.strip()); out[cur] = np.zeros(5)
        else:
            c, p, _ = line.strip().split("\t"); out[cur][int(c)] = float(p)
    return np.stack([out[k] for k in sorted(out)])
L = lambda n: np.load(os.path.join(d, n))
# 1. converted checkpoint. Tolerances: our float32 network vs a float64 PyTorch reference. The
# whitening multiplies per-direction errors by 1/sqrt(lambda) (cond(cov) ~1e9 here) but the test
# vectors' error stays ~1e-6 (the generator prints PyTorch's own float32 error, same order);
# 1e-4 (as test_embed_classify) leaves a 100x margin while a wrong P, m, l2n or an off-by-one
# channel gives errors > 1e-2.
emb, ref = L("w_emb.npy"), L("ref_emb.npy")
assert emb.shape == ref.shape == (6, 513) and emb.dtype == np.float32, (emb.shape, emb.dtype)
err = np.abs(emb - ref).max(); assert err < 1e-4, f"whitened embedding error {err}"
pw, pr = probs(os.path.join(d, "w_cls.txt")), L("ref_prob.npy")
perr = np.abs(pw - pr).max(); assert perr < 1e-4, f"whitened probability error {perr}"  # same reasoning
lg = L("ref_logits.npy")
assert (pw.argmax(1) == lg.argmax(1)).all(), (pw.argmax(1), lg.argmax(1))
pu = probs(os.path.join(d, "cls.txt"))
assert (pu.argmax(1) == pw.argmax(1)).all(), "whitened classifier changed an arg-max"
print(f"converted: embedding error {err:.3g}, probability error {perr:.3g}")
# 2. our fold. The stored whitening applied to l2n([e, 1]) of OUR raw e (same e on both sides):
# only float32 arithmetic of (u - m) P differs (float64 here), amplified by the conditioning of
# P; 1e-4 again (observed ~1e-6).
f = load_st(os.path.join(d, "folded.safetensors"))
m, P, Wf, bf = (f[k].astype(np.float64) for k in ("whiten.mean", "whiten.P", "fc.weight", "fc.bias"))
assert m.shape == (513,) and P.shape == (513, 513) and Wf.shape == (5, 513), (m.shape, P.shape, Wf.shape)
et = L("test_pooled.npy").astype(np.float64); assert et.shape == (6, 512)
phi = (aug(et) - m) @ P
fe = L("f_emb.npy"); ferr = np.abs(fe - l2n(phi)).max()
assert fe.shape == (6, 513) and ferr < 1e-4, f"folded embedding error {ferr}"
# the fold identity W' Phi + b' = (W e + b) / (||[e, 1]|| + 1e-6), W, b from the unwhitened file
u0 = load_st(os.path.join(d, "mg.safetensors"))
lg0 = et @ u0["fc.weight"].astype(np.float64).T + u0["fc.bias"]
scale = 1.0 / (np.linalg.norm(np.concatenate([et, np.ones((6, 1))], 1), axis=1) + 1e-6)
lgf = phi @ Wf.T + bf
# logits ~1; the float32 W' = [W | b] P^-T and P round at ~1e-7 relative, the products carry the
# conditioning of P (the LU solve in float64 is exact to ~1e-12): 1e-4 relative to the largest.
ierr = np.abs(lgf - lg0 * scale[:, None]).max() / np.abs(lg0 * scale[:, None]).max()
assert ierr < 1e-4, f"fold identity error {ierr}"
pf = probs(os.path.join(d, "f_cls.txt"))
assert (pf.argmax(1) == pu.argmax(1)).all(), (pf.argmax(1), pu.argmax(1))
assert len(set(pu.argmax(1))) > 1, "test images should not all share one class"
print(f"folded: embedding error {ferr:.3g}, fold identity relative error {ierr:.3g}, arg-max kept {pf.argmax(1)}")
# 3. embed --whiten: l2n((x - m) P) of the plain embeddings x, float32 vs float64 with a
# well-conditioned 64-d whitening: 1e-5.
w = load_st(os.path.join(d, "plain_w.safetensors"))
x = L("test_emb.npy").astype(np.float64)
pe = L("pw_emb.npy"); assert pe.shape == (6, 64), pe.shape
perr = np.abs(pe - l2n((x - w["whiten.mean"]) @ w["whiten.P"].astype(np.float64))).max()
assert perr < 1e-5, f"embed --whiten error {perr}"
print(f"embed --whiten: error {perr:.3g}")
PY

# 4. bad input
expect_err "whiten.P" convert --from "$tmp/bad_P.pth" --to "$tmp/bad.safetensors"
expect_err "classifier.weight" convert --from "$tmp/bad_fc.pth" --to "$tmp/bad.safetensors"
[ ! -e "$tmp/bad.safetensors" ] || fail "a failed convert left an output file"
# a checkpoint whose whiten.P [513, 100] disagrees with fc.weight [5, 513]
"$py" - "$tmp" <<'PY' || fail "bad checkpoint generator"
import sys, os, json, struct
d = sys.argv[1]
raw = open(os.path.join(d, "mgw.safetensors"), "rb").read()
n = struct.unpack("<Q", raw[:8])[0]; hdr = json.loads(raw[8:8 + n]); data = raw[8 + n:]
def rewrite(name, rows, cols):  # whiten.P replaced by its leading [rows, cols] block, rest byte-identical
    h, blobs, off = {"__metadata__": hdr["__metadata__"]}, [], 0
    for k, v in hdr.items():
        if k == "__metadata__": continue
        a, b = v["data_offsets"]; blob = data[a:b]; shape = v["shape"]
        if k == "whiten.P":
            c0 = shape[1]; blob = b"".join(blob[(r * c0) * 4:(r * c0 + cols) * 4] for r in range(rows)); shape = [rows, cols]
        h[k] = {"dtype": v["dtype"], "shape": shape, "data_offsets": [off, off + len(blob)]}
        blobs.append(blob); off += len(blob)
    j = json.dumps(h).encode(); j += b" " * ((8 - len(j) % 8) % 8)
    open(os.path.join(d, name), "wb").write(struct.pack("<Q", len(j)) + j + b"".join(blobs))
rewrite("bad_fcw.safetensors", 513, 100)  # valid whitening [513, 100], but fc.weight is [5, 513]
rewrite("bad_P.safetensors", 512, 513)    # no row for the appended 1
PY
expect_err "fc.weight" embed -c "$tmp/bad_fcw.safetensors" -i "$tmp/test" -o "$tmp/x.npy"
grep -qF "[5, 100]" "$tmp/err.log" || fail "fc width message: $(cat "$tmp/err.log")"
expect_err "whiten.P" classify -c "$tmp/bad_P.safetensors" "$tmp/test/0000.png"
expect_err "embed --pooled" whiten --embeddings "$tmp/fit_emb.npy" --fold-into "$tmp/mg.safetensors" --out "$tmp/x.safetensors"
expect_err "already whitened" whiten --embeddings "$tmp/fit_pooled.npy" --fold-into "$tmp/folded.safetensors" --out "$tmp/x.safetensors"
expect_err "--whiten" embed -c "$tmp/mgw.safetensors" -i "$tmp/test" -o "$tmp/x.npy" --whiten "$tmp/plain_w.safetensors"
[ ! -e "$tmp/x.npy" ] && [ ! -e "$tmp/x.safetensors" ] || fail "a failed command left an output file"
echo "whitened checkpoints: all checks passed"
