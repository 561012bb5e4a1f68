"""gen_decode.py: image files of every kind the decoder must handle, each with PIL's
Image.open(...).convert('RGB') result as the reference (plus draft-mode DCT-scaled decodes and EXIF
transposes). Usage: gen_decode.py OUTDIR"""
import io
import os
import sys

import numpy as np
from PIL import Image, ImageOps

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(7)
y, x = np.mgrid[0:75, 0:101]
rgb = np.stack([127 + 120 * np.sin(x / 4.0), (x * 2 + y * 3) % 256, 128 + 100 * np.cos(y / 6.0) * np.sin(x / 9.0)], -1)
rgb = (rgb + rng.normal(0, 8, rgb.shape)).clip(0, 255).astype(np.uint8)
base = Image.fromarray(rgb, "RGB")
names = []


def emit(name, im, **save):
    path = os.path.join(out, name)
    im.save(path, **save)
    with Image.open(path) as f:
        ref = np.asarray(f.convert("RGB"))
    np.save(os.path.join(out, name + ".npy"), ref.astype(np.float32))
    names.append(name)


emit("rgb420.jpg", base, quality=90)
emit("rgb444.jpg", base, quality=95, subsampling=0)
emit("progressive.jpg", base, quality=85, progressive=True)
emit("gray.jpg", base.convert("L"), quality=90)
emit("cmyk.jpg", base.convert("CMYK"), quality=92)
emit("rgb.png", base)
emit("palette.png", base.convert("P", palette=Image.ADAPTIVE, colors=50))
emit("rgba.png", Image.fromarray(np.dstack([rgb, (x * 2 % 256).astype(np.uint8)]), "RGBA"))
emit("gray.png", base.convert("L"))
emit("la.png", base.convert("LA"))
emit("bw.png", base.convert("1"))
# 16-bit RGB PNG written by hand through numpy is awkward in PIL; use mode I;16 grey? PIL reads
# 16-bit grey as mode I, whose convert('RGB') clips -- a documented difference, so not tested.
with open(os.path.join(out, "names.txt"), "w") as f:
    f.write("\n".join(names) + "\n")

# DCT-domain scaling: PIL's draft() asks libjpeg for the same n/8 scaled decode
big = base.resize((400, 300), Image.BILINEAR)
big.save(os.path.join(out, "big.jpg"), quality=90)
for req, name in (((200, 150), "draft_half"), ((100, 75), "draft_quarter"), ((50, 37), "draft_eighth")):
    with Image.open(os.path.join(out, "big.jpg")) as f:
        f.draft("RGB", req)
        a = np.asarray(f.convert("RGB"))
    np.save(os.path.join(out, name + ".npy"), a.astype(np.float32))

# EXIF orientation
for o in (3, 6, 8):
    ex = Image.Exif()
    ex[0x0112] = o
    path = os.path.join(out, "orient%d.jpg" % o)
    base.save(path, quality=90, exif=ex.tobytes())
    with Image.open(path) as f:
        a = np.asarray(ImageOps.exif_transpose(f).convert("RGB"))
    np.save(os.path.join(out, "orient%d.npy" % o), a.astype(np.float32))

# truncated JPEG and broken files
data = open(os.path.join(out, "rgb420.jpg"), "rb").read()
open(os.path.join(out, "truncated.jpg"), "wb").write(data[: len(data) // 2])
open(os.path.join(out, "text.jpg"), "w").write("this is not an image\n")
open(os.path.join(out, "empty.jpg"), "wb").close()
open(os.path.join(out, "badpng.png"), "wb").write(open(os.path.join(out, "rgb.png"), "rb").read()[:200])
