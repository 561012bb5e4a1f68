"""gen_layers.py: PyTorch references for the layer ops (ops_layers.h): forward outputs and autograd
gradients on awkward shapes. Inputs are float32; references are computed by torch in float64 from those
same float32 inputs (so the C side is compared with the exact answer) except SGD, which runs
torch.optim.SGD in float32 as training does. Usage: gen_layers.py OUTDIR"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
g = torch.Generator().manual_seed(1234)


def save(name, t):
    a = t.detach().numpy() if torch.is_tensor(t) else np.asarray(t)
    if a.dtype == np.float64:
        a = a.astype(np.float32)
    np.save(os.path.join(out, name + ".npy"), a)


def randn(*shape, scale=1.0):
    """float32 random values, returned as a float64 tensor holding exactly those float32 values."""
    return (torch.randn(*shape, generator=g) * scale).to(torch.float32).to(torch.float64)


def leaf(t):
    return t.clone().requires_grad_(True)


# ---------------- batch norm 2d ----------------
# bnoff: |mean| / std = 400 (a channel far from zero), where the order of float32 operations matters
for tag, shape, xscale, xshift in [("bn", (2, 3, 5, 7), 2.0, 0.5), ("bn1", (1, 4, 3, 1), 2.0, 0.5),
                                   ("bnoff", (3, 2, 4, 5), 0.1, 40.0)]:
    n, c, h, w = shape
    x, wt, b = randn(*shape, scale=xscale) + xshift, randn(c) * 0.5 + 1.0, randn(c) * 0.5
    rm, rv = randn(c) * 0.3, randn(c).abs() + 0.5
    dy = randn(*shape)
    for name, t in [("x", x), ("w", wt), ("b", b), ("rm", rm), ("rv", rv), ("dy", dy)]:
        save(f"{tag}_{name}", t)
    for mode, training in [("train", True), ("eval", False)]:
        xx, ww, bb = leaf(x), leaf(wt), leaf(b)
        rm2, rv2 = rm.clone(), rv.clone()
        y = F.batch_norm(xx, rm2, rv2, ww, bb, training=training, momentum=0.1, eps=1e-5)
        y.backward(dy)
        save(f"{tag}_{mode}_y", y)
        save(f"{tag}_{mode}_dx", xx.grad)
        save(f"{tag}_{mode}_dw", ww.grad)
        save(f"{tag}_{mode}_db", bb.grad)
        save(f"{tag}_{mode}_rm", rm2)
        save(f"{tag}_{mode}_rv", rv2)

# ---------------- max / avg / adaptive pooling ----------------
# (name, shape, kernel, stride, pad). Max-pool inputs are rounded to halves so windows hold ties.
pools = [
    ("p3s2", (2, 3, 7, 9), (3, 3), (2, 2), (1, 1)),
    ("pgen", (1, 2, 6, 5), (2, 3), (1, 2), (1, 1)),
    ("ph1", (2, 1, 1, 5), (1, 3), (1, 2), (0, 1)),
    ("pw1", (1, 2, 5, 1), (3, 1), (2, 1), (1, 0)),
]
for tag, shape, k, s, p in pools:
    x = torch.round(randn(*shape) * 2) / 2
    save(f"{tag}_x", x)
    xx = leaf(x)
    y = F.max_pool2d(xx, k, s, p)
    dy = randn(*y.shape)
    y.backward(dy)
    save(f"{tag}_max_y", y)
    save(f"{tag}_max_dy", dy)
    save(f"{tag}_max_dx", xx.grad)
    xx = leaf(x)
    y = F.avg_pool2d(xx, k, s, p)  # count_include_pad=True, ceil_mode=False (defaults)
    y.backward(dy)
    save(f"{tag}_avg_y", y)
    save(f"{tag}_avg_dx", xx.grad)

x = randn(2, 3, 7, 5)
save("ad_x", x)
for oh, ow in [(1, 1), (3, 2), (4, 5)]:
    xx = leaf(x)
    y = F.adaptive_avg_pool2d(xx, (oh, ow))
    dy = randn(*y.shape)
    y.backward(dy)
    save(f"ad{oh}{ow}_y", y)
    save(f"ad{oh}{ow}_dy", dy)
    save(f"ad{oh}{ow}_dx", xx.grad)

# ---------------- GeM ----------------
def gem_general(x, p):
    return x.clamp(min=1e-6).pow(p).mean(dim=(-2, -1)).pow(1.0 / p)


for tag, shape in [("g", (2, 3, 5, 3)), ("g1", (1, 4, 1, 1)), ("g7", (2, 2, 7, 7))]:
    x = F.relu(randn(*shape) + 0.3)  # post-ReLU features: exact zeros exercise the clamp
    dy = randn(shape[0], shape[1])
    save(f"{tag}_x", x)
    save(f"{tag}_dy", dy)
    for pname, pval in [("1", 1.0), ("3", 3.0), ("45", 4.5)]:
        pt = torch.tensor(pval, dtype=torch.float64, requires_grad=True)
        xx = leaf(x)
        y = gem_general(xx, pt)
        y.backward(dy)
        save(f"{tag}_p{pname}_dp", pt.grad.reshape(1))
        if pval == 1.0:  # MultiGrain's p = 1 path: plain average pooling, no clamp
            xx = leaf(x)
            y = F.avg_pool2d(xx, (shape[2], shape[3])).flatten(1)
            y.backward(dy)
        save(f"{tag}_p{pname}_y", y)
        save(f"{tag}_p{pname}_dx", xx.grad)

# ---------------- linear ----------------
# lin and lin1 take the fast path's per-row sgemv (n <= MG_LINEAR_GEMV_MAX_ROWS), lin12 its sgemm
for tag, (n, i, o) in [("lin", (3, 5, 4)), ("lin1", (1, 7, 3)), ("lin12", (12, 6, 5))]:
    x, W, b, dy = randn(n, i), randn(o, i), randn(o), randn(n, o)
    xx, WW, bb = leaf(x), leaf(W), leaf(b)
    y = F.linear(xx, WW, bb)
    y.backward(dy)
    for name, t in [("x", x), ("W", W), ("b", b), ("dy", dy), ("y", y), ("dx", xx.grad), ("dW", WW.grad),
                    ("db", bb.grad)]:
        save(f"{tag}_{name}", t)

# ---------------- L2 normalisation ----------------
x = randn(4, 9)
x[2] = 0.0  # a zero row: y = 0, torch's norm subgradient 0
dy = randn(4, 9)
xx = leaf(x)
y = xx / (torch.norm(xx, dim=1, keepdim=True) + 1e-6)
y.backward(dy)
for name, t in [("x", x), ("dy", dy), ("y", y), ("dx", xx.grad)]:
    save(f"l2_{name}", t)

# ---------------- element-wise ----------------
x = randn(2, 3, 4, 5)
x = torch.where(x.abs() < 0.05, x + 0.1, x)  # keep ReLU inputs away from the kink
a, dy = randn(2, 3, 4, 5), randn(2, 3, 4, 5)
s = torch.sigmoid(randn(2, 3))
save("el_x", x)
save("el_a", a)
save("el_dy", dy)
save("el_s", s)
xx = leaf(x)
y = F.relu(xx)
y.backward(dy)
save("relu_y", y)
save("relu_dx", xx.grad)
xx = leaf(x)
y = torch.sigmoid(xx)
y.backward(dy)
save("sig_y", y)
save("sig_dx", xx.grad)
save("add_y", x + a)
save("add_relu_y", F.relu(x + a))
# two gradients (dy, a) summed and taken through relu(x)'s backward: autograd's input gradient
xx = leaf(x)
F.relu(xx).backward(dy + a)
save("add_relu_bwd_dx", xx.grad)
xx, ss = leaf(x), leaf(s)
y = xx * ss[:, :, None, None]
y.backward(dy)
save("cs_y", y)
save("cs_dx", xx.grad)
save("cs_ds", ss.grad)

# ---------------- cross-entropy ----------------
for tag, (n, k, scale) in [("ce", (5, 7, 1.0)), ("ce1", (1, 4, 1.0)), ("cebig", (3, 6, 60.0))]:
    z = randn(n, k, scale=scale)
    y = torch.randint(0, k, (n,), generator=g)
    save(f"{tag}_z", z)
    np.save(os.path.join(out, f"{tag}_y.npy"), y.numpy().astype(np.int32))
    for lname, ls in [("ls0", 0.0), ("ls1", 0.1)]:
        zz = leaf(z)
        loss = F.cross_entropy(zz, y, label_smoothing=ls)
        loss.backward()
        save(f"{tag}_{lname}_loss", loss.reshape(1))
        save(f"{tag}_{lname}_dz", zz.grad)

# ---------------- pairwise distances ----------------
x = randn(6, 5)
dD = randn(6, 6)
xx = leaf(x)
diff = xx[:, None, :] - xx[None, :, :]
sq = (diff * diff).sum(-1)
eye = torch.eye(6, dtype=torch.bool)
D = torch.where(eye, torch.zeros_like(sq), torch.sqrt(torch.where(eye, torch.ones_like(sq), sq)))
D.backward(dD)
for name, t in [("x", x), ("dD", dD), ("D", D), ("dx", xx.grad)]:
    save(f"pd_{name}", t)

# ---------------- SGD (float32, like training) ----------------
steps = 4
sizes = [10, 7]
wds = [1e-4 * 50, 0.0]  # weight decay on the first tensor only (exaggerated so it matters)
w0 = [torch.randn(s, generator=g) for s in sizes]
grads = [[torch.randn(s, generator=g) for s in sizes] for _ in range(steps)]
for i, s in enumerate(sizes):
    save(f"sgd_w0_{i}", w0[i])
    for t in range(steps):
        save(f"sgd_g{t}_{i}", grads[t][i])
for nest in [0, 1]:
    params = [w.clone().requires_grad_(True) for w in w0]
    opt = torch.optim.SGD([{"params": [params[i]], "weight_decay": wds[i]} for i in range(2)], lr=0.1,
                          momentum=0.9, nesterov=bool(nest))
    for t in range(steps):
        for i in range(2):
            params[i].grad = grads[t][i].clone()
        opt.step()
    for i in range(2):
        save(f"sgd_n{nest}_w_{i}", params[i])
