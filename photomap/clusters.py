"""Clusters: the islands a person sees in the 2-D map, found by HDBSCAN on the layout; ids ordered by
size, and kept from one run to the next by member overlap."""
import math
import sys

import numpy as np

UNCLUSTERED = -1
# HDBSCAN estimates density from each point's k-th neighbour; the layout was made to keep each
# photo's 15 nearest neighbours together (umap n_neighbors), so density is read at that scale.
DEFAULT_MIN_SAMPLES = 15
# Below this, a group is a coincidence rather than an island (and HDBSCAN needs min_cluster_size >= 2).
SMALLEST_CLUSTER = 5


def min_cluster_size(n: int) -> int:
    """The fewest photos an island of a map of ``n`` photos needs to be a cluster: ``sqrt(n)``, so
    there are at most as many clusters as the smallest one has photos (30 of >= 32 photos at 1,000;
    1,000 of >= 1,000 at a million), and never fewer than 5."""
    return max(SMALLEST_CLUSTER, int(round(math.sqrt(max(n, 0)))))


def _hdbscan(coords, min_size, min_samples):
    """Raw HDBSCAN labels (-1 = noise) from fast_hdbscan (parallel Boruvka on a KD-tree; see
    bench/bench_clusters.py for the comparison), else scikit-learn's HDBSCAN, said in one line."""
    try:
        import fast_hdbscan
    except ImportError:
        from sklearn.cluster import HDBSCAN

        print("clusters: fast_hdbscan is not installed; using scikit-learn's HDBSCAN, which is much "
              "slower on large maps (pip install fast_hdbscan)", file=sys.stderr)
        return HDBSCAN(min_cluster_size=min_size, min_samples=min_samples, copy=True).fit_predict(coords)
    # Its parallel Boruvka may pick another of several equally short edges from run to run; that
    # changes no set of points joined below any distance, so not the clusters (the tests check that
    # the same map gives the same ids). Its reproducible=True costs 5-15x the time.
    return fast_hdbscan.HDBSCAN(min_cluster_size=min_size, min_samples=min_samples).fit_predict(coords)


def find_clusters(coords, min_size=None, min_samples=DEFAULT_MIN_SAMPLES) -> np.ndarray:
    """``(n, 2)`` map coordinates -> ``(n,)`` int32 cluster ids: 0 is the largest cluster, 1 the next
    and so on (equal sizes: the one further left, then lower, first), ``UNCLUSTERED`` (-1) for
    photos in no island; they are never forced into one. ``min_size`` defaults to
    :func:`min_cluster_size`. The same coordinates give the same ids. Maps too small to hold two
    clusters (1-3 photos, say) come back all unclustered, without an error."""
    coords = np.ascontiguousarray(coords, dtype=np.float64)
    n = len(coords)
    if coords.ndim != 2 or coords.shape[1] != 2:
        raise ValueError("expected (n, 2) coordinates, got shape %s" % (coords.shape,))
    min_size = min_cluster_size(n) if min_size is None else int(min_size)
    if n < 2 * min_size or not np.isfinite(coords).all():
        return np.full(n, UNCLUSTERED, np.int32)
    min_samples = max(1, min(min_samples, min_size))
    raw = np.asarray(_hdbscan(coords, min_size, min_samples))
    return order_by_size(trim_stragglers(raw, coords, min_samples), coords)


