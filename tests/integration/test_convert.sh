#!/bin/bash
# test_convert.sh: `multigrain convert` end to end: torch.save a random resnet18 (zip) and a
# MultiGrain-style dict (legacy format), convert both with the CLI, then read OUR safetensors
# files back with an independent reader (json + numpy only) and compare every tensor bit-exactly
# with torch's state dict; plus the CLI's errors for bad options and wrong class counts.
set -euo pipefail
"$MG_PYTHON" -c "import torch, torchvision, numpy" 2>/dev/null || { echo "no torch under $MG_PYTHON: skipped"; exit 77; }
dir="$MG_TEST_TMP/convert_sh"
rm -rf "$dir"
mkdir -p "$dir"
trap 'rm -rf "$dir"' EXIT

"$MG_PYTHON" - "$dir" <<'PY'
import collections, sys, torch, torchvision
d = sys.argv[1]
torch.manual_seed(1)
m = torchvision.models.resnet18(num_classes=5)
sd = m.state_dict()
for k, v in sd.items():
    if v.dtype == torch.float32:
        v.copy_(torch.randn_like(v))
    else:
        v.fill_(12345)
torch.save(sd, d + "/tv.pth")
mg = collections.OrderedDict()
for k, v in sd.items():
    mg[("classifier." + k[3:]) if k.startswith("fc.") else ("features." + k)] = v
mg["pool.p"] = torch.tensor(3.0)
torch.save({"model_state": mg, "epoch": 3}, d + "/mg.pth", _use_new_zipfile_serialization=False)
PY

"$MG_BIN" convert --from "$dir/tv.pth" --to "$dir/tv.safetensors"
"$MG_BIN" convert --from "$dir/mg.pth" --to "$dir/mg.safetensors" --arch resnet18 --num-classes 5

"$MG_PYTHON" - "$dir" <<'PY'
import json, struct, sys
import numpy as np
import torch

d = sys.argv[1]
DT = {"F32": "<f4", "F64": "<f8", "I64": "<i8", "I32": "<i4", "U8": "u1", "BOOL": "?"}

def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    assert n % 8 == 0, "header not padded to 8 bytes"
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    data = raw[8 + n:]
    meta = header.pop("__metadata__", {})
    out = {}
    end = 0
    for name, info in header.items():
        b, e = info["data_offsets"]
        arr = np.frombuffer(data[b:e], dtype=DT[info["dtype"]]).reshape(info["shape"])
        out[name] = arr
        end = max(end, e)
    assert end == len(data), "data section not covered"
    return meta, list(header.keys()), out

ref = torch.load(d + "/tv.pth")
for fname, p in (("tv", 1.0), ("mg", 3.0)):
    meta, order, t = read_safetensors(d + "/" + fname + ".safetensors")
    assert meta["format"] == "multigrain-checkpoint", meta
    assert meta["arch"] == "resnet18" and meta["num_classes"] == "5", meta
    assert float(meta["p"]) == p, meta["p"]
    expected = [k for k in ref.keys() if not k.startswith("fc.")] + ["pool.p", "fc.weight", "fc.bias"]
    assert order == expected, "tensor order differs from the state_dict order"
    for k, v in ref.items():
        a = t[k]
        want = v.numpy()
        assert a.dtype == want.dtype and a.shape == want.shape, (k, a.dtype, a.shape, want.dtype, want.shape)
        assert a.tobytes() == want.tobytes(), k + " differs"
    assert t["pool.p"].shape == () and t["pool.p"] == np.float32(p)
print("independent reader: all tensors bit-exact")
PY

expect_fail() { # expected exit code, message fragment, args...
    local code=$1 msg=$2
    shift 2
    set +e
    "$MG_BIN" "$@" >"$dir/out.txt" 2>&1
    local rc=$?
    set -e
    if [ "$rc" -ne "$code" ] || ! grep -qF -- "$msg" "$dir/out.txt"; then
        echo "FAIL: multigrain $* -> rc $rc (want $code), output:"
        cat "$dir/out.txt"
        exit 1
    fi
}
expect_fail 1 "wrong class count" convert --from "$dir/tv.pth" --to "$dir/bad.safetensors" --num-classes 1000
expect_fail 2 "--from" convert --to "$dir/bad.safetensors"
expect_fail 2 "--arch" convert --from "$dir/tv.pth" --to "$dir/bad.safetensors" --arch vgg
expect_fail 2 "--num-classes" convert --from "$dir/tv.pth" --to "$dir/bad.safetensors" --num-classes 0
"$MG_PYTHON" - "$dir" <<'PY'
import os, sys, torch
class Evil:
    def __reduce__(self):
        return (os.system, ("touch " + os.path.join(sys.argv[1], "PWNED"),))
torch.save({"fc.weight": torch.zeros(2), "payload": Evil()}, sys.argv[1] + "/evil.pth")
PY
expect_fail 1 "refusing to load global 'posix.system'" convert --from "$dir/evil.pth" --to "$dir/bad.safetensors"
grep -qF -- "--skip-foreign-objects" "$dir/out.txt"
expect_fail 1 "cannot infer the architecture" convert --from "$dir/evil.pth" --to "$dir/bad.safetensors" --skip-foreign-objects
[ ! -e "$dir/PWNED" ]
head -c 1000 "$dir/mg.pth" >"$dir/cut.pth"
expect_fail 1 "truncated" convert --from "$dir/cut.pth" --to "$dir/bad.safetensors"
[ ! -e "$dir/bad.safetensors" ]
echo "ok"
