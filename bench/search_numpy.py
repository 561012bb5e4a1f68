"""search_numpy.py: numpy brute-force k-NN of the same size as bench_search (matmul + argpartition
+ sort of the k best), for comparison. Usage: search_numpy.py [N D Q K REPS]"""
import sys
import time

import numpy as np

n, d, nq, k, reps = (int(a) for a in (sys.argv[1:] + ["100000", "2048", "1000", "100", "3"][len(sys.argv) - 1:]))
rng = np.random.default_rng(42)
db = rng.random((n, d), dtype=np.float32) - 0.5
db /= np.linalg.norm(db, axis=1, keepdims=True)
q = rng.random((nq, d), dtype=np.float32) - 0.5
q /= np.linalg.norm(q, axis=1, keepdims=True)
flops = 2.0 * nq * n * d
times, cpus = [], []
for _ in range(reps):
    t0, c0 = time.perf_counter(), time.process_time()
    s = q @ db.T
    part = np.argpartition(-s, k - 1, axis=1)[:, :k]
    ps = np.take_along_axis(s, part, 1)
    order = np.lexsort((part, -ps), axis=1)
    ids = np.take_along_axis(part, order, 1)
    times.append(time.perf_counter() - t0)
    cpus.append(time.process_time() - c0)
    del s
times.sort()
cpus.sort()
print(f"numpy {np.__version__} matmul+argpartition (N={n} D={d} Q={nq} k={k}): best {times[0]:.3f} s "
      f"median {times[len(times) // 2]:.3f} s -> {flops / times[0] * 1e-9:.1f} GFLOP/s (best), "
      f"{flops / times[len(times) // 2] * 1e-9:.1f} (median); {flops / cpus[0] * 1e-9:.1f} GFLOP/CPU-s")
