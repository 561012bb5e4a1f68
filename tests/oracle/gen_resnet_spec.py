"""gen_resnet_spec.py: writes the state_dict layout (names in order, shapes, kinds) of torchvision
ResNets built with num_classes=K, and of resnet50 with a squeeze-excitation module appended to
every Bottleneck (the se_resnet50 layout of src/nn/resnet_spec.h). Usage: gen_resnet_spec.py OUTDIR"""
import json
import os
import sys

import torch
import torchvision

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
K = 7


class SE(torch.nn.Module):
    def __init__(self, c, r=16):
        super().__init__()
        self.fc1 = torch.nn.Conv2d(c, c // r, 1)
        self.fc2 = torch.nn.Conv2d(c // r, c, 1)


def layout(model):
    params = {n for n, _ in model.named_parameters()}
    entries = []
    for name, t in model.state_dict().items():
        if name in params:
            kind = "parameter"
        elif t.dtype == torch.int64:
            kind = "counter"
        else:
            kind = "buffer"
        entries.append({"name": name, "shape": list(t.shape), "kind": kind, "dtype": str(t.dtype)})
    n_params = sum(p.numel() for p in model.parameters())
    return {"entries": entries, "n_params": n_params}


result = {}
for arch in ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]:
    m = getattr(torchvision.models, arch)(num_classes=K)
    result[arch] = layout(m)
m = torchvision.models.resnet50(num_classes=K)
for layer in [m.layer1, m.layer2, m.layer3, m.layer4]:
    for block in layer:
        block.se = SE(block.conv3.out_channels)
result["se_resnet50"] = layout(m)
with open(os.path.join(out, "layouts.json"), "w") as f:
    json.dump({"num_classes": K, "archs": result}, f)
