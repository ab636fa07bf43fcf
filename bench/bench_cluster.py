"""Stage 1 on a local Dask cluster: overhead per chunk, and 1 vs 2 worker processes against the plain local run.

    PYTHONPATH=$PWD .venv/bin/python bench/bench_cluster.py [-n PHOTOS] [-r ROUNDS]

Starts a `dask scheduler` and `dask worker` processes on 127.0.0.1 (one thread each), alternates the runs
in each round and prints every time plus the medians and ratios to the plain local run (`-j 2`).
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable
DASK = os.path.join(os.path.dirname(PY), "dask")


def make_photos(folder, n):
    from PIL import Image

    for i in range(n):
        os.makedirs(folder, exist_ok=True)
        img = Image.linear_gradient("L").resize((1600, 1200)).convert("RGB")
        img.paste((i * 37 % 256, i * 91 % 256, 60), (100, 100, 600 + i, 500))
        img.save(os.path.join(folder, "p%04d.jpg" % i), quality=90)


def start_cluster(tmp, workers):
    from distributed import Client

    sched_file = os.path.join(tmp, "sched-%d.json" % workers)
    procs = [subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                               "--scheduler-file", sched_file], stderr=subprocess.DEVNULL)]
    while not os.path.exists(sched_file):
        time.sleep(0.1)
    procs += [subprocess.Popen([DASK, "worker", "--scheduler-file", sched_file, "--nthreads", "1", "--no-nanny",
                                "--no-dashboard", "--host", "127.0.0.1"], stderr=subprocess.DEVNULL)
              for _ in range(workers)]
    client = Client(scheduler_file=sched_file, set_as_default=False)
    client.wait_for_workers(workers, timeout=120)
    return sched_file, procs, client


def stage1(photos, out, *extra):
    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    subprocess.run([PY, os.path.join(ROOT, "process_photos.py"), "-d", photos, "-o", out, "-q"] + list(extra),
                   stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("-n", type=int, default=60)
    p.add_argument("-r", type=int, default=2)
    args = p.parse_args()
    from photomap import cluster

    tmp = tempfile.mkdtemp(prefix="bench_cluster_")
    photos = os.path.join(tmp, "photos")
    make_photos(photos, args.n)
    clusters = {w: start_cluster(tmp, w) for w in (1, 2)}
    try:
        client = clusters[2][2]
        for _ in range(2):
            t = time.perf_counter()
            list(cluster.run_chunks(client, len, [str(i) for i in range(200)], 1))
            print("overhead: 200 one-item chunks of len() in %.2fs: %.1f ms per chunk"
                  % (time.perf_counter() - t, (time.perf_counter() - t) / 200 * 1000))
        times = {"local -j 2": [], "local -j 1": [], "dask 1 worker": [], "dask 2 workers": []}
        for _ in range(args.r):
            times["local -j 1"].append(stage1(photos, os.path.join(tmp, "o"), "-j", "1"))
            times["local -j 2"].append(stage1(photos, os.path.join(tmp, "o"), "-j", "2"))
            times["dask 1 worker"].append(stage1(photos, os.path.join(tmp, "o"), "--scheduler", clusters[1][0]))
            times["dask 2 workers"].append(stage1(photos, os.path.join(tmp, "o"), "--scheduler", clusters[2][0]))
        ref = statistics.median(times["local -j 2"])
        for name, ts in times.items():
            m = statistics.median(ts)
            print("%-15s %s  median %.2fs = %.1f photos/s, %.2fx local -j 2" % (
                name, " ".join("%.2f" % t for t in ts), m, args.n / m, ref / m))
    finally:
        for _, procs, client in clusters.values():
            client.close()
            for proc in procs:
                proc.kill()
                proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
