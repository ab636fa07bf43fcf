"""Bundled demo photos: scikit-image's sample images, with edited copies, written as a small photo backup.

Usage: ``python -m photomap_tools.sample OUTDIR`` (does nothing when OUTDIR is already complete).
The benchmarks' photo-like thumbnails (``make_thumbnails``) come from the same bundled photos.

Each source image becomes a few "photos" in a themed top-level folder (one folder per kind, so the map
can be coloured and scored by folder): the original, crops, a mirror image, darker and brighter
versions, a re-compressed copy, an exact duplicate elsewhere, and a copy stored sideways with an EXIF
orientation tag. A few odd files (CMYK, 16-bit, alpha, HEIC, one that is not an image) come along,
as in a real decade-old backup. Nothing is downloaded: the images ship inside scikit-image.
"""
import argparse
import hashlib
import io
import os
import re
import shutil
import sys

import numpy as np

from photomap.fsutil import atomic_write

# theme folder -> scikit-image sample names (all bundled with the package, no download)
THEMES = {
    "people": ["astronaut", "camera"],
    "animals": ["chelsea"],
    "food": ["coffee"],
    "space": ["hubble_deep_field", "moon", "rocket"],
    "lab": ["immunohistochemistry", "retina", "cell"],
    "textures": ["grass", "gravel", "brick"],
    "documents": ["page", "text"],
    "things": ["coins", "clock", "colorwheel"],
}
DONE_MARKER = ".sample-complete"
EXIF_ORIENTATION = 0x0112


def _load(name):
    import skimage.data
    from PIL import Image

    arr = getattr(skimage.data, name)()
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    img = Image.fromarray(arr)
    img = img.convert("RGB") if img.mode not in ("RGB", "L") else img
    # Phone-like size: long side 1024 px.
    scale = 1024 / max(img.size)
    return img.resize((round(img.width * scale), round(img.height * scale)), Image.LANCZOS)


def _variants(img, rng):
    """(suffix, image, save-kwargs) edits of one photo, as a photo backup accumulates them."""
    from PIL import Image, ImageEnhance, ImageOps

    w, h = img.size
    out = [("", img, {})]
    for i in range(3):
        f = rng.uniform(0.6, 0.85)
        cw, ch = int(w * f), int(h * f)
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        out.append(("_crop%d" % (i + 1), img.crop((x, y, x + cw, y + ch)), {}))
    out.append(("_mirror", ImageOps.mirror(img), {}))
    out.append(("_dark", ImageEnhance.Brightness(img).enhance(0.45), {}))
    out.append(("_bright", ImageEnhance.Brightness(img).enhance(1.35), {}))
    out.append(("_lowq", img, {"quality": 35}))
    # Stored sideways with EXIF orientation 6 ("rotate 90 CW to view"), as many cameras do.
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    out.append(("_sideways", img.transpose(Image.Transpose.ROTATE_90), {"exif": exif.tobytes()}))
    return out


def _save(img, path, **kwargs):
    fmt = {".jpg": "JPEG", ".png": "PNG", ".gif": "GIF", ".tif": "TIFF", ".heic": "HEIF"}[
        os.path.splitext(path)[1].lower()]
    if fmt == "JPEG":
        kwargs.setdefault("quality", 88)
    with atomic_write(path) as f:
        img.save(f, fmt, **kwargs)


