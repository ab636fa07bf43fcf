"""Stage 3 data side: join the .meta log, thumbnails and feature vectors, lay them out in 2-D with
UMAP (cached beside the page as ``<page stem>.coords.csv``) and pick colours that help orientation."""
import csv
import hashlib
import io
import json
import os
import stat
import sys
import warnings
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from . import featureload
from . import features as features_mod
from .fsutil import atomic_write
from .meta import read_meta, thumb_name
from .report import printable

UMAP_DEFAULTS = {"n_neighbors": 15, "min_dist": 0.1, "metric": "cosine", "seed": None}
COLOUR_MODES = ("auto", "folder", "cluster", "none")
MAX_FOLDER_COLOURS = 10  # beyond this many top-level folders a legend stops helping: cluster instead
N_CLUSTERS = 10
CACHE_VERSION = 1  # bump when the layout algorithm changes, so old caches are not reused
CSV_HEADER = ["md5", "x", "y", "path"]


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

    A photo is kept when its md5 has a .meta line, a readable thumbnail ``<thumbs>/<md5>.jpg`` and
    a usable vector (:func:`featureload.load_matrix` checks each one); everything else is counted and
    left out, never raised, and each bad file is named in one line. A missing .meta file or an
    unlistable feature folder raises ``OSError`` (a fatal problem for the caller)."""
    meta = read_meta(meta_path)
    groups = meta.by_md5()
    left_out = Counter()
    listed = set(features_mod.listed_md5s(features_dir))
    left_out["features without a .meta line"] = len(listed - set(groups))
    with_thumb = []
    for md5 in sorted(groups):
        path = os.path.join(thumbs_dir, thumb_name(md5))
        problem = thumb_problem(path)
        if problem is None:
            with_thumb.append(md5)
        elif problem == "missing":
            left_out[".meta md5s without thumbnail"] += 1
        else:
            left_out["unreadable thumbnail"] += 1
            _say(log, "visualize: left out %s (%s): unreadable thumbnail (%s)" % (
                printable(path), printable(groups[md5][0]), problem))
    names = [features_mod.feature_name(thumb_name(m)) for m in with_thumb]
    got = featureload.load_matrix(features_dir, names)
    for line in got.notes:
        _say(log, "visualize: " + printable(line))
    for i, (reason, detail) in sorted(got.problems.items()):
        if reason == "missing vector":
            left_out[".meta md5s without features"] += 1
            continue
        left_out[reason] += 1
        _say(log, "visualize: left out %s (%s): %s%s" % (
            printable(os.path.join(features_dir, names[i])), printable(groups[with_thumb[i]][0]), reason,
            " (%s)" % detail if detail else ""))
    found = [with_thumb[i] for i in got.kept]
    left_out["# error lines"] = len(meta.errors)
    left_out["malformed .meta lines"] = meta.malformed
    photos = Photos(md5s=found, paths=[[printable(p) for p in groups[m]] for m in found],
                    features=got.matrix, thumbs_dir=os.fspath(thumbs_dir),
                    left_out=Counter({k: v for k, v in left_out.items() if v}),
                    model=_model_name(features_dir))
    _say(log, join_summary(photos))
    return photos


def thumb_problem(path):
    """``None`` when ``path`` is a readable, non-empty file; ``"missing"`` when there is nothing
    there; else a short reason (a folder, a symlink loop, empty, permission denied)."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return "missing"
    except OSError as exc:
        return features_mod.os_reason(exc)
    if not stat.S_ISREG(st.st_mode):
        return "a folder, not a file" if stat.S_ISDIR(st.st_mode) else "not a regular file"
    if st.st_size == 0:
        return "empty file"
    if not st.st_mode & stat.S_IROTH and not os.access(path, os.R_OK):  # readable by all: no call
        return "permission denied"
    return None


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
        line += "; left out: " + ", ".join(_counted(n, k) for k, n in sorted(photos.left_out.items()))
    return line


PLURALISED = set(features_mod.REASONS) | {"unreadable thumbnail"}


def _counted(n: int, reason: str) -> str:
    """``"1 truncated vector"``, ``"2 truncated vectors"`` (other reasons are read as they are)."""
    return "%d %s%s" % (n, reason, "s" if n != 1 and reason in PLURALISED else "")


def layout_key(photos: Photos, params: dict) -> str:
    """Hash of everything the coordinates depend on: md5 list, vector bytes and UMAP parameters."""
    h = hashlib.sha256()
    h.update(json.dumps({"v": CACHE_VERSION, "params": params}, sort_keys=True).encode())
    h.update("\n".join(photos.md5s).encode())
    h.update(np.ascontiguousarray(photos.features, dtype=np.float32).tobytes())
    return h.hexdigest()


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
    """``(csv_path, key_path)`` of the coordinates cache beside ``page_path``."""
    stem = os.path.splitext(os.fspath(page_path))[0]
    return stem + ".coords.csv", stem + ".coords.key"


