"""Stage 3 against the seeded random corruptor (photomap_tools/corruptor.py): random files of a small
pipeline output (vectors, thumbnails, the .meta log, features.json, the feature pack, the coordinates
cache and its key) broken in random ways; every run must end with exit 0 or one ``error:`` line, never a
traceback, keep every photo whose inputs are intact on the map, and count exactly what was broken.

CI runs a few rounds (``PHOTOMAP_FUZZ_ROUNDS``, default 4; ``PHOTOMAP_FUZZ_SEED``, default 0);
``bench/fuzz_map.py`` runs many more with fresh seeds."""
import os

from photomap_tools.corruptor import run_fuzz


def test_random_corruption_never_crashes_and_loses_only_what_was_broken(tmp_path, keep_globals):
    rounds = int(os.environ.get("PHOTOMAP_FUZZ_ROUNDS", "4"))
    seed = int(os.environ.get("PHOTOMAP_FUZZ_SEED", "0"))
    broken = run_fuzz(rounds, seed, str(tmp_path))
    assert sum(broken.values()) >= rounds  # every round broke at least one file
