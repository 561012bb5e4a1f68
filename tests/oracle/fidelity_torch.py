"""fidelity_torch.py: the PyTorch half of the step-for-step fidelity test (issue 5, "as llm.c proves
itself"; run by tests/integration/test_fidelity.sh).

  fidelity_torch.py gen DIR    writes DIR/input.safetensors: initial ResNet-18 + GeM weights, 20 batches of
                               4 instances x m = 3 differently augmented copies, the hyper-parameters
  fidelity_torch.py check DIR  replays the 20 steps in PyTorch from the same weights and batches, with the
                               triplets our sampler drew (DIR/c_out.safetensors, from tool_fidelity), and
                               compares losses, lr, beta at every step and all weights at the end

The reference recipe is written here from the method description (recipe notes §1.2-§1.6, §2.4 and
docs/loss.md, docs/config.md), not from our C code: torchvision resnet18 whose average pool is replaced by
GeM(p = 3, fixed), the classifier on the raw pooled vector e, the embedding e / (|e| + 1e-6),
loss = λ·CE(label smoothing) + (1 − λ)·margin, margin over the given triplets with a learnable β,
torch.optim.SGD(momentum, weight_decay) on the network, a separate SGD on β (lr × beta_lr, same
momentum, no weight decay), the "linear" schedule (warm-up, then linear decay) re-implemented below.
Exit status: 0 all within tolerance, 1 a mismatch."""
import os
import sys

import numpy as np
import torch
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_numpy  # noqa: E402

STEPS = 20          # optimizer steps (= one "epoch" of the schedule)
INSTANCES = 4       # distinct images per batch
M = 3               # repeated augmentations (copies) per image
SIZE = 36          # 36x36 inputs: layer4 is still 2x2 (36-18-9-9-5-3-2), so GeM pools over 4 positions
NUM_CLASSES = 6
DATASET = 12        # distinct source images; each step draws 4 of them (instances recur across steps)
# Hyper-parameters, handed to the C tool as metadata (YAML scalars for mg_config_set_value).
HP = {
    "arch": "resnet18", "num_classes": NUM_CLASSES, "p": 3.0,
    "classif_weight": 0.5, "margin": 0.2, "beta_init": 1.2, "beta_lr": 2.0, "normalise_by": "active",
    "use_label_smooth": "true", "label_smoothing": 0.1,
    "lr": 0.001, "lr_init": 0.0001, "lr_end": 0.00002, "lr_schedule": "linear", "warmup_epochs": 0.25, "epochs": 1,
    "momentum": 0.9, "nesterov": "false", "weight_decay": 5e-4, "wd_on_bn_bias": "true", "seed": 7,
    "steps_per_epoch": STEPS,
}

torch.set_num_threads(max(1, int(os.environ.get("MG_FIDELITY_THREADS", "2") or 2)))


class MultiGrain(torch.nn.Module):
    """torchvision ResNet trunk, GeM pooling with a fixed exponent, classifier on the raw GeM vector,
    L2-normalised embedding (recipe §1.1-§1.2)."""

    def __init__(self, num_classes, p):
        super().__init__()
        self.net = torchvision.models.resnet18(num_classes=num_classes)
        self.register_buffer("p", torch.tensor(float(p)))  # fixed during joint training (not optimised)

    def forward(self, x):
        n = self.net
        x = n.maxpool(n.relu(n.bn1(n.conv1(x))))
        x = n.layer4(n.layer3(n.layer2(n.layer1(x))))
        e = x.clamp(min=1e-6).pow(self.p).mean(dim=(2, 3)).pow(1.0 / self.p)
        return n.fc(e), e / (e.norm(dim=1, keepdim=True) + 1e-6)


def lr_at(i):
    """docs/config.md "linear": W = int(S·warmup_epochs), T = S·epochs; warm-up lr0 + (lr − lr0)·i/W for
    i < W, then lr − (lr − lr_end)·(i − W)/(T − W)."""
    s = HP["steps_per_epoch"]
    t, w = s * HP["epochs"], int(s * HP["warmup_epochs"])
    lr, lr0, lr_end = HP["lr"], HP["lr_init"], HP["lr_end"]
    if i < w:
        return lr0 + (lr - lr0) * i / w
    return lr - (lr - lr_end) * (i - w) / (t - w)


def margin_loss(emb, trip, beta, alpha, norm):
    """Wu et al. margin loss over given (anchor, positive, negative) rows (recipe §2.4)."""
    a, p, n = emb[trip[:, 0]], emb[trip[:, 1]], emb[trip[:, 2]]
    d_ap = ((p - a).pow(2).sum(1) + 1e-8).sqrt()
    d_an = ((n - a).pow(2).sum(1) + 1e-8).sqrt()
    pos = torch.clamp(d_ap - beta + alpha, min=0)
    neg = torch.clamp(beta - d_an + alpha, min=0)
    if norm == "active":  # strictly positive terms, pos and neg counted separately (torch 1.0 semantics)
        cnt = int((pos > 0).sum().item() + (neg > 0).sum().item())
    else:                 # the paper's |P(B)| = 2 x triplets
        cnt = 2 * trip.shape[0]
    return (pos.sum() + neg.sum()) / max(cnt, 1)


