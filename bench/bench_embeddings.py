#!/usr/bin/env python3
"""Benchmark stage 2: embeddings.py against a plain reference, on the same generated thumbnails.

    .venv/bin/python bench/bench_embeddings.py            # 1000 thumbnails
    .venv/bin/python bench/bench_embeddings.py -n 3000 --precision int8
    .venv/bin/python bench/bench_embeddings.py -n 2000 -- -j 2 -b 64

Generates N photo-like 224px JPEG thumbnails (crops of scikit-image's sample photos) under
bench/out/ (git-ignored), then times, alternating R times (-r, default 3),
  * the reference: this script started again as its own process, opening the paths one after
    another with Pillow, the weights' own transforms, fp32, torch.no_grad, batch 128, np.save per
    file;
  * embeddings.py as a user runs it (a subprocess, default settings plus -v and --precision;
    arguments after -- are added),
and prints images/s for each run, the ratio of each pair and the median ratio. Both use the same
random-init resnet18 weights (--weights; no download). embeddings.py's fixed costs (imports,
weights, network preparation, int8 calibration and quantization, from its -v start-up line) are
listed apart, with its rate without them ("steady"). Also checks that both computed the same
features (cosine similarity).
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np

from photomap_tools import synthetic
from photomap_tools.sample import make_thumbnails

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def reference(paths, weights_file, out_dir):
    """The plain way: one image after another in this process, fp32, batch 128; returns seconds."""
    import torch
    import torchvision
    from PIL import Image

    start = time.perf_counter()
    model = torchvision.models.resnet18()
    model.load_state_dict(torch.load(weights_file, map_location="cpu", weights_only=True))
    model.fc = torch.nn.Identity()
    model.eval()
    transforms = torchvision.models.ResNet18_Weights.DEFAULT.transforms()
    os.makedirs(out_dir, exist_ok=True)
    with torch.no_grad():
        for i in range(0, len(paths), 128):
            chunk = paths[i:i + 128]
            batch = torch.stack([transforms(Image.open(p).convert("RGB")) for p in chunk])
            vectors = model(batch).numpy()
            for p, v in zip(chunk, vectors):
                np.save(os.path.join(out_dir, os.path.basename(p) + ".npy"), v)
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--count", type=int, default=1000, help="thumbnails (default: 1000)")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "out"),
                        help="scratch folder (default: bench/out)")
    parser.add_argument("-r", "--repeat", type=int, default=3,
                        help="runs of each side, alternating (default: 3)")
    parser.add_argument("--skip-reference", action="store_true", help="time embeddings.py only")
    parser.add_argument("--precision", default="auto",
                        help="embeddings.py --precision (default: auto)")
    parser.add_argument("--run-reference", nargs=3, metavar=("PATHS", "WEIGHTS", "OUT"),
                        help=argparse.SUPPRESS)  # the reference's own process, started by main
    parser.add_argument("extra", nargs="*", help="arguments added to embeddings.py (after --)")
    args = parser.parse_args(argv)
    if args.run_reference:
        list_file, weights, out = args.run_reference
        with open(list_file) as f:
            print("%.6f" % reference(f.read().split("\n")[:-1], weights, out))
        return 0

    import torch

    thumbs = os.path.join(args.out, "emb_thumbs")
    t = time.perf_counter()
    paths = make_thumbnails(thumbs, args.count)
    print("%d thumbnails in %s (%.1fs)" % (len(paths), thumbs, time.perf_counter() - t))
    weights = synthetic.random_weights(os.path.join(args.out, "resnet18-random.pth"))
    print("torch %s, %d threads, CPU capability %s" % (
        torch.__version__, torch.get_num_threads(), torch.backends.cpu.get_cpu_capability()))

    list_file = os.path.join(args.out, "emb_paths.txt")
    with open(list_file, "w") as f:
        f.write("".join(p + "\n" for p in paths))
    ref_dir = os.path.join(args.out, "emb_reference")
    feat_dir = os.path.join(args.out, "emb_features")
    cmd = [sys.executable, os.path.join(ROOT, "embeddings.py"), "-o", feat_dir, "--weights", weights,
           "--precision", args.precision, "-v"]
    cmd += args.extra + ["-"]
    print("$ " + " ".join(cmd[1:]) + " < paths")
    # The two sides alternate, so each pair of runs meets about the same load on a shared machine.
    pairs = []
    for run in range(1, args.repeat + 1):
        ref = None
        if not args.skip_reference:
            ref = run_reference(list_file, weights, ref_dir, len(paths))
            print("run %d  reference: %.1fs wall, %.1f images/s (%.1f images/s after imports and "
                  "model load)" % (run, len(paths) / ref[0], ref[0], ref[1]))
        emb = run_embeddings(cmd, paths, feat_dir)
        if emb is None:
            return 1
        print("run %d  embeddings.py: %.1fs wall, %.1f images/s (summary line %.1f images/s, "
              "%.1f steady)%s" % (run, len(paths) / emb[0], emb[0], emb[1], emb[3],
                                  "" if run > 1 else "\n    " + emb[2]))
        print("        fixed costs: " + ", ".join("%s %.2fs" % kv for kv in emb[4].items()))
        if ref:
            pairs.append((emb[0] / ref[0], emb[1] / ref[1], emb[3] / ref[1]))
            print("        ratio %.2fx whole runs, %.2fx summary rate, %.2fx steady" % pairs[-1])
    if pairs:
        whole, loop, steady = (sorted(p[i] for p in pairs) for i in range(3))
        print("ratio, whole runs (both include interpreter start, imports and exit): median %.2fx "
              "(%s)" % (statistics.median(whole), ", ".join("%.2f" % r for r in whole)))
        print("ratio, summary rate (embeddings' own summary line, which counts from before its "
              "imports / reference loop): median %.2fx (%s)" % (
                  statistics.median(loop), ", ".join("%.2f" % r for r in loop)))
        print("ratio, steady (embeddings' loop without its fixed costs / reference loop after its "
              "imports and model load): median %.2fx "
              "(%s)" % (statistics.median(steady), ", ".join("%.2f" % r for r in steady)))
        cos = []
        for p in paths[:: max(1, len(paths) // 200)]:
            name = os.path.basename(p) + ".npy"
            a, b = np.load(os.path.join(ref_dir, name)), np.load(os.path.join(feat_dir, name))
            cos.append(float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))))
        print("same features: min cosine similarity to the reference %.5f over %d images" % (
            min(cos), len(cos)))
    return 0


def run_reference(list_file, weights, ref_dir, n):
    """One reference run in its own process; ``(images/s whole run, images/s after start-up)``."""
    shutil.rmtree(ref_dir, ignore_errors=True)
    start = time.perf_counter()
    res = subprocess.run([sys.executable, os.path.abspath(__file__), "--run-reference", list_file,
                          weights, ref_dir], capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - start
    return n / seconds, n / float(res.stdout.split()[-1])


def run_embeddings(cmd, paths, feat_dir):
    """One embeddings.py run into an empty folder, as a user runs it; ``(images/s whole run,
    images/s from its own summary line, its stderr lines, images/s without the fixed costs after
    every fixed cost, {fixed cost: seconds})``, or None when it failed."""
    shutil.rmtree(feat_dir, ignore_errors=True)
    start = time.perf_counter()
    res = subprocess.run(cmd, input="".join(p + "\n" for p in paths), text=True,
                         capture_output=True)
    seconds = time.perf_counter() - start
    summary = [line for line in res.stderr.splitlines() if " embedded, " in line]
    if res.returncode != 0 or not summary:
        print(res.stderr, file=sys.stderr)
        return None
    log = "\n    ".join(line for line in res.stderr.splitlines() if line.startswith("embeddings:"))
    fixed = {}
    for line in res.stderr.splitlines():
        if line.startswith("embeddings: start-up: "):
            for part in line.split(": ", 2)[2].split(", "):
                name, value = part.rsplit(" ", 1)
                fixed[name] = float(value.rstrip("s"))
    # The summary's clock starts before the imports: without every fixed cost, the loop is left.
    elapsed = float(summary[0].rsplit(" in ", 1)[1].split("s ")[0])
    return (len(paths) / seconds, float(summary[0].split("(")[-1].split()[0]), log,
            len(paths) / (elapsed - sum(fixed.values())), fixed)


if __name__ == "__main__":
    sys.exit(main())
