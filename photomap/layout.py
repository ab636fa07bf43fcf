"""Stage 3 data side: join the .meta log, thumbnails and feature vectors, lay them out in 2-D with
UMAP (kept beside the page as ``<page stem>.coords.csv``, the map later runs grow) and pick colours
that help orientation."""
import json
import os
import sys
import warnings
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from . import features as features_mod
from .fsutil import atomic_write
from .meta import read_meta, thumb_name
from .report import printable

UMAP_DEFAULTS = {"n_neighbors": 15, "min_dist": 0.1, "metric": "cosine", "seed": None}
COLOUR_MODES = ("auto", "folder", "cluster", "none")
MAX_FOLDER_COLOURS = 10  # beyond this many top-level folders a legend stops helping: cluster instead
N_CLUSTERS = 10


@dataclass
class Photos:
    """The joined inputs, one row per md5 (sorted by md5, so the order never depends on the log).

    ``paths[i]`` lists every original path of ``md5s[i]`` (made printable by :func:`report.printable`);
    ``features`` is the ``(n, d)`` float32 matrix in the same order; ``left_out`` counts what the join
    dropped, by reason."""
    md5s: list
    paths: list
    features: np.ndarray
    thumbs_dir: str
    left_out: Counter = field(default_factory=Counter)
    model: str = ""  # from the feature folder's sidecar, for the page title

    def __len__(self):
        return len(self.md5s)

    @property
    def copies(self):
        return [len(p) for p in self.paths]


def join(meta_path, thumbs_dir, features_dir, log="stderr") -> Photos:
    """Join the three inputs into :class:`Photos` and print one summary line on ``log``.

    A photo is kept when its md5 has a .meta line, a thumbnail ``<thumbs>/<md5>.jpg`` and a readable
    vector of the common size; everything else is counted and left out, never raised. A missing
    .meta file raises ``FileNotFoundError`` (a fatal problem for the caller)."""
    meta = read_meta(meta_path)
    groups = meta.by_md5()
    left_out = Counter()
    listed = set(features_mod.listed_md5s(features_dir))
    left_out["features without a .meta line"] = len(listed - set(groups))
    with_thumb = []
    for md5 in sorted(groups):
        if os.path.isfile(os.path.join(thumbs_dir, thumb_name(md5))):
            with_thumb.append(md5)
        else:
            left_out[".meta md5s without thumbnail"] += 1
    matrix, found, problems = features_mod.load_for_md5s(features_dir, with_thumb)
    for reason in problems.values():
        key = ".meta md5s without features" if reason == "no feature vector" else \
            "unreadable or odd-sized vectors"
        left_out[key] += 1
    left_out["# error lines"] = len(meta.errors)
    left_out["malformed .meta lines"] = meta.malformed
    photos = Photos(md5s=found, paths=[[printable(p) for p in groups[m]] for m in found],
                    features=matrix, thumbs_dir=os.fspath(thumbs_dir),
                    left_out=Counter({k: v for k, v in left_out.items() if v}),
                    model=_model_name(features_dir))
    _say(log, join_summary(photos))
    return photos


def _model_name(features_dir) -> str:
    """The model named in the feature folder's sidecar ('' when absent or unreadable: only a title)."""
    try:
        info = features_mod.read_sidecar(features_dir) or {}
    except (OSError, ValueError):
        return ""
    return str(info.get("model", "")) if isinstance(info, dict) else ""


def join_summary(photos: Photos) -> str:
    """One line: photos and paths on the map, then each left-out reason with its count."""
    n_paths = sum(photos.copies)
    line = "visualize: %d photo%s (%d file%s) on the map" % (
        len(photos), "" if len(photos) == 1 else "s", n_paths, "" if n_paths == 1 else "s")
    if photos.left_out:
        line += "; left out: " + ", ".join("%d %s" % (n, k) for k, n in sorted(photos.left_out.items()))
    return line


def embed(features: np.ndarray, n_neighbors=15, min_dist=0.1, metric="cosine", seed=None, log="stderr"):
    """2-D coordinates (``(n, 2)`` float64) of the rows of ``features``.

    UMAP when there are more points than ``n_neighbors``; 1 point -> (0, 0); 2 points -> a line;
    otherwise PCA (of the L2-normalised rows for the cosine metric). A fallback is said in one line."""
    n = features.shape[0]
    if n == 0:
        return np.zeros((0, 2))
    if n == 1:
        _say(log, "visualize: 1 photo: placed at (0, 0) (UMAP needs more points)")
        return np.zeros((1, 2))
    if n == 2:
        _say(log, "visualize: 2 photos: placed on a line (UMAP needs more points)")
        return np.array([[-1.0, 0.0], [1.0, 0.0]])
    if n <= n_neighbors:
        _say(log, "visualize: only %d photos, UMAP needs more than n_neighbors=%d: laid out with PCA instead"
             % (n, n_neighbors))
        return _pca_2d(_prepare(features, metric))
    import umap  # heavy (numba): imported only when a map is actually computed

    reducer = umap.UMAP(n_components=2, n_neighbors=n_neighbors, min_dist=min_dist, metric=metric,
                        random_state=seed)
    with warnings.catch_warnings():
        # "n_jobs value 1 overridden ..." when seeded, and numba chatter: not the user's concern.
        warnings.simplefilter("ignore")
        coords = reducer.fit_transform(features)
    return np.asarray(coords, dtype=np.float64)


def _prepare(features, metric):
    x = np.asarray(features, dtype=np.float64)
    if metric == "cosine":
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        x = x / np.where(norms > 0, norms, 1.0)
    return x


