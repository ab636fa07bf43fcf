"""Each photo's k nearest neighbours in feature space (cosine): exact blocked brute force up to
``EXACT_LIMIT`` photos, NN-descent (pynndescent) beyond, with its recall measured on a sample."""
import csv
import hashlib
import json
import os
from dataclasses import dataclass

import numpy as np

from .fsutil import atomic_write
from .report import printable

K = 12
# Brute force is O(n^2 d), NN-descent about O(n^1.1 d). Measured on 512-d features in CPU seconds
# (bench/bench_neighbours.py): 1.7 against 2.9 at 10k photos, 14.0 against 9.7 at 30k, 53.8 against 21.1
# at 60k, so brute force, which is also exact, is the faster up to about 20k. (NN-descent's numba code
# takes about 77 CPU seconds to compile in a process that has not run it yet; UMAP's layout runs it first.)
EXACT_LIMIT = 20_000
BLOCK_BYTES = 64 << 20  # one block of query-by-all similarities: bounds the memory brute force needs
RECALL_SAMPLE = 1000  # photos whose exact neighbours check an approximate result
RECALL_GOAL = 0.95
METHODS = ("auto", "exact", "approximate")


@dataclass
class Neighbours:
    """``index[i]``: row numbers of photo i's nearest other photos, most similar first (-1 pads a map
    with fewer than k+1 photos); ``similarity[i]``: their cosine similarities (nan where index is -1).
    ``method`` is "exact" or "approximate"; ``recall`` is the approximate result's measured recall
    against brute force on a sample of photos (nan for exact)."""
    index: np.ndarray
    similarity: np.ndarray
    method: str
    recall: float = float("nan")

    def __len__(self):
        return len(self.index)

    @property
    def k(self):
        return self.index.shape[1]

    def of(self, i):
        """Photo i's neighbours as ``[(row, similarity), ...]``, most similar first."""
        return [(int(j), float(s)) for j, s in zip(self.index[i], self.similarity[i]) if j >= 0]


def unit_rows(features) -> np.ndarray:
    """The rows of ``features`` scaled to length 1 as C-contiguous float32. All-zero rows, and rows
    holding a NaN or infinity, become zero: their cosine with everything is 0."""
    x = np.array(features, dtype=np.float32, order="C", copy=True)
    if x.ndim != 2:
        raise ValueError("features must be a 2-D matrix, got shape %s" % (x.shape,))
    x[~np.isfinite(x).all(axis=1)] = 0.0  # a damaged vector must not turn every similarity into NaN
    norms = np.linalg.norm(x, axis=1)
    x /= np.where(norms > 0, norms, 1.0)[:, None]
    return x


