"""gen_conv2d.py: PyTorch references for conv2d (tests/oracle/test_conv2d.c) on awkward shapes.

For every case: float32 inputs x, w, b and an upstream gradient dy drawn from a fixed seed, and
torch.nn.functional.conv2d forward + autograd backward computed in float64 from those same float32
values (so the reference carries no float32 rounding of its own), stored as float32 .npy files
<case>_{x,w,b,dy,y,dx,dw,db}.npy. cases.txt lists one case per line:
name n c h w k r s stride_h stride_w pad_h pad_w dil_h dil_w groups has_bias
Usage: gen_conv2d.py OUTDIR"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
torch.manual_seed(20240603)

# name, (n, c, h, w), (k, r, s), stride, pad, dilation, groups, bias
CASES = [
    ("batch1_odd_3x3", (1, 3, 7, 9), (4, 3, 3), (1, 1), (1, 1), (1, 1), 1, True),
    ("stride2_pad1", (2, 5, 11, 10), (6, 3, 3), (2, 2), (1, 1), (1, 1), 1, False),
    ("conv1x1_stride2", (2, 8, 9, 7), (12, 1, 1), (2, 2), (0, 0), (1, 1), 1, True),
    ("conv1x1_stride1", (2, 16, 5, 6), (8, 1, 1), (1, 1), (0, 0), (1, 1), 1, False),
    ("groups2", (2, 8, 8, 8), (6, 3, 3), (1, 1), (1, 1), (1, 1), 2, True),
    ("depthwise_stride2", (2, 6, 9, 9), (6, 3, 3), (2, 2), (1, 1), (1, 1), 6, False),
    ("depthwise_mult2", (1, 4, 6, 7), (8, 3, 3), (1, 1), (1, 1), (1, 1), 4, True),
    ("dilation2", (1, 4, 10, 11), (5, 3, 3), (1, 1), (2, 2), (2, 2), 1, True),
    ("h1", (2, 3, 1, 9), (4, 1, 3), (1, 1), (0, 1), (1, 1), 1, True),
    ("w1", (1, 3, 8, 1), (2, 3, 1), (2, 1), (1, 0), (1, 1), 1, False),
    ("stem_7x7_stride2", (2, 3, 32, 29), (8, 7, 7), (2, 2), (3, 3), (1, 1), 1, False),
    ("rect_mixed", (2, 4, 9, 12), (3, 3, 5), (2, 1), (0, 2), (1, 2), 1, True),
    ("pad_gt_half_kernel", (1, 2, 4, 5), (3, 3, 3), (1, 1), (3, 2), (1, 1), 1, True),
    ("stride_drops_tail", (1, 3, 8, 8), (4, 3, 3), (2, 3), (0, 0), (1, 1), 1, False),
    ("single_output_pixel", (3, 4, 3, 3), (5, 3, 3), (1, 1), (0, 0), (1, 1), 1, True),
]


def save(name, t):
    np.save(os.path.join(out, name + ".npy"), t.detach().to(torch.float32).contiguous().numpy())


lines = []
for name, (n, c, h, w), (k, r, s), stride, pad, dil, groups, bias in CASES:
    x32 = torch.randn(n, c, h, w)
    w32 = torch.randn(k, c // groups, r, s) / np.sqrt(c // groups * r * s)
    b32 = torch.randn(k)
    x = x32.double().requires_grad_(True)
    wt = w32.double().requires_grad_(True)
    b = b32.double().requires_grad_(True) if bias else None
    y = F.conv2d(x, wt, b, stride=stride, padding=pad, dilation=dil, groups=groups)
    dy32 = torch.randn(y.shape)
    y.backward(dy32.double())
    save(name + "_x", x32)
    save(name + "_w", w32)
    save(name + "_b", b32)
    save(name + "_dy", dy32)
    save(name + "_y", y)
    save(name + "_dx", x.grad)
    save(name + "_dw", wt.grad)
    save(name + "_db", b.grad if bias else torch.zeros(k))
    lines.append(f"{name} {n} {c} {h} {w} {k} {r} {s} {stride[0]} {stride[1]} {pad[0]} {pad[1]} "
                 f"{dil[0]} {dil[1]} {groups} {int(bias)}")

with open(os.path.join(out, "cases.txt"), "w") as f:
    f.write("\n".join(lines) + "\n")
