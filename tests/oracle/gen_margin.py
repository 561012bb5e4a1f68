"""gen_margin.py: references for the margin loss and distance-weighted sampling.
The loss and its gradients come from torch autograd on the recipe's formulas with fixed triplets;
the sampling distribution p(k|i) comes from an independent numpy float64 evaluation of
q(D)^-1 = D^(2-d) (1 - D^2/4)^(-(d-3)/2) with the cutoffs. Usage: gen_margin.py OUTDIR"""
import os
import sys

import numpy as np
import torch

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(1234)
n_inst, m, d = 4, 3, 16
n = n_inst * m
base = rng.standard_normal((n_inst, d))
emb = np.repeat(base, m, axis=0) + 0.6 * rng.standard_normal((n, d))
emb /= np.linalg.norm(emb, axis=1, keepdims=True)
emb = emb.astype(np.float32)
ids = np.repeat(np.arange(n_inst), m).astype(np.int64)

# Fixed triplets: every ordered positive pair with a random negative of another instance.
trip = []
for i in range(n):
    for j in range(n):
        if i != j and ids[i] == ids[j]:
            negs = np.flatnonzero(ids != ids[i])
            trip.append((i, j, rng.choice(negs)))
trip = np.array(trip, dtype=np.int64)

alpha = 0.2
for beta0, tag in ((1.2, "b12"), (0.9, "b09")):
    for norm in ("active", "pairs"):
        e = torch.tensor(emb, dtype=torch.float64, requires_grad=True)
        beta = torch.tensor(beta0, dtype=torch.float64, requires_grad=True)
        a, p, ng = e[trip[:, 0]], e[trip[:, 1]], e[trip[:, 2]]
        d_ap = torch.sqrt(((p - a) ** 2).sum(1) + 1e-8)
        d_an = torch.sqrt(((ng - a) ** 2).sum(1) + 1e-8)
        pos = torch.clamp(d_ap - beta + alpha, min=0)
        neg = torch.clamp(beta - d_an + alpha, min=0)
        if norm == "active":
            cnt = float((pos > 0).sum() + (neg > 0).sum())
            cnt = max(cnt, 1.0)
        else:
            cnt = 2.0 * len(trip)
        loss = (pos + neg).sum() / cnt
        loss.backward()
        np.save(os.path.join(out, f"loss_{tag}_{norm}.npy"), np.array([loss.item()], dtype=np.float64))
        np.save(os.path.join(out, f"grad_{tag}_{norm}.npy"), e.grad.numpy().astype(np.float32))
        np.save(os.path.join(out, f"gbeta_{tag}_{norm}.npy"), np.array([beta.grad.item()], dtype=np.float64))
np.save(os.path.join(out, "emb.npy"), emb)
np.save(os.path.join(out, "ids.npy"), ids)
np.save(os.path.join(out, "triplets.npy"), trip)

# Sampling distribution p(k|i) (numpy float64, per-anchor normalisation).
e64 = emb.astype(np.float64)
sq = (e64 ** 2).sum(1)
D = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2 * e64 @ e64.T, 0))
Dc = np.maximum(D, 0.5)
with np.errstate(divide="ignore"):
    logw = (2 - d) * np.log(Dc) - ((d - 3) / 2) * np.log(1 - 0.25 * Dc ** 2)
mask = (ids[:, None] != ids[None, :]) & (Dc < 1.4)
probs = np.zeros((n, n))
for i in range(n):
    if mask[i].any():
        lw = np.where(mask[i], logw[i], -np.inf)
        w = np.exp(lw - lw[mask[i]].max())
        probs[i] = w / w.sum()
np.save(os.path.join(out, "probs.npy"), probs)
