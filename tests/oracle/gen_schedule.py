"""gen_schedule.py: reference learning-rate and damping arrays for tests/oracle/test_schedule.c.

An independent re-implementation (plain Python floats, as the reference computes them) of the
MindSpore model-zoo ResNet src/lr_generator.py used by the MultiGrain MindSpore port: get_lr modes
steps / poly / cosine / linear (the else branch), get_thor_lr (called with decay_epochs=39) and
get_thor_damping; plus the original MultiGrain PyTorch step schedule (lr * 0.1 ** drops, with the
original code's `epoch > drop` test as the legacy variant and torch MultiStepLR's `epoch >= drop`
as the default). For each case it writes:
  <case>.npy         float32 lr per step (what the reference returns: np.array(...).astype(float32))
  <case>_f64.npy     the same values before the float32 cast
  <case>_params.npy  float64 [S, epochs, warmup_epochs, lr_init, lr_end, lr_max, lr_decay,
                     lr_end_epoch, damping_init, damping_decay]
Usage: gen_schedule.py OUTDIR"""
import math
import os
import sys

import numpy as np


def warm(lr_init, lr_max, i, w):
    return lr_init + (lr_max - lr_init) * i / w


def ref_steps(lr_init, lr_end, lr_max, total, warmup):
    idx = [0.3 * total, 0.6 * total, 0.8 * total]
    out = []
    for i in range(total):
        if i < warmup:
            out.append(warm(lr_init, lr_max, i, warmup))
        elif i < idx[0]:
            out.append(lr_max)
        elif i < idx[1]:
            out.append(lr_max * 0.1)
        elif i < idx[2]:
            out.append(lr_max * 0.01)
        else:
            out.append(lr_max * 0.001)
    return out


def ref_poly(lr_init, lr_end, lr_max, total, warmup):
    inc = (float(lr_max) - float(lr_init)) / float(warmup) if warmup != 0 else 0
    out = []
    for i in range(total):
        if i < warmup:
            lr = float(lr_init) + inc * float(i)
        else:
            base = 1.0 - (float(i) - float(warmup)) / (float(total) - float(warmup))
            lr = max(float(lr_max) * base * base, 0.0)
        out.append(lr)
    return out


def ref_cosine(lr_init, lr_end, lr_max, total, warmup):
    decay = total - warmup
    out = []
    for i in range(total):
        if i < warmup:
            inc = (float(lr_max) - float(lr_init)) / float(warmup)
            out.append(float(lr_init) + inc * (i + 1))
        else:
            linear = (total - i) / decay
            cosine = 0.5 * (1 + math.cos(math.pi * 2 * 0.47 * i / decay))
            out.append(lr_max * (linear * cosine + 0.00001))
    return out


def ref_linear(lr_init, lr_end, lr_max, total, warmup):
    return [warm(lr_init, lr_max, i, warmup) if i < warmup
            else lr_max - (lr_max - lr_end) * (i - warmup) / (total - warmup) for i in range(total)]


def ref_thor(lr_init, decay, total_epochs, spe, decay_epochs=39):
    out = []
    for i in range(spe * total_epochs):
        e = (i + 1) / spe
        lr = lr_init * (1.0 - float(e) / total_epochs) ** decay
        if e >= decay_epochs:
            lr *= 0.5
        if e >= decay_epochs + 1:
            lr *= 0.5
        out.append(lr)
    return out


def ref_damping(d0, rate, total_epochs, spe):
    return [d0 * (rate ** (((i + 1) / spe) / 10)) for i in range(spe * total_epochs)]


def multigrain_step(lr_init, lr_max, spe, epochs, warmup, drops, legacy):
    out = []
    for i in range(spe * epochs):
        if i < warmup:
            out.append(warm(lr_init, lr_max, i, warmup))
            continue
        epoch = i // spe
        n = sum(1 for d in drops if (epoch > d if legacy else epoch >= d))
        out.append(lr_max * 0.1 ** n)
    return out


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    cases = {}

    def add(name, values, S, epochs, warmup=0, lr_init=0.0, lr_end=0.0, lr_max=0.0, lr_decay=0.0,
            lr_end_epoch=1, damping_init=0.0, damping_decay=0.0):
        assert len(values) == S * epochs
        cases[name] = (values, [S, epochs, warmup, lr_init, lr_end, lr_max, lr_decay, lr_end_epoch,
                                damping_init, damping_decay])

    def getlr(mode, lr_init, lr_end, lr_max, warmup_epochs, total_epochs, spe):
        total, warmup = spe * total_epochs, spe * warmup_epochs
        fn = {"steps": ref_steps, "poly": ref_poly, "cosine": ref_cosine}.get(mode, ref_linear)
        return fn(lr_init, lr_end, lr_max, total, warmup)

    # get_lr modes; small steps_per_epoch keeps the arrays small while crossing every branch.
    add("linear_ref", getlr("linear", 0.0, 0.0, 0.8, 2, 10, 7), 7, 10, 2, 0.0, 0.0, 0.8)
    add("linear_warm_end", getlr("linear", 0.05672, 0.001, 0.8, 2, 9, 13), 13, 9, 2, 0.05672, 0.001, 0.8)
    add("linear_nowarm", getlr("linear", 0.0, 0.01, 0.4, 0, 6, 11), 11, 6, 0, 0.0, 0.01, 0.4)
    add("steps_ref", getlr("steps", 0.01, 0.0, 0.8, 1, 10, 11), 11, 10, 1, 0.01, 0.0, 0.8)
    add("poly_ref", getlr("poly", 0.0, 0.0, 0.5, 2, 12, 5), 5, 12, 2, 0.0, 0.0, 0.5)
    add("cosine_ref", getlr("cosine", 0.01, 0.0, 0.4, 3, 10, 7), 7, 10, 3, 0.01, 0.0, 0.4)
    add("cosine_nowarm", getlr("cosine", 0.0, 0.0, 0.1, 0, 8, 9), 9, 8, 0, 0.0, 0.0, 0.1)
    # THOR: the port README values and the port's THOR yaml values (45 epochs trained of 70).
    add("thor_readme", ref_thor(0.05672, 4.9687, 70, 20)[: 20 * 45], 20, 45, 0, 0.05672, 0.0, 0.0, 4.9687, 70)
    add("thor_yaml", ref_thor(0.045, 6.0, 70, 9)[: 9 * 45], 9, 45, 0, 0.045, 0.0, 0.0, 6.0, 70)
    add("damping_readme", ref_damping(0.02345, 0.5467, 70, 20), 20, 70, 0, 0.05672, 0.0, 0.0, 4.9687, 70,
        0.02345, 0.5467)
    # MultiGrain recipe step schedule (lr 0.2, x0.1 at 30/60/90 of 120 epochs), 3 steps per epoch.
    add("step_recipe", multigrain_step(0.0, 0.2, 3, 120, 0, [30, 60, 90], False), 3, 120, 0, 0.0, 0.0, 0.2)
    add("step_legacy", multigrain_step(0.0, 0.2, 3, 120, 0, [30, 60, 90], True), 3, 120, 0, 0.0, 0.0, 0.2)
    add("step_warm", multigrain_step(0.02, 0.2, 4, 12, 8, [3, 7], False), 4, 12, 2, 0.02, 0.0, 0.2)

    for name, (values, params) in cases.items():
        np.save(os.path.join(out, name + ".npy"), np.array(values).astype(np.float32))
        np.save(os.path.join(out, name + "_f64.npy"), np.array(values, dtype=np.float64))
        np.save(os.path.join(out, name + "_params.npy"), np.array(params, dtype=np.float64))


main()