def load_or_embed(photos: Photos, page_path, log="stderr", **params):
    """Coordinates of ``photos``, reused from the cache beside ``page_path`` when its key matches,
    computed with :func:`embed` (and cached) otherwise. Returns ``(coords, reused)``.

    A cache that cannot be trusted (unreadable, cut short, another program's file, edited by hand:
    the key records the CSV's sha256) is ignored with one line and the map computed again; a cache
    that cannot be written is said in one line, never raised."""
    params = dict(UMAP_DEFAULTS, **params)
    key = layout_key(photos, params)
    csv_path, key_path = coords_paths(page_path)
    coords, why, sealed = _read_cache(csv_path, key_path, key, photos.md5s)
    reused = coords is not None
    if reused:
        _say(log, "visualize: reused the map coordinates in %s" % csv_path)
    else:
        if why:
            _say(log, "visualize: ignored the coordinates cache %s: %s; computing the map again" % (
                printable(csv_path), why))
        coords = embed(photos.features, log=log, **params)
    text = coords_csv_text(photos, coords)
    try:
        if not (reused and sealed and _file_text(csv_path) == text):
            with atomic_write(csv_path, "w") as f:
                f.write(text)
            with atomic_write(key_path, "w") as f:
                json.dump({"key": key, "params": params, "n": len(photos), "csv_sha256": _sha256(text)},
                          f, sort_keys=True)
                f.write("\n")
    except OSError as exc:
        _say(log, "visualize: could not write the coordinates cache %s (%s): the map will be computed "
             "again next time" % (printable(csv_path), features_mod.os_reason(exc)))
    return coords, reused


MAX_KEY_BYTES = 1 << 16  # a key file is a few hundred bytes: anything much bigger is not ours


def _read_cache(csv_path, key_path, key, md5s):
    """``(coords, "", sealed)`` from a cache whose key is ``key`` and whose CSV lists ``md5s`` in
    order with finite coordinates; else ``(None, reason, False)``, reason "" when there is simply no
    cache or the inputs changed. ``sealed``: the key records the CSV's hash (old keys do not)."""
    try:
        with open(key_path, "rb") as f:
            raw = f.read(MAX_KEY_BYTES + 1)
    except FileNotFoundError:
        return None, ("its key file %s is missing" % printable(key_path)
                      if os.path.lexists(csv_path) else ""), False
    except OSError as exc:
        return None, "cannot read its key file (%s)" % features_mod.os_reason(exc), False
    try:
        stored = json.loads(raw.decode("utf-8")) if len(raw) <= MAX_KEY_BYTES else None
    except ValueError:
        stored = None
    if not isinstance(stored, dict) or not isinstance(stored.get("key"), str):
        return None, "its key file %s is not one this program wrote" % printable(key_path), False
    if stored["key"] != key:
        return None, "", False  # the inputs or the parameters changed: not a problem to report
    try:
        text = _file_text(csv_path)
    except OSError as exc:
        return None, "cannot read it (%s)" % features_mod.os_reason(exc), False
    except ValueError:
        return None, "it is not UTF-8 text", False
    sealed = "csv_sha256" in stored
    if sealed and stored["csv_sha256"] != _sha256(text):
        return None, "it was changed after it was written", False
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        return None, "not a CSV file (%s)" % exc, False
    if not rows or rows[0] != CSV_HEADER or any(len(r) != len(CSV_HEADER) for r in rows[1:]):
        return None, "not the md5,x,y,path table this program writes", False
    if [r[0] for r in rows[1:]] != list(md5s):
        return None, "it lists other photos than its key says", False
    try:
        coords = np.array([[float(r[1]), float(r[2])] for r in rows[1:]], dtype=np.float64).reshape(-1, 2)
    except ValueError:
        return None, "a coordinate is not a number", False
    if not np.isfinite(coords).all():
        return None, "a coordinate is not finite", False
    return coords, "", sealed


def _file_text(path) -> str:
    """The UTF-8 text of ``path``, newlines as they are (``OSError``/``ValueError`` when unreadable)."""
    with open(path, newline="", encoding="utf-8") as f:
        return f.read()


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def coords_csv_text(photos: Photos, coords) -> str:
    """The CSV: header ``md5,x,y,path`` then one row per photo with its first original path."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_HEADER)
    for md5, (x, y), paths in zip(photos.md5s, coords, photos.paths):
        w.writerow([md5, repr(float(x)), repr(float(y)), paths[0]])
    return buf.getvalue()


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
