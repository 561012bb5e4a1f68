#!/usr/bin/env bash
# test_retrieval_bench.sh: `multigrain retrieval-eval --dataset holidays|ukbench|list|copydays` on small
# generated image sets. A random-weight MultiGrain-style ResNet-18 (PyTorch, converted) embeds groups
# of near-duplicates (one smooth base pattern per group + small pixel noise), so the right answer is
# known by construction (every group's members rank first: mAP 1, N-S 4). The exact values are then
# recomputed independently in numpy (float64) from the embeddings the command saved
# (--save-embeddings), and those embeddings are checked against `multigrain embed`. Images have
# longest side 64 = --max-side, so the rect resize is the identity (rotation then commutes exactly).
set -u
fail() { echo "FAIL: $*" >&2; exit 1; }
bin=${MG_BIN:?}; py=${MG_PYTHON:-/usr/bin/python3}
"$py" -c "import torch, torchvision, PIL" 2>/dev/null || { echo "SKIPPED: no torch"; exit 77; }
tmp=$(mktemp -d "${MG_TEST_TMP:-/tmp}/rbench.XXXXXX"); trap 'rm -rf "$tmp"' EXIT

"$py" - "$tmp" <<'PY' || fail "generator"
import os, sys
import numpy as np, torch, torchvision
from PIL import Image
d = sys.argv[1]
torch.manual_seed(3)
net = torchvision.models.resnet18(num_classes=4)
sd = {"features." + k: v for k, v in net.state_dict().items() if not k.startswith("fc.")}
sd["pool.p"] = torch.tensor(3.0)
sd["classifier.weight"] = net.fc.weight.detach().clone(); sd["classifier.bias"] = net.fc.bias.detach().clone()
torch.save({"model_state": sd}, os.path.join(d, "mg.pth"))
rng = np.random.default_rng(11)
def base(h, w):
    yy, xx = np.mgrid[0:h, 0:w] / 64.0
    f = rng.uniform(1, 6, size=(3, 2)); ph = rng.uniform(0, 6.3, size=3)
    a = np.stack([128 + 100 * np.sin(2 * np.pi * (f[c, 0] * xx + f[c, 1] * yy) + ph[c]) for c in range(3)], -1)
    return a
def member(b):
    return np.clip(b + rng.normal(0, 6, size=b.shape), 0, 255).astype(np.uint8)
def save(a, *p):
    os.makedirs(os.path.join(d, *p[:-1]), exist_ok=True); Image.fromarray(a).save(os.path.join(d, *p))
shapes = [(64, 64), (48, 64), (64, 40), (56, 64), (64, 50)]
# holidays: 4 groups of 3; 100101 is stored turned 90 deg counterclockwise (needs 90 clockwise)
for g in range(4):
    b = base(*shapes[g])
    for j in range(3):
        a = member(b); name = f"{100000 + g * 100 + j:06d}.png"
        if name == "100101.png":
            save(a, "upright", name); a = np.ascontiguousarray(np.rot90(a, 1))
        save(a, "holidays", name)
with open(os.path.join(d, "rotate.txt"), "w") as f:
    f.write("# name degrees-clockwise\n100101.png 90\n100200.png 0\n")
# ukbench: 3 objects x 4
for o in range(3):
    b = base(*shapes[o + 1])
    for j in range(4): save(member(b), "ukbench", f"ukbench{o * 4 + j:05d}.png")
# list: 3 groups; queries q0..q2 (q1 also in the database), database db/g{g}_{j}
q, db, gt = [], [], []
for g in range(3):
    b = base(*shapes[g + 2])
    rel = []
    for j in range(3):
        save(member(b), "list", "db", f"g{g}_{j}.png"); db.append(f"db/g{g}_{j}.png"); rel.append(db[-1])
    if g == 1:
        q.append("db/g1_0.png")
    else:
        save(member(b), "list", "q", f"q{g}.png"); q.append(f"q/q{g}.png")
    gt.append(q[-1] + "\t" + "\t".join(rel))
# copydays: original/ 3 groups (2000..2002), strong/ edited copies (2 for group 2000), 3 distractors
for g in range(3):
    b = base(*shapes[g])
    save(member(b), "copydays", "original", f"{200000 + g * 100}.png")
    for j in range(1, 3 if g == 0 else 2): save(member(b), "copydays", "strong", f"{200000 + g * 100 + j}.png")
for i in range(3): save(member(base(*shapes[4 - i])), "distract", f"x{i}.png")
open(os.path.join(d, "queries.txt"), "w").write("\n".join(q) + "\n")
open(os.path.join(d, "database.txt"), "w").write("\n".join(db) + "\n")
open(os.path.join(d, "gt.tsv"), "w").write("\n".join(gt[::-1]) + "\n")
PY

