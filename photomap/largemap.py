"""UMAP for large maps (hundreds of thousands to millions of photos): the vectors cut to their main
directions by PCA in float32 blocks, approximate neighbours found there, fewer epochs, and each step
said as it goes (the epochs as a bar on stderr)."""
import sys
import time
import warnings
from typing import NamedTuple, Optional

import numpy as np

# Above this many vector values (n × dim) a layout is large: 2**25 is 65,536 photos of 512 values
# (128 MB as float32), where umap-learn's neighbour search in all dimensions starts to take minutes on
# a laptop and its copies of the vectors start to cost gigabytes. Smaller maps are laid out exactly as
# before this path existed.
LARGE_VALUES = 2 ** 25
PCA_DIMS = 64  # the neighbour search's dimensions on the large path (vectors with more are reduced)
EPOCHS = 200  # umap-learn's own default above 10,000 points
MIN_EPOCHS = 100
BLOCK = 32768  # rows per block of the PCA: a block of 512 float32 values is 64 MB
REDUCIBLE = ("cosine", "euclidean")  # metrics PCA keeps (cosine: on unit-length rows)
# The random-projection forest only seeds NN-descent, which then refines the neighbours. umap-learn's
# count (5 + sqrt(n)/20, at most 64: 55 trees at a million) took 143 s to build and search at a million
# (on 64 PCA dimensions, quiet 2-core machine), after which NN-descent stopped after 1 iteration; with 10
# trees, 80 s and 3 iterations, and the same share (0.811) of each photo's 10 exact cosine neighbours
# found (2,000 photos checked against all 512 values; bench/README.md).
TREES = 10
# The first layout, before the epochs: umap-learn's default, a spectral embedding of the neighbour graph,
# took ~110 s at a million photos; the first two principal axes take seconds. The 1M map's figures were
# the same either way (retention 0.027 / 0.028, copy recall 0.163 / 0.158, label agreement 1.000, rank
# correlation of the islands' distances 0.176 / 0.169; PCA / spectral, both with 10 trees; at 100k:
# bench/README.md).
INIT = "pca"


class Plan(NamedTuple):
    """How a large layout runs: ``dims`` (reduce to this many dimensions first, or None: search the
    vectors as they are), ``n_epochs`` (SGD epochs) and ``large_values`` (the switch point used)."""
    dims: Optional[int]
    n_epochs: int
    large_values: int


def plan(n, dim, metric, large_values=None) -> Optional[Plan]:
    """The :class:`Plan` for laying out ``n`` vectors of ``dim`` values with ``metric``, or None when
    the map is small (``n × dim`` at most ``large_values``, None: :data:`LARGE_VALUES`): then umap-learn
    runs as it always has."""
    large_values = LARGE_VALUES if large_values is None else large_values
    if n * dim <= large_values:
        return None
    dims = PCA_DIMS if metric in REDUCIBLE and dim > PCA_DIMS else None
    # Each epoch samples every edge of the graph: its cost grows with n. Past the switch point the
    # epochs shrink with the square root of the extra size (200 at the switch, 100 from 4× its size):
    # the first layout (INIT) already sets a large map's global picture, the epochs refine it. At 100k
    # (162 epochs) the map's figures stayed within 0.005 of 200 on full vectors (bench/README.md).
    epochs = int(round(EPOCHS * min(1.0, (large_values / (n * dim)) ** 0.5)))
    return Plan(dims, max(MIN_EPOCHS, epochs), large_values)


