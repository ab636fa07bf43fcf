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
import statistics
import sys
import time

import numpy as np

from photomap import neighbours
from photomap_tools.synthetic import cnn_features


def full_recall(approx_index, exact_sims, x):
    """Share of the exact k-NN found, over every photo (ties with the k-th count as found)."""
    k = exact_sims.shape[1]
    got = neighbours.pair_dots(x, approx_index)
    got[approx_index < 0] = -np.inf
    return float(np.mean(np.minimum(k, np.sum(got >= exact_sims[:, -1:] - 1e-6, axis=1)) / k))


def timed(fn, *args):
    """``(result, wall seconds, CPU seconds of every thread of this process)``."""
    w, c = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, time.perf_counter() - w, time.process_time() - c


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[10000, 30000, 100000])
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--latent", type=int, default=32, help="dimension of the clustered signal (0: noise)")
    p.add_argument("-r", "--repeats", type=int, default=1, help="alternating runs of each method")
    p.add_argument("-k", type=int, default=neighbours.K)
    args = p.parse_args(argv)

    warm = neighbours.unit_rows(cnn_features(2000, args.dim, args.latent, seed=1))
    _, we, ce = timed(neighbours.exact, warm, args.k)
    _, wa, ca = timed(neighbours.approximate, warm, args.k)
    print("numba start-up on 2,000 photos (compiled, or loaded from numba's cache): exact %.1fs wall "
          "%.1fs CPU, NN-descent %.1fs wall %.1fs CPU" % (we, ce, wa, ca), flush=True)

    for n in args.sizes:
        x = neighbours.unit_rows(cnn_features(n, args.dim, args.latent))
        runs = {"exact": [], "approximate": []}
        for _ in range(args.repeats):
            (ex_index, ex_sims), w, c = timed(neighbours.exact, x, args.k)
            runs["exact"].append((w, c))
            (ap_index, _), w, c = timed(neighbours.approximate, x, args.k)
            runs["approximate"].append((w, c))
        sampled, w_check, _ = timed(neighbours.sample_recall, x, ap_index, args.k)
        med = {m: [statistics.median(r[j] for r in runs[m]) for j in (0, 1)] for m in runs}
        print("n=%d d=%d latent=%d: exact %s, NN-descent %s (wall s / CPU s); exact/NN-descent median "
              "ratio %.2f wall, %.2f CPU; NN-descent recall %.4f over all photos, %.4f on its %d-photo "
              "check (%.1fs)" % (
                  n, args.dim, args.latent, " ".join("%.1f/%.1f" % r for r in runs["exact"]),
                  " ".join("%.1f/%.1f" % r for r in runs["approximate"]),
                  med["exact"][0] / med["approximate"][0], med["exact"][1] / med["approximate"][1],
                  full_recall(ap_index, ex_sims, x), sampled, min(n, neighbours.RECALL_SAMPLE), w_check),
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
