#!/usr/bin/env python3
"""Measure stage 2 on a CUDA machine: JPEG thumbnails to saved .npy, end to end, and find the bottleneck.

    .venv/bin/python bench/gpu_embeddings.py                        # on the GPU machine (offline is fine)
    .venv/bin/python bench/gpu_embeddings.py --device cpu -n 300    # dry run of every part on a CPU

One prepared script for a machine lent for a few minutes: it makes N distinct-named 224px
thumbnails (1000 photo-like ones from photomap_tools.sample, copied under new names), saves random
resnet18 weights (no download needed), then times separately
  1. the network alone on the device (synthetic batches, as embeddings.py prepares the model),
  2. decoding alone (the DataLoader workers embeddings.py uses, pinned batches, no model),
  3. writing alone (features.save_vector of N vectors, the writer threads' job),
  4. embeddings.py end to end as a user runs it (a subprocess; arguments after -- are added),
and prints images/s for each; the slowest of 1-3 is the bottleneck of 4.
"""
import argparse
import os
import shutil
import subprocess
import sys
import time

from photomap_tools import synthetic
from photomap_tools.sample import make_thumbnails

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def thumbnails(folder, n):
    """``n`` thumbnails in ``folder``: 1000 distinct images, repeated under distinct names."""
    base = make_thumbnails(os.path.join(folder, "base"), min(n, 1000))
    files = os.path.join(folder, "n%d" % n)
    marker = os.path.join(files, ".complete")
    if not os.path.exists(marker):
        shutil.rmtree(files, ignore_errors=True)
        os.makedirs(files)
        for i in range(n):
            shutil.copyfile(base[i % len(base)], os.path.join(files, "%06d.jpg" % i))
        open(marker, "w").close()
    return [os.path.join(files, "%06d.jpg" % i) for i in range(n)]


def sync(dev):
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize()


def time_model(weights, dev, precision, batch, steps=30):
    """images/s of the prepared network alone on synthetic uint8 batches already on the device."""
    import torch

    from photomap import decode, model, network

    cnn, _, transforms = model.load_model("resnet18", weights)
    cnn, _ = model.feature_head(cnn)
    net = network.Network(cnn, dev, precision, decode.Preprocess(transforms))
    x = torch.randint(0, 255, (batch, 224, 224, 3), dtype=torch.uint8, device=dev)  # NHWC, as decoded
    with torch.inference_mode():
        for i in range(steps + 5):
            if i == 5:
                sync(dev)
                start = time.perf_counter()
            net(x).cpu()
    sync(dev)
    return steps * batch / (time.perf_counter() - start)


def time_decode(paths, batch, workers, dev):
    """images/s of the decode workers alone (embeddings.py's DataLoader, pinned on CUDA, no model)."""
    from photomap import decode
    from torchvision.models import ResNet18_Weights

    loader = decode.loader(paths, decode.Preprocess(ResNet18_Weights.DEFAULT.transforms()), batch,
                           workers, dev)
    start, n = time.perf_counter(), 0
    for idxs, b, bad in loader:
        if b is not None:
            b.to(dev, non_blocking=True)
        n += len(idxs)
    sync(dev)
    return n / (time.perf_counter() - start)


def time_writes(folder, n, threads):
    """images/s of saving n 512-d vectors atomically with ``threads`` writer threads."""
    import numpy as np
    from concurrent.futures import ThreadPoolExecutor

    from photomap import features

    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    vecs = np.random.default_rng(0).standard_normal((n, 512)).astype(np.float32)
    chunks = [range(i, min(n, i + 256)) for i in range(0, n, 256)]

    def save(chunk):
        for i in chunk:
            features.save_vector(os.path.join(folder, "%06d.jpg.npy" % i), vecs[i])

    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(save, chunks))
    return n / (time.perf_counter() - start)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-n", "--count", type=int, default=20000, help="thumbnails (default: 20000)")
    p.add_argument("--out", default=os.path.join(HERE, "out", "gpu"), help="scratch folder")
    p.add_argument("--device", default="cuda", help="cuda (default), or cpu for a dry run")
    p.add_argument("extra", nargs="*", help="arguments added to embeddings.py (after --)")
    args = p.parse_args(argv)

    import torch

    from photomap import decode, network

    dev = network.choose_device(args.device)
    precision = network.choose_precision("auto", dev)
    batch = network.default_batch_size(dev)
    workers = decode.default_workers(dev)
    gpu = torch.cuda.get_device_name(0) if dev.type == "cuda" else "none"
    print("device %s (%s), precision %s, batch %d, %d decode workers, %d CPUs, torch %s" % (
        dev, gpu, precision, batch, workers, os.cpu_count(), torch.__version__), flush=True)

    t = time.perf_counter()
    paths = thumbnails(args.out, args.count)
    weights = synthetic.random_weights(os.path.join(args.out, "resnet18-random.pth"))
    print("%d thumbnails ready (%.1fs)" % (len(paths), time.perf_counter() - t), flush=True)

    rates = {}
    rates["network alone"] = time_model(weights, dev, precision, batch)
    print("1. network alone:   %8.0f images/s" % rates["network alone"], flush=True)
    rates["decode alone"] = time_decode(paths, batch, workers, dev)
    print("2. decode alone:    %8.0f images/s (%d workers)" % (rates["decode alone"], workers), flush=True)
    threads = 1 if dev.type == "cpu" else 4
    rates["writing alone"] = time_writes(os.path.join(args.out, "writes"), len(paths), threads)
    print("3. writing alone:   %8.0f images/s (%d threads)" % (rates["writing alone"], threads), flush=True)

    feats = os.path.join(args.out, "features")
    shutil.rmtree(feats, ignore_errors=True)
    cmd = [sys.executable, os.path.join(ROOT, "embeddings.py"), "-o", feats, "--weights", weights,
           "--device", args.device] + args.extra + ["-"]
    start = time.perf_counter()
    res = subprocess.run(cmd, input="".join(q + "\n" for q in paths), text=True, capture_output=True)
    wall = time.perf_counter() - start
    if res.returncode != 0:
        print(res.stderr, file=sys.stderr)
        return 1
    for line in res.stderr.splitlines():
        if line.startswith("embeddings:"):
            print("   " + line)
    written = sum(1 for n in os.listdir(feats) if n.endswith(".npy"))
    print("4. end to end:      %8.0f images/s (%d .npy in %.1fs wall, interpreter start included)" % (
        written / wall, written, wall))
    slowest = min(rates, key=rates.get)
    print("bottleneck: %s (%.0f images/s)" % (slowest, rates[slowest]))
    return 0 if written == len(paths) else 1


if __name__ == "__main__":
    sys.exit(main())
