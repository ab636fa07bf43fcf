#!/usr/bin/env python3
"""Benchmark stage 1: process_photos.py against a plain one-process Pillow loop, and resume speed.

    .venv/bin/python bench/bench_process_photos.py                 # 120 photos in bench/out/
    .venv/bin/python bench/bench_process_photos.py -n 200 -j 4 --resume-files 100000

Makes (once; reused on later runs) phone-sized 4000x3000 JPEGs with EXIF, built from the sample
photos scikit-image ships plus sensor-like noise so they compress like real photos (~3-5 MB).
Times ``process_photos.py`` (a subprocess, default jobs) against the reference: Pillow open,
thumbnail((224, 224)), save, one file after another in this process, on the same folder, and prints
both rates and the ratio. Then times a resume over a tree of empty *.jpg files that a .meta listing
(written with photomap.meta) already names: the real crawl + skip code path, in files/s.
"""
import argparse
import glob
import os
import shutil
import subprocess
import sys
import time

from photomap import meta

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = os.path.join(ROOT, "process_photos.py")
SAMPLES = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png",
           "hubble_deep_field.jpg", "retina.jpg", "immunohistochemistry.png", "color.png")
PHOTO_SIZE = (4000, 3000)


def _sample_images():
    """RGB sample photos shipped with scikit-image (read with Pillow, no skimage import), or
    generated gradients when it is not installed."""
    from importlib.util import find_spec
    from PIL import Image

    images = []
    spec = find_spec("skimage")
    if spec and spec.submodule_search_locations:
        data = os.path.join(list(spec.submodule_search_locations)[0], "data")
        for name in SAMPLES:
            path = os.path.join(data, name)
            if os.path.exists(path):
                images.append(Image.open(path).convert("RGB"))
    if not images:
        for i in range(4):
            g = Image.linear_gradient("L").rotate(45 * i)
            images.append(Image.merge("RGB", (g, g.rotate(90), g.transpose(Image.Transpose.FLIP_LEFT_RIGHT))))
    return images


def make_photos(folder, n):
    """Write ``n`` 4000x3000 JPEGs (quality 92, EXIF camera tags) into ``folder``; keep existing."""
    import numpy as np
    from PIL import Image

    os.makedirs(folder, exist_ok=True)
    have = sorted(glob.glob(os.path.join(folder, "IMG_*.JPG")))
    if len(have) >= n:
        return have[:n]
    rng = np.random.default_rng(0)
    bases = [np.asarray(im.resize(PHOTO_SIZE, Image.Resampling.BICUBIC), dtype=np.int16)
             for im in _sample_images()]
    w, h = PHOTO_SIZE
    noise = rng.normal(0, 5, size=(h + 64, w + 64, 3)).astype(np.int16)  # sensor-like grain
    paths = []
    for i in range(n):
        path = os.path.join(folder, "IMG_%04d.JPG" % i)
        paths.append(path)
        if os.path.exists(path):
            continue
        base = np.roll(bases[i % len(bases)], (i * 37) % h, axis=0)
        dy, dx = rng.integers(0, 64, 2)
        arr = np.clip(base + noise[dy:dy + h, dx:dx + w] + (i % 7) * 3 - 9, 0, 255).astype(np.uint8)
        img = Image.fromarray(arr, "RGB")
        exif = Image.Exif()
        exif[0x010F] = "BenchCam"            # Make
        exif[0x0110] = "Phone 12"            # Model
        exif[0x0132] = "2023:07:%02d 12:00:00" % (1 + i % 28)  # DateTime
        exif[0x0112] = 6 if i % 5 == 0 else 1  # Orientation: some portrait shots
        tmp = path + ".part"
        img.save(tmp, "JPEG", quality=92, exif=exif)
        os.replace(tmp, path)
    return paths


def reference(paths, out_dir, size):
    """The plain job in this process: open, thumbnail, save, one file after another."""
    from PIL import Image

    os.makedirs(out_dir, exist_ok=True)
    for i, path in enumerate(paths):
        with Image.open(path) as img:
            img.thumbnail((size, size))
            img.save(os.path.join(out_dir, "%d.jpg" % i), "JPEG", quality=90)


