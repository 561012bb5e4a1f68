#!/usr/bin/env bash
# test_search_cli.sh: `multigrain search` (and `whiten`) end to end against numpy brute force,
# plus bad inputs (wrong dtype, ndim, dimension mismatch, empty file, bad k) -> one-line errors.
set -u
PY=${MG_PYTHON:-/usr/bin/python3}
"$PY" -c "import numpy" 2>/dev/null || { echo "numpy not available in $PY: skipped"; exit 77; }
T=$(mktemp -d "${MG_TEST_TMP:-/tmp}/search_cli.XXXXXX")
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

"$PY" - "$T" <<'PYEOF' || fail "cannot build inputs"
import sys, numpy as np
t = sys.argv[1]
rng = np.random.default_rng(5)
def l2n(x): return x / np.linalg.norm(x, axis=1, keepdims=True)
db = l2n(rng.standard_normal((2000, 48))).astype(np.float32)
qs = []
while len(qs) < 25:  # keep queries whose 8 best scores are > 1e-4 apart (no near-ties)
    q = l2n(rng.standard_normal((1, 48))).astype(np.float32)[0]
    s = np.sort(db.astype(np.float64) @ q)[::-1][:8]
    if np.all(-np.diff(s) > 1e-4): qs.append(q)
q = np.stack(qs)
np.save(f"{t}/db.npy", db); np.save(f"{t}/q.npy", q)
np.save(f"{t}/db_unnorm.npy", db * 3.5)
np.save(f"{t}/q64.npy", q.astype(np.float64)); np.save(f"{t}/qint.npy", (q * 100).astype(np.int32))
np.save(f"{t}/q3d.npy", q.reshape(25, 6, 8)); np.save(f"{t}/q_small.npy", q[:, :40].copy())
np.save(f"{t}/empty.npy", np.zeros((0, 48), np.float32))
PYEOF

"$MG_BIN" search --index "$T/db.npy" --query "$T/q.npy" -k 7 --out "$T/res.tsv" || fail "search failed"
"$MG_BIN" search --index "$T/db_unnorm.npy" --query "$T/q.npy" -k 7 --normalize > "$T/res_stdout.tsv" || fail "search to stdout failed"
"$MG_BIN" search --index "$T/db.npy" --query "$T/q.npy" -k 7 --threads 1 --blas-threads --out "$T/res_blas.tsv" || fail "blas mode failed"

"$PY" - "$T" <<'PYEOF' || fail "results differ from numpy"
import sys, numpy as np
t = sys.argv[1]
db = np.load(f"{t}/db.npy").astype(np.float64); q = np.load(f"{t}/q.npy").astype(np.float64)
s = q @ db.T
for name in ("res.tsv", "res_stdout.tsv", "res_blas.tsv"):
    rows = [l.split("\t") for l in open(f"{t}/{name}").read().splitlines()]
    assert len(rows) == 25 * 7, (name, len(rows))
    for qi in range(25):
        ref = np.lexsort((np.arange(2000), -s[qi]))[:7]  # score desc, then index asc
        got = rows[qi * 7:(qi + 1) * 7]
        for r, row in enumerate(got):
            assert int(row[0]) == qi and int(row[2]) == r, (name, row)
            assert int(row[1]) == ref[r], (name, qi, r, row, ref)
            # float32 dot products of 48-d unit vectors vs float64: < 1e-5
            assert abs(float(row[3]) - s[qi, ref[r]]) < 1e-5, (name, row, s[qi, ref[r]])
print("search matches numpy")
PYEOF

# Bad inputs: non-zero exit, exactly one 'multigrain:' error line naming the file or option.
check_err() {  # expected-substring, args...
  local want=$1; shift
  "$MG_BIN" "$@" > "$T/out" 2> "$T/err" && fail "'$*' should fail"
  local n; n=$(grep -c '^multigrain:' "$T/err")
  [ "$n" = 1 ] || fail "'$*': expected one error line, found $n: $(cat "$T/err")"
  grep '^multigrain:' "$T/err" | grep -q -- "$want" || fail "'$*': error does not mention '$want': $(head -1 "$T/err")"
}
check_err "float32"   search --index "$T/db.npy" --query "$T/q64.npy" -k 3
check_err "q64.npy"   search --index "$T/db.npy" --query "$T/q64.npy" -k 3
check_err "qint.npy"  search --index "$T/db.npy" --query "$T/qint.npy" -k 3
check_err "2-D"       search --index "$T/db.npy" --query "$T/q3d.npy" -k 3
check_err "mismatch"  search --index "$T/db.npy" --query "$T/q_small.npy" -k 3 --out "$T/bad.tsv"
check_err "empty.npy" search --index "$T/empty.npy" --query "$T/q.npy" -k 3
check_err "k"         search --index "$T/db.npy" --query "$T/q.npy" -k 0
check_err "2000"      search --index "$T/db.npy" --query "$T/q.npy" -k 2001
check_err "missing.npy" search --index "$T/missing.npy" --query "$T/q.npy" -k 3
check_err "--query"   search --index "$T/db.npy" -k 3
[ ! -e "$T/bad.tsv" ] || fail "a failed search left an output file"

# whiten: learn on the database, check mean / P against numpy (P up to column sign).
"$MG_BIN" --quiet whiten --embeddings "$T/db.npy" --out "$T/w.safetensors" --dim 16 || fail "whiten failed"
"$PY" - "$T" <<'PYEOF' || fail "whitening differs from numpy"
import sys, json, struct, numpy as np
t = sys.argv[1]
raw = open(f"{t}/w.safetensors", "rb").read()
n = struct.unpack("<Q", raw[:8])[0]; hdr = json.loads(raw[8:8 + n]); data = raw[8 + n:]
def get(name):
    h = hdr[name]; a, b = h["data_offsets"]
    assert h["dtype"] == "F32"
    return np.frombuffer(data[a:b], np.float32).reshape(h["shape"])
m, P = get("whiten.mean"), get("whiten.P")
x = np.load(f"{t}/db.npy").astype(np.float64)
lam, u = np.linalg.eigh(np.cov(x, rowvar=False, ddof=1))
o = np.argsort(lam)[::-1][:16]
ref = u[:, o] / np.sqrt(lam[o])
assert P.shape == (48, 16) and m.shape == (48,)
assert np.abs(m - x.mean(0)).max() < 1e-7  # float32 rounding of a float64 mean (|m| < 0.1)
sign = np.sign((P * ref).sum(0))
err = np.abs(P - ref * sign).max() / np.abs(ref).max()
# 2000 random points in 48-d: eigenvalue gaps are small (~1%), so eigenvectors are only
# determined to ~1e-13/gap in float64; float32 storage adds 6e-8 relative: 1e-5 is generous.
assert err < 1e-5, err
print("whiten matches numpy, rel err", err)
PYEOF
check_err "c0.safetensors" whiten --embeddings "$T/db.npy" --out "$T/c.safetensors" --fold-into "$T/c0.safetensors"
check_err "--dim"     whiten --embeddings "$T/db.npy" --out "$T/c.safetensors" --fold-into "$T/c0.safetensors" --dim 4
check_err "--dim"     whiten --embeddings "$T/db.npy" --out "$T/w2.safetensors" --dim 49
echo "ok"
