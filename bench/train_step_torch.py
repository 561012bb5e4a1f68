"""PyTorch version of bench_train_step (issue 9): one MultiGrain training step on random images.

torchvision ResNet trunk + GeM (p=3) + linear classifier + L2 embedding; loss = lambda * CE +
(1 - lambda) * margin loss (alpha 0.2, learnable beta 1.2) over pairs sampled with distance-weighted
sampling (one positive and one negative per anchor, repeated augmentations m=3: ids = i // m); SGD
with momentum 0.9, weight decay 1e-4. 2 threads.
Usage: train_step_torch.py [--arch resnet50] [--batch 16] [--size 224] [--steps 3] [--lambda 0.5]
       [--m 3] [--layout nchw|cl]. Prints one 'RESULT images_per_s=...' line."""
import argparse
import os
import time

import torch
import torch.nn.functional as F

from e2e_torch import MultiGrainNet

ap = argparse.ArgumentParser()
ap.add_argument("--arch", default="resnet50")
ap.add_argument("--batch", type=int, default=16)
ap.add_argument("--size", type=int, default=224)
ap.add_argument("--steps", type=int, default=3)
ap.add_argument("--lambda", dest="lam", type=float, default=0.5)
ap.add_argument("--m", type=int, default=3)
ap.add_argument("--layout", default="nchw")
a = ap.parse_args()
torch.set_num_threads(int(os.environ.get("MG_BENCH_THREADS", "2")))
torch.manual_seed(0)
fmt = torch.channels_last if a.layout == "cl" else torch.contiguous_format
net = MultiGrainNet(a.arch, num_classes=10).train().to(memory_format=fmt)
beta = torch.nn.Parameter(torch.tensor(1.2))
opt = torch.optim.SGD(list(net.parameters()) + [beta], lr=0.1, momentum=0.9, weight_decay=1e-4)
x = torch.randn(a.batch, 3, a.size, a.size).contiguous(memory_format=fmt)
ids = torch.arange(a.batch) // a.m
labels = ids % 10
same = ids[:, None] == ids[None, :]
eye = torch.eye(a.batch, dtype=torch.bool)


def margin_loss(emb, alpha=0.2, cutoff=0.5, nonzero_loss_cutoff=1.4):
    n, d = emb.shape
    with torch.no_grad():
        dist = torch.cdist(emb, emb).clamp(min=cutoff)
        # distance-weighted sampling: q(d) ~ d^(2-D) (1 - d^2/4)^((D-3)/2), in log space
        logw = (2.0 - d) * dist.log() - ((d - 3) / 2.0) * (1.0 - 0.25 * dist * dist).clamp(min=1e-8).log()
        logw = logw - logw.max(dim=1, keepdim=True).values
        w = logw.exp() * (~same) * (dist < nonzero_loss_cutoff)
        w = torch.where(w.sum(1, keepdim=True) > 0, w, (~same).float())
        neg = torch.multinomial(w, 1).squeeze(1)
        posw = (same & ~eye).float()
        pos = torch.multinomial(torch.where(posw.sum(1, keepdim=True) > 0, posw, (~eye).float()), 1).squeeze(1)
    d_ap = (emb - emb[pos]).norm(dim=1)
    d_an = (emb - emb[neg]).norm(dim=1)
    return (F.relu(alpha + d_ap - beta) + F.relu(alpha + beta - d_an)).mean()


def step():
    opt.zero_grad(set_to_none=True)
    logits, emb = net(x)
    loss = a.lam * F.cross_entropy(logits, labels) + (1 - a.lam) * margin_loss(emb)
    loss.backward()
    opt.step()
    return loss.item()


step()
t0 = time.perf_counter()
for _ in range(a.steps):
    step()
dt = (time.perf_counter() - t0) / a.steps
print("RESULT images_per_s=%.3f s_per_step=%.4f threads=%d layout=%s" % (a.batch / dt, dt, torch.get_num_threads(), a.layout))
