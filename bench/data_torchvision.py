"""data_torchvision.py: the peer of bench_data.c: torchvision + PIL running MultiGrain's "full"
training transform (RandomResizedCrop(224), flip, ColorJitter(0.3, 0.3, 0.3), ToTensor, PCA
lighting / 1.1, clamp, Normalize) or the test transform on the same JPEG files, one thread,
reading each file from disk. Prints images per wall second and per CPU second.
Usage: data_torchvision.py DIR [--seconds S] [--mode train|torch|eval]"""
import argparse
import os
import time

import torch
import torchvision.transforms as T
from PIL import Image

ap = argparse.ArgumentParser()
ap.add_argument("dir")
ap.add_argument("--seconds", type=float, default=5)
ap.add_argument("--mode", default="train")
a = ap.parse_args()
torch.set_num_threads(1)

EIGVAL = torch.tensor([0.2175, 0.0188, 0.0045])
EIGVEC = torch.tensor([[-0.5675, 0.7192, 0.4009], [-0.5808, -0.0045, -0.8140], [-0.5836, -0.6948, 0.4203]])


class Lighting:
    """The recipe's PCA lighting noise (alpha ~ N(0, 0.1)), then / 1.1."""

    def __call__(self, img):
        alpha = img.new_empty(3).normal_(0, 0.1)
        rgb = (EIGVEC * alpha.view(1, 3) * EIGVAL.view(1, 3)).sum(1)
        return (img + rgb.view(3, 1, 1)) / 1.1


norm = T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
if a.mode == "train":
    tf = T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ColorJitter(0.3, 0.3, 0.3), T.ToTensor(),
                    Lighting(), lambda x: x.clamp(0, 1), norm])
elif a.mode == "torch":
    tf = T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor(), norm])
else:
    tf = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), norm])

files = sorted(os.path.join(a.dir, f) for f in os.listdir(a.dir) if f.endswith((".jpg", ".jpeg", ".JPEG")))
n = 0
t0, c0 = time.monotonic(), time.process_time()
while time.monotonic() - t0 < a.seconds:
    for f in files:
        with open(f, "rb") as fp:
            img = Image.open(fp).convert("RGB")
        tf(img)
        n += 1
wall, cpu = time.monotonic() - t0, time.process_time() - c0
print("torchvision mode=%s files=%d images=%d wall_img_s=%.1f cpu_img_s=%.1f" % (a.mode, len(files), n, n / wall, n / cpu))