def run_stage1(src, out_dir, size, jobs, listing=None):
    """Run process_photos.py as a subprocess; returns (seconds, .meta lines printed)."""
    cmd = [sys.executable, SCRIPT, "-d", src, "-o", out_dir, "-s", str(size), "-q"]
    if jobs:
        cmd += ["-j", str(jobs)]
    if listing:
        cmd += ["-l", listing]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit("process_photos.py failed (%d): %s" % (proc.returncode, proc.stderr.decode()))
    return elapsed, proc.stdout.decode().count("\n")


def make_resume_tree(folder, n, per_folder=500):
    """``n`` empty *.jpg files in folders of ``per_folder``, plus a .meta listing naming them all."""
    listing = folder + ".meta"
    marker = os.path.join(folder, ".complete-%d" % n)
    if not os.path.exists(marker):
        shutil.rmtree(folder, ignore_errors=True)
        lines = []
        for i in range(n):
            sub = os.path.join(folder, "d%04d" % (i // per_folder))
            if i % per_folder == 0:
                os.makedirs(sub)
            path = os.path.join(sub, "IMG_%06d.jpg" % i)
            open(path, "wb").close()
            lines.append(meta.format_entry("%032x" % i, path))
        with open(listing, "w", encoding="utf-8") as f:
            f.writelines(lines)
        open(marker, "wb").close()
    return listing


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-o", "--scratch", default=os.path.join(ROOT, "bench", "out"),
                   help="scratch folder (default: bench/out, git-ignored)")
    p.add_argument("-n", "--photos", type=int, default=120, help="number of 4000x3000 JPEGs (>= 100)")
    p.add_argument("-s", "--size", type=int, default=224)
    p.add_argument("-j", "--jobs", type=int, default=None,
                   help="jobs for process_photos.py (default: its own, all cores)")
    p.add_argument("-r", "--repeat", type=int, default=2, help="timed runs of each side; best is kept")
    p.add_argument("--resume-files", type=int, default=60000, help="files in the resume listing")
    args = p.parse_args(argv)

    src = os.path.join(args.scratch, "photos")
    t0 = time.perf_counter()
    paths = make_photos(src, args.photos)
    mb = sum(os.path.getsize(x) for x in paths) / len(paths) / 1e6
    print("photos: %d x %dx%d JPEG, %.1f MB each on average (ready in %.0fs)"
          % (len(paths), PHOTO_SIZE[0], PHOTO_SIZE[1], mb, time.perf_counter() - t0))
    for path in paths:  # warm the page cache so neither side pays for the disk first
        with open(path, "rb") as f:
            while f.read(1 << 22):
                pass

    ref_out = os.path.join(args.scratch, "ref_thumbs")
    ours_out = os.path.join(args.scratch, "thumbs")
    ref_best = ours_best = float("inf")
    for _ in range(args.repeat):
        shutil.rmtree(ref_out, ignore_errors=True)
        t = time.perf_counter()
        reference(paths, ref_out, args.size)
        ref_best = min(ref_best, time.perf_counter() - t)
        shutil.rmtree(ours_out, ignore_errors=True)
        elapsed, lines = run_stage1(src, ours_out, args.size, args.jobs)
        if lines != len(paths):
            sys.exit("process_photos.py printed %d lines for %d photos" % (lines, len(paths)))
        ours_best = min(ours_best, elapsed)
    jobs = args.jobs or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
    ref_rate, ours_rate = len(paths) / ref_best, len(paths) / ours_best
    print("reference (one process, Pillow open/thumbnail/save): %.1f images/s" % ref_rate)
    print("process_photos.py (-j %d, wall clock incl. start-up): %.1f images/s" % (jobs, ours_rate))
    print("ratio: %.2fx (target >= 1.8x on 2 cores)" % (ours_rate / ref_rate))

    tree = os.path.join(args.scratch, "resume_tree")
    listing = make_resume_tree(tree, args.resume_files)
    best = float("inf")
    for _ in range(args.repeat):
        elapsed, lines = run_stage1(tree, os.path.join(args.scratch, "resume_thumbs"), args.size,
                                    args.jobs, listing=listing)
        if lines:
            sys.exit("resume printed %d lines; expected every file to be skipped" % lines)
        best = min(best, elapsed)
    print("resume: %d listed files skipped in %.2fs: %.0f files/s (target >= 20,000; wall clock "
          "incl. start-up and reading the listing)" % (args.resume_files, best, args.resume_files / best))
    return 0


if __name__ == "__main__":
    sys.exit(main())
