"""gen_retrieval.py: independent numpy references for the retrieval code (kNN, PCA whitening,
classifier folding, AP/mAP/N-S and ground-truth parsing). numpy only, float64 throughout.
Usage: gen_retrieval.py OUTDIR"""
import os
import sys

import numpy as np

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(20261129)


def save(name, a):
    np.save(os.path.join(out, name + ".npy"), np.ascontiguousarray(a))


def l2n(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# ---- exact kNN --------------------------------------------------------------------------------
# Tie rule: decreasing score, then increasing database index (np.lexsort, last key is primary).
def knn_ref(db, q, k):
    s = q.astype(np.float64) @ db.astype(np.float64).T
    ids = np.empty((q.shape[0], k), np.int64)
    for i in range(q.shape[0]):
        order = np.lexsort((np.arange(db.shape[0]), -s[i]))
        ids[i] = order[:k]
    return ids, np.take_along_axis(s, ids, 1)


N, D, Q, K = 3000, 96, 40, 10
db = l2n(rng.standard_normal((N, D))).astype(np.float32)
qs = []
while len(qs) < Q:
    # Keep only queries whose k+1 best scores are separated by > 1e-4 (float32 sgemm error is
    # ~1e-6 here), so the neighbour set and order are unambiguous.
    q = l2n(rng.standard_normal((1, D))).astype(np.float32)[0]
    s = np.sort(db.astype(np.float64) @ q.astype(np.float64))[::-1][: K + 1]
    if np.all(-np.diff(s) > 1e-4):
        qs.append(q)
queries = np.stack(qs)
ids, sc = knn_ref(db, queries, K)
save("knn_db", db)
save("knn_q", queries)
save("knn_ids", ids)
save("knn_scores", sc.astype(np.float32))

# Exact ties: entries are multiples of 1/8 in [-1, 1], d = 16, so every dot product is exact in
# float32 whatever the summation order; many rows are duplicated to create equal scores.
base = rng.integers(-8, 9, size=(40, 16)).astype(np.float32) / 8
tie_db = base[rng.integers(0, 40, size=300)]
tie_q = base[rng.integers(0, 40, size=12)]
tids, tsc = knn_ref(tie_db, tie_q, 25)
save("tie_db", tie_db)
save("tie_q", tie_q)
save("tie_ids", tids)
save("tie_scores", tsc.astype(np.float32))

# ---- PCA whitening (sklearn PCA(whiten=True) convention) ---------------------------------------
def whiten_ref(x, dim, eps_rel=1e-10):
    x = x.astype(np.float64)
    m = x.mean(0)
    c = np.cov(x, rowvar=False, ddof=1)
    lam, u = np.linalg.eigh(c)
    order = np.argsort(lam)[::-1]
    lam, u = lam[order], u[:, order]
    lf = np.maximum(lam, eps_rel * lam[0])
    return m, lam[:dim], u[:, :dim] / np.sqrt(lf[:dim])


WD = 40
# Well separated spectrum (scales 0.05 .. 2, geometric) in a random rotation.
rot, _ = np.linalg.qr(rng.standard_normal((WD, WD)))
scales = np.geomspace(2.0, 0.05, WD)
wx = (rng.standard_normal((800, WD)) * scales) @ rot.T + rng.standard_normal(WD) * 0.3
wx = wx.astype(np.float32)
wy = ((rng.standard_normal((30, WD)) * scales) @ rot.T).astype(np.float32)
save("wh_x", wx)
save("wh_y", wy)
for dim in (WD, 24):
    m, lam, P = whiten_ref(wx, dim)
    y = (wy.astype(np.float64) - m) @ P
    yn = y / np.linalg.norm(y, axis=1, keepdims=True)
    save(f"wh_mean_{dim}", m.astype(np.float32))
    save(f"wh_lam_{dim}", lam)
    save(f"wh_P_{dim}", P)
    save(f"wh_gram_{dim}", (yn @ yn.T))  # sign-invariant
# Rank-deficient: 20 samples in 40 dims -> rank 19; only the first 19 components are defined.
rx = (rng.standard_normal((20, WD)) * scales).astype(np.float32)
m, lam, P = whiten_ref(rx, 19)
save("rd_x", rx)
save("rd_lam", lam)
save("rd_P", P)

# ---- classifier folding (recipe §1.8 / §2.3, augmented [e, 1]) ---------------------------------
FD, FK = 31, 12
emb = np.abs(rng.standard_normal((400, FD)) * np.linspace(0.5, 3, FD)).astype(np.float32)  # GeM-like >= 0
W = rng.standard_normal((FK, FD)).astype(np.float32)
b = rng.standard_normal(FK).astype(np.float32)
et = np.abs(rng.standard_normal((50, FD)) * np.linspace(0.5, 3, FD)).astype(np.float32)
e64 = et.astype(np.float64)
scaled = (e64 @ W.T.astype(np.float64) + b) / np.sqrt(1 + (e64 ** 2).sum(1, keepdims=True))
save("fold_train", emb)
save("fold_W", W)
save("fold_b", b)
save("fold_test", et)
save("fold_scaled_logits", scaled)
save("fold_argmax", scaled.argmax(1).astype(np.int64))
# Plain form (whitening learned on e / ||e||, classifier input [Phi, 1/||e||]): (W e + b) / ||e||.
save("fold_scaled_logits_plain", (e64 @ W.T.astype(np.float64) + b) / np.linalg.norm(e64, axis=1, keepdims=True))

# ---- AP / mAP / N-S ----------------------------------------------------------------------------
def ap_ref(ranked, self_id, relevant, trapezoid=True):
    """INRIA score_ap_from_ranks_1 (trapezoid) or non-interpolated AP, query removed from its list."""
    lst = [r for r in ranked if r != self_id]
    rel = set(relevant) - {self_id}
    ranks = [i for i, r in enumerate(lst) if r in rel]
    ap = 0.0
    for ntp, rank in enumerate(ranks):
        p1 = (ntp + 1) / (rank + 1)
        if trapezoid:
            p0 = 1.0 if rank == 0 else ntp / rank
            ap += (p0 + p1) / len(rel) / 2.0
        else:
            ap += p1 / len(rel)
    return ap


# Holidays-like: groups of 2..5 images, ids G*100 + j.
names, gid = [], []
for g in range(12):
    for j in range(int(rng.integers(2, 6))):
        names.append(f"holidays/{100000 + g * 100 + j:06d}.jpg")
        gid.append(g)
gid = np.array(gid)
n = len(names)
with open(os.path.join(out, "holidays_names.txt"), "w") as f:
    f.write("\n".join(names) + "\n")
qidx = [i for i, nm in enumerate(names) if int(os.path.basename(nm)[:6]) % 100 == 0]
# Rankings: full random permutations, lightly biased so APs vary.
ranked = np.stack([np.argsort(rng.random(n) - 0.5 * (gid == gid[q]) * rng.random()) for q in qidx])
aps_t = [ap_ref(ranked[i], q, np.nonzero(gid == gid[q])[0]) for i, q in enumerate(qidx)]
aps_s = [ap_ref(ranked[i], q, np.nonzero(gid == gid[q])[0], False) for i, q in enumerate(qidx)]
save("hol_ranked", ranked.astype(np.int64))
save("hol_ap_trap", np.array(aps_t))
save("hol_ap_std", np.array(aps_s))
save("hol_map_trap", np.array([np.mean(aps_t)]))

# UKBench-like: 10 objects x 4, every image a query; N-S counts the group in the top 4.
un = 40
with open(os.path.join(out, "ukb_names.txt"), "w") as f:
    f.write("".join(f"ukbench{i:05d}.jpg\n" for i in range(un)))
ug = np.arange(un) // 4
uranked = np.stack([np.argsort(rng.random(un) - 0.7 * (ug == ug[q]) * rng.random()) for q in range(un)])
ns = np.mean([(ug[uranked[q, :4]] == ug[q]).sum() for q in range(un)])
save("ukb_ranked", uranked.astype(np.int64))
save("ukb_ns", np.array([ns]))

# Generic list mode: 6 queries (3 of them also in the database), 25 database images.
dbn = [f"db/img_{i:03d}.png" for i in range(25)]
qn = ["q/a.jpg", "q/b.jpg", "q/c.jpg", dbn[3], dbn[10], dbn[20]]
rel = {}
for qi, q in enumerate(qn):
    rel[q] = sorted(set(rng.choice(25, size=int(rng.integers(1, 5)), replace=False).tolist()) - {dbn.index(q) if q in dbn else -1})
    if not rel[q]:
        rel[q] = [(qi * 7) % 25 if dbn[(qi * 7) % 25] != q else 0]
with open(os.path.join(out, "list_queries.txt"), "w") as f:
    f.write("\n".join(qn) + "\n")
with open(os.path.join(out, "list_db.txt"), "w") as f:
    f.write("\n".join(dbn) + "\n")
with open(os.path.join(out, "list_gt.tsv"), "w") as f:
    for q in reversed(qn):  # order of lines is free
        f.write(q + "\t" + "\t".join(dbn[i] for i in rel[q]) + "\n")
lranked = np.stack([rng.permutation(25) for _ in qn])
laps = [ap_ref(lranked[i], dbn.index(q) if q in dbn else -1, rel[q]) for i, q in enumerate(qn)]
save("list_ranked", lranked.astype(np.int64))
save("list_ap_trap", np.array(laps))
