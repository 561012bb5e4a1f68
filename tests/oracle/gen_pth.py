"""gen_pth.py: PyTorch checkpoints for the .pth reader and `convert` tests, written by torch.save,
with the exact tensors also written as .npy (references) or as bit fingerprints (resnet50).
Usage: gen_pth.py OUTDIR

  r18_zip.pth / r18_legacy.pth  resnet18(num_classes=10) state dict, zip / legacy format
  r18/<name>.npy                 its tensors
  r50_zip.pth + r50_fp.json      resnet50(num_classes=10), zip; per-tensor fingerprints
  mg_legacy.pth                  MultiGrain {'model_state': features.*, pool.p, classifier.*} (legacy),
                                 with epoch, plain extras and a pickled SGD optimizer (foreign classes)
  mg_white_legacy.pth            whitened MultiGrain (pca_m [D+1], pca_P [D+1, D+1], classifier [K, D+1])
  mgw/<name>.npy                 its tensors (MultiGrain names)
  views_zip.pth                  {'state_dict': {'module.' + key}} (DataParallel) resnet18 dict where
                                 fc.weight is a transposed view, fc.bias an offset slice of a larger
                                 storage, conv1.weight float16, pool.p 0-d
  views/<name>.npy               the values torch sees for those tensors (float16 widened)
  evil_{zip,legacy}.pth          a pickle calling os.system via __reduce__ (never loaded here)
  tiny_{zip,legacy}.pth          a small dict (with views, float16, 0-d) for the truncation loops
  r18_trunc.pth                  the first MiB of r18_legacy.pth
"""
import collections
import json
import os
import sys

import numpy as np
import torch
import torchvision

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
torch.manual_seed(0)
K = 10


def save(obj, name, legacy):
    torch.save(obj, os.path.join(out, name), _use_new_zipfile_serialization=not legacy)


def save_npy(folder, sd):
    d = os.path.join(out, folder)
    os.makedirs(d, exist_ok=True)
    for k, v in sd.items():
        np.save(os.path.join(d, k + ".npy"), v.detach().contiguous().numpy())


def randomize(model):
    sd = model.state_dict()
    for k, v in sd.items():  # random BN statistics and counters too, so nothing is a default value
        if v.dtype == torch.float32:
            v.copy_(torch.randn_like(v))
            if k.endswith("running_var"):
                v.abs_()
        elif v.dtype == torch.int64:
            v.fill_(int(torch.randint(0, 10 ** 6, ())))
    return sd


r18 = randomize(torchvision.models.resnet18(num_classes=K))
save(r18, "r18_zip.pth", False)
save(r18, "r18_legacy.pth", True)
save_npy("r18", r18)
with open(os.path.join(out, "r18_legacy.pth"), "rb") as f:
    data = f.read(1 << 20)
with open(os.path.join(out, "r18_trunc.pth"), "wb") as f:
    f.write(data)


def fingerprint(t):
    """sum over i of (bits[i] * (2i+1)) mod 2^64, bits = the element's raw little-endian bytes."""
    a = t.contiguous().numpy()
    bits = a.view(np.uint32 if a.dtype.itemsize == 4 else np.uint64).astype(np.uint64).ravel()
    w = np.arange(bits.size, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    with np.errstate(over="ignore"):
        return str(int(np.sum(bits * w, dtype=np.uint64)))


r50 = randomize(torchvision.models.resnet50(num_classes=K))
save(r50, "r50_zip.pth", False)
with open(os.path.join(out, "r50_fp.json"), "w") as f:
    json.dump({k: {"shape": list(v.shape), "fp": fingerprint(v)} for k, v in r50.items()}, f)
del r50

# MultiGrain layout: features.<torchvision name>, pool.p, classifier.*
mg = collections.OrderedDict()
for k, v in r18.items():
    if not k.startswith("fc."):
        mg["features." + k] = v
mg["pool.p"] = torch.tensor(3.0)
mg["classifier.weight"] = r18["fc.weight"]
mg["classifier.bias"] = r18["fc.bias"]
# MultiGrain's CheckpointHandler saved `optimizer.state_dict` (a bound method): the pickle then holds
# __builtin__.getattr, torch.optim.sgd.SGD and collections.defaultdict objects besides the model.
lin = torch.nn.Linear(3, 2)
opt = torch.optim.SGD(lin.parameters(), lr=0.1, momentum=0.9)
lin(torch.randn(4, 3)).sum().backward()
opt.step()
save({"model_state": mg, "epoch": 12, "optimizer_state": opt.state_dict,
      "extra": {"lr": 0.2, "momentum": [0.9, (1, 2)], "flag": True, "none": None}}, "mg_legacy.pth", True)

# Whitened MultiGrain (recipe §2.3): PCA of l2n([e, 1]) (pca_m [D+1], pca_P [D+1, D'], here D' = D+1)
# and the classifier W' [K, D'] applied to the whitened vector.
mgw = collections.OrderedDict((k, v) for k, v in mg.items() if not k.startswith("classifier."))
mgw["pool.p"] = torch.tensor(2.5)
mgw["classifier.weight"] = torch.randn(K, 512 + 1)
mgw["classifier.bias"] = torch.randn(K)
mgw["whitening.pca.pca_P"] = torch.randn(512 + 1, 512 + 1)
mgw["whitening.pca.pca_m"] = torch.randn(512 + 1)
save({"model_state": mgw}, "mg_white_legacy.pth", True)
save_npy("mgw", {k: v for k, v in mgw.items() if not k.startswith("features.")})

# Views: transposed fc.weight, fc.bias at an offset inside a larger storage, float16 conv1.
views = collections.OrderedDict(r18)
big = torch.randn(512, K)
views["fc.weight"] = big.t()
assert not views["fc.weight"].is_contiguous()
holder = torch.randn(3 * K)
views["fc.bias"] = holder[K:2 * K]
assert views["fc.bias"].storage_offset() == K
views["conv1.weight"] = r18["conv1.weight"].half()
views["pool.p"] = torch.tensor(4.25)
save({"state_dict": collections.OrderedDict(("module." + k, v) for k, v in views.items()), "arch": "resnet18"},
     "views_zip.pth", False)
save_npy("views", {"fc.weight": views["fc.weight"], "fc.bias": views["fc.bias"],
                   "conv1.weight": views["conv1.weight"].float()})


class Evil:
    def __reduce__(self):
        return (os.system, ("touch " + os.path.join(out, "PWNED"),))


save({"fc.weight": torch.zeros(2), "payload": Evil()}, "evil_zip.pth", False)
save({"fc.weight": torch.zeros(2), "payload": Evil()}, "evil_legacy.pth", True)

# a: plain; b: 0-d int64; c: float64 slice at an offset; d: transposed view of a's neighbour storage;
# e: float16 with subnormal, inf and negative zero; f: bool
base = torch.arange(12, dtype=torch.float32).reshape(3, 4) * 0.5 - 1
tiny = collections.OrderedDict(a=torch.arange(6, dtype=torch.float32).reshape(2, 3), b=torch.tensor(7),
                               c=torch.arange(4, dtype=torch.float64)[1:], d=base.t()[1:],
                               e=torch.tensor([1.0, -0.0, 6e-8, 65504.0, float("inf"), -2.5], dtype=torch.float16),
                               f=torch.tensor([True, False, True]))
save_npy("tiny", {"a": tiny["a"], "b": tiny["b"], "c": tiny["c"], "d": tiny["d"], "e": tiny["e"].float(),
                  "f": tiny["f"]})
save(tiny, "tiny_zip.pth", False)
save(tiny, "tiny_legacy.pth", True)
