"""fidelity_torch.py: the PyTorch half of the step-for-step fidelity test (issue 5, "as llm.c proves
itself"; run by tests/integration/test_fidelity.sh).

  fidelity_torch.py gen DIR    writes DIR/input.safetensors: initial ResNet-18 + GeM weights, 20 batches of
                               4 instances x m = 3 differently augmented copies, the hyper-parameters
  fidelity_torch.py check DIR  compares with what tool_fidelity wrote (DIR/c_out.safetensors: losses, lr, β
                               and the triplets our sampler drew at every step; DIR/state/state.<t>: our whole
                               training state before every step t and after the last):
    1. per step (asserted): PyTorch starts step t from OUR state before it, with our triplets; the loss of
       every step (and its CE and margin parts) within 1e-4 relative, lr, β, and the state after the step
       (every weight's update, momentum buffers, BN running statistics, β and its momentum) within float32
       tolerances; step 19's "after" is the final state;
    2. independent trajectories (reported; asserted with MG_FIDELITY_STRICT=1; skipped with
       MG_FIDELITY_TRAJECTORY=0): PyTorch trains the 20 steps from the initial weights on its own and the
       two loss series are compared. They separate chaotically after a few steps (float32 rounding flips
       ReLUs whose input is within rounding of 0), as PyTorch float32 does against PyTorch float64.

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
SIZE = 36           # 36x36 inputs: layer4 is still 2x2 (36-18-9-9-5-3-2), so GeM pools over 4 positions
NUM_CLASSES = 6
DATASET = 12        # distinct source images; each step draws 4 of them (instances recur across steps)
# Hyper-parameters, handed to the C tool as metadata (YAML scalars for mg_config_set_value). The recipe's
# values (λ 0.5, β0 1.2, α 0.2, momentum 0.9, weight decay on every tensor, "active" normaliser), its base lr
# 0.2 for batch 512 scaled linearly to our batch of 12 (≈ 0.005), the reference's "linear" schedule with a
# warm-up over the first 5 steps (20 steps = 1 epoch); label smoothing 0.1 and beta_lr 2 are not the
# recipe's, chosen so that a label-smoothing or a β learning-rate mistake cannot hide.
HP = {
    "arch": "resnet18", "num_classes": NUM_CLASSES, "p": 3.0,
    "classif_weight": 0.5, "margin": 0.2, "beta_init": 1.2, "beta_lr": 2.0, "normalise_by": "active",
    "use_label_smooth": "true", "label_smoothing": 0.1,
    "lr": 0.005, "lr_init": 0.0005, "lr_end": 0.0001, "lr_schedule": "linear", "warmup_epochs": 0.25, "epochs": 1,
    "momentum": 0.9, "nesterov": "false", "weight_decay": 5e-4, "wd_on_bn_bias": "true", "seed": 7,
    "steps_per_epoch": STEPS,
}

# One thread: on a busy 2-core machine torch's second (spinning) thread costs 3-4x the CPU time.
torch.set_num_threads(max(1, int(os.environ.get("MG_FIDELITY_TORCH_THREADS", "1") or 1)))


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


def load_net(model, tensors):
    """Loads network tensors (state_dict names) from a dict of numpy arrays, strictly."""
    sd = {k: torch.from_numpy(np.array(tensors[k])) for k in model.net.state_dict()}
    model.net.load_state_dict(sd, strict=True)


def triplets_ok(ids, trip):
    """Our sampler's triplets must be well-formed: anchor and positive copies of one instance, the
    negative another instance, every ordered positive pair exactly once."""
    want = sorted((i, j) for i in range(len(ids)) for j in range(len(ids)) if i != j and ids[i] == ids[j])
    return (sorted(map(tuple, trip[:, :2].tolist())) == want and np.all(ids[trip[:, 0]] == ids[trip[:, 1]])
            and np.all(ids[trip[:, 0]] != ids[trip[:, 2]]))


def step(model, opt, opt_beta, beta, inp, trip, s):
    """One step of the reference recipe on batch s with the given triplets; returns (loss, ce, margin)."""
    x = torch.from_numpy(np.array(inp["images"][s]))
    y = torch.from_numpy(np.array(inp["labels"][s]).astype(np.int64))
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
    lam = HP["classif_weight"]
    loss = lam * ce + (1 - lam) * mrg
    loss.backward()
    opt.step()
    opt_beta.step()
    return loss.item(), ce.item(), mrg.item()


def optimizers(model, beta):
    """torch.optim.SGD with momentum and weight decay on every network parameter (BN and biases
    included, recipe §1.6); β: its own SGD, lr × beta_lr, same momentum, no weight decay."""
    opt = torch.optim.SGD(model.net.parameters(), lr=lr_at(0), momentum=HP["momentum"],
                          weight_decay=HP["weight_decay"])
    opt_beta = torch.optim.SGD([beta], lr=lr_at(0) * HP["beta_lr"], momentum=HP["momentum"], weight_decay=0.0)
    return opt, opt_beta


# Tolerances (why: see each use).
LOSS_RTOL = 1e-4     # the requirement, per step, for the loss and each of its two parts
LR_RTOL = 1e-12      # closed-form double arithmetic on both sides
BETA_ATOL = 1e-6     # β is a float32 torch Parameter here and a double in C: float32 rounding of O(1)
# Per-step update of a tensor, Δ = w_after − w_before, compared in the 2-norm over the tensor:
# |Δ_C − Δ_torch| <= UPDATE_RTOL·|Δ_torch| + float32 resolution of the weights (2^-23·|w| per element).
# Both sides start the step from the same float32 state; the gradients differ by float32 summation
# order (~1e-6 relative through train-mode BN) and, rarely, by a ReLU whose input lies within rounding
# of 0 (one element's gradient switched on in one and off in the other: a few % of ONE output channel of
# one tensor; measured up to 7e-3 of a tensor's update). 5e-2 admits such a switch. Recipe differences
# measured with this test (PyTorch side altered, same C run): no weight decay moves some tensor's update by
# 0.36, momentum 0.85 for 0.9 by 0.054 (whole network 0.045), λ 0.55 by 0.16, no label smoothing by 0.17,
# the "pairs" normaliser by 0.13, lr × 1.02 by 0.076 (and the lr and loss checks catch most of these too).
UPDATE_RTOL = 5e-2
# Whole-network update: the same measure over all parameters at once. Summation-order differences stay
# near 1e-4 of the whole update and a ReLU switch measured 1.9e-3; 1e-2 leaves 5x room.
UPDATE_ALL_RTOL = 1e-2
# BN running statistics after a step come from train-mode batch statistics: the tolerance of the
# full-network parity test (tests/oracle/test_model.c), 1e-4 of the tensor's scale + 1e-3 relative.
STATS_ATOL, STATS_RTOL = 1e-4, 1e-3


def teacher_forced(d, inp, out, steps):
    """Every step t starts PyTorch from OUR state before step t (weights, BN statistics, momentum
    buffers, β and its momentum: DIR/state.<t>.safetensors): the loss of step t and the state after it
    must match ours. Float32 rounding cannot accumulate, so each step is checked on its own."""
    ok = True
    model = MultiGrain(NUM_CLASSES, HP["p"])
    model.train()
    worst = {"loss": 0.0, "loss_ce": 0.0, "loss_margin": 0.0, "update": 0.0, "update_all": 0.0, "stats": 0.0,
             "momentum": 0.0, "beta": 0.0}
    nxt, _ = st_numpy.load(os.path.join(d, "state", "state.0.safetensors"))
    print("per-step check (PyTorch starts every step from our state):")
    print(f"{'step':>4} {'lr':>9} {'loss (C)':>13} {'loss (torch)':>13} {'rel':>8} {'ce rel':>8} {'margin rel':>10} "
          f"{'|dW-dW_t|/|dW_t|':>16} {'worst tensor':>28}")
    for s in range(steps):
        cur = nxt
        nxt, _ = st_numpy.load(os.path.join(d, "state", f"state.{s + 1}.safetensors"))
        if int(cur["optimizer.step"]) != s:
            print(f"step {s}: state file holds optimizer.step {int(cur['optimizer.step'])}")
            return False, worst
        load_net(model, cur)
        beta = torch.nn.Parameter(torch.tensor(float(cur["optimizer.beta"]), dtype=torch.float32))
        opt, opt_beta = optimizers(model, beta)
        if s > 0:  # torch creates the buffer from the first gradient; ours is "first_update" at step 0
            for name, prm in model.net.named_parameters():
                opt.state[prm]["momentum_buffer"] = torch.from_numpy(np.array(cur[f"optimizer.momentum.{name}"]))
            opt_beta.state[beta]["momentum_buffer"] = torch.tensor(float(cur["optimizer.beta_momentum"]),
                                                                    dtype=torch.float32)
        trip = np.array(out[f"triplets.{s}"]).astype(np.int64)
        if not triplets_ok(np.array(inp["instances"][s]), trip):
            print(f"step {s}: malformed triplets from our sampler")
            ok = False
        ref = dict(zip(("loss", "loss_ce", "loss_margin"), step(model, opt, opt_beta, beta, inp, trip, s)))
        for k, v in ref.items():
            r = abs(float(out[k][s]) - v) / max(abs(v), 1e-30)
            worst[k] = max(worst[k], r)
            if not r <= LOSS_RTOL:
                print(f"step {s}: {k}: C {float(out[k][s]):.9g} torch {v:.9g} rel {r:.3g} > {LOSS_RTOL}")
                ok = False
        if abs(float(out["lr"][s]) - lr_at(s)) > LR_RTOL * lr_at(s):
            print(f"step {s}: lr C {float(out['lr'][s]):.12g} reference {lr_at(s):.12g}")
            ok = False
        # state after the step
        sd = model.net.state_dict()
        num = den = 0.0
        wt, wname = 0.0, ""
        for k, v in sd.items():
            t, c = v.detach().numpy(), np.asarray(nxt[k])
            if k.endswith("num_batches_tracked"):
                if int(c) != int(t):
                    print(f"step {s}: {k}: C {int(c)} torch {int(t)}")
                    ok = False
                continue
            if "running_" in k:
                err = np.abs(c - t).max()
                scale = np.abs(t).max()
                worst["stats"] = max(worst["stats"], err / max(scale, 1e-30))
                if not np.all(np.abs(c - t) <= STATS_ATOL * scale + STATS_RTOL * np.abs(t)):
                    print(f"step {s}: {k}: max abs diff {err:.3g} (scale {scale:.3g})")
                    ok = False
                continue
            # Δ_C − Δ_torch = w_C − w_torch after the step (same w before); float32 norms suffice for
            # ratios checked at the 1e-2 level.
            e, n = float(np.linalg.norm(c - t)), float(np.linalg.norm(t - np.asarray(cur[k])))
            floor = 2.0 ** -23 * float(np.linalg.norm(t))
            num, den = num + e * e, den + n * n
            r = e / max(n, 1e-30)
            if r > wt:
                wt, wname = r, k
            if not e <= UPDATE_RTOL * n + floor:
                print(f"step {s}: {k}: |dW_C - dW_torch| {e:.3g} > {UPDATE_RTOL}·|dW_torch| ({n:.3g}) + {floor:.2g}")
                ok = False
            mt = opt.state[model.net.get_parameter(k)]["momentum_buffer"].numpy()
            rm = float(np.linalg.norm(np.asarray(nxt[f"optimizer.momentum.{k}"]) - mt)) / max(
                float(np.linalg.norm(mt)), 1e-30)
            worst["momentum"] = max(worst["momentum"], rm)
            if not rm <= UPDATE_RTOL:  # the buffer is the update divided by lr: same measure and tolerance
                print(f"step {s}: optimizer.momentum.{k}: relative difference {rm:.3g} > {UPDATE_RTOL}")
                ok = False
        worst["update"] = max(worst["update"], wt)
        rall = (num / max(den, 1e-300)) ** 0.5
        worst["update_all"] = max(worst["update_all"], rall)
        if not rall <= UPDATE_ALL_RTOL:
            print(f"step {s}: whole-network update differs by {rall:.3g} of its norm > {UPDATE_ALL_RTOL}")
            ok = False
        if float(np.array(nxt["pool.p"])) != HP["p"]:
            print(f"step {s}: pool.p changed during joint training")
            ok = False
        db = abs(float(nxt["optimizer.beta"]) - beta.item())
        worst["beta"] = max(worst["beta"], db)
        if not db <= BETA_ATOL or abs(float(out["beta"][s]) - beta.item()) > BETA_ATOL:
            print(f"step {s}: beta C {float(nxt['optimizer.beta']):.9g} torch {beta.item():.9g}")
            ok = False
        if abs(float(nxt["optimizer.beta_momentum"]) - opt_beta.state[beta]["momentum_buffer"].item()) > BETA_ATOL:
            print(f"step {s}: beta momentum C {float(nxt['optimizer.beta_momentum']):.9g} "
                  f"torch {opt_beta.state[beta]['momentum_buffer'].item():.9g}")
            ok = False
        print(f"{s:4d} {lr_at(s):9.2e} {float(out['loss'][s]):13.9f} {ref['loss']:13.9f} "
              f"{abs(float(out['loss'][s]) - ref['loss']) / ref['loss']:8.1e} "
              f"{abs(float(out['loss_ce'][s]) - ref['loss_ce']) / ref['loss_ce']:8.1e} "
              f"{abs(float(out['loss_margin'][s]) - ref['loss_margin']) / ref['loss_margin']:10.1e} "
              f"{wt:16.1e} {wname:>28}")
    return ok, worst


def trajectory(inp, out, steps):
    """The independent replay: PyTorch trains 20 steps from the same initial weights and batches with
    our triplets, and the two loss series are compared. Returns the per-step relative differences."""
    model = MultiGrain(NUM_CLASSES, HP["p"])
    load_net(model, inp)
    model.train()
    beta = torch.nn.Parameter(torch.tensor(HP["beta_init"], dtype=torch.float32))
    opt, opt_beta = optimizers(model, beta)
    rel = []
    print("independent trajectories (both train 20 steps from the same initial weights):")
    print(f"{'step':>4} {'loss (C)':>13} {'loss (torch)':>13} {'rel':>9} {'beta (C)':>11} {'beta (torch)':>12}")
    for s in range(steps):
        trip = np.array(out[f"triplets.{s}"]).astype(np.int64)
        loss, _, _ = step(model, opt, opt_beta, beta, inp, trip, s)
        rel.append(abs(float(out["loss"][s]) - loss) / loss)
        print(f"{s:4d} {float(out['loss'][s]):13.9f} {loss:13.9f} {rel[-1]:9.2e} {float(out['beta'][s]):11.8f} "
              f"{beta.item():12.8f}")
    return rel


def check(d):
    inp, _ = st_numpy.load(os.path.join(d, "input.safetensors"))
    out, _ = st_numpy.load(os.path.join(d, "c_out.safetensors"))
    steps = inp["images"].shape[0]  # STEPS, or fewer when a shortened set is replayed (debugging)
    ok, worst = teacher_forced(d, inp, out, steps)
    print(f"per-step: max relative loss difference {worst['loss']:.2e} (ce {worst['loss_ce']:.2e}, margin "
          f"{worst['loss_margin']:.2e}; tolerance {LOSS_RTOL}); updates: worst tensor {worst['update']:.2e} "
          f"(tol {UPDATE_RTOL}), whole network {worst['update_all']:.2e} (tol {UPDATE_ALL_RTOL}); momentum "
          f"{worst['momentum']:.2e}; BN statistics {worst['stats']:.2e} of scale; beta {worst['beta']:.1e} abs")
    if os.environ.get("MG_FIDELITY_TRAJECTORY", "1") != "0":
        rel = trajectory(inp, out, steps)
        first = next((s for s, r in enumerate(rel) if r > LOSS_RTOL), None)
        # Independent float32 trajectories of this network separate chaotically: a ReLU input within
        # rounding of 0 switches one element's gradient in one run and not in the other, the weights then
        # differ, more such inputs switch, and so on. PyTorch float32 against PyTorch float64 (same
        # weights, batches and triplets) separates just as fast (docs/testing.md, "Step-for-step
        # fidelity"), so this series is reported, not asserted, unless MG_FIDELITY_STRICT=1.
        print(f"independent trajectories: max relative loss difference {max(rel):.2e}; within {LOSS_RTOL} for "
              f"steps 0..{(first if first is not None else steps) - 1}")
        if os.environ.get("MG_FIDELITY_STRICT") == "1" and first is not None:
            ok = False
    print("FIDELITY OK" if ok else "FIDELITY MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("gen", "check"):
        sys.exit(__doc__)
    if sys.argv[1] == "gen":
        gen(sys.argv[2])
        sys.exit(0)
    sys.exit(check(sys.argv[2]))
