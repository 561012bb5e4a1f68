"""gen_color_images.py ROOT: a tiny ImageNet-layout dataset for training tests: ROOT/{train,val}/
{red,green,blue}/N.png, 16 train and 4 val 36x36 images per class, noise plus a strong colour channel
(learnable in a few steps). Seeded: the same files on every run. Used by
tests/integration/test_train_resume.sh and tests/mpi/mpi_common.sh."""
import os
import sys

import numpy as np
from PIL import Image

root = sys.argv[1]
rng = np.random.default_rng(0)
for split, n in (("train", 16), ("val", 4)):
    for c, name in enumerate(["red", "green", "blue"]):
        d = os.path.join(root, split, name)
        os.makedirs(d)
        for i in range(n):
            a = rng.integers(0, 60, size=(36, 36, 3), dtype=np.uint8)
            a[..., c] += 150 + rng.integers(0, 40, dtype=np.uint8)
            Image.fromarray(a).save(os.path.join(d, f"{i}.png"))