def augment(img, g):
    """A fixed random augmentation: crop SIZE x SIZE at a random offset, random flip, brightness/contrast."""
    c, h, w = img.shape
    y, x = int(g.integers(0, h - SIZE + 1)), int(g.integers(0, w - SIZE + 1))
    out = img[:, y:y + SIZE, x:x + SIZE]
    if g.random() < 0.5:
        out = out[:, :, ::-1]
    out = out * g.uniform(0.8, 1.2) + g.uniform(-0.2, 0.2)
    return np.ascontiguousarray(out, dtype=np.float32)


def gen(d):
    os.makedirs(d, exist_ok=True)
    torch.manual_seed(5)
    model = MultiGrain(NUM_CLASSES, HP["p"])
    # Non-trivial BN affine parameters so that a swapped weight/bias or a missed tensor shows.
    with torch.no_grad():
        for mod in model.net.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.weight.uniform_(0.8, 1.2)
                mod.bias.uniform_(-0.1, 0.1)
    tensors = {k: v.detach().numpy().copy() for k, v in model.net.state_dict().items()}
    tensors["pool.p"] = np.array(HP["p"], dtype=np.float32)
    g = np.random.default_rng(11)
    # Smooth-ish source images (random low-resolution pattern upsampled, plus fine noise), 56x56.
    low = g.standard_normal((DATASET, 3, 7, 7)).astype(np.float32)
    base = np.repeat(np.repeat(low, 8, axis=2), 8, axis=3) + 0.3 * g.standard_normal((DATASET, 3, 56, 56))
    classes = g.integers(0, NUM_CLASSES, DATASET)
    n = INSTANCES * M
    images = np.zeros((STEPS, n, 3, SIZE, SIZE), np.float32)
    labels = np.zeros((STEPS, n), np.int32)
    inst = np.zeros((STEPS, n), np.int64)
    for s in range(STEPS):
        pick = g.permutation(DATASET)[:INSTANCES]
        for j, k in enumerate(pick):
            for c in range(M):  # m consecutive copies, as the RA sampler emits them
                images[s, j * M + c] = augment(base[k], g)
                labels[s, j * M + c] = classes[k]
                inst[s, j * M + c] = k
    tensors.update(images=images, labels=labels, instances=inst)
    st_numpy.save(os.path.join(d, "input.safetensors"), tensors, HP)