def exact(x, k=K, rows=None, block_bytes=BLOCK_BYTES):
    """Exact k nearest neighbours by cosine of the unit rows ``x`` (see :func:`unit_rows`).

    ``rows`` (default: all) are the query rows; each query's own row is never its neighbour.
    Returns ``(index, similarity)``, ``(len(rows), k')`` arrays with ``k' = min(k, n - 1)``, sorted by
    similarity, then by row number (so ties always come out the same). Memory beyond ``x`` is about
    ``block_bytes`` of similarity blocks."""
    from .topk import merge_kernel

    merge = merge_kernel()  # numba: compiled once, then loaded from its disk cache

    n = len(x)
    k = max(0, min(k, n - 1))
    m = n if rows is None else len(rows)
    index = np.full((m, k), -1, np.int64)
    sims = np.full((m, k), -np.inf, np.float32)
    if k == 0 or m == 0:
        return index, sims
    if rows is not None:  # a few queries against everything: row blocks
        rows = np.asarray(rows, dtype=np.int64)
        block = int(max(1, min(m, block_bytes // (4 * n))))
        for a in range(0, m, block):
            q = rows[a:a + block]
            merge(x[q] @ x.T, q, 0, k, index[a:a + len(q)], sims[a:a + len(q)])
        return index, np.clip(sims, -1.0, 1.0)
    # Everything against everything: the similarity matrix is symmetric, so each pair of tiles is
    # multiplied once and folded into both tiles' rows (half the arithmetic of row blocks).
    tile = int(max(1, min(n, np.sqrt(block_bytes / 8))))  # a tile and its transposed copy
    ids = np.arange(n)
    for a in range(0, n, tile):
        for b in range(a, n, tile):
            s = x[a:a + tile] @ x[b:b + tile].T
            merge(s, ids[a:a + tile], b, k, index[a:a + tile], sims[a:a + tile])
            if b != a:
                merge(np.ascontiguousarray(s.T), ids[b:b + tile], a, k, index[b:b + tile], sims[b:b + tile])
    return index, np.clip(sims, -1.0, 1.0)


def approximate(x, k=K, seed=0):
    """Approximate k nearest neighbours of the unit rows ``x`` with NN-descent (pynndescent).

    The candidate graph is built with more neighbours than asked (which is what lifts its recall), then
    the candidates are scored exactly and sorted like :func:`exact`. Returns ``(index, similarity)``."""
    import warnings

    from pynndescent import NNDescent  # numba: imported only for large maps

    n = len(x)
    k = max(0, min(k, n - 1))
    build = min(n - 1, max(2 * k, 30))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numba and "n_jobs overridden" chatter
        # UMAP's own settings (cosine, uncompressed): numba's compiled code, which costs about a minute
        # of CPU per process, is then shared with a UMAP layout computed in the same run.
        graph, _ = NNDescent(x, metric="cosine", n_neighbors=build + 1, random_state=seed,
                             low_memory=True, compressed=False).neighbor_graph
    graph = np.asarray(graph, dtype=np.int64)
    graph[graph < 0] = 0  # a slot NN-descent could not fill: row 0 stands in and is scored like any other
    graph[graph == np.arange(n)[:, None]] = -1
    sims = pair_dots(x, graph)
    sims[graph < 0] = -np.inf
    # drop repeated candidates so a photo is listed once
    order = np.lexsort((graph, -sims), axis=1)
    graph, sims = np.take_along_axis(graph, order, 1), np.take_along_axis(sims, order, 1)
    repeat = np.zeros_like(graph, dtype=bool)
    repeat[:, 1:] = graph[:, 1:] == graph[:, :-1]
    sims[repeat] = -np.inf
    order = np.lexsort((graph, -sims), axis=1)[:, :k]
    return np.take_along_axis(graph, order, 1), np.clip(np.take_along_axis(sims, order, 1), -1.0, 1.0)


def pair_dots(x, graph):
    """``x[i] . x[graph[i, j]]`` for every entry (-1 entries give row 0's), in chunks of rows that
    keep the gathered vectors within ``BLOCK_BYTES``."""
    out = np.empty(graph.shape, np.float32)
    chunk = max(1, BLOCK_BYTES // (4 * x.shape[1] * max(1, graph.shape[1])))
    for start in range(0, len(graph), chunk):
        g = np.maximum(graph[start:start + chunk], 0)
        out[start:start + len(g)] = np.matmul(x[g], x[start:start + len(g), :, None])[:, :, 0]
    return out


def sample_recall(x, index, k=K, sample=RECALL_SAMPLE, seed=0):
    """Mean share of the true k nearest neighbours (brute force) that ``index`` lists, over a seeded
    sample of up to ``sample`` photos. A listed photo as similar as the k-th true neighbour counts as
    found: it is one of them, or tied with the last."""
    n = len(x)
    k = min(k, n - 1)
    if k <= 0:
        return 1.0
    rows = np.sort(np.random.default_rng(seed).choice(n, size=min(n, sample), replace=False))
    _, true_sim = exact(x, k, rows=rows)
    listed = np.asarray(index)[rows, :k]
    hits = 0
    for r, row, want in zip(rows, listed, true_sim):
        row = row[row >= 0]
        got = x[row] @ x[r]
        hits += min(k, int(np.sum(got >= want[-1] - 1e-6)))
    return hits / (len(rows) * k)


def compute(features, k=K, method="auto", seed=0, exact_limit=EXACT_LIMIT) -> Neighbours:
    """Neighbours of every row of ``features`` (any float matrix, one photo per row).

    ``method``: "exact", "approximate", or "auto" (exact up to ``exact_limit`` photos). An approximate
    result carries its recall, measured against brute force on a sample."""
    if method not in METHODS:
        raise ValueError("unknown neighbour method %r (choose from %s)" % (method, ", ".join(METHODS)))
    x = unit_rows(features)
    n = len(x)
    if method == "auto":
        method = "exact" if n <= exact_limit else "approximate"
    if n - 1 <= 2 * k:  # NN-descent has nothing to gain on a handful of photos
        method = "exact"
    if method == "exact":
        index, sims = exact(x, k)
        recall = float("nan")
    else:
        index, sims = approximate(x, k, seed)
        recall = sample_recall(x, index, k, seed=seed)
    return _padded(index, sims, k, method, recall)


def _padded(index, sims, k, method, recall):
    """Widen ``(n, k')`` results to k columns (-1 / nan) so every map has the same shape."""
    n, have = index.shape
    full_i = np.full((n, k), -1, np.int32)
    full_s = np.full((n, k), np.nan, np.float32)
    full_i[:, :have], full_s[:, :have] = index, sims
    return Neighbours(full_i, full_s, method, recall)


# --- the cache beside the page (<stem>.neighbours.npz) and the CSV for scripts (<stem>.neighbours.csv) ---

CACHE_VERSION = 1
CSV_HEADER = ["md5", "rank", "neighbour_md5", "similarity"]
CSV_LIMIT = 100_000  # 12 rows a photo: 1.2M rows (about 95 MB) at this size; beyond it only on request


def file_paths(page_path):
    """``(cache_path, csv_path)`` beside ``page_path``: ``<stem>.neighbours.npz`` and ``.csv``."""
    stem = os.path.splitext(os.fspath(page_path))[0]
    return stem + ".neighbours.npz", stem + ".neighbours.csv"


def cache_key(md5s, features, k, method, seed) -> str:
    """Hash of what the neighbours depend on: the md5 list, the vectors' bytes, k and the method."""
    h = hashlib.sha256()
    h.update(json.dumps({"v": CACHE_VERSION, "k": k, "method": method, "seed": seed}).encode())
    h.update("\n".join(md5s).encode())
    h.update(np.ascontiguousarray(features, dtype=np.float32).tobytes())
    return h.hexdigest()


def write_cache(path, key, nb: Neighbours) -> None:
    """Save ``nb`` under ``key`` as plain arrays (an .npz holding no Python objects), atomically."""
    with atomic_write(path) as f:
        np.savez(f, version=np.int64(CACHE_VERSION), key=np.str_(key), method=np.str_(nb.method),
                 recall=np.float64(nb.recall), index=nb.index.astype(np.int32),
                 similarity=nb.similarity.astype(np.float32))


def read_cache(path, key, n, k):
    """``(Neighbours or None, problem or None)``: the cached result when ``path`` holds one for ``key``
    with n photos and k neighbours each; a missing file is ``(None, None)``, anything else that is not
    a usable cache ``(None, reason)``. Never raises."""
    if not os.path.exists(path):
        return None, None
    try:
        with np.load(path, allow_pickle=False) as z:
            if int(z["version"]) != CACHE_VERSION:
                return None, "written by another version"
            if str(z["key"]) != key:
                return None, "made from other photos, features or settings"
            index, sims = z["index"], z["similarity"]
            method, recall = str(z["method"]), float(z["recall"])
    except Exception as exc:  # noqa: BLE001 -- a damaged file can fail in zip, zlib or npy parsing alike
        return None, "not a readable neighbour cache (%s)" % type(exc).__name__
    if index.shape != (n, k) or sims.shape != (n, k) or index.dtype != np.int32 or \
            not np.all((index >= -1) & (index < n)) or method not in ("exact", "approximate"):
        return None, "not a readable neighbour cache (wrong shape or values)"
    return Neighbours(index, sims.astype(np.float32), method, recall), None


def load_or_compute(md5s, features, page_path, k=K, method="auto", seed=0, say=None):
    """Neighbours of the photos ``md5s`` (rows of ``features``), reused from the cache beside
    ``page_path`` when it was made from the same inputs, computed (and cached) otherwise. Returns
    ``(Neighbours, reused)``; a damaged or foreign cache is named in one line given to ``say`` (e.g.
    ``print``; None: silent) and replaced."""
    say = say or (lambda line: None)
    n = len(md5s)
    resolved = "exact" if method == "exact" or (method == "auto" and n <= EXACT_LIMIT) else "approximate"
    key = cache_key(md5s, features, k, resolved, seed)
    cache_path, _ = file_paths(page_path)
    nb, problem = read_cache(cache_path, key, n, k)
    if nb is not None:
        say("reused the neighbours in %s" % printable(cache_path))
        return nb, True
    if problem:
        say("ignored %s (%s): recomputing the neighbours" % (printable(cache_path), problem))
    nb = compute(features, k, resolved, seed)
    try:
        write_cache(cache_path, key, nb)
    except OSError as exc:
        say("could not write the neighbour cache %s (%s): they will be computed again next time"
            % (printable(cache_path), exc.strerror or exc))
    return nb, False


def describe(nb: Neighbours) -> str:
    """One line: how the neighbours were found, and the measured recall of an approximate result."""
    if nb.method == "exact":
        return "%d nearest neighbours of each photo (exact)" % nb.k
    line = ("%d nearest neighbours of each photo (approximate, NN-descent: recall %.3f "
            "against brute force on %d sampled photos)" % (nb.k, nb.recall, min(len(nb), RECALL_SAMPLE)))
    if nb.recall < RECALL_GOAL:
        line += "; below %.2f: --neighbours exact finds them all (slower)" % RECALL_GOAL
    return line


def write_csv(path, md5s, nb: Neighbours) -> None:
    """``md5,rank,neighbour_md5,similarity`` (rank from 1, cosine to 6 decimals), atomically."""
    with atomic_write(path, "w") as f:
        f.write(",".join(CSV_HEADER) + "\n")
        for i, md5 in enumerate(md5s):
            f.write("".join("%s,%d,%s,%.6f\n" % (md5, r + 1, md5s[j], s)
                            for r, (j, s) in enumerate(zip(nb.index[i], nb.similarity[i])) if j >= 0))


def read_csv(path) -> dict:
    """md5 -> ``[(neighbour_md5, similarity), ...]`` in rank order, from a file :func:`write_csv` wrote.
    Raises ``ValueError`` on a file that is not one."""
    out = {}
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        if next(reader, None) != CSV_HEADER:
            raise ValueError("%s: not a neighbours CSV (header)" % path)
        for row in reader:
            md5, rank, other, sim = row
            ranked = out.setdefault(md5, [])
            if int(rank) != len(ranked) + 1:
                raise ValueError("%s: rank %s of %s out of order" % (path, rank, md5))
            ranked.append((other, float(sim)))
    return out