"$bin" convert --from "$tmp/mg.pth" --to "$tmp/mg.safetensors" >"$tmp/conv.log" 2>&1 || { cat "$tmp/conv.log"; fail "convert"; }
R() { "$bin" retrieval-eval -c "$tmp/mg.safetensors" --max-side 64 "$@"; }
R --dataset holidays --root "$tmp/holidays" --rotate "$tmp/rotate.txt" --save-embeddings "$tmp/H.npy" --out "$tmp/h.tsv" \
  >"$tmp/h.out" 2>"$tmp/h.err" || { cat "$tmp/h.err"; fail "holidays"; }
R --dataset holidays --root "$tmp/holidays" --save-embeddings "$tmp/H0.npy" >/dev/null 2>&1 || fail "holidays without rotation"
R --dataset ukbench --root "$tmp/ukbench" --save-embeddings "$tmp/U.npy" --out "$tmp/u.tsv" \
  >"$tmp/u.out" 2>"$tmp/u.err" || { cat "$tmp/u.err"; fail "ukbench"; }
R --dataset copydays --root "$tmp/copydays" --distractors "$tmp/distract" --save-embeddings "$tmp/C.npy" --out "$tmp/c.tsv" \
  >"$tmp/c.out" 2>"$tmp/c.err" || { cat "$tmp/c.err"; fail "copydays"; }
"$bin" embed -c "$tmp/mg.safetensors" -i "$tmp/list/db" -o "$tmp/Ldb_raw.npy" --max-side 64 2>/dev/null || fail "embed list db"
"$bin" embed -c "$tmp/mg.safetensors" -i "$tmp/upright" -o "$tmp/up.npy" --max-side 64 2>/dev/null || fail "embed upright"
"$bin" whiten --embeddings "$tmp/Ldb_raw.npy" --out "$tmp/W.safetensors" --dim 6 >/dev/null 2>&1 || fail "whiten"
for kind in trapezoid standard; do
  R --dataset list --root "$tmp/list" --queries "$tmp/queries.txt" --database "$tmp/database.txt" --gt "$tmp/gt.tsv" \
    --whiten "$tmp/W.safetensors" --ap $kind --save-embeddings "$tmp/L.npy" --out "$tmp/l_$kind.tsv" \
    >"$tmp/l_$kind.out" 2>"$tmp/l.err" || { cat "$tmp/l.err"; fail "list $kind"; }
done

"$py" - "$tmp" <<'PY' || fail "comparison"
import os, sys, re, json, struct
import numpy as np
d = sys.argv[1]
P = lambda *p: os.path.join(d, *p)
def result(f):
    return float(re.search(r"^result: \{'\w+': ([0-9.]+)\}", open(P(f)).read(), re.M).group(1))
def tsv(f):
    rows = [l.rstrip("\n").split("\t") for l in open(P(f))][1:]
    return [r[0] for r in rows], np.array([float(r[1]) for r in rows])
def rank(Q, D):  # decreasing score, ties by lower database index (the documented rule)
    S = Q.astype(np.float64) @ D.astype(np.float64).T
    return [np.lexsort((np.arange(D.shape[0]), -s)) for s in S]
def ap(order, rel, self_idx, kind):
    order = [i for i in order if i != self_idx]; rel = set(rel) - {self_idx}
    ranks = [r for r, i in enumerate(order) if i in rel]; a = 0.0
    for k, r in enumerate(ranks):
        pa = (k + 1) / (r + 1)
        a += (pa if kind == "standard" else ((1.0 if r == 0 else k / r) + pa) / 2) / len(rel)
    return a
