"""Stage 3's "more like this" outputs beside the page: each photo's nearest neighbours, the near-duplicate
groups, and whether the originals are still there (``<stem>.neighbours.csv``, ``<stem>.duplicates.csv``)."""
import os
import sys
from dataclasses import dataclass

from . import duplicates, neighbours, originals

CSV_CHOICES = ("auto", "always", "never")


@dataclass
class Similar:
    """What the page and the notebook look up: ``neighbours`` (:class:`neighbours.Neighbours`, rows as
    the photos'), ``groups`` (:class:`duplicates.Group` list), the ``rule`` that found them, and
    ``originals`` (:class:`originals.Originals`: each path present, missing or unreachable)."""
    neighbours: neighbours.Neighbours
    groups: list
    rule: duplicates.Rule
    originals: originals.Originals

    def group_of(self):
        """Row number -> its :class:`duplicates.Group`, for the photos that are in one."""
        return {i: g for g in self.groups for i in g.members}


def duplicates_csv_path(page_path):
    """``<stem>.duplicates.csv`` beside ``page_path``."""
    return os.path.splitext(os.fspath(page_path))[0] + ".duplicates.csv"


def build(md5s, features, paths, page_path, dup_threshold=None, method="auto", neighbours_csv="auto",
          seed=0, log="stderr") -> Similar:
    """Neighbours (cached beside ``page_path``), near-duplicate groups and the originals' status of the
    photos ``md5s`` (rows of ``features``; ``paths[i]`` lists photo i's original paths), written to the
    CSVs beside the page. ``dup_threshold``: a fixed cosine, or None to derive it from the data.
    ``neighbours_csv``: "auto" writes it up to ``neighbours.CSV_LIMIT`` photos."""
    nb, _ = neighbours.load_or_compute(md5s, features, page_path, method=method, seed=seed, log=log)
    _say(log, neighbours.describe(nb))
    _, csv_path = neighbours.file_paths(page_path)
    if neighbours_csv == "always" or (neighbours_csv == "auto" and len(md5s) <= neighbours.CSV_LIMIT):
        neighbours.write_csv(csv_path, md5s, nb)
    else:
        _remove_stale(csv_path)  # an old file would describe other photos
        if neighbours_csv == "auto":
            _say(log, "visualize: %s not written for %d photos (%d rows): --neighbours-csv always writes it"
                 % (csv_path, len(md5s), len(md5s) * nb.k))

    copies = [len(p) for p in paths]
    groups, rule = duplicates.find_groups(neighbours.unit_rows(features), nb, md5s, copies, dup_threshold)
    _say(log, duplicates.describe(groups, rule, copies))
    orig = originals.check(p for photo in paths for p in photo)
    line = originals.summary_line(orig)
    if line:
        _say(log, line)
    in_groups = [p for g in groups for i in g.members for p in paths[i]]
    facts = {p: originals.facts(p) for p in in_groups if orig.status.get(p) == originals.PRESENT}
    duplicates.write_csv(duplicates_csv_path(page_path), groups, md5s, paths, facts, orig.status)
    return Similar(nb, groups, rule, orig)


def _remove_stale(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _say(log, line):
    """Print ``line`` to ``log``: a file, "stderr" (looked up now) or None (silent)."""
    if log == "stderr":
        log = sys.stderr
    if log is not None:
        print(line, file=log)
