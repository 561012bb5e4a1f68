"""demo_torch_reference.py: the Fashion-MNIST demo's setting in PyTorch (ResNet-18 + GeM p=3 head,
batch 96 = 32 images x 3 identical copies, 32x32 via resize 36 + centre crop 32, SGD momentum 0.9,
wd 5e-4, linear warm-up then decay, 625 steps, cross-entropy only), to compare accuracy and step time
with `multigrain train -c configs/demo_fashion_mnist.yaml --epochs 1 --set augmentation=none
--set classif_weight=1 --set warmup_epochs=0.1 --lr 0.1 --set lr_init=0.01`.
Usage: /usr/bin/python3 bench/demo_torch_reference.py DATA_DIR   (folder with the uncompressed IDX files)"""
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
import torchvision

DATA = sys.argv[1]
torch.set_num_threads(2); torch.manual_seed(0)
def load(split):
    x = np.fromfile(f"{DATA}/{split}-images-idx3-ubyte", dtype=np.uint8)[16:].reshape(-1, 1, 28, 28)
    y = np.fromfile(f"{DATA}/{split}-labels-idx1-ubyte", dtype=np.uint8)[8:]
    return torch.tensor(x), torch.tensor(y.astype(np.int64))
def prep(x):
    x = x.float() / 255.0
    x = F.interpolate(x, size=(36, 36), mode="bilinear", align_corners=False)[:, :, 2:34, 2:34]
    x = x.repeat(1, 3, 1, 1)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1); std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return (x - mean) / std
xtr, ytr = load("train"); xte, yte = load("t10k")
net = torchvision.models.resnet18(num_classes=10)
p = 3.0
def fwd(x):
    n = net
    f = n.layer4(n.layer3(n.layer2(n.layer1(n.maxpool(n.relu(n.bn1(n.conv1(x))))))))
    e = f.clamp(min=1e-6).pow(p).mean(dim=(2, 3)).pow(1 / p)
    return n.fc(e)
opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
perm = torch.randperm(60000).repeat_interleave(3)[:60000]
T, W = 625, 62
t0 = time.time()
net.train()
for s in range(T):
    lr = 0.01 + (0.1 - 0.01) * (s + 1) / W if s < W else 0.1 - (0.1 - 0.0005) * (s - W) / (T - W)
    for g in opt.param_groups: g["lr"] = lr
    idx = perm[s * 96:(s + 1) * 96]
    loss = F.cross_entropy(fwd(prep(xtr[idx])), ytr[idx])
    opt.zero_grad(); loss.backward(); opt.step()
    if s % 100 == 0: print(s, loss.item(), time.time() - t0, flush=True)
net.eval()
with torch.no_grad():
    correct = sum((fwd(prep(xte[i:i + 500])).argmax(1) == yte[i:i + 500]).sum().item() for i in range(0, 10000, 500))
print("torch top-1", correct / 100, "time", time.time() - t0)
