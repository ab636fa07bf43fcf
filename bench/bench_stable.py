#!/usr/bin/env python3
"""Benchmark a growing map: add 10 % new photos to a 20k map, remove 10 %, refit and align.

    .venv/bin/python bench/bench_stable.py                    # 20k synthetic + 10 % new, 3 rounds
    .venv/bin/python bench/bench_stable.py -n 5000 -r 2 --demo

Synthetic features: 512-d, ReLU'd, 48 clusters in 8 families, each cluster a 4-d shape plus noise,
so feature-space neighbours mean something at every scale (the answer is known: the cluster). Two
scenarios: the new photos drawn like the old ones ("same kinds"), and half of them from a cluster the
old map never had ("a new trip"). The previous map is a UMAP layout of the old photos.

Figures, per scenario:
- old photos' displacement (median, 95th percentile) as a share of the map's extent;
- new photos' 10-NN agreement: the share of each new photo's 10 nearest feature-space neighbours
  (cosine, among all photos) that are among its 10 nearest map neighbours, for the placed map and for
  a full refit of old + new (goal: within 0.05 of the refit);
- time of the update (neighbours + placement) against a full layout of old + new, alternated in the
  same process after a warm-up, median ratio over the rounds (goal: <= 25 %);
- removing 10 %: the largest displacement of a remaining photo (goal: 0) and the time;
- --refit: the refit aligned to the previous map: median move and Procrustes residual.
``--demo`` repeats the add-10 % figures on the demo sample (``python -m photomap_tools.sample``, stages 1
and 2 run for real with random-init resnet18 weights saved offline; cached in bench/out/demo).
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

import numpy as np

from photomap import projection, stable
from photomap.join import join
from photomap_tools import synthetic

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

OUT = os.path.join(ROOT, "bench", "out")


def clustered(n, dim=512, families=8, per_family=6, latent=4, noise=0.35, seed=0):
    """``(features, labels)``: ``n`` float32 rows from 48 clusters (Dirichlet-sized), 8 families."""
    rng = np.random.default_rng(seed)
    k = families * per_family
    family = rng.normal(size=(families, dim))
    centres = np.repeat(family, per_family, axis=0) + 0.7 * rng.normal(size=(k, dim))
    bases = 0.6 * rng.normal(size=(k, latent, dim))
    labels = rng.choice(k, size=n, p=rng.dirichlet(np.full(k, 2.0)))
    z = rng.normal(size=(n, latent))
    x = centres[labels] + np.einsum("nl,nld->nd", z, bases[labels]) + noise * rng.normal(size=(n, dim))
    return np.maximum(x, 0).astype(np.float32), labels


def scenario(n_old, share_new, new_trip, seed=0):
    """``(features, is_old)``: old photos first. With ``new_trip`` half the new ones come from one
    cluster the old photos never show."""
    n_new = int(round(share_new * n_old))
    x, labels = clustered(int((n_old + n_new) * 1.3), seed=seed)
    rng = np.random.default_rng(seed + 1)
    if new_trip:
        sizes = np.bincount(labels)
        trip = int(np.argmin(np.abs(sizes - n_new // 2)))
        trip_rows = np.flatnonzero(labels == trip)[:n_new // 2]
        rest = rng.permutation(np.flatnonzero(labels != trip))
        rows = np.concatenate([rest[:n_old], rest[n_old:n_old + n_new - len(trip_rows)], trip_rows])
    else:
        rows = rng.permutation(len(x))[:n_old + n_new]
    return x[rows], np.arange(len(rows)) < n_old


def agreement(features, xy, rows, k=10):
    """Mean share of each of ``rows``' ``k`` nearest feature neighbours (cosine) among its ``k``
    nearest map neighbours."""
    from sklearn.neighbors import NearestNeighbors

    f = NearestNeighbors(n_neighbors=k + 1, metric="cosine").fit(features).kneighbors(
        features[rows], return_distance=False)
    m = NearestNeighbors(n_neighbors=k + 1).fit(xy).kneighbors(xy[rows], return_distance=False)
    return float(np.mean([len((set(a) - {r}) & (set(b) - {r})) / k for r, a, b in zip(rows, f, m)]))


def previous_map(md5s, xy):
    return projection.PreviousMap(xy={m: tuple(p) for m, p in zip(md5s, xy)})


def measure(x, is_old, rounds, seed=0, label=""):
    """The figures for one scenario (a dict), printed as they come."""
    md5s = ["%032x" % i for i in range(len(x))]
    old_md5s = [m for m, o in zip(md5s, is_old) if o]
    new_rows = np.flatnonzero(~is_old)
    say = lambda text: print("bench_stable: %s%s" % (label, text), flush=True)  # noqa: E731
    t = time.perf_counter()
    old_xy = projection.project(x[is_old], seed=seed)
    say("previous map: UMAP of %d old photos %.1fs" % (is_old.sum(), time.perf_counter() - t))
    prev = previous_map(old_md5s, old_xy)
    extent = float(np.ptp(old_xy, axis=0).max())
    fig = {"n_old": int(is_old.sum()), "n_new": len(new_rows)}
    t_full, t_place, a_full, a_place, refits = [], [], [], [], []
    for r in range(rounds):  # alternate, so both sides see the same machine load
        t = time.perf_counter()
        full = projection.project(x, seed=seed + 1 + r)
        t_full.append(time.perf_counter() - t)
        t = time.perf_counter()
        out = stable.update(md5s, x, prev, None, "map.coords.csv", seed=seed + r)
        t_place.append(time.perf_counter() - t)
        move = np.linalg.norm(out.coords[is_old] - old_xy, axis=1) / extent
        a_full.append(agreement(x, full, new_rows))
        a_place.append(agreement(x, out.coords, new_rows))
        refits.append(stable.align(full, is_old, old_xy)[1:])
        say("round %d: full layout %.1fs, update %.1fs (%.0f%%); agreement refit %.3f, placed %.3f; "
            "old moved median %.2g p95 %.2g" % (r + 1, t_full[-1], t_place[-1], 100 * t_place[-1] / t_full[-1],
                                                a_full[-1], a_place[-1], np.median(move),
                                                np.percentile(move, 95)))
    fig.update(full_s=t_full, update_s=t_place, ratio_median=statistics.median(
        p / f for p, f in zip(t_place, t_full)), agreement_refit=a_full, agreement_placed=a_place,
        old_move_median=float(np.median(move)), old_move_p95=float(np.percentile(move, 95)),
        refit_median_move=[m for m, _ in refits], refit_residual=[res for _, res in refits])
    keep = np.random.default_rng(seed).random(int(is_old.sum())) > 0.1  # remove 10 % of the old photos
    t = time.perf_counter()
    out = stable.update([m for m, k in zip(old_md5s, keep) if k], x[is_old][keep], prev, None, "m.csv")
    fig.update(remove_s=time.perf_counter() - t,
               remove_max_move=float(np.abs(out.coords - old_xy[keep]).max()), removed=int((~keep).sum()))
    say("removed %d: largest move %g in %.2fs; refit aligned: median move %s of the extent, "
        "residual %s" % (fig["removed"], fig["remove_max_move"], fig["remove_s"],
                         ", ".join("%.1f%%" % (100 * m) for m in fig["refit_median_move"]),
                         ", ".join("%.2f" % v for v in fig["refit_residual"])))
    say("SUMMARY old moved 0 (median %.2g, p95 %.2g); agreement placed %.3f vs refit %.3f "
        "(difference %+.3f); time %.0f%% of a full layout (median ratio)"
        % (fig["old_move_median"], fig["old_move_p95"], statistics.median(a_place),
           statistics.median(a_full), statistics.median(a_place) - statistics.median(a_full),
           100 * fig["ratio_median"]))
    return fig


def demo_features():
    """``(features, md5s)`` of the demo sample, made once under bench/out/demo by the real stages."""
    work = os.path.join(OUT, "demo")
    feats = os.path.join(work, "features")
    meta_path = os.path.join(work, "thumbs.meta")
    py = sys.executable
    if not os.path.exists(os.path.join(feats, "features.json")):
        os.makedirs(work, exist_ok=True)
        weights = synthetic.random_weights(os.path.join(work, "resnet18-random.pth"))
        subprocess.run([py, "-m", "photomap_tools.sample", os.path.join(work, "photos")], check=True, cwd=ROOT)
        with open(meta_path, "w") as f:
            subprocess.run([py, os.path.join(ROOT, "process_photos.py"), "-d", os.path.join(work, "photos"),
                            "-o", os.path.join(work, "thumbs"), "-q"], stdout=f, check=True)
        names = sorted(os.path.join(work, "thumbs", n) for n in os.listdir(os.path.join(work, "thumbs"))
                       if n.endswith(".jpg"))
        subprocess.run([py, os.path.join(ROOT, "embeddings.py"), "-o", feats, "--weights", weights, "-q", "-"],
                       input="\n".join(names) + "\n", text=True, check=True)
    photos = join(meta_path, os.path.join(work, "thumbs"), feats)
    return photos.features, photos.md5s


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-n", type=int, default=20000, help="old photos (default 20000)")
    p.add_argument("--new", type=float, default=0.10, help="new photos as a share of the old (default 0.10)")
    p.add_argument("-r", "--rounds", type=int, default=3, help="alternated timing rounds (default 3)")
    p.add_argument("--demo", action="store_true", help="also the demo sample (stages 1-2 run once)")
    p.add_argument("--skip-synthetic", action="store_true")
    args = p.parse_args(argv)
    t = time.perf_counter()  # numba compiles umap-learn's and the placement's kernels once per process
    warm_x, warm_old = scenario(300, 0.1, False, seed=9)
    projection.project(warm_x)
    stable.update(["%032x" % i for i in range(len(warm_x))], warm_x,
                  previous_map(["%032x" % i for i in np.flatnonzero(warm_old)], np.zeros((300, 2)) +
                               np.arange(300)[:, None]), None, "m.csv")
    print("bench_stable: warm-up (numba compilation) %.1fs; shared machine: %s cores, load %s" % (
        time.perf_counter() - t, os.cpu_count(), " ".join("%.1f" % v for v in os.getloadavg())), flush=True)
    if not args.skip_synthetic:
        for trip in (False, True):
            x, is_old = scenario(args.n, args.new, trip)
            measure(x, is_old, args.rounds, label="[%s] " % ("a new trip" if trip else "same kinds"))
    if args.demo:
        x, _ = demo_features()
        is_old = np.random.default_rng(0).random(len(x)) >= args.new
        measure(x, is_old, args.rounds, label="[demo sample, %d photos] " % len(x))
    return 0


if __name__ == "__main__":
    sys.exit(main())