def make_sample(outdir, seed=0):
    """Write the sample backup into ``outdir``; return the number of files written."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    written = 0
    first_of_theme = {}
    for theme, names in THEMES.items():
        folder = os.path.join(outdir, theme)
        os.makedirs(folder, exist_ok=True)
        for name in names:
            img = _load(name)
            first_of_theme.setdefault(theme, (name, img))
            for suffix, var, kwargs in _variants(img, rng):
                if var.mode == "L" and suffix == "_sideways":
                    var = var.convert("RGB")
                _save(var, os.path.join(folder, "IMG_%s%s.jpg" % (name, suffix)), **kwargs)
                written += 1
    # An exact duplicate in another folder (same bytes -> same md5 -> one point, two paths).
    dup = os.path.join(outdir, "backup copy", "people")
    os.makedirs(dup, exist_ok=True)
    for name in ("astronaut", "camera"):
        with open(os.path.join(outdir, "people", "IMG_%s.jpg" % name), "rb") as src:
            data = src.read()
        with atomic_write(os.path.join(dup, "IMG_%s.jpg" % name)) as f:
            f.write(data)
        written += 1
    # Odd files of a decade-old backup.
    odd = os.path.join(outdir, "scans")
    os.makedirs(odd, exist_ok=True)
    _, coffee = first_of_theme["food"]
    _, cat = first_of_theme["animals"]
    _save(coffee.convert("CMYK"), os.path.join(odd, "coffee_cmyk.jpg"))
    gray16 = Image.fromarray((np.asarray(cat.convert("L"), dtype=np.uint16) * 257).astype(np.uint16))
    _save(gray16, os.path.join(odd, "cat_16bit.png"))
    rgba = cat.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(cat.size))
    _save(rgba, os.path.join(odd, "cat_alpha.png"))
    _save(cat.convert("P", palette=Image.Palette.ADAPTIVE), os.path.join(odd, "CAT_PALETTE.GIF"))
    written += 4
    try:
        import pillow_heif

        pillow_heif.register_heif_opener()
        _save(coffee, os.path.join(odd, "coffee_iphone.heic"), quality=80)
        written += 1
    except Exception as exc:  # an encoder-less pillow-heif build: the sample just has no HEIC
        print("sample: no HEIC photo (%s)" % exc, file=sys.stderr)
    with atomic_write(os.path.join(odd, "notes_not_a_photo.jpg")) as f:
        f.write(b"This file is a text note that was saved with a .jpg name.\n")
    written += 1
    return written


_SAMPLE_FILE = re.compile(r"IMG_(.+?)(_crop\d|_mirror|_dark|_bright|_lowq|_sideways)?\.jpg$")


def source_picture(path):
    """Which scikit-image picture a file of the sample shows: its every edit, copy and scan give the
    same name (the scans are of the coffee and the cat). None for a file the sample does not make."""
    name = os.path.basename(path)
    m = _SAMPLE_FILE.match(name)
    if m:
        return m.group(1) if any(m.group(1) in names for names in THEMES.values()) else None
    if name.startswith("coffee_"):
        return "coffee"
    if name.lower().startswith("cat_"):
        return "chelsea"
    return None


def photo_sources():
    """A few real photographs (scikit-image's bundled samples) as RGB uint8 arrays."""
    from skimage import color, data

    out = []
    for name in ("astronaut", "coffee", "chelsea", "rocket", "cat", "immunohistochemistry",
                 "hubble_deep_field", "camera", "retina"):
        try:
            img = getattr(data, name)()
        except Exception:  # some samples are fetched on demand: skip those offline
            continue
        if img.ndim == 2:
            img = (color.gray2rgb(img)).astype(np.uint8)
        out.append(img[..., :3])
    return out


def make_thumbnails(folder, n, size=224, seed=0):
    """Write ``n`` distinct thumbnails (random crops, flips, tints, aspect ratios) named by md5, as
    stage 1 names them; returns their paths. Reuses the folder when it already holds ``n``."""
    from PIL import Image

    marker = os.path.join(folder, ".complete-%d" % n)
    if os.path.exists(marker):
        return sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".jpg"))
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    rng = np.random.default_rng(seed)
    sources = photo_sources()
    paths = []
    for i in range(n):
        src = sources[i % len(sources)]
        h, w = src.shape[:2]
        ch = int(h * rng.uniform(0.35, 1.0))
        cw = min(w, int(ch * rng.uniform(0.66, 1.5)))
        y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        crop = src[y:y + ch, x:x + cw].astype(np.float32)
        crop = np.clip(crop * rng.uniform(0.7, 1.2, size=3), 0, 255).astype(np.uint8)
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        img = Image.fromarray(np.ascontiguousarray(crop))
        img.thumbnail((size, size), Image.LANCZOS)
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=90)
        data = buf.getvalue()
        path = os.path.join(folder, hashlib.md5(data).hexdigest() + ".jpg")
        with open(path, "wb") as f:
            f.write(data)
        paths.append(path)
    open(marker, "w").close()
    return sorted(paths)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir")
    parser.add_argument("--force", action="store_true", help="rewrite even if complete")
    args = parser.parse_args(argv)
    marker = os.path.join(args.outdir, DONE_MARKER)
    if os.path.exists(marker) and not args.force:
        print("sample: %s already complete" % args.outdir, file=sys.stderr)
        return 0
    n = make_sample(args.outdir)
    with atomic_write(marker, "w") as f:
        f.write("%d\n" % n)
    print("sample: wrote %d files into %s" % (n, args.outdir), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
