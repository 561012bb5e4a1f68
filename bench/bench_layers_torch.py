"""bench_layers_torch.py: PyTorch CPU timings of the same ops and shapes as bench_layers.c, for a same-machine,
same-run comparison (torch.set_num_threads(THREADS)). Prints the same columns.
Usage: /usr/bin/python3 bench/bench_layers_torch.py [--threads 2] [--reps 10] [--batch 8]"""
import argparse
import time

import torch
import torch.nn.functional as F

ap = argparse.ArgumentParser()
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--reps", type=int, default=10)
ap.add_argument("--batch", type=int, default=8)
a = ap.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)
print(f"# torch {torch.__version__}, threads {a.threads}, batch {a.batch}, {a.reps} reps")


def report(name, shape, fn, nbytes=0.0, flops=0.0):
    fn()
    t = []
    for _ in range(a.reps):
        t0 = time.perf_counter()
        fn()
        t.append(time.perf_counter() - t0)
    t.sort()
    best, med = t[0], t[len(t) // 2]
    rate = f"{flops / best * 1e-9:8.2f} GFLOP/s" if flops else f"{nbytes / best * 1e-9:8.2f} GB/s"
    print(f"{name:<22} {shape:<16} best {best * 1e3:8.3f} ms  median {med * 1e3:8.3f} ms  {rate}")


B = a.batch
with torch.no_grad():
    x = torch.randn(B, 256, 56, 56)
    dy = torch.randn_like(x)
    w, b = torch.randn(256) * 0.1 + 1, torch.randn(256) * 0.1
    rm, rv = torch.zeros(256), torch.ones(256)
    N = x.numel()
    fb = 4.0 * N
    shape = f"{B}x256x56x56"
    y, sm, si = torch.native_batch_norm(x, w, b, rm, rv, True, 0.1, 1e-5)
    report("bn2d fwd train", shape, lambda: torch.native_batch_norm(x, w, b, rm, rv, True, 0.1, 1e-5), 2 * fb)
    report("bn2d bwd train", shape, lambda: torch.ops.aten.native_batch_norm_backward(
        dy, x, w, rm, rv, sm, si, True, 1e-5, [True, True, True]), 3 * fb)
    report("bn2d fwd eval", shape, lambda: torch.native_batch_norm(x, w, b, rm, rv, False, 0.1, 1e-5), 2 * fb)
    report("bn2d bwd frozen", shape, lambda: torch.ops.aten.native_batch_norm_backward(
        dy, x, w, rm, rv, sm, si, False, 1e-5, [True, True, True]), 3 * fb)
    yr = torch.relu(x)
    report("relu fwd", shape, lambda: torch.relu(x), 2 * fb)
    report("relu bwd", shape, lambda: torch.ops.aten.threshold_backward(dy, yr, 0.0), 3 * fb)

    xm = torch.randn(B, 64, 112, 112)
    ym, idx = F.max_pool2d(xm, 3, 2, 1, return_indices=True)
    dym = torch.randn_like(ym)
    M = ym.numel()
    shape = f"{B}x64x112x112"
    report("maxpool 3x3/2 fwd", shape, lambda: F.max_pool2d(xm, 3, 2, 1, return_indices=True), fb + 8.0 * M)
    report("maxpool 3x3/2 bwd", shape, lambda: torch.ops.aten.max_pool2d_with_indices_backward(
        dym, xm, [3, 3], [2, 2], [1, 1], [1, 1], False, idx), fb + 8.0 * M)

    xg = torch.randn(4 * B, 2048, 7, 7).abs()
    G = xg.numel()
    shape = f"{4 * B}x2048x7x7"
    report("gem p=3 fwd", shape, lambda: xg.clamp(min=1e-6).pow(3.0).mean((-2, -1)).pow(1.0 / 3), 4.0 * G)
    report("gem p=1 fwd", shape, lambda: F.adaptive_avg_pool2d(xg, 1), 4.0 * G)

xg = torch.randn(4 * B, 2048, 7, 7).abs().requires_grad_(True)
p = torch.tensor(3.0, requires_grad=True)
dyg = torch.randn(4 * B, 2048)


def gem_bwd():
    out = xg.clamp(min=1e-6).pow(p).mean((-2, -1)).pow(1.0 / p)
    out.backward(dyg)


report("gem p=3 fwd+bwd (+dp)", f"{4 * B}x2048x7x7", gem_bwd, 8.0 * G)

with torch.no_grad():
    xl, W, bl = torch.randn(8 * B, 2048), torch.randn(1000, 2048) * 0.02, torch.randn(1000)
    dyl = torch.randn(8 * B, 1000)
    fl = 2.0 * 8 * B * 2048 * 1000
    shape = f"{8 * B}x2048->1000"
    report("linear fwd", shape, lambda: F.linear(xl, W, bl), flops=fl)
    report("linear bwd (dx,dW,db)", shape, lambda: (dyl @ W, dyl.t() @ xl, dyl.sum(0)), flops=2 * fl)

wp = torch.nn.Parameter(torch.randn(N))
wp.grad = torch.randn(N)
opt = torch.optim.SGD([wp], lr=1e-6, momentum=0.9, weight_decay=1e-4)
opt.step()
report("sgd momentum step", f"{N} params", opt.step, 5 * 4.0 * N)
