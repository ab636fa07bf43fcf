#!/usr/bin/env python3
"""UMAP at scale: today's layout (umap-learn on the full vectors) against the large-map path
(photomap/largemap.py: PCA, approximate neighbours, fewer epochs), on synthetic clustered 512-d vectors.

    PYTHONPATH=. .venv/bin/python bench/bench_umap.py --sizes 100000
    PYTHONPATH=. .venv/bin/python bench/bench_umap.py --sizes 1000000 --methods new

Each layout runs in its own child process (the same vectors, made from the same seed), which reports
its wall time and peak RSS (the vectors themselves included, as in a real run: n × dim × 4 bytes).
Then the maps are scored as bench/quality.py scores a real one, on a sample of query photos (exact
search against all photos):
  * retention: share of each query's 10 nearest feature-space (cosine) neighbours that are among its
    10 nearest map neighbours (quality.py's neighbour preservation),
  * copy recall@10: is a near-duplicate's original among its 10 nearest map points,
  * label agreement: share of a query's 10 map neighbours from its own group (chance beside it).
The machine may be shared: times are one run each, noisy; the methods alternate per size.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIM = 512
K = 10
METHODS = {"old": float("inf"), "new": None}  # project()'s large_values: never large / the default


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100000, 1000000])
    parser.add_argument("--methods", default="old,new", help="comma-separated: old, new (default both)")
    parser.add_argument("--seed", type=int, default=0, help="the synthetic vectors' seed (layouts unseeded: "
                        "a seed makes umap-learn run on one core)")
    parser.add_argument("--queries", type=int, default=2000, help="photos sampled for the quality figures")
    parser.add_argument("--workdir", help="keep each layout here (METHOD-N.npy/.json) and reuse a kept one "
                        "instead of running it again (default: a temporary folder)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--child", nargs=2, metavar=("METHOD", "N"), help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child[0], int(args.child[1]), args.seed, args.out)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-umap-") as tmp:
        work = args.workdir or tmp
        os.makedirs(work, exist_ok=True)
        for n in args.sizes:
            runs = {}
            for method in args.methods.split(","):
                runs[method] = layout(method, n, args.seed, os.path.join(work, "%s-%d-seed%d" % (method, n, args.seed)))
            x, labels, pairs = vectors(n, args.seed)
            queries = np.random.default_rng(args.seed + 1).choice(n, size=min(args.queries, n), replace=False)
            truth = feature_neighbours(x, queries, K)
            for method, r in runs.items():
                coords = np.load(r.pop("coords"))  # (kept while the workdir lives)
                r.update(score(coords, labels, pairs, queries, truth, args.seed), n=n, method=method)
                rows.append(r)
                print_row(r)
            del x
    print_table(rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


def layout(method, n, seed, stem):
    """The child's figures for one layout (and ``coords``: where its map is), run unless kept at ``stem``."""
    if not os.path.exists(stem + ".json"):
        cmd = [sys.executable, os.path.abspath(__file__), "--child", method, str(n), "--seed", str(seed),
               "--out", stem + ".npy"]
        print("+ " + " ".join(cmd), file=sys.stderr)
        res = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        with open(stem + ".json", "w") as f:
            f.write(res.stdout.strip().splitlines()[-1])
    else:
        print("reusing the layout kept in %s.npy" % stem, file=sys.stderr)
    with open(stem + ".json") as f:
        return dict(json.load(f), coords=stem + ".npy")


def vectors(n, seed):
    """The bench's synthetic vectors: ``clustered_vectors`` with 1 % near-duplicate copies."""
    from photomap_tools.synthetic import clustered_vectors

    return clustered_vectors(n, dim=DIM, copies=0.01, seed=seed)


def child(method, n, seed, out) -> int:
    """Lay out the bench's ``n`` vectors with ``method``, save the map to ``out`` and print one JSON
    line: layout seconds (wall and CPU), peak RSS in GB (this process, vectors included)."""
    from photomap import projection

    x, _, _ = vectors(n, seed)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu0 = usage.ru_utime + usage.ru_stime
    t = time.monotonic()
    coords = projection.project(x, say=lambda line: print(line, file=sys.stderr),
                                large_values=METHODS[method])
    seconds = time.monotonic() - t
    np.save(out, coords)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"seconds": seconds, "cpu_s": usage.ru_utime + usage.ru_stime - cpu0,
                      "peak_gb": usage.ru_maxrss * 1024 / 1e9, "vectors_gb": x.nbytes / 1e9}))
    return 0


def feature_neighbours(x, queries, k):
    """The ``k`` nearest rows (cosine, exact, itself excluded) of each row in ``queries``: blocks of
    ``x`` against the unit-length queries, the best ``k`` kept as it goes."""
    q = x[queries] / np.linalg.norm(x[queries], axis=1, keepdims=True)
    best_s = np.full((len(q), k), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(q), k), dtype=np.int64)
    for start in range(0, len(x), 65536):
        block = x[start:start + 65536]
        s = q @ (block / np.linalg.norm(block, axis=1, keepdims=True)).T
        rows = np.arange(start, start + len(block))
        s[rows[None, :] == queries[:, None]] = -np.inf  # not itself
        s_all = np.hstack([best_s, s])
        i_all = np.hstack([best_i, np.broadcast_to(rows, s.shape)])
        top = np.argpartition(-s_all, k, axis=1)[:, :k]
        best_s, best_i = np.take_along_axis(s_all, top, 1), np.take_along_axis(i_all, top, 1)
    return best_i


def score(coords, labels, pairs, queries, truth, seed):
    """The map's quality figures (module docstring) for the sampled ``queries``."""
    from sklearn.neighbors import KDTree

    tree = KDTree(coords)
    near = tree.query(coords[queries], k=K + 1, return_distance=False)
    near = [row[row != q][:K] for q, row in zip(queries, near)]
    retention = np.mean([len(set(a) & set(b)) / K for a, b in zip(truth, near)])
    agreement = np.mean([np.mean(labels[row] == labels[q]) for q, row in zip(queries, near)])
    _, counts = np.unique(labels, return_counts=True)
    sample = pairs[np.random.default_rng(seed + 2).permutation(len(pairs))[:len(queries)]]
    copy_near = tree.query(coords[sample[:, 0]], k=K + 1, return_distance=False)
    recall = np.mean([orig in row[row != c][:K] for (c, orig), row in zip(sample, copy_near)])
    return {"retention": float(retention), "copy_recall": float(recall), "labels": float(agreement),
            "chance": float(np.sum((counts / counts.sum()) ** 2))}


def print_row(r):
    print("%9d %-4s %8.1f s (CPU %.0f s) %6.2f GB  retention %.3f  copy recall@10 %.3f  labels %.3f (chance %.3f)" % (
        r["n"], r["method"], r["seconds"], r["cpu_s"], r["peak_gb"], r["retention"], r["copy_recall"],
        r["labels"], r["chance"]), file=sys.stderr)


def print_table(rows):
    print("| photos | method | layout (CPU) | peak RSS | retention@10 | copy recall@10 | label agreement |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print("| {:,} | {} | {:.0f} s ({:.0f} s) | {:.2f} GB | {:.3f} | {:.3f} | {:.3f} (chance {:.3f}) |".format(
            r["n"], r["method"], r["seconds"], r["cpu_s"], r["peak_gb"], r["retention"], r["copy_recall"],
            r["labels"], r["chance"]))


if __name__ == "__main__":
    sys.exit(main())
