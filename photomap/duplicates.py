"""Near-duplicate groups: photos that are the same picture after crops, resizes, re-encodes, brightness
edits or small retouches, found among each photo's nearest neighbours (``<page stem>.duplicates.csv``).

How close is "the same picture" depends on the model: random-init features put every pair of photos
within cosine 0.98 of each other, ImageNet features put unrelated photos near 0.2 to 0.5. So the
default rule is relative. A photo's k-th nearest neighbour is (nearly always) a *different* picture,
so its cosine distance tau (1 - similarity) measures how far apart different pictures lie around that
photo. A pair is a near-duplicate when its distance is at most ``RATIO`` times the smaller tau of the
two photos, or within a global floor (``RATIO`` times the 1st percentile of tau) that still catches a
picture with more than k copies, whose own k-th neighbour is one of them. ``--dup-threshold COSINE``
replaces the rule with one fixed cosine.

Mirror images count as near-duplicates: they are the same picture, and ImageNet-trained networks,
taught with flipped copies, give them nearly the same features anyway.
"""
import csv
import io
from dataclasses import dataclass, field

import numpy as np

from .fsutil import atomic_write
from .report import printable

# A different picture's distance to a photo is rarely below half its k-th neighbour's; an edited copy
# sits far closer. 0.15 of tau (0.39 of it in Euclidean terms on the unit sphere) leaves a margin
# on both sides: tests/test_duplicates.py shows it on random-init and on pretrained-like features.
RATIO = 0.15
FLOOR_QUANTILE = 0.01
# Two edits that are each within d of the same original are within 4d of each other (triangle
# inequality on the unit sphere: the square roots of cosine distances add up). A merge that would put
# two photos farther apart than that is a chain of unrelated pictures, not one picture: refused.
CHAIN_FACTOR = 4.0
GUARD_SAMPLE = 64  # members of each side compared before a merge (all of them in any usual group)
CSV_HEADER = ["group", "md5", "path", "similarity", "width", "height", "bytes", "status"]


@dataclass
class Group:
    """One near-duplicate group. ``id`` is its smallest md5, so it stays the same across runs while the
    group does; ``members`` are row numbers, the group's most central photo first; ``similarity``
    gives each member's cosine to that first photo (1.0 for the first)."""
    id: str
    members: list
    similarity: list


@dataclass
class Rule:
    """How pairs were judged: a fixed cosine ``threshold``, or (when it is None) per-photo distances
    ``tau`` and a global ``floor``. :meth:`limit` is the largest cosine distance that qualifies."""
    threshold: float = None
    tau: np.ndarray = field(default_factory=lambda: np.zeros(0))
    floor: float = 0.0

    def limit(self, a, b):
        """Largest qualifying cosine distance between photos ``a`` and ``b`` (arrays broadcast)."""
        if self.threshold is not None:
            return np.full(np.broadcast(a, b).shape, 1.0 - self.threshold)
        return np.maximum(RATIO * np.minimum(self.tau[a], self.tau[b]), self.floor)

    def photo_thresholds(self):
        """Each photo's own cosine threshold against a neighbour at least as far from its own scene."""
        if self.threshold is not None:
            return np.full(len(self.tau), self.threshold)
        return 1.0 - np.maximum(RATIO * self.tau, self.floor)


def auto_rule(nb) -> Rule:
    """The data-derived :class:`Rule` from :class:`neighbours.Neighbours` ``nb``: tau is each photo's
    distance to its last (k-th) listed neighbour; photos without neighbours get tau 0 (nothing
    qualifies but identical features)."""
    sims = np.where(nb.index >= 0, nb.similarity, np.nan)
    have = (nb.index >= 0).sum(axis=1)
    last = np.where(have > 0, sims[np.arange(len(sims)), np.maximum(have - 1, 0)], 1.0)
    tau = np.clip(1.0 - last.astype(np.float64), 0.0, 2.0)
    floor = RATIO * float(np.quantile(tau[have > 0], FLOOR_QUANTILE)) if np.any(have > 0) else 0.0
    return Rule(None, tau, floor)


def find_groups(x, nb, md5s, copies=None, threshold=None):
    """Near-duplicate groups of the unit feature rows ``x`` (``neighbours.unit_rows``), judged on the
    neighbour lists ``nb`` of the same rows. ``md5s`` name the rows; ``copies[i]`` counts photo i's
    byte-identical files (a photo with several is a group on its own when nothing else joins it).
    ``threshold``: a fixed cosine, or None for the data-derived rule. Returns ``(groups, rule)``,
    groups sorted by id."""
    n = len(md5s)
    rule = Rule(float(threshold), np.zeros(n)) if threshold is not None else auto_rule(nb)
    pairs = _qualifying_pairs(nb, rule)
    parent = list(range(n))
    members = {i: [i] for i in range(n)}

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in pairs:  # most similar first, so a chain is cut at its weakest link
        ra, rb = root(a), root(b)
        if ra == rb or not _compact(x, members[ra], members[rb], rule):
            continue
        if len(members[ra]) < len(members[rb]):
            ra, rb = rb, ra
        parent[rb] = ra
        members[ra].extend(members.pop(rb))
    groups = []
    for group in members.values():
        if len(group) > 1 or (copies is not None and copies[group[0]] > 1):
            groups.append(_ordered(x, group, md5s))
    groups.sort(key=lambda g: g.id)
    return groups, rule