def trim_stragglers(labels, coords, min_samples=DEFAULT_MIN_SAMPLES) -> np.ndarray:
    """``labels`` with the stragglers of each cluster made unclustered.

    HDBSCAN keeps in an island every photo still attached to it when the island parts from the rest
    of the map, so lone photos scattered in the gap beside an island take its colour. A member is a
    straggler when the distance to its ``min_samples``-th neighbour (HDBSCAN's core distance: how
    sparse the map is around it) is far out of line with its island's: beyond Tukey's outer fence,
    Q3 + 3 * IQR of that cluster's core distances. Returns a new array."""
    from scipy.spatial import cKDTree

    labels = np.array(labels, copy=True)
    clustered = np.flatnonzero(labels >= 0)
    if not len(clustered):
        return labels
    core = cKDTree(coords).query(coords[clustered], k=min_samples + 1, workers=-1)[0][:, -1]
    order = np.argsort(labels[clustered], kind="stable")
    ids = labels[clustered][order]
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    for lo, hi in zip(starts, np.r_[starts[1:], len(ids)]):
        members = order[lo:hi]
        q1, q3 = np.quantile(core[members], [0.25, 0.75])
        out = members[core[members] > q3 + 3 * (q3 - q1)]
        labels[clustered[out]] = UNCLUSTERED
    return labels


def order_by_size(labels, coords) -> np.ndarray:
    """Renumber cluster ``labels`` (any ints, negative = none) as 0, 1, ... by decreasing size; ties go
    by the cluster's lowest x, then lowest y, so the order does not depend on the raw numbering."""
    labels = np.asarray(labels)
    coords = np.asarray(coords)
    out = np.full(len(labels), UNCLUSTERED, np.int32)
    clustered = np.flatnonzero(labels >= 0)
    if not len(clustered):
        return out
    raw_ids, inverse = np.unique(labels[clustered], return_inverse=True)
    k = len(raw_ids)
    count = np.bincount(inverse, minlength=k)
    low = np.full((k, 2), np.inf)
    np.minimum.at(low, inverse, coords[clustered])
    rank = np.lexsort((low[:, 1], low[:, 0], -count))  # last key sorts first
    new_id = np.empty(k, np.int32)
    new_id[rank] = np.arange(k, dtype=np.int32)
    out[clustered] = new_id[inverse]
    return out


def sizes(labels) -> np.ndarray:
    """Members per cluster id (index = id), unclustered photos not counted."""
    labels = np.asarray(labels)
    return np.bincount(labels[labels >= 0], minlength=0) if len(labels) else np.zeros(0, np.int64)


def match_ids(old_labels_by_md5: dict, new_labels_by_md5: dict) -> dict:
    """Give the clusters of a new map the ids they had in the old one.

    Both arguments map md5 -> cluster id (-1 = unclustered). Overlap is measured on the photos in
    both maps only, so photos added or removed do not count against a match. A new cluster takes an
    old id when the two share more than half of their photos (Jaccard index > 1/2 on the common
    photos, which makes the match one-to-one: a cluster split in two keeps its id on a part that
    holds most of it, two merged keep the id of one that makes up most of the result). Every other
    new cluster gets a fresh
    id above all old ones, in its own order. Returns md5 -> id for every md5 of the new map;
    unclustered stays -1.
    """
    common = old_labels_by_md5.keys() & new_labels_by_md5.keys()
    old_members, new_members = {}, {}
    for md5 in common:
        old, new = int(old_labels_by_md5[md5]), int(new_labels_by_md5[md5])
        if old >= 0:
            old_members.setdefault(old, set()).add(md5)
        if new >= 0:
            new_members.setdefault(new, set()).add(md5)
    pairs = {}
    for md5 in common:
        old, new = int(old_labels_by_md5[md5]), int(new_labels_by_md5[md5])
        if old >= 0 and new >= 0:
            pairs[old, new] = pairs.get((old, new), 0) + 1
    mapping = {}
    for (old, new), both in sorted(pairs.items()):
        union = len(old_members[old]) + len(new_members[new]) - both
        if 2 * both > union:
            mapping[new] = old
    used = [int(v) for v in old_labels_by_md5.values() if int(v) >= 0]
    fresh = max(used) + 1 if used else 0
    for new in sorted({int(v) for v in new_labels_by_md5.values() if int(v) >= 0}):
        if new not in mapping:
            mapping[new] = fresh
            fresh += 1
    return {md5: mapping[int(v)] if int(v) >= 0 else UNCLUSTERED for md5, v in new_labels_by_md5.items()}