def check(d):
    inp, _ = st_numpy.load(os.path.join(d, "input.safetensors"))
    out, _ = st_numpy.load(os.path.join(d, "c_out.safetensors"))
    model = MultiGrain(NUM_CLASSES, HP["p"])
    sd = {k: torch.from_numpy(np.array(v)) for k, v in inp.items() if k in model.net.state_dict()}
    model.net.load_state_dict(sd, strict=True)
    model.train()
    beta = torch.nn.Parameter(torch.tensor(HP["beta_init"], dtype=torch.float32))
    lam, wd = HP["classif_weight"], HP["weight_decay"]
    opt = torch.optim.SGD(model.net.parameters(), lr=lr_at(0), momentum=HP["momentum"], weight_decay=wd)
    opt_beta = torch.optim.SGD([beta], lr=lr_at(0) * HP["beta_lr"], momentum=HP["momentum"], weight_decay=0.0)
    ok = True
    worst = 0.0
    print(f"{'step':>4} {'loss (C)':>14} {'loss (torch)':>14} {'rel':>9} {'ce rel':>9} {'margin rel':>10} "
          f"{'beta (C)':>12} {'beta (torch)':>12} {'T':>3}")
    steps = inp["images"].shape[0]  # STEPS, or fewer when a shortened set is replayed (debugging)
    for s in range(steps):
        x = torch.from_numpy(np.array(inp["images"][s]))
        y = torch.from_numpy(np.array(inp["labels"][s]).astype(np.int64))
        ids = np.array(inp["instances"][s])
        trip = np.array(out[f"triplets.{s}"]).astype(np.int64)
        # Our sampler's triplets must be well-formed: anchor and positive copies of one instance,
        # the negative another instance; every ordered positive pair exactly once.
        want = sorted((i, j) for i in range(len(ids)) for j in range(len(ids)) if i != j and ids[i] == ids[j])
        if (sorted(map(tuple, trip[:, :2].tolist())) != want or np.any(ids[trip[:, 0]] != ids[trip[:, 1]])
                or np.any(ids[trip[:, 0]] == ids[trip[:, 2]])):
            print(f"step {s}: malformed triplets from the C sampler")
            ok = False
        lr = lr_at(s)
        for grp in opt.param_groups:
            grp["lr"] = lr
        for grp in opt_beta.param_groups:
            grp["lr"] = lr * HP["beta_lr"]
        opt.zero_grad()
        opt_beta.zero_grad()
        logits, emb = model(x)
        ce = torch.nn.functional.cross_entropy(logits, y, label_smoothing=HP["label_smoothing"])
        mrg = margin_loss(emb, torch.from_numpy(trip), beta, HP["margin"], HP["normalise_by"])
        loss = lam * ce + (1 - lam) * mrg
        loss.backward()
        opt.step()
        opt_beta.step()
        ref = {"loss": loss.item(), "loss_ce": ce.item(), "loss_margin": mrg.item()}
        rel = {k: abs(float(out[k][s]) - v) / max(abs(v), 1e-30) for k, v in ref.items()}
        # 1e-4 relative: the requirement for the loss; applied to each part as well (each is
        # O(1) here, so a part off by 1e-4 relative would show in the total).
        for k, r in rel.items():
            worst = max(worst, r) if k == "loss" else worst
            if not r <= 1e-4:
                print(f"step {s}: {k} C {float(out[k][s]):.9g} torch {ref[k]:.9g} rel {r:.3g} > 1e-4")
                ok = False
        # The schedule is closed-form double arithmetic in both: equal to rounding.
        if abs(float(out["lr"][s]) - lr) > 1e-12 * lr:
            print(f"step {s}: lr C {float(out['lr'][s]):.12g} reference {lr:.12g}")
            ok = False
        # β after the update: it moves by lr·beta_lr·(momentum-filtered count ratio); the ratios are
        # exact counts, so β agrees to float32 rounding of the reference's parameter (1e-6 absolute).
        if abs(float(out["beta"][s]) - beta.item()) > 1e-6:
            print(f"step {s}: beta C {float(out['beta'][s]):.9g} torch {beta.item():.9g}")
            ok = False
        print(f"{s:4d} {float(out['loss'][s]):14.9f} {ref['loss']:14.9f} {rel['loss']:9.2e} {rel['loss_ce']:9.2e} "
              f"{rel['loss_margin']:10.2e} {float(out['beta'][s]):12.8f} {beta.item():12.8f} {len(trip):3d}")
    print(f"max relative loss difference over {steps} steps: {worst:.3e} (tolerance 1e-4)")

    # Final weights. Both sides start from identical float32 weights and take the same 20 updates;
    # they differ only by float32 summation order in the convolutions/BN (about 1e-6 relative per
    # gradient) which the updates accumulate. We compare each tensor's TOTAL CHANGE w_final − w_init
    # with the reference's: |Δ_C − Δ_torch| <= 2e-3 · max|Δ_torch| + 1e-6 · max|w_torch|.
    # 2e-3 of the change is ~100x the observed float32 drift yet ~1000x smaller than the effect of
    # any real recipe difference (a missed weight-decay term, a wrong lr or momentum, a wrong loss
    # weight all change Δ by percents); 1e-6·max|w| is the float32 resolution of the weights.
    fsd = model.net.state_dict()
    worst_w, worst_name, table = 0.0, "", []
    for k, v in fsd.items():
        c = np.array(out[f"final.{k}"])
        t = v.detach().numpy()
        if k.endswith("num_batches_tracked"):
            if int(c) != int(t):
                print(f"{k}: C {int(c)} torch {int(t)}")
                ok = False
            continue
        w0 = np.array(inp[k]).astype(np.float64)
        dc, dt = c.astype(np.float64) - w0, t.astype(np.float64) - w0
        tol = 2e-3 * np.abs(dt).max() + 1e-6 * np.abs(t).max()
        err = np.abs(dc - dt).max()
        rel_err = err / max(np.abs(dt).max(), 1e-30)
        table.append((rel_err, k, err, np.abs(dt).max()))
        if rel_err > worst_w:
            worst_w, worst_name = rel_err, k
        if not err <= tol:
            i = int(np.abs(dc - dt).argmax())
            print(f"{k}: max |dW_C - dW_torch| {err:.3g} > tol {tol:.3g} (element {i}: C {c.flat[i]:.9g} "
                  f"torch {t.flat[i]:.9g} init {w0.flat[i]:.9g})")
            ok = False
    if abs(float(np.array(out["final.pool.p"])) - HP["p"]) != 0:
        print("pool.p changed during joint training")
        ok = False
    if abs(float(np.array(out["beta_final"])) - beta.item()) > 1e-6:
        print(f"final beta C {float(np.array(out['beta_final'])):.9g} torch {beta.item():.9g}")
        ok = False
    print("tensors with the largest |dW_C - dW_torch| / max|dW_torch|:")
    for r, k, e, m in sorted(table, reverse=True)[:int(os.environ.get("MG_FIDELITY_SHOW", "5"))]:
        print(f"  {k:40s} {r:.3e}  (max abs diff {e:.3g}, max |dW| {m:.3g})")
    print(f"final weights: max |dW_C - dW_torch| / max|dW_torch| = {worst_w:.3e} ({worst_name}), "
          f"final beta C {float(np.array(out['beta_final'])):.8f} torch {beta.item():.8f}")
    print("FIDELITY OK" if ok else "FIDELITY MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("gen", "check"):
        sys.exit(__doc__)
    if sys.argv[1] == "gen":
        gen(sys.argv[2])
        sys.exit(0)
    sys.exit(check(sys.argv[2]))
