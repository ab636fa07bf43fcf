"""Stage 3's "more like this" outputs beside the page: each photo's nearest neighbours, the near-duplicate
groups, and whether the originals are still there (``<stem>.neighbours.csv``, ``<stem>.duplicates.csv``)."""
import os
from dataclasses import dataclass

from . import duplicates, neighbours, originals
from .report import SetupError, printable

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

    def group_of(self) -> dict:
        """Row number -> its :class:`duplicates.Group`, for the photos that are in one."""
        return {i: g for g in self.groups for i in g.members}


def duplicates_csv_path(page_path):
    """``<stem>.duplicates.csv`` beside ``page_path``."""
    return os.path.splitext(os.fspath(page_path))[0] + ".duplicates.csv"


def file_paths(page_path) -> tuple:
    """Every file :func:`build` writes beside ``page_path``."""
    return (*neighbours.file_paths(page_path), duplicates_csv_path(page_path))


def parse_threshold(value):
    """``--dup-threshold``: "auto" (None: derived from the data) or a cosine in (-1, 1]; anything
    else is a :class:`SetupError`."""
    if value is None or value == "auto":
        return None
    try:
        threshold = float(value)
    except ValueError:
        threshold = None
    if threshold is None or not -1.0 < threshold <= 1.0:
        raise SetupError("--dup-threshold must be auto or a cosine similarity above -1 and at most 1, "
                         "not %r" % value)
    return threshold


def build(md5s, features, paths, page_path, dup_threshold=None, method="auto", neighbours_csv="auto",
          seed=0, say=None) -> Similar:
    """Neighbours (cached beside ``page_path``), near-duplicate groups and the originals' status of the
    photos ``md5s`` (rows of ``features``; ``paths[i]`` lists photo i's original paths as the .meta log
    gives them), written to the CSVs beside the page; each step is one line given to ``say`` (e.g.
    ``print``; None: silent). ``dup_threshold``: a fixed cosine, or None to derive it from the data.
    ``neighbours_csv``: "auto" writes it up to ``neighbours.CSV_LIMIT`` photos."""
    say = say or (lambda line: None)
    nb, _ = neighbours.load_or_compute(md5s, features, page_path, method=method, seed=seed, say=say)
    say(neighbours.describe(nb))
    _, csv_path = neighbours.file_paths(page_path)
    if neighbours_csv == "always" or (neighbours_csv == "auto" and len(md5s) <= neighbours.CSV_LIMIT):
        neighbours.write_csv(csv_path, md5s, nb)
    else:
        _remove(csv_path)  # one left by an earlier run would describe other photos
        if neighbours_csv == "auto":
            say("%s not written for %d photos (%d rows): --neighbours-csv always writes it"
                % (printable(csv_path), len(md5s), len(md5s) * nb.k))

    copies = [len(p) for p in paths]
    groups, rule = duplicates.find_groups(neighbours.unit_rows(features), nb, md5s, copies, dup_threshold)
    say(duplicates.describe(groups, rule, copies))
    orig = originals.check(p for photo in paths for p in photo)
    line = originals.summary_line(orig)
    if line:
        say(line)
    in_groups = [p for g in groups for i in g.members for p in paths[i]]
    facts = {p: originals.facts(p) for p in in_groups if orig.status.get(p) == originals.PRESENT}
    duplicates.write_csv(duplicates_csv_path(page_path), groups, md5s, paths, facts, orig.status)
    return Similar(nb, groups, rule, orig)


def detail_columns(sim: Similar, paths) -> dict:
    """The page's per-photo detail columns (see :mod:`photomap.details`) from ``sim`` for photos whose
    original paths are ``paths``: ``neighbours`` (row numbers, most similar first) with their cosine
    ``neighbour_similarity`` (3 decimals), ``duplicates`` (the other members of the photo's
    near-duplicate group, or null) with ``dup_group`` (its id) and ``dup_similarity`` (cosine to the
    group's first photo), and ``path_status`` (each path's status where one is not present, else null)."""
    n = len(paths)
    index, similarity = sim.neighbours.index, sim.neighbours.similarity
    cols = {"neighbours": [[int(j) for j in row if j >= 0] for row in index],
            "neighbour_similarity": [[round(float(v), 3) for v, j in zip(srow, row) if j >= 0]
                                     for row, srow in zip(index, similarity)],
            "duplicates": [None] * n, "dup_group": [None] * n, "dup_similarity": [None] * n}
    for g in sim.groups:
        for i, similarity_to_first in zip(g.members, g.similarity):
            cols["duplicates"][i] = [int(j) for j in g.members if j != i]
            cols["dup_group"][i] = g.id
            cols["dup_similarity"][i] = round(float(similarity_to_first), 3)
    status = sim.originals.status
    cols["path_status"] = [None if all(status.get(p, originals.PRESENT) == originals.PRESENT for p in photo)
                           else [status.get(p, originals.PRESENT) for p in photo] for photo in paths]
    return cols


def _remove(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