def _qualifying_pairs(nb, rule):
    """Neighbour pairs ``(a, b)`` (a < b) whose distance qualifies, most similar first."""
    n, k = nb.index.shape
    a = np.repeat(np.arange(n), k)
    b = nb.index.reshape(-1).astype(np.int64)
    sim = nb.similarity.reshape(-1).astype(np.float64)
    keep = b >= 0
    a, b, sim = a[keep], b[keep], sim[keep]
    keep = (1.0 - sim) <= rule.limit(a, b)
    lo, hi, sim = np.minimum(a, b)[keep], np.maximum(a, b)[keep], sim[keep]
    order = np.lexsort((hi, lo, -sim))
    seen, out = set(), []
    for i in order:
        pair = (int(lo[i]), int(hi[i]))
        if pair not in seen:
            seen.add(pair)
            out.append(pair)
    return out


def _compact(x, left, right, rule):
    """Whether every photo of ``left`` and of ``right`` could be edits of one picture: their
    distances all within ``CHAIN_FACTOR`` times what qualifies a pair."""
    left, right = np.asarray(left[:GUARD_SAMPLE]), np.asarray(right[:GUARD_SAMPLE])
    dist = 1.0 - (x[left] @ x[right].T).astype(np.float64)
    return bool(np.all(dist <= CHAIN_FACTOR * rule.limit(left[:, None], right[None, :]) + 1e-6))


def _ordered(x, group, md5s):
    """A :class:`Group` of the rows ``group``: the first photo is the one with the highest summed
    cosine to the others (the most central; ties to the smaller md5), the rest by similarity to it."""
    group = sorted(group, key=lambda i: md5s[i])
    rows = x[group]
    centrality = rows @ rows.sum(axis=0)
    first = group[int(np.argmax(centrality))]  # argmax keeps the first (smallest md5) of equals
    sims = np.clip(rows @ x[first], -1.0, 1.0)
    sims[group.index(first)] = 1.0
    order = sorted(range(len(group)), key=lambda j: (group[j] != first, -sims[j], md5s[group[j]]))
    return Group(id=md5s[group[0]], members=[group[j] for j in order],
                 similarity=[float(sims[j]) for j in order])


def describe(groups, rule, copies) -> str:
    """One line: how many groups, photos and files, and the threshold that found them."""
    photos = sum(len(g.members) for g in groups)
    files = sum(copies[i] for g in groups for i in g.members)
    line = "%d near-duplicate group%s (%d photo%s, %d file%s)" % (
        len(groups), "" if len(groups) == 1 else "s", photos, "" if photos == 1 else "s",
        files, "" if files == 1 else "s")
    if rule.threshold is not None:
        return line + "; threshold: cosine %.4f (--dup-threshold)" % rule.threshold
    t = rule.photo_thresholds()
    if len(t) == 0:
        return line
    lo, med, hi = np.quantile(t, [0.05, 0.5, 0.95])
    return line + ("; threshold from the data: cosine %.4f for the median photo (%.4f to %.4f for 90%% "
                   "of them), from each photo's %s neighbour (--dup-threshold to set one)"
                   % (med, lo, hi, "farthest listed"))


def csv_text(groups, md5s, paths, facts=None, status=None) -> str:
    """The duplicates CSV: one row per original path of every group member (byte-identical copies
    included), in group order. ``paths[i]`` lists photo i's paths, written made printable and quoted
    by the csv module as in the coordinates CSV (:func:`report.printable`); ``facts`` maps a path to
    ``(width, height, bytes)`` of the original (None where unknown); ``status`` maps a path to
    present / missing / unreachable (see ``originals.py``)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_HEADER)
    for g in groups:
        for i, sim in zip(g.members, g.similarity):
            for path in paths[i]:
                width, height, size = (facts or {}).get(path) or (None, None, None)
                w.writerow([g.id, md5s[i], printable(path), "%.6f" % sim, _cell(width), _cell(height), _cell(size),
                            (status or {}).get(path, "")])
    return buf.getvalue()


def _cell(value):
    return "" if value is None else str(value)


def write_csv(path, groups, md5s, paths, facts=None, status=None) -> None:
    """Write :func:`csv_text` to ``path`` atomically."""
    with atomic_write(path, "w") as f:
        f.write(csv_text(groups, md5s, paths, facts, status))


def read_csv(path) -> dict:
    """group id -> list of row dicts (``md5``, ``path``, ``similarity`` float, ``width``/``height``/
    ``bytes`` int or None, ``status``) from a file :func:`write_csv` wrote. Raises ``ValueError`` on a
    file that is not one."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or header[:7] != CSV_HEADER[:7]:
            raise ValueError("%s: not a duplicates CSV (header)" % path)
        out = {}
        for row in reader:
            rec = dict(zip(header, row))
            for key in ("width", "height", "bytes"):
                rec[key] = int(rec[key]) if rec.get(key) else None
            rec["similarity"] = float(rec["similarity"])
            rec.setdefault("status", "")
            out.setdefault(rec.pop("group"), []).append(rec)
    return out
