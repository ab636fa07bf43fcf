"""Place new photos into a map whose other points stay put: each goes to the densest group of its
feature-space look-alikes on the map; groups the map never had are laid out around there with
umap-learn's own optimisation, every old point held still."""
import functools
import warnings

import numpy as np

N_EPOCHS = 200  # SGD epochs for the free new points (umap-learn runs 200 for a full map above 10k)
SPREAD = 1.0  # umap-learn's default
ANCHORED_SHARE = 0.5  # a new photo with more than this share of its ties at its spot stays there


def place(features, coords, fixed, n_neighbors=15, min_dist=0.1, metric="cosine", seed=None,
          n_epochs=N_EPOCHS, anchored_share=ANCHORED_SHARE):
    """``coords`` (``(n, 2)``) with the rows not ``fixed`` placed among their neighbours; fixed rows
    come back bit for bit.

    1. Neighbours: each new photo's ``n_neighbors`` nearest among all photos (UMAP's fuzzy graph,
       so new photos keep their ties to each other) and among the old photos alone (its anchors).
    2. Its spot: of the places where its anchors lie on the map, the one whose ``n_neighbors``
       nearest map points hold the most of them (by membership); it goes to the weighted mean of
       the anchors found there: the densest group of its look-alikes, not the middle of them all.
    3. A new photo whose graph ties go mostly (``anchored_share``) to old photos at its spot stays
       there. The others (say a new trip: look-alikes the old map never had) start at their spot
       and are laid out by umap-learn's SGD, every other point held still."""
    coords = np.array(coords, dtype=np.float64)
    fixed = np.asarray(fixed, dtype=bool)
    new = np.flatnonzero(~fixed)
    if len(new) == 0:
        return coords
    if not fixed.any():
        raise ValueError("no fixed point to place the new ones against")
    n = len(coords)
    idx, dist, old_idx, old_dist = _neighbours(features, new, fixed, min(n_neighbors, n),
                                               min(n_neighbors, int(fixed.sum())), metric)
    w = _memberships(dist, skip_first=True)
    w[idx == new[:, None]] = 0.0  # no tie to itself
    anchor_w = _memberships(old_dist)
    spot, inlier = _spots(coords, fixed, old_idx, anchor_w)
    rng = np.random.default_rng(seed)
    coords[new] = spot + _nudge(coords, fixed, spot, rng)
    at_spot = (idx[:, :, None] == np.where(inlier, old_idx, -1)[:, None, :]).any(axis=2)
    free = (w * at_spot).sum(axis=1) < anchored_share * w.sum(axis=1)
    if not free.any():
        return coords
    movable = np.zeros(n, dtype=np.uint8)
    movable[new[free]] = 1
    # Ties to old photos away from the spot are dropped: those cannot come closer, so they would
    # only drag the photo into the middle of nowhere.
    w[fixed[idx] & ~at_spot] = 0.0
    heads, tails, weights = _union(new, idx, w, n)
    # A tether to the look-alikes at its spot, 1/n_neighbors as strong as a tie: a group whose ties
    # are all among itself would otherwise drift off wherever repulsion sends it (as a disconnected
    # component does in UMAP); this holds it beside its kind without pulling it on top of it.
    tether = free[:, None] & inlier
    heads = np.concatenate([heads, np.broadcast_to(new[:, None], tether.shape)[tether]])
    tails = np.concatenate([tails, old_idx[tether]])
    weights = np.concatenate([weights, anchor_w[tether] / old_idx.shape[1]])
    use = (movable[heads] | movable[tails]).astype(bool)
    if not use.any():
        return coords
    use &= weights >= weights[use].max() / n_epochs  # umap-learn drops edges too weak to sample once
    heads, tails, weights = heads[use], tails[use], weights[use]
    a, b = ab_params(SPREAD, min_dist)
    # umap-learn's sampling: the strongest edge every epoch, the others in proportion to weight.
    _sgd()(coords, heads.astype(np.int64), tails.astype(np.int64), weights.max() / weights, movable,
           n_epochs, a, b, 1.0, 5.0, 1.0, int(rng.integers(2 ** 31)))
    return coords


