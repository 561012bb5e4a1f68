"""gen_smoke.py: proves the oracle plumbing end to end. torch computes reference tensors from
formulas the C test evaluates independently; they travel as .npy files. Usage: gen_smoke.py OUTDIR"""
import os
import sys

import numpy as np
import torch

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
i = torch.arange(2 * 3 * 5, dtype=torch.float64).reshape(2, 3, 5)
# A smooth function with negative, small and large values.
ref = torch.sin(0.37 * i) * torch.exp(0.05 * i) - 0.5
np.save(os.path.join(out, "wave.npy"), ref.to(torch.float32).numpy())
np.save(os.path.join(out, "wave_f64.npy"), ref.numpy())
# softmax over the last axis, a real torch op.
sm = torch.softmax(ref.to(torch.float32), dim=-1)
np.save(os.path.join(out, "wave_softmax.npy"), sm.numpy())
np.save(os.path.join(out, "labels.npy"), np.array([3, 1, 4, 1, 5], dtype=np.int64))
