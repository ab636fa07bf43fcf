"""Clusters and labels at map scale: the HDBSCAN engines compared, then photomap's clustering and labelling
timed, on a synthetic map of islands.

    .venv/bin/python bench/bench_clusters.py                                    # 100k and 1M points
    .venv/bin/python bench/bench_clusters.py -n 100000 --engines fast_hdbscan hdbscan sklearn -r 3
    .venv/bin/python bench/bench_clusters.py -n 1000000 --engines none          # photomap's steps only

Each engine run is its own process (so its peak memory is its own), on the same map, with the settings
``photomap.clusters.find_clusters`` uses (min_cluster_size sqrt(n), min_samples 15); rounds alternate the
engines, so a busy machine slows them alike. CPU time is the process's, all its threads: fast_hdbscan's
numba threads count; hdbscan and scikit-learn run with one job, since their worker processes would not.
Numba's compiled code is loaded (or compiled once) on a 2,000-point map before the clock starts;
``--cold`` also times that first compilation into an empty cache.
Agreement between engines is the adjusted Rand index of their labels. Then, in this process:
``find_clusters`` (HDBSCAN + straggler trim + ordering), the softmax of a 1000-class classifier over 512-d
vectors with per-cluster sums and per-photo top 3 (``labels.summarise``), the names and the label places;
then stage 3's whole islands step as it runs on a map made again (``islands.find_islands`` with the
previous run's ids to keep), the page's per-photo facts (``facts.page_details``) and the colour schemes.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from types import SimpleNamespace

import numpy as np

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "out", "clusters")
ENGINES = ("fast_hdbscan", "hdbscan", "sklearn")


def island_layout(n, seed=0):
    """A UMAP-like map of ``n`` points: islands of Zipf-distributed sizes (about sqrt(n)/10 of them),
    each an elongated, rotated Gaussian, plus 5 % of the points scattered over the whole map."""
    rng = np.random.default_rng(seed)
    k = max(3, int(np.sqrt(n) / 10))
    share = rng.zipf(1.6, k).astype(float)
    counts = rng.multinomial(int(n * 0.95), share / share.sum())
    centres = rng.uniform(-15, 15, (k, 2))
    parts = []
    for centre, m in zip(centres, counts):
        axes, turn = rng.uniform(0.2, 1.0, 2), rng.uniform(0, np.pi)
        rot = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
        parts.append(centre + (rng.normal(size=(m, 2)) * axes) @ rot.T)
    parts.append(rng.uniform(-17, 17, (n - counts.sum(), 2)))
    return np.concatenate(parts)[rng.permutation(n)]


def _rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def engine_run(engine, n, labels_path):
    """Child process: cluster the map of ``n`` points with ``engine``; print one JSON line."""
    import resource

    from photomap.clusters import DEFAULT_MIN_SAMPLES, min_cluster_size

    coords = island_layout(n)
    mcs, ms = min_cluster_size(n), DEFAULT_MIN_SAMPLES
    if engine == "fast_hdbscan":
        import fast_hdbscan

        def fit(x):
            return fast_hdbscan.HDBSCAN(min_cluster_size=mcs, min_samples=ms).fit_predict(x)
    elif engine == "hdbscan":
        import hdbscan

        def fit(x):
            return hdbscan.HDBSCAN(min_cluster_size=mcs, min_samples=ms, core_dist_n_jobs=1).fit_predict(x)
    else:
        from sklearn.cluster import HDBSCAN

        def fit(x):
            return HDBSCAN(min_cluster_size=mcs, min_samples=ms, n_jobs=1, copy=True).fit_predict(x)
    t = time.perf_counter()
    fit(island_layout(2000, seed=1))  # numba: load (or compile) the code before the clock starts
    warm = time.perf_counter() - t
    before = _rss_mb()
    t, cpu = time.perf_counter(), time.process_time()
    labels = np.asarray(fit(coords))
    wall, cpu = time.perf_counter() - t, time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    np.save(labels_path, labels.astype(np.int32))
    print(json.dumps({"engine": engine, "n": n, "wall": wall, "cpu": cpu, "warm": warm,
                      "peak_mb": peak, "extra_mb": peak - before, "clusters": int(labels.max()) + 1,
                      "unclustered": float(np.mean(labels < 0))}))


def run_child(engine, n, timeout, env=None):
    path = os.path.join(OUT, "labels-%s-%d.npy" % (engine, n))
    cmd = [sys.executable, os.path.abspath(__file__), "--child", engine, "-n", str(n)]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"engine": engine, "n": n, "timeout": timeout}
    if res.returncode != 0:
        return {"engine": engine, "n": n, "error": (res.stderr.strip().splitlines() or ["?"])[-1]}
    out = json.loads(res.stdout.strip().splitlines()[-1])
    out["labels"] = path
    return out


def compare_engines(n, engines, rounds, timeout, cold):
    """Alternate the engines for ``rounds`` rounds at ``n`` points; print each run and a summary."""
    from sklearn.metrics import adjusted_rand_score

    available = []
    for engine in engines:
        module = "sklearn" if engine == "sklearn" else engine
        try:
            __import__(module)
            available.append(engine)
        except ImportError:
            print("%s: not installed, left out (pip install %s)" % (engine, engine), file=sys.stderr)
    if cold and "fast_hdbscan" in available:
        with tempfile.TemporaryDirectory() as cache:
            res = run_child("fast_hdbscan", 2000, timeout, env=dict(os.environ, NUMBA_CACHE_DIR=cache))
            print("fast_hdbscan first use, empty numba cache: %.1f s to compile" % res.get("warm", float("nan")))
    runs = {e: [] for e in available}
    for r in range(rounds):
        for engine in available:
            res = run_child(engine, n, timeout)
            runs[engine].append(res)
            if "wall" in res:
                print("n=%d round %d %-12s wall %7.1f s  cpu %7.1f s  peak %6.0f MB (+%5.0f while clustering)  "
                      "%d clusters, %.1f %% unclustered" % (n, r + 1, engine, res["wall"], res["cpu"],
                                                          res["peak_mb"], res["extra_mb"], res["clusters"],
                                                          100 * res["unclustered"]), flush=True)
            else:
                print("n=%d round %d %-12s %s" % (n, r + 1, engine, "over %d s" % timeout if "timeout" in res
                                                    else res.get("error")), flush=True)
    done = {e: [r for r in rs if "wall" in r] for e, rs in runs.items()}
    ref = next((e for e in available if done[e]), None)
    for engine in available:
        if not done[engine]:
            continue
        wall = np.median([r["wall"] for r in done[engine]])
        cpu = np.median([r["cpu"] for r in done[engine]])
        ari = adjusted_rand_score(np.load(done[ref][-1]["labels"]), np.load(done[engine][-1]["labels"]))
        print("n=%d %-12s median wall %.1f s, cpu %.1f s; agreement with %s: ARI %.4f" % (
            n, engine, wall, cpu, ref, ari))


class _Photos(SimpleNamespace):
    """What the colour schemes read of :class:`photomap.join.Photos`: the paths."""

    def __len__(self):
        return len(self.first_paths)


def time_photomap(n, dim=512, classes=1000):
    """find_clusters, then the labelling steps, then what stage 3 adds on top (the same map run again
    with its previous ids kept, the page's per-photo facts, the colour schemes), at ``n`` points;
    one line each."""
    from photomap import classifier, clusters, colours, facts, islands, labels

    coords = island_layout(n)
    rng = np.random.default_rng(0)
    vectors = np.abs(rng.standard_normal((n, dim), dtype=np.float32))  # post-ReLU pooled features are >= 0
    clf = classifier.Classifier(rng.normal(0, 0.05, (classes, dim)).astype(np.float32),
                                np.zeros(classes, np.float32), tuple("class %d" % i for i in range(classes)))
    clusters.find_clusters(island_layout(2000, seed=1))  # numba's code loaded before the clock starts
    timed = []

    def clock(step):
        wall, cpu = time.perf_counter(), time.process_time()
        result = step()
        timed.append("%.1f s wall, %.1f s cpu" % (time.perf_counter() - wall, time.process_time() - cpu))
        return result

    ids = clock(lambda: clusters.find_clusters(coords))
    summary = clock(lambda: labels.summarise(vectors, clf, ids))
    names, place = clock(lambda: (labels.cluster_labels(summary, clusters.sizes(ids), clf.categories),
                                  labels.place_labels(coords, ids)))
    print("photomap n=%d: find_clusters %s (%d clusters, %.1f %% unclustered); classifier softmax + sums + "
          "top 3 over %dx%d -> %d classes %s; names + label places %s" % (
              n, timed[0], len(names), 100 * np.mean(ids < 0), n, dim, classes, timed[1], timed[2]),
          flush=True)
    assert len(place.xy) == len(names)
    md5s = ["%032x" % i for i in range(n)]
    previous = dict(zip(md5s, (ids + 100 * (ids >= 0)).tolist()))  # the last run's ids, numbered otherwise
    with tempfile.TemporaryDirectory() as feats:
        classifier.save(feats, clf.weight, clf.bias, clf.categories)
        found = clock(lambda: islands.find_islands(coords, vectors, feats, md5s, previous))
    assert np.array_equal(found.ids, np.array([previous[m] for m in md5s]))  # every island kept its id
    details = clock(lambda: facts.page_details(md5s, found, None))
    photos = _Photos(first_paths=["/p/%d/x.jpg" % (i % 7) for i in range(n)],
                     paths=[["/p/%d/x.jpg" % (i % 7)] for i in range(n)])
    years = [2000 + i % 20 if i % 9 else None for i in range(n)]
    clock(lambda: colours.schemes(photos, found.ids, found.names, years))
    print("photomap n=%d stage 3: find_islands with the previous ids kept (clusters, ids matched by overlap, "
          "summary, names) %s; the page's per-photo facts %s (%d columns); colour schemes %s" % (
              n, timed[3], timed[4], len(details), timed[5]), flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-n", type=int, nargs="+", default=[100_000, 1_000_000], help="map sizes")
    p.add_argument("--engines", nargs="+", default=list(ENGINES), help="engines to compare, or none")
    p.add_argument("-r", "--rounds", type=int, default=1, help="alternating rounds per size")
    p.add_argument("--timeout", type=int, default=900, help="seconds an engine run may take")
    p.add_argument("--cold", action="store_true", help="also time fast_hdbscan's first compilation")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    os.makedirs(OUT, exist_ok=True)
    if args.child:
        engine_run(args.child, args.n[0], os.path.join(OUT, "labels-%s-%d.npy" % (args.child, args.n[0])))
        return 0
    print("cores: %d; load average: %s" % (os.cpu_count(), " ".join("%.1f" % x for x in os.getloadavg())))
    for n in args.n:
        engines = [e for e in args.engines if e != "none"]
        if engines:
            compare_engines(n, engines, args.rounds, args.timeout, args.cold and n == args.n[0])
        time_photomap(n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
