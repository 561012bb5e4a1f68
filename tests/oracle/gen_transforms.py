"""gen_transforms.py: torchvision/PIL references for the data transforms. Writes PNG inputs (so no
JPEG decoder difference enters) and the outputs of PIL resize, torchvision Resize/CenterCrop,
resized_crop, hflip, adjust_brightness/contrast/saturation, ToTensor + lighting + Normalize, and
RandomResizedCrop parameter draws (torchvision 0.2 and 0.14 algorithms re-run on fixed uniforms).
Usage: gen_transforms.py OUTDIR"""
import math
import os
import sys

import numpy as np
import torch
import torchvision.transforms.functional as F
from PIL import Image

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(1234)


def save(name, a, dtype=np.float32):
    np.save(os.path.join(out, name + ".npy"), np.ascontiguousarray(np.asarray(a, dtype=dtype)))


def make_image(w, h):
    # smooth gradients + edges + noise: exercises every filter tap
    y, x = np.mgrid[0:h, 0:w]
    r = 127 + 120 * np.sin(x / 3.7) * np.cos(y / 5.1)
    g = (x * 255 // max(w - 1, 1)) ^ (y * 7 % 256)
    b = rng.integers(0, 256, size=(h, w))
    a = np.stack([r, g, b], axis=-1).clip(0, 255).astype(np.uint8)
    a[h // 3: h // 2, w // 4: w // 2] = [250, 10, 128]
    return Image.fromarray(a, "RGB")


img = make_image(157, 103)
img.save(os.path.join(out, "src.png"))
save("src", np.asarray(img))

# PIL bilinear resize (antialiased): downscale, upscale, mixed, identity, extreme reduction
cases = [(64, 64), (224, 224), (100, 103), (157, 50), (31, 77), (157, 103), (7, 5), (400, 300)]
save("resize_cases", cases, np.int64)
for k, (w2, h2) in enumerate(cases):
    save("resize_%d" % k, np.asarray(img.resize((w2, h2), Image.BILINEAR)))

# torchvision classic test transform: Resize(int(256/224*s)) + CenterCrop(s), then ToTensor/Normalize
mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
for s in (64, 90):
    t = F.center_crop(F.resize(img, int(256 / 224 * s)), s)
    save("classic_u8_%d" % s, np.asarray(t))
    save("classic_%d" % s, F.normalize(F.to_tensor(t), mean, std).numpy())

# short side already int(256/224*64) = 73: Resize is the identity, only the centre crop remains
img73 = make_image(120, 73)
img73.save(os.path.join(out, "src73.png"))
t = F.center_crop(F.resize(img73, 73), 64)
save("classic73_64", F.normalize(F.to_tensor(t), mean, std).numpy())

# MultiGrain rect mode: longer side to s*, other side int(s * short / long) (multigrain Resize(largest=True))
for s in (80, 200):
    w, h = img.size
    ow, oh = (s, int(s * h / w)) if w >= h else (int(s * w / h), s)
    t = img.resize((ow, oh), Image.BILINEAR)
    save("rect_%d" % s, F.normalize(F.to_tensor(t), mean, std).numpy())

# resized_crop with fixed parameters (top, left, height, width) -> 48x48, then hflip
crops = [(10, 20, 60, 90), (0, 0, 103, 157), (50, 100, 40, 30), (3, 7, 20, 20)]
save("crop_cases", crops, np.int64)
for k, (i, j, h, w) in enumerate(crops):
    t = F.resized_crop(img, i, j, h, w, [48, 48], F.InterpolationMode.BILINEAR)
    save("rcrop_%d" % k, np.asarray(t))
    save("rcrop_flip_%d" % k, np.asarray(F.hflip(t)))

# colour jitter: the three PIL enhancers with given factors in given orders
small = img.resize((48, 40), Image.BILINEAR)
small.save(os.path.join(out, "small.png"))
jit = [((0.7, 1.3, 0.9), (0, 1, 2)), ((1.25, 0.75, 1.3), (2, 0, 1)), ((0.95, 1.1, 0.7), (1, 2, 0)), ((1.3, 1.3, 1.3), (2, 1, 0))]
save("jitter_factors", [f for f, _ in jit])
save("jitter_orders", [o for _, o in jit], np.int64)
for k, (f, order) in enumerate(jit):
    t = small
    for o in order:
        t = [F.adjust_brightness, F.adjust_contrast, F.adjust_saturation][o](t, float(np.float32(f[o])))
    save("jitter_%d" % k, np.asarray(t))

# lighting (recipe): offset_k = sum_j V[k][j]*alpha_j*lambda_j, x = (x + offset)/1.1, clamp, normalise
eigval = torch.tensor([0.2175, 0.0188, 0.0045])
eigvec = torch.tensor([[-0.5675, 0.7192, 0.4009], [-0.5808, -0.0045, -0.8140], [-0.5836, -0.6948, 0.4203]])
alphas = [[0.1, -0.05, 0.2], [-0.3, 0.25, -0.1], [0.0, 0.0, 0.0]]
save("light_alpha", alphas, np.float64)
for k, a in enumerate(alphas):
    alpha = torch.tensor(a, dtype=torch.float32)
    rgb = (eigvec * alpha.view(1, 3) * eigval.view(1, 3)).sum(1)
    x = F.to_tensor(small)
    x = (x + rgb.view(3, 1, 1)) / 1.1
    x = x.clamp(0, 1)
    save("light_%d" % k, F.normalize(x, mean, std).numpy())
    save("light_off_%d" % k, rgb.numpy())

# RandomResizedCrop parameter draws on fixed uniforms u[0], u[1], ...
U = rng.random(40000)
save("rrc_uniforms", U, np.float64)


class Draw:
    def __init__(self):
        self.k = 0

    def u(self):
        v = U[self.k]
        self.k += 1
        return v


def rrc_02(width, height, d, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
    # torchvision 0.2.x RandomResizedCrop.get_params, random.* replaced by draws from d
    for _ in range(10):
        area = width * height
        target_area = (scale[0] + (scale[1] - scale[0]) * d.u()) * area
        aspect_ratio = ratio[0] + (ratio[1] - ratio[0]) * d.u()
        w = int(round(math.sqrt(target_area * aspect_ratio)))
        h = int(round(math.sqrt(target_area / aspect_ratio)))
        if d.u() < 0.5:
            w, h = h, w
        if w <= width and h <= height:
            i = 0 + int(math.floor(d.u() * (height - h + 1)))
            j = 0 + int(math.floor(d.u() * (width - w + 1)))
            return i, j, h, w
    w = min(width, height)
    return (height - w) // 2, (width - w) // 2, w, w


def rrc_014(width, height, d, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
    # torchvision 0.14 RandomResizedCrop.get_params with uniform(a,b) = a + (b-a)*u
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * (scale[0] + (scale[1] - scale[0]) * d.u())
        aspect_ratio = math.exp(log_ratio[0] + (log_ratio[1] - log_ratio[0]) * d.u())
        w = int(round(math.sqrt(target_area * aspect_ratio)))
        h = int(round(math.sqrt(target_area / aspect_ratio)))
        if 0 < w <= width and 0 < h <= height:
            i = int(math.floor(d.u() * (height - h + 1)))
            j = int(math.floor(d.u() * (width - w + 1)))
            return i, j, h, w
    in_ratio = float(width) / float(height)
    if in_ratio < min(ratio):
        w = width
        h = int(round(w / min(ratio)))
    elif in_ratio > max(ratio):
        h = height
        w = int(round(h * max(ratio)))
    else:
        w = width
        h = height
    return (height - h) // 2, (width - w) // 2, h, w


sizes = [(500, 375), (157, 103), (40, 300), (1000, 20), (224, 224)]
save("rrc_sizes", sizes, np.int64)
for name, fn, sc in (("rrc02", rrc_02, (0.08, 1.0)), ("rrc014", rrc_014, (0.08, 1.0)), ("rrc02big", rrc_02, (0.9, 1.0)), ("rrc014big", rrc_014, (0.9, 1.0))):
    d = Draw()
    res = []
    for rep in range(40):
        for (w, h) in sizes:
            res.append(fn(w, h, d, scale=sc))
    save(name, res, np.int64)

# CenterCrop rounding (Python round half to even)
cc = []
for (w, h, tw, th) in [(10, 10, 7, 7), (11, 9, 8, 6), (13, 13, 10, 10), (12, 15, 9, 10), (224, 256, 224, 224)]:
    # torchvision 0.14 F.center_crop: crop_top = int(round((h - th) / 2.0))
    cc.append((w, h, tw, th, int(round((w - tw) / 2.0)), int(round((h - th) / 2.0))))
save("center_crop", cc, np.int64)
