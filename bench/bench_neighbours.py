#!/usr/bin/env python3
"""Benchmark the 12 nearest neighbours of every photo: exact brute force against NN-descent, and its recall.

    .venv/bin/python bench/bench_neighbours.py                         # 10k, 30k and 100k photos
    .venv/bin/python bench/bench_neighbours.py --sizes 20000 50000 -r 3
    .venv/bin/python bench/bench_neighbours.py --latent 0              # structureless worst case

Features are synthetic 512-d vectors built like a CNN's pooled output (a ReLU of a low-dimensional,
clustered signal plus noise; --latent sets that dimension, 0 = isotropic Gaussian noise, the hardest
case for NN-descent). For each size the two methods run alternately in this process (numba's one-time
compilation is timed apart, first), and the script prints both times, their ratio, NN-descent's recall
against the exact result (all photos) and the recall its own sampled check reports (what a map run
prints). Times on a shared machine are noisy: compare the ratios within one run.
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from photomap import neighbours  # noqa: E402


def synthetic(n, dim=512, latent=32, clusters=200, seed=0):
    """``(n, dim)`` float32 features: ReLU(W z + noise) with z from ``clusters`` Gaussian blobs in
    ``latent`` dimensions (``latent=0``: plain Gaussian noise)."""
    rng = np.random.default_rng(seed)
    if latent == 0:
        return rng.normal(size=(n, dim)).astype(np.float32)
    centres = rng.normal(size=(clusters, latent)).astype(np.float32) * 2
    z = centres[rng.integers(0, clusters, n)] + rng.normal(size=(n, latent)).astype(np.float32)
    w = rng.normal(size=(latent, dim)).astype(np.float32) / np.sqrt(latent)
    return np.maximum(z @ w + 0.3 * rng.normal(size=(n, dim)).astype(np.float32), 0)


def full_recall(approx_index, exact_sims, x):
    """Share of the exact k-NN found, over every photo (ties with the k-th count as found)."""
    k = exact_sims.shape[1]
    got = np.einsum("nd,nkd->nk", x, x[np.maximum(approx_index, 0)])
    got[approx_index < 0] = -np.inf
    return float(np.mean(np.minimum(k, np.sum(got >= exact_sims[:, -1:] - 1e-6, axis=1)) / k))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[10000, 30000, 100000])
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--latent", type=int, default=32, help="dimension of the clustered signal (0: noise)")
    p.add_argument("-r", "--repeats", type=int, default=1, help="alternating runs of each method")
    p.add_argument("-k", type=int, default=neighbours.K)
    args = p.parse_args(argv)

    warm = neighbours.unit_rows(synthetic(2000, args.dim, args.latent, seed=1))
    t = time.perf_counter()
    neighbours.exact(warm, args.k)
    t_exact = time.perf_counter() - t
    t = time.perf_counter()
    neighbours.approximate(warm, args.k)
    print("numba start-up (2,000 photos, compile or load from cache): exact %.1fs, NN-descent %.1fs"
          % (t_exact, time.perf_counter() - t), flush=True)

    for n in args.sizes:
        x = neighbours.unit_rows(synthetic(n, args.dim, args.latent))
        times = {"exact": [], "approximate": []}
        for _ in range(args.repeats):
            t = time.perf_counter()
            ex_index, ex_sims = neighbours.exact(x, args.k)
            times["exact"].append(time.perf_counter() - t)
            t = time.perf_counter()
            ap_index, _ = neighbours.approximate(x, args.k)
            times["approximate"].append(time.perf_counter() - t)
        t = time.perf_counter()
        sampled = neighbours.sample_recall(x, ap_index, args.k)
        t_check = time.perf_counter() - t
        te, ta = statistics.median(times["exact"]), statistics.median(times["approximate"])
        print("n=%d d=%d latent=%d: exact %s s, NN-descent %s s (median ratio exact/approx %.2f); "
              "NN-descent recall %.4f over all photos, %.4f on its %d-photo check (%.1fs)"
              % (n, args.dim, args.latent, " ".join("%.1f" % v for v in times["exact"]),
                 " ".join("%.1f" % v for v in times["approximate"]), te / ta,
                 full_recall(ap_index, ex_sims, x), sampled, min(n, neighbours.RECALL_SAMPLE), t_check),
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