# tolerances: AP is a function of the ranking only, so numpy's float64 ranking of the same
# float32 embeddings gives the same value unless two scores are within ~1e-7 (not the case here);
# 1e-6 covers the printed 6 decimals / %.9g; embeddings of the same pixels agree to float rounding.
# --- holidays
H = np.load(P("H.npy")); names = open(P("H.txt")).read().split()
ids = [int(os.path.basename(n)[:6]) for n in names]
qs = [i for i, v in enumerate(ids) if v % 100 == 0]
aps = [ap(o, [j for j in range(len(ids)) if ids[j] // 100 == ids[q] // 100], q, "trapezoid") for q, o in zip(qs, rank(H[qs], H))]
qn, got = tsv("h.tsv")
assert [os.path.basename(n) for n in qn] == [os.path.basename(names[q]) for q in qs], qn
assert np.abs(got - aps).max() < 1e-6, (got, aps)
assert abs(result("h.out") - np.mean(aps)) < 1e-6, (result("h.out"), np.mean(aps))
assert abs(np.mean(aps) - 1.0) < 1e-12, ("construction: every group ranks first", aps)
up = np.load(P("up.npy"))[0]; H0 = np.load(P("H0.npy")); i = [os.path.basename(n) for n in names].index("100101.png")
assert np.abs(H[i] - up).max() < 1e-5, ("rotated image vs upright", np.abs(H[i] - up).max())
assert np.abs(H0[i] - up).max() > 1e-3, "without --rotate the image should differ"
others = [j for j in range(len(names)) if j != i]; assert np.abs(H[others] - H0[others]).max() == 0
# --- ukbench
U = np.load(P("U.npy")); un = open(P("U.txt")).read().split()
grp = [int(os.path.basename(n)[7:12]) // 4 for n in un]
ns = [sum(grp[j] == grp[q] for j in o[:4]) for q, o in enumerate(rank(U, U))]
qn, got = tsv("u.tsv"); assert np.array_equal(got, ns), (got, ns)
assert abs(result("u.out") - np.mean(ns)) < 1e-6 and np.mean(ns) == 4.0, (result("u.out"), ns)
# --- list, whitened: rows = l2n((x - m) P) of the plain embeddings (safetensors read by hand)
raw = open(P("W.safetensors"), "rb").read(); n = struct.unpack("<Q", raw[:8])[0]; hdr = json.loads(raw[8:8 + n])
t = lambda k: np.frombuffer(raw[8 + n + hdr[k]["data_offsets"][0]: 8 + n + hdr[k]["data_offsets"][1]], "<f4").reshape(hdr[k]["shape"])
m, Pw = t("whiten.mean").astype(np.float64), t("whiten.P").astype(np.float64)
Ldb = np.load(P("L.npy")); Lq = np.load(P("L.queries.npy")); dbn = open(P("L.txt")).read().split()
assert [os.path.basename(x) for x in dbn] == [os.path.basename(x) for x in open(P("Ldb_raw.txt")).read().split()]
y = (np.load(P("Ldb_raw.npy")) - m) @ Pw; y /= np.linalg.norm(y, axis=1, keepdims=True)
assert Ldb.shape == (9, 6) and np.abs(Ldb - y).max() < 1e-5, np.abs(Ldb - y).max()
qlist = open(P("queries.txt")).read().split(); dlist = open(P("database.txt")).read().split()
gtl = {l.split("\t")[0]: l.strip().split("\t")[1:] for l in open(P("gt.tsv"))}
for kind in ("trapezoid", "standard"):
    aps = []
    for qi, o in enumerate(rank(Lq, Ldb)):
        qname = qlist[qi]; self_idx = dlist.index(qname) if qname in dlist else -1
        aps.append(ap(o, [dlist.index(r) for r in gtl[qname]], self_idx, kind))
    qn, got = tsv(f"l_{kind}.tsv")
    assert np.abs(got - aps).max() < 1e-6, (kind, got, aps)
    assert abs(result(f"l_{kind}.out") - np.mean(aps)) < 1e-6, (kind, result(f"l_{kind}.out"), np.mean(aps))
# --- copydays: database = originals then distractors, relevant = originals with the same id // 100
Cdb = np.load(P("C.npy")); Cq = np.load(P("C.queries.npy"))
cdn = [os.path.basename(x) for x in open(P("C.txt")).read().split()]
cqn = [os.path.basename(x) for x in open(P("C.queries.txt")).read().split()]
assert cdn[:3] == ["200000.png", "200100.png", "200200.png"] and len(cdn) == 6 and len(cqn) == 4, (cdn, cqn)
aps = [ap(o, [j for j in range(3) if cdn[j][:4] == cqn[qi][:4]], -1, "trapezoid") for qi, o in enumerate(rank(Cq, Cdb))]
qn, got = tsv("c.tsv")
assert np.abs(got - aps).max() < 1e-6 and abs(result("c.out") - np.mean(aps)) < 1e-6, (got, aps, result("c.out"))
assert abs(np.mean(aps) - 1.0) < 1e-12, ("construction: each edited copy finds its original first", aps)
print("holidays / ukbench / list / copydays agree with numpy")
PY

# errors: one line naming the file or option, non-zero exit
printf 'q/q0.png\tdb/nope.png\n' > "$tmp/badgt.tsv"
R --dataset list --root "$tmp/list" --queries "$tmp/queries.txt" --database "$tmp/database.txt" --gt "$tmp/badgt.tsv" 2>"$tmp/err" >/dev/null
[ $? -ne 0 ] || fail "bad gt accepted"; grep -q "badgt.tsv" "$tmp/err" || fail "bad gt message: $(cat "$tmp/err")"
printf '100101.png 45\n' > "$tmp/badrot.txt"
R --dataset holidays --root "$tmp/holidays" --rotate "$tmp/badrot.txt" 2>"$tmp/err" >/dev/null
[ $? -ne 0 ] || fail "bad rotation accepted"; grep -q "badrot.txt:1" "$tmp/err" || fail "bad rotation message: $(cat "$tmp/err")"
R --dataset holidays 2>"$tmp/err" >/dev/null; [ $? -eq 2 ] || fail "holidays without --root: exit code"
R --dataset copydays --root "$tmp" 2>"$tmp/err" >/dev/null; [ $? -ne 0 ] || fail "copydays without original/"
grep -q "original/ and strong/" "$tmp/err" || fail "copydays message: $(cat "$tmp/err")"
echo ok
