#!/usr/bin/env python3
"""Time stage 3's reading of a feature folder: one np.load per file against the packed cache.

    .venv/bin/python bench/bench_feature_pack.py                 # 100,000 vectors of 512 values
    .venv/bin/python bench/bench_feature_pack.py --n 20000 -r 5

Writes N float32 512-d vectors as stage 2 does (bench/out/pack<N>/, kept between runs, dated an
hour back), then alternates in one process, ``-r`` rounds:
  reference   a plain loop of np.load over every file, stacked (what stage 3 did before the pack);
  checked     featureload.load_matrix without the pack: every file opened and checked;
  re-run      featureload.load_matrix with an up-to-date pack: every file stat'ed, none opened;
  1% changed  the same after 1% of the files were rewritten (re-read, pack rewritten).
The first load_matrix with the pack (which writes it) is timed once. Files stay in the page cache
(warm): a cold disk or a network folder costs the per-file reads far more than the one pack read.
Medians of wall and CPU time (user + system of this process) and their ratios are printed; on this
shared machine wall times are noisy, CPU times less so. ``--no-reference`` skips
the per-file runs (at 1M each takes many minutes): then only the pack's own figures are printed.
"""
import argparse
import os
import statistics
import time

import numpy as np

from photomap import featureload, featurepack, features

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "bench", "out")
DIM = 512


def make_folder(n):
    """N vectors named like stage 2's, an hour old; returns (folder, names)."""
    folder = os.path.join(OUT, "pack%d" % n)
    names = [features.feature_name("%032x.jpg" % i) for i in range(n)]
    done = os.path.join(folder, "done")
    if not os.path.exists(done):
        os.makedirs(folder, exist_ok=True)
        rng = np.random.default_rng(0)
        header = features._npy_header(DIM)  # the bytes np.save writes, without np.save's per-call cost
        for start in range(0, n, 10000):
            block = rng.random((min(10000, n - start), DIM), dtype=np.float32)
            for k, vec in enumerate(block):
                with open(os.path.join(folder, names[start + k]), "wb") as f:
                    f.write(header + vec.tobytes())
        features.write_sidecar(folder, {"model": "resnet18", "dim": DIM})
        age(folder, names)
        open(done, "w").close()
    return folder, names


def age(folder, names, seconds=3600):
    when = time.time() - seconds
    for name in names:
        os.utime(os.path.join(folder, name), (when, when))


def reference(folder, names):
    return np.stack([np.load(os.path.join(folder, name)) for name in names])


def timed(fn):
    """``((wall seconds, CPU seconds of this process), fn())``: on a machine shared with other jobs
    the CPU time says what the work costs, the wall time what the person waits."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return (time.perf_counter() - t0, time.process_time() - c0), out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=100000)
    p.add_argument("-r", "--rounds", type=int, default=3)
    p.add_argument("--no-reference", action="store_true",
                   help="skip the np.load loop and the unpacked run (at 1M they take many minutes)")
    p.add_argument("--reuse-pack", action="store_true",
                   help="keep a pack left by an earlier run (no first run)")
    args = p.parse_args()
    folder, names = make_folder(args.n)
    pack = os.path.join(folder, featurepack.PACK_NAME)
    if os.path.exists(pack) and not args.reuse_pack:
        os.remove(pack)
    if not args.no_reference:
        reference(folder, names)  # warm the page cache for everybody
    t_first = None
    if not os.path.exists(pack):
        t_first, got = timed(lambda: featureload.load_matrix(folder, names))
        assert got.kept == list(range(args.n)) and os.path.isfile(pack)
        del got
    rng = np.random.default_rng(1)
    times = {"reference": [], "checked": [], "re-run": [], "1% changed": []}
    for r in range(args.rounds):
        if not args.no_reference:
            t, ref = timed(lambda: reference(folder, names))
            times["reference"].append(t)
            t, got = timed(lambda: featureload.load_matrix(folder, names, pack=False))
            times["checked"].append(t)
            assert np.array_equal(got.matrix, ref)
            del ref
        t, got = timed(lambda: featureload.load_matrix(folder, names))
        times["re-run"].append(t)
        assert len(got.kept) == args.n
        del got
        changed = rng.choice(args.n, args.n // 100, replace=False)
        for i in changed:
            features.save_vector(os.path.join(folder, names[i]), rng.random(DIM, dtype=np.float32))
        age(folder, [names[i] for i in changed], seconds=1800 - r)
        t, got = timed(lambda: featureload.load_matrix(folder, names))
        times["1% changed"].append(t)
        assert len(got.kept) == args.n
    size = os.path.getsize(pack)
    print("%d vectors of %d values (%.0f MB of .npy files, pack %.0f MB), %d rounds, medians:" % (
        args.n, DIM, args.n * features.vector_file_size(DIM) / 1e6, size / 1e6, args.rounds))
    ref = [statistics.median(t[k] for t in times["reference"]) for k in (0, 1)] \
        if times["reference"] else None
    print("  %-11s %9s %9s   (wall, CPU of each round)" % ("", "wall", "CPU"))
    for what, ts in times.items():
        if ts:
            med = [statistics.median(t[k] for t in ts) for k in (0, 1)]
            ratio = "  %4.1fx / %4.1fx faster than the reference" % (ref[0] / med[0], ref[1] / med[1]) \
                if ref else ""
            print("  %-11s %7.2f s %7.2f s   (%s)%s" % (what, med[0], med[1], ", ".join(
                "%.1f/%.1f" % t for t in ts), ratio))
    if t_first:
        print("  first run (every file read and checked, pack written): %.2f s wall, %.2f s CPU" % t_first)
    print("  peak memory of this process: %.2f GB" % (
        __import__("resource").getrusage(__import__("resource").RUSAGE_SELF).ru_maxrss / 1e6))


if __name__ == "__main__":
    main()