def _pca_2d(x):
    x = x - x.mean(axis=0)
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    coords = u[:, :2] * s[:2]
    if coords.shape[1] < 2:
        coords = np.hstack([coords, np.zeros((coords.shape[0], 2 - coords.shape[1]))])
    # SVD signs are arbitrary: fix them so the same input always gives the same picture.
    for j in range(2):
        col = coords[:, j]
        if col[np.argmax(np.abs(col))] < 0:
            coords[:, j] = -col
    return coords


def _say(log, line):
    """Print ``line`` to ``log``: a file, "stderr" (looked up now, so redirection works) or None (silent)."""
    if log == "stderr":
        log = sys.stderr
    if log is not None:
        print(line, file=log)


def coords_paths(page_path):
    """``(csv_path, key_path)`` of the coordinates beside ``page_path``: the map itself, and the
    UMAP parameters its layout was made with."""
    stem = os.path.splitext(os.fspath(page_path))[0]
    return stem + ".coords.csv", stem + ".coords.key"


def load_or_embed(photos: Photos, page_path, log="stderr", refit=False, **params):
    """Coordinates of ``photos`` and whether they were reused as they were: ``(coords, reused)``.

    The coordinates CSV beside ``page_path`` is the previous map: its photos keep their places,
    new photos are placed among them, removed ones disappear (:func:`stable.update`, which says
    what it did in one line). Without a usable previous map, or with ``refit``, the layout is
    computed afresh by :func:`embed` (aligned to the previous map when ``refit``)."""
    from . import coords as coords_csv, stable

    params = dict(UMAP_DEFAULTS, **params)
    csv_path, key_path = coords_paths(page_path)
    previous = coords_csv.read_previous(csv_path)
    laid_out_with = _read_params(key_path)
    outcome = stable.update(photos.md5s, photos.features, previous,
                            lambda x: embed(x, log=log, **params), os.path.basename(csv_path),
                            refit=refit, **params)
    reused = not outcome.laid_out and not outcome.removed and not previous.bad_rows  # (all kept)
    if reused:
        _say(log, "visualize: reused the map coordinates in %s" % csv_path)
    else:
        for line in outcome.lines:
            _say(log, line)
    kept = outcome.kept and laid_out_with is not None
    changed = {k: v for k, v in params.items() if k != "seed" and kept and laid_out_with.get(k, v) != v}
    if changed:
        _say(log, "visualize: kept the map laid out with %s; --refit lays it out with %s" % (
            ", ".join("%s=%s" % (k, laid_out_with[k]) for k in sorted(changed)),
            ", ".join("%s=%s" % (k, v) for k, v in sorted(changed.items()))))
    coords_csv.write(csv_path, photos.md5s, outcome.coords, [p[0] for p in photos.paths],
                     only_if_changed=reused)
    if not reused:
        with atomic_write(key_path, "w") as f:
            json.dump({"n": len(photos), "params": laid_out_with if kept else params}, f,
                      sort_keys=True)
            f.write("\n")
    return outcome.coords, reused


def _read_params(key_path):
    """The UMAP parameters recorded beside the map (a dict), or None when unknown."""
    try:
        with open(key_path, encoding="utf-8") as f:
            params = json.load(f).get("params")
    except (OSError, ValueError, AttributeError):
        return None
    return params if isinstance(params, dict) else None


def common_root(paths) -> str:
    """The deepest folder holding every path in ``paths`` ('' when there is none in common)."""
    dirs = [os.path.dirname(p) for p in paths]
    if not dirs:
        return ""
    try:
        return os.path.commonpath(dirs)
    except ValueError:  # mix of absolute and relative paths
        return ""


def top_folders(paths, root: str):
    """For each path, its top-level folder under ``root`` ('.' when directly in it)."""
    out = []
    for path in paths:
        folder = os.path.dirname(path)
        rel = os.path.relpath(folder, root) if root else folder
        first = rel.split(os.sep)[0] if rel not in ("", os.curdir) else os.curdir
        out.append(first or os.sep)
    return out


def colour_groups(photos: Photos, mode="auto", seed=None):
    """Labels to colour by and what they are: returns ``(labels, description)``.

    ``folder``: the top-level folder under the photos' common root; ``cluster``: KMeans on the
    features; ``auto``: folders when there are 2..10 of them, else clusters; ``none``: one colour."""
    if mode not in COLOUR_MODES:
        raise ValueError("unknown colour mode %r (choose from %s)" % (mode, ", ".join(COLOUR_MODES)))
    n = len(photos)
    if mode == "none" or n == 0:
        return ["photos"] * n, "one colour"
    if mode in ("auto", "folder"):
        every = [p for paths in photos.paths for p in paths]
        folders = top_folders([paths[0] for paths in photos.paths], common_root(every))
        distinct = len(set(folders))
        if mode == "folder" or 2 <= distinct <= MAX_FOLDER_COLOURS:
            return folders, "top-level folder"
    k = min(N_CLUSTERS, n)
    if k < 2:
        return ["cluster 1"] * n, "one cluster"
    from sklearn.cluster import KMeans, MiniBatchKMeans

    x = _prepare(photos.features, "cosine")
    rs = 0 if seed is None else seed
    if n > 20000:  # full KMeans on 100k x 512 takes minutes on two cores; mini-batches take seconds
        km = MiniBatchKMeans(n_clusters=k, random_state=rs, n_init=3, batch_size=4096)
    else:
        km = KMeans(n_clusters=k, random_state=rs, n_init=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate points give fewer distinct clusters than k
        ids = km.fit_predict(x)
    # Number clusters by size, so "cluster 1" is the biggest whatever KMeans' internal order.
    order = [c for c, _ in Counter(ids.tolist()).most_common()]
    rank = {c: i + 1 for i, c in enumerate(order)}
    return ["cluster %d" % rank[c] for c in ids.tolist()], "KMeans cluster of the features"