def _neighbours(features, rows, fixed, k, k_old, metric):
    """``(idx, dist, old_idx, old_dist)``: for each of ``rows`` (all new), its ``k`` nearest among all
    rows of ``features`` (itself first, as in umap-learn's graph) and its ``k_old`` nearest ``fixed``
    rows, nearest first, distances in ``metric``.

    Exact, by brute force in blocks: only the new rows are queried, a fraction of a full layout's
    neighbour search. cosine and euclidean rank by a float32 matrix product per block, then the
    chosen few distances are computed from the vectors; other metrics go through scikit-learn."""
    x = np.asarray(features, dtype=np.float32)
    old, new = np.flatnonzero(fixed), np.flatnonzero(~np.asarray(fixed))
    if metric not in ("cosine", "euclidean"):
        from sklearn.neighbors import NearestNeighbors

        dist, idx = NearestNeighbors(n_neighbors=k, metric=metric).fit(x).kneighbors(x[rows])
        od, oi = NearestNeighbors(n_neighbors=k_old, metric=metric).fit(x[old]).kneighbors(x[rows])
        return idx, dist.astype(np.float64), old[oi], od.astype(np.float64)
    if metric == "cosine":
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        x = x / np.where(norms > 0, norms, 1)
    sq = (x ** 2).sum(axis=1)
    x_old, x_new = x[old], x[new]
    out = [np.empty((len(rows), k), dtype=np.int64), np.empty((len(rows), k)),
           np.empty((len(rows), k_old), dtype=np.int64), np.empty((len(rows), k_old))]
    block = max(1, 2 ** 24 // len(x))  # rows per block: 64 MB of float32 scores
    for s in range(0, len(rows), block):
        part = rows[s:s + block]
        q = x[part]
        # Rank by what the distance grows with: -dot for cosine, |y|^2 - 2 dot for euclidean.
        top_old = _smallest(_score(q, x_old, sq[old], metric), max(k_old, min(k, len(old))), old)
        top_new = _smallest(_score(q, x_new, sq[new], metric), min(k, len(new)), new)
        cand = np.hstack([top_old[:, :k], top_new])
        d = _distance(x, part, cand, metric)
        d[cand == part[:, None]] = -1.0  # itself first, whatever the rounding
        order = np.argsort(d, axis=1, kind="stable")[:, :k]
        out[0][s:s + block] = np.take_along_axis(cand, order, axis=1)
        out[1][s:s + block] = np.maximum(np.take_along_axis(d, order, axis=1), 0.0)
        out[2][s:s + block] = top_old[:, :k_old]
        out[3][s:s + block] = _distance(x, part, top_old[:, :k_old], metric)
    return tuple(out)


def _score(q, y, sq_y, metric):
    return -(q @ y.T) if metric == "cosine" else sq_y - 2 * (q @ y.T)


def _smallest(score, k, ids):
    """``ids`` of the ``k`` smallest scores of each row, smallest first."""
    top = np.argpartition(score, k - 1, axis=1)[:, :k] if k < score.shape[1] else \
        np.broadcast_to(np.arange(score.shape[1]), score.shape).copy()
    order = np.argsort(np.take_along_axis(score, top, axis=1), axis=1, kind="stable")
    return ids[np.take_along_axis(top, order, axis=1)]


def _distance(x, rows, ids, metric):
    """Distances from each of ``rows`` to its ``ids`` (the vectors already normalised for cosine,
    whose distance is ``1 - cos``, as in umap-learn)."""
    a, b = x[rows], x[ids]
    if metric == "cosine":
        return np.maximum(1.0 - np.einsum("id,ikd->ik", a, b).astype(np.float64), 0.0)
    diff = (b - a[:, None, :]).astype(np.float64)
    return np.sqrt(np.einsum("ikd,ikd->ik", diff, diff))


def _memberships(dist, skip_first=False):
    """umap-learn's fuzzy memberships of each row's neighbours at ``dist`` (nearest first): 1 for the
    nearest other point, then decaying at the row's own scale (``_smooth_knn``). ``skip_first``
    when the first column is the point itself."""
    if not skip_first:
        dist = np.hstack([np.zeros((len(dist), 1)), dist])
    sigma, rho = _smooth_knn(dist, dist.shape[1])
    w = np.where(dist - rho[:, None] <= 0, 1.0, np.exp(-(dist - rho[:, None]) / sigma[:, None]))
    return w if skip_first else w[:, 1:]


def _spots(coords, fixed, old_idx, weights, chunk=2048):
    """``(spot, inlier)``: for each new photo, the weighted mean map position of those of its anchors
    (``old_idx``, memberships ``weights``) that lie in their densest group, and which anchors those
    are (boolean, shaped like ``old_idx``).

    The candidate places are the anchors' own positions; a candidate scores the weight of the
    anchors among its ``m`` nearest old map points (``m`` = the number of anchors)."""
    from scipy.spatial import cKDTree

    old = np.flatnonzero(fixed)
    tree = cKDTree(coords[old])
    n_new, m = old_idx.shape
    spot = np.empty((n_new, 2))
    inlier = np.empty((n_new, m), dtype=bool)
    for s in range(0, n_new, chunk):
        ids, w = old_idx[s:s + chunk], weights[s:s + chunk]
        cand = coords[ids]  # (b, m, 2)
        _, near = tree.query(cand.reshape(-1, 2), m)
        near = old[np.asarray(near).reshape(len(ids), m, m)]
        member = (near[:, :, :, None] == ids[:, None, None, :]).any(axis=2)  # anchor j near candidate c
        member[:, np.arange(m), np.arange(m)] = True  # (even when other points share its place)
        best = np.argmax((member * w[:, None, :]).sum(axis=2), axis=1)
        inl = member[np.arange(len(ids)), best]
        ww = w * inl
        spot[s:s + chunk] = (ww[:, :, None] * cand).sum(axis=1) / ww.sum(axis=1, keepdims=True)
        inlier[s:s + chunk] = inl
    return spot, inlier


def _nudge(coords, fixed, spot, rng):
    """Small random offsets (a quarter of the distance between old points there), so that a new
    photo never sits exactly on an old one, where it could not be hovered."""
    from scipy.spatial import cKDTree

    k = min(2, int(fixed.sum()))
    d, _ = cKDTree(coords[fixed]).query(spot, k)
    d = np.asarray(d, dtype=np.float64).reshape(len(spot), -1)[:, -1]
    angle = rng.uniform(0, 2 * np.pi, len(spot))
    return 0.25 * d[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)


def _union(rows, idx, w, n):
    """UMAP's symmetric graph over the edges touching ``rows``: ``(heads, tails, weights)`` with
    both directions of each edge, as umap-learn samples them.

    ``w`` holds the directed memberships of each row's neighbours ``idx``; where both ends are new
    the two directions are united (``a + b - ab``). An old photo's own neighbour list is not known
    (only its place on the previous map is), so an old-new edge has the new side's membership."""
    from scipy.sparse import coo_matrix

    a = coo_matrix((w.ravel(), (np.repeat(rows, idx.shape[1]), idx.ravel())), shape=(n, n)).tocsr()
    at = a.T.tocsr()
    sym = (a + at - a.multiply(at)).tocoo()
    sym.eliminate_zeros()
    return sym.row, sym.col, sym.data


def _smooth_knn(dist, k, n_iter=64, tolerance=1e-5, min_scale=1e-3):
    """umap-learn's ``smooth_knn_dist`` (local_connectivity 1, bandwidth 1) on whole arrays:
    per row, ``rho`` is the distance to the nearest other point and ``sigma`` is found by bisection
    so that the memberships of the ``k - 1`` others sum to ``log2(k)``."""
    target = np.log2(k)
    positive = np.where(dist > 0, dist, np.inf)
    rho = positive.min(axis=1)
    rho[~np.isfinite(rho)] = 0.0
    lo = np.zeros(len(dist))
    hi = np.full(len(dist), np.inf)
    mid = np.ones(len(dist))
    active = np.ones(len(dist), dtype=bool)
    d = dist[:, 1:] - rho[:, None]
    for _ in range(n_iter):
        psum = np.where(d > 0, np.exp(-d / mid[:, None]), 1.0).sum(axis=1)
        active &= np.abs(psum - target) >= tolerance
        if not active.any():
            break
        high = active & (psum > target)
        low = active & ~(psum > target)
        hi[high] = mid[high]
        lo[low] = mid[low]
        mid[high] = (lo[high] + hi[high]) / 2
        doubled = low & ~np.isfinite(hi)
        mid[doubled] *= 2
        halved = low & np.isfinite(hi)
        mid[halved] = (lo[halved] + hi[halved]) / 2
    floor = min_scale * np.where(rho > 0, dist.mean(axis=1), dist.mean())
    return np.maximum(mid, floor), rho


def ab_params(spread, min_dist):
    """umap-learn's ``find_ab_params``: ``a, b`` of the curve ``1 / (1 + a d^2b)`` closest to the
    membership ``1`` below ``min_dist`` and ``exp(-(d - min_dist) / spread)`` beyond."""
    from scipy.optimize import curve_fit

    xv = np.linspace(0, spread * 3, 300)
    yv = np.where(xv < min_dist, 1.0, np.exp(-(xv - min_dist) / spread))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        (a, b), _ = curve_fit(lambda x, a, b: 1.0 / (1.0 + a * x ** (2 * b)), xv, yv)
    return float(a), float(b)


@functools.lru_cache(maxsize=None)
def _sgd():
    """The SGD kernel compiled with numba (once per machine: numba caches the compiled code)."""
    import numba

    return numba.njit(cache=True, fastmath=True)(_sgd_epochs)


def _sgd_epochs(pos, heads, tails, epochs_per_sample, movable, n_epochs, a, b, gamma,
                negative_rate, initial_alpha, seed):
    """umap-learn's ``optimize_layout_euclidean`` (its single-epoch kernel with ``move_other``),
    except that a point with ``movable == 0`` is never moved: edges are sampled by weight, each
    sample pulls the ends together and pushes the head away from random points of the whole map."""
    np.random.seed(seed)
    n_vertices = pos.shape[0]
    n_edges = heads.shape[0]
    per_negative = epochs_per_sample / negative_rate
    next_sample = epochs_per_sample.copy()
    next_negative = per_negative.copy()
    alpha = initial_alpha
    for epoch in range(n_epochs):
        for i in range(n_edges):
            if next_sample[i] > epoch:
                continue
            j = heads[i]
            k = tails[i]
            dx = pos[j, 0] - pos[k, 0]
            dy = pos[j, 1] - pos[k, 1]
            d2 = dx * dx + dy * dy
            coeff = 0.0
            if d2 > 0.0:
                coeff = -2.0 * a * b * d2 ** (b - 1.0) / (a * d2 ** b + 1.0)
            gx = min(4.0, max(-4.0, coeff * dx)) * alpha
            gy = min(4.0, max(-4.0, coeff * dy)) * alpha
            if movable[j]:
                pos[j, 0] += gx
                pos[j, 1] += gy
            if movable[k]:
                pos[k, 0] -= gx
                pos[k, 1] -= gy
            next_sample[i] += epochs_per_sample[i]
            n_negative = int((epoch - next_negative[i]) / per_negative[i])
            next_negative[i] += n_negative * per_negative[i]
            if not movable[j]:
                continue
            for _ in range(n_negative):
                k = np.random.randint(n_vertices)
                if k == j:
                    continue
                dx = pos[j, 0] - pos[k, 0]
                dy = pos[j, 1] - pos[k, 1]
                d2 = dx * dx + dy * dy
                if d2 > 0.0:
                    coeff = 2.0 * gamma * b / ((0.001 + d2) * (a * d2 ** b + 1.0))
                    pos[j, 0] += min(4.0, max(-4.0, coeff * dx)) * alpha
                    pos[j, 1] += min(4.0, max(-4.0, coeff * dy)) * alpha
        alpha = initial_alpha * (1.0 - epoch / n_epochs)
    return pos