def project_large(features, layout: Plan, n_neighbors, min_dist, metric, seed, say):
    """``(n, 2)`` float64 coordinates of the rows of ``features`` laid out by ``layout``; each step is
    one line given to ``say`` (None: silent, no bar)."""
    import umap

    tell = say or (lambda line: None)
    n, dim = features.shape
    t0 = time.monotonic()
    if layout.dims:
        data, kept = reduce(features, layout.dims, unit=metric == "cosine")
        tell("layout: %s photos, %d values each cut to %d by PCA (%.0f%% of the variance) in %.0fs"
             % (_n(n), dim, layout.dims, 100 * kept, time.monotonic() - t0))
        search_metric = "euclidean"
    else:
        data, search_metric = np.asarray(features, dtype=np.float32), metric
    t1 = time.monotonic()
    idx, dist = neighbours(data, n_neighbors, search_metric, seed)
    if layout.dims and metric == "cosine":
        # On unit vectors |a - b|^2 = 2 (1 - cos): give UMAP the cosine distances it would have had.
        dist = dist ** 2 / 2
    tell("layout: nearest neighbours found in %.0fs" % (time.monotonic() - t1))
    reducer = umap.UMAP(n_components=2, n_neighbors=n_neighbors, min_dist=min_dist, metric=search_metric,
                        random_state=seed, n_epochs=layout.n_epochs, low_memory=True, init=INIT,
                        precomputed_knn=(idx, dist, None),
                        tqdm_kwds={"disable": say is None, "file": sys.stderr, "desc": "layout epochs",
                                   "bar_format": "{desc}: {percentage:3.0f}%| {bar} {n_fmt}/{total_fmt} "
                                                 "[{elapsed}<{remaining}]"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the missing search index (no transform needed), numba chatter
        coords = reducer.fit_transform(data)
    tell("layout: %s photos laid out in %.0fs (%d epochs)" % (_n(n), time.monotonic() - t0, layout.n_epochs))
    return np.asarray(coords, dtype=np.float64)


def reduce(features, dims, unit):
    """``(rows, kept)``: the rows of ``features`` (scaled to length 1 first when ``unit``) on their
    ``dims`` principal axes, float32 ``(n, dims)``, and the share of the variance those axes keep.

    The covariance is summed block by block (float32 products, float64 sums), so no other ``n × dim``
    array than ``features`` itself ever exists; the axes' signs are fixed for a repeatable result."""
    n, dim = features.shape
    gram = np.zeros((dim, dim))
    total = np.zeros(dim)
    for block in _blocks(features, unit):
        gram += block.T @ block
        total += block.sum(axis=0, dtype=np.float64)
    mean = total / n
    cov = gram / n - np.outer(mean, mean)
    values, vectors = np.linalg.eigh(cov)
    order = np.argsort(values)[::-1][:dims]
    axes = vectors[:, order]
    axes *= np.where(axes[np.argmax(np.abs(axes), axis=0), range(dims)] < 0, -1.0, 1.0)
    kept = float(values[order].sum() / max(values.sum(), 1e-300))
    out = np.empty((n, dims), dtype=np.float32)
    axes32, mean32 = axes.astype(np.float32), mean.astype(np.float32)
    start = 0
    for block in _blocks(features, unit):
        out[start:start + len(block)] = (block - mean32) @ axes32
        start += len(block)
    return out, kept


def _blocks(features, unit):
    """The rows of ``features`` as float32 blocks of :data:`BLOCK` rows, scaled to length 1 when ``unit``."""
    for start in range(0, features.shape[0], BLOCK):
        block = np.asarray(features[start:start + BLOCK], dtype=np.float32)
        if unit:
            norms = np.linalg.norm(block, axis=1, keepdims=True)
            block = block / np.where(norms > 0, norms, 1.0)
        yield block


def neighbours(data, k, metric, seed):
    """``(indices, distances)`` of each row's ``k`` approximate nearest rows (itself first), by
    pynndescent with umap-learn's own settings for this size but at most :data:`TREES` trees, in its
    low-memory mode."""
    from pynndescent import NNDescent

    n = data.shape[0]
    index = NNDescent(data, n_neighbors=k, metric=metric, random_state=seed, low_memory=True,
                      n_trees=min(TREES, 5 + int(round(n ** 0.5 / 20.0))),
                      n_iters=max(5, int(round(np.log2(n)))), max_candidates=60, compressed=True,
                      n_jobs=-1, verbose=False)
    idx, dist = index.neighbor_graph
    return idx, dist


def _n(count) -> str:
    return "{:,}".format(count)
