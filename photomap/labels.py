"""Names for the map: each photo's top classes by the model's own classifier, each cluster's most
distinctive classes ("seashore · sandbar"), and where each cluster's label is drawn."""
from dataclasses import dataclass

import numpy as np

SEPARATOR = " · "
TOP = 3          # classes shown for a pinned photo, and most parts of a cluster's name
_CHUNK = 8192    # photos per block: (8192 x 1000 classes) float32 = 32 MB at a time


@dataclass
class Summary:
    """What the classifier says about a map. ``top_classes`` (n, 3) int32 and ``top_probs`` (n, 3)
    float32: each photo's three most probable classes, best first; ``cluster_mean`` (k, C): mean
    class probability inside each cluster; ``map_sum`` (C,): summed over all photos; ``n``."""
    top_classes: np.ndarray
    top_probs: np.ndarray
    cluster_mean: np.ndarray
    map_sum: np.ndarray
    n: int


def _softmax(logits):
    logits -= logits.max(axis=1, keepdims=True)
    np.exp(logits, out=logits)
    logits /= logits.sum(axis=1, keepdims=True)
    return logits


def summarise(vectors, clf, cluster_ids) -> Summary:
    """Softmax of classifier ``clf`` (a :class:`~photomap.classifier.Classifier`) over every row of
    ``vectors`` (n, D), block by block so a million photos never hold (n, C) probabilities at once.
    ``cluster_ids`` (n,): ids 0..k-1, -1 for unclustered photos."""
    vectors = np.asarray(vectors, np.float32)
    ids = np.asarray(cluster_ids)
    n, k = len(vectors), int(ids.max()) + 1 if len(ids) else 0
    c = len(clf.categories)
    top = min(TOP, c)
    top_classes = np.zeros((n, top), np.int32)
    top_probs = np.zeros((n, top), np.float32)
    sums = np.zeros((k + 1, c), np.float64)  # row k: the unclustered
    for start in range(0, n, _CHUNK):
        probs = _softmax(vectors[start:start + _CHUNK] @ clf.weight.T + clf.bias)
        stop = start + len(probs)
        block = np.where(ids[start:stop] >= 0, ids[start:stop], k)
        # Photos grouped by cluster, then one sum per run of equal ids: far cheaper than np.add.at.
        rank = np.argsort(block, kind="stable")
        sorted_ids = block[rank]
        starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
        sums[sorted_ids[starts]] += np.add.reduceat(probs[rank], starts, axis=0)
        # Top classes by repeated argmax (ties: the lower class), 5-10x faster than argpartition
        # over 1000 classes; each pick is then blanked out, so this comes after the sums.
        rows = np.arange(len(probs))
        for j in range(top):
            best = probs.argmax(axis=1)
            top_classes[start:stop, j] = best
            top_probs[start:stop, j] = probs[rows, best]
            probs[rows, best] = -1
    counts = np.bincount(np.where(ids >= 0, ids, k), minlength=k + 1)
    cluster_mean = sums[:k] / np.maximum(counts[:k], 1)[:, None]
    return Summary(top_classes, top_probs, cluster_mean, sums.sum(axis=0), n)


def distinctive(summary, cluster_sizes) -> list:
    """For each cluster, the indices of its 1-3 most distinctive classes, best first.

    A class is distinctive for a cluster when its mean probability inside (p) is high *and* well
    above its mean over the rest of the map (q): the score is p * log(p / q), the cluster's share
    of the information that class carries (so a class that is everywhere, however probable, scores
    near zero, and a rare class with a tiny p scores little). The best class always names the
    cluster; the 2nd and 3rd join only while they score at least half as much as the best. A
    cluster that is the whole map has no "rest": its most probable classes name it.
    """
    names = []
    eps = 1e-12
    for cid, size in enumerate(cluster_sizes):
        if size <= 0:  # an id no photo has (ids kept from an earlier map)
            names.append([])
            continue
        p = summary.cluster_mean[cid]
        rest = summary.n - int(size)
        if rest <= 0:
            score = p.copy()
        else:
            q = (summary.map_sum - p * size) / rest
            score = p * np.log((p + eps) / (np.maximum(q, 0) + eps))
        order = np.argsort(-score, kind="stable")[:TOP]
        best = score[order[0]]
        names.append([int(j) for i, j in enumerate(order) if i == 0 or (best > 0 and score[j] >= best / 2)])
    return names


def cluster_labels(summary, cluster_sizes, categories) -> list:
    """Each cluster's label: its distinctive classes' names joined by " · "."""
    return [SEPARATOR.join(categories[j] for j in parts) for parts in distinctive(summary, cluster_sizes)]


def photo_classes(summary, categories, i) -> list:
    """Photo ``i``'s top classes as ``[(name, probability), ...]``, best first (the pinned panel)."""
    return [(categories[int(c)], float(p)) for c, p in zip(summary.top_classes[i], summary.top_probs[i])]


@dataclass
class Placement:
    """Where each cluster's label is drawn: ``xy`` (k, 2) and ``priority`` (k,): when two labels
    collide the one with the larger priority is shown: the larger cluster, the smaller id on a tie
    (k for the largest down to 1; 0 for an id no photo has)."""
    xy: np.ndarray
    priority: np.ndarray


def place_labels(coords, cluster_ids) -> Placement:
    """Each cluster's label goes on the member nearest the members' median point: inside the
    island even when it is a crescent or a ring, whose mean may fall outside it."""
    coords = np.asarray(coords, np.float64)
    ids = np.asarray(cluster_ids)
    k = int(ids.max()) + 1 if len(ids) else 0
    xy = np.zeros((k, 2))
    order = np.argsort(ids, kind="stable")
    bounds = np.searchsorted(ids[order], np.arange(k + 1))
    for cid in range(k):
        pts = coords[order[bounds[cid]:bounds[cid + 1]]]
        if len(pts):
            centre = np.median(pts, axis=0)
            xy[cid] = pts[np.argmin(((pts - centre) ** 2).sum(axis=1))]
    size = np.diff(bounds)
    rank = np.lexsort((np.arange(k), -size))  # by size, then id
    priority = np.zeros(k, np.int64)
    priority[rank] = np.arange(k, 0, -1)
    priority[size == 0] = 0
    return Placement(xy, priority)
