"""PyTorch side of bench/run.sh (issue 9): MultiGrain ResNet inference and embedding extraction.

  e2e_torch.py prepare DIR             resnet50.pth (torchvision state dict), resnet50.onnx (MultiGrain
                                       net: backbone + GeM p=3 + classifier + L2 embedding, dynamic
                                       batch) and DIR/images/*.jpg (generated 500x375 JPEGs)
  e2e_torch.py infer ARCH BATCH SIZE REPS [cl|nchw]   eval, no_grad, 2 threads; channels_last (cl,
                                       the default) or plain NCHW tensors
  e2e_torch.py embed IMAGEDIR MAXSIDE [cl|nchw]  rect mode (longest side MAXSIDE, no crop), batch 1

Every mode prints one 'RESULT images_per_s=...' line; peak RSS is measured by /usr/bin/time."""
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

THREADS = int(os.environ.get("MG_BENCH_THREADS", "2"))
torch.set_num_threads(THREADS)
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


class GeM(nn.Module):
    def __init__(self, p=3.0):
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)))

    def forward(self, x):
        return x.clamp(min=1e-6).pow(self.p).mean(dim=(2, 3)).pow(1.0 / self.p)


class MultiGrainNet(nn.Module):
    """torchvision ResNet trunk, GeM pooling, linear classifier, L2-normalised embedding."""

    def __init__(self, arch="resnet50", num_classes=1000, p=3.0):
        super().__init__()
        r = getattr(torchvision.models, arch)()
        self.trunk = nn.Sequential(r.conv1, r.bn1, r.relu, r.maxpool, r.layer1, r.layer2, r.layer3, r.layer4)
        self.pool = GeM(p)
        self.fc = nn.Linear(r.fc.in_features, num_classes)

    def forward(self, x):
        e = self.pool(self.trunk(x))
        return self.fc(e), e / (e.norm(dim=1, keepdim=True) + 1e-6)


def prepare(d):
    import numpy as np
    from PIL import Image
    os.makedirs(os.path.join(d, "images"), exist_ok=True)
    torch.manual_seed(0)
    r = torchvision.models.resnet50()
    torch.save(r.state_dict(), os.path.join(d, "resnet50.pth"))
    net = MultiGrainNet("resnet50").eval()
    with torch.no_grad():
        torch.onnx.export(net, torch.randn(1, 3, 224, 224), os.path.join(d, "resnet50.onnx"),
                          input_names=["x"], output_names=["logits", "embedding"],
                          dynamic_axes={"x": {0: "n"}, "logits": {0: "n"}, "embedding": {0: "n"}},
                          opset_version=13)
    rng = np.random.default_rng(0)
    n = int(os.environ.get("MG_BENCH_IMAGES", "24"))
    for i in range(n):
        # smooth random colour fields plus noise: JPEG sizes like photos, not like flat images
        small = rng.integers(0, 256, size=(12, 16, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((500, 375), Image.BICUBIC)
        a = np.asarray(img).astype(np.int16) + rng.integers(-20, 21, size=(375, 500, 3))
        Image.fromarray(a.clip(0, 255).astype(np.uint8)).save(os.path.join(d, "images", "img%03d.jpg" % i),
                                                               quality=90)
    print("prepared", d)


def infer(arch, n, size, reps, layout="cl"):
    fmt = torch.channels_last if layout == "cl" else torch.contiguous_format
    net = MultiGrainNet(arch).eval().to(memory_format=fmt)
    x = torch.randn(n, 3, size, size).contiguous(memory_format=fmt)
    with torch.no_grad():
        for _ in range(2):
            net(x)
        t0 = time.perf_counter()
        for _ in range(reps):
            net(x)
        dt = (time.perf_counter() - t0) / reps
    print("RESULT images_per_s=%.3f s_per_batch=%.4f threads=%d" % (n / dt, dt, torch.get_num_threads()))


def embed(folder, max_side, layout="nchw"):
    fmt = torch.channels_last if layout == "cl" else torch.contiguous_format
    from PIL import Image
    files = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.lower().endswith((".jpg", ".jpeg")))
    net = MultiGrainNet("resnet50").eval().to(memory_format=fmt)
    out = []
    with torch.no_grad():
        t0 = time.perf_counter()
        for f in files:
            img = Image.open(f).convert("RGB")
            w, h = img.size
            s = max_side / max(w, h)
            if s != 1.0:
                img = img.resize((max(1, round(w * s)), max(1, round(h * s))), Image.BILINEAR)
            x = torchvision.transforms.functional.pil_to_tensor(img).float().div_(255).unsqueeze(0)
            x = ((x - MEAN) / STD).contiguous(memory_format=fmt)
            out.append(net(x)[1])
        dt = time.perf_counter() - t0
    print("RESULT images_per_s=%.3f images=%d seconds=%.3f" % (len(files) / dt, len(files), dt))


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "prepare":
        prepare(sys.argv[2])
    elif mode == "infer":
        infer(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), *sys.argv[6:7])
    elif mode == "embed":
        embed(sys.argv[2], int(sys.argv[3]), *sys.argv[4:5])
    else:
        sys.exit("unknown mode " + mode)
