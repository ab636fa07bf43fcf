#!/usr/bin/env python3
"""Fuzz stage 3 for longer than CI does: many rounds of the seeded random corruptor.

    .venv/bin/python bench/fuzz_map.py                      # 200 rounds, a fresh random seed
    .venv/bin/python bench/fuzz_map.py --rounds 50 --seed 7 # replay a seed

Each round copies a small format-true pipeline output, breaks 1-5 of its files at random (vectors,
thumbnails, the .meta log, features.json, the feature pack, the coordinates cache and its key),
runs visualize.py in this process and checks: exit 0 or one ``error:`` line, never a traceback;
every photo with intact inputs on the map at the coordinates its vector gives; the summary line's
counts equal what was broken (photomap_tools/corruptor.py holds the corruptor and the checks). A failure
prints its seed and round, so it can be replayed.
"""
import argparse
import random
import sys
import tempfile
import time

from photomap_tools.corruptor import run_fuzz


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=200)
    p.add_argument("--seed", type=int, default=None, help="default: a fresh random seed (printed)")
    args = p.parse_args(argv)
    seed = random.randrange(1 << 31) if args.seed is None else args.seed
    print("fuzz_map: seed %d, %d rounds" % (seed, args.rounds), file=sys.stderr)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fuzz_map-") as tmp:
        try:
            tried = run_fuzz(args.rounds, seed, tmp)
        except AssertionError as exc:
            print("fuzz_map: FAILED: %s" % exc, file=sys.stderr)
            return 1
    elapsed = time.monotonic() - t0
    print("fuzz_map: %d rounds, %d files broken, all checks held, in %.0fs (%.2fs a round)" % (
        args.rounds, sum(tried.values()), elapsed, elapsed / max(1, args.rounds)), file=sys.stderr)
    for op, n in sorted(tried.items()):
        print("  %4d  %s" % (n, op), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
