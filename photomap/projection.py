"""Stage 3's 2-D layout: UMAP of the feature vectors (PCA or fixed places for tiny sets), cached beside
the page as ``<page stem>.coords.csv`` plus ``<page stem>.coords.key``; the CSV is written and read
only here."""
import csv
import hashlib
import io
import json
import os
import warnings
from typing import NamedTuple

import numpy as np

from .features import os_reason
from .fsutil import atomic_write
from .report import printable

DEFAULTS = {"n_neighbors": 15, "min_dist": 0.1, "metric": "cosine", "seed": None}
CACHE_VERSION = 1  # bump when the layout algorithm changes, so old caches are not reused
HEADER = ["md5", "x", "y", "path"]


def project(features: np.ndarray, n_neighbors=15, min_dist=0.1, metric="cosine", seed=None, say=None):
    """2-D coordinates (``(n, 2)`` float64) of the rows of ``features``.

    UMAP when there are more points than ``n_neighbors``; 1 point -> (0, 0); 2 points -> a line;
    otherwise PCA (of the L2-normalised rows for the cosine metric). A fallback is named in one
    line given to ``say`` (e.g. ``print``; None: silent). umap-learn's ``ValueError`` for a metric
    it does not know, or cannot use on these vectors, is passed on."""
    say = say or (lambda line: None)
    n = features.shape[0]
    if n == 0:
        return np.zeros((0, 2))
    if n == 1:
        say("1 photo: placed at (0, 0) (UMAP needs more points)")
        return np.zeros((1, 2))
    if n == 2:
        say("2 photos: placed on a line (UMAP needs more points)")
        return np.array([[-1.0, 0.0], [1.0, 0.0]])
    if n <= n_neighbors:
        say("only %d photos, UMAP needs more than n_neighbors=%d: laid out with PCA instead" % (n, n_neighbors))
        return _pca_2d(unit_rows(features) if metric == "cosine" else np.asarray(features, dtype=np.float64))
    import umap  # heavy (numba): imported only when a map is actually computed

    reducer = umap.UMAP(n_components=2, n_neighbors=n_neighbors, min_dist=min_dist, metric=metric,
                        random_state=seed)
    with warnings.catch_warnings():
        # "n_jobs value 1 overridden ..." when seeded, and numba chatter: not the user's concern.
        warnings.simplefilter("ignore")
        coords = reducer.fit_transform(features)
    return np.asarray(coords, dtype=np.float64)


def unit_rows(features) -> np.ndarray:
    """The rows of ``features`` as float64 scaled to length 1 (all-zero rows stay zero)."""
    x = np.asarray(features, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


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


# --- the cache beside the page -----------------------------------------------------------------------

def cache_key(md5s, features, params: dict) -> str:
    """Hash of everything the coordinates depend on: md5 list, vector bytes and layout parameters."""
    h = hashlib.sha256()
    h.update(json.dumps({"v": CACHE_VERSION, "params": params}, sort_keys=True).encode())
    h.update("\n".join(md5s).encode())
    h.update(np.ascontiguousarray(features, dtype=np.float32).tobytes())
    return h.hexdigest()


def coords_paths(page_path):
    """``(csv_path, key_path)`` of the coordinates cache beside ``page_path``."""
    stem = os.path.splitext(os.fspath(page_path))[0]
    return stem + ".coords.csv", stem + ".coords.key"


def load_or_project(md5s, features, paths, page_path, say=None, **params):
    """Coordinates of the photos ``md5s`` (rows of ``features``; ``paths`` are their first original
    paths, for the CSV), reused from the cache beside ``page_path`` when its key matches, else
    computed with :func:`project` and cached. Returns ``(coords, reused)``; ``say`` as in :func:`project`.

    A cache that cannot be trusted (unreadable, cut short, another program's file, coordinates edited
    by hand: the key records a hash of the md5s and coordinates it vouches for) is ignored in one line
    and the layout computed again; a cache that cannot be written is said in one line, never raised.
    Columns added to the CSV or reordered do not matter: it is reused, and written back as this
    module writes it."""
    say = say or (lambda line: None)
    params = dict(DEFAULTS, **params)
    key = cache_key(md5s, features, params)
    csv_path, key_path = coords_paths(page_path)
    coords, why, sealed = _cached(csv_path, key_path, key, md5s)
    reused = coords is not None
    if reused:
        say("reused the map coordinates in %s" % csv_path)
    else:
        if why:
            say("ignored the coordinates cache %s: %s; computing the map again" % (printable(csv_path), why))
        coords = project(features, say=say, **params)
    text = coords_csv_text(md5s, coords, paths)
    try:
        if not (reused and sealed and _file_text(csv_path) == text):  # else: nothing to write
            with atomic_write(csv_path, "w") as f:
                f.write(text)
            with atomic_write(key_path, "w") as f:  # the key goes last: it vouches for the CSV beside it
                json.dump({"key": key, "params": params, "n": len(md5s),
                           "coords_sha256": coords_digest(md5s, coords)}, f, sort_keys=True)
                f.write("\n")
    except OSError as exc:
        say("could not write the coordinates cache %s (%s): the map will be computed again next time" % (
            printable(csv_path), os_reason(exc)))
    return coords, reused


MAX_KEY_BYTES = 1 << 16  # a key file is a few hundred bytes: anything much bigger is not ours


def _cached(csv_path, key_path, key, md5s):
    """``(coords, "", sealed)`` from a cache whose key is ``key`` and whose CSV lists ``md5s`` in
    order with finite coordinates, those the key's hash vouches for; else ``(None, reason, False)``,
    reason "" when there is simply no cache or the inputs changed. ``sealed``: the key holds that
    hash (keys written before it existed do not; they are still read)."""
    try:
        with open(key_path, "rb") as f:
            raw = f.read(MAX_KEY_BYTES + 1)
    except FileNotFoundError:
        return None, ("its key file %s is missing" % printable(key_path)
                      if os.path.lexists(csv_path) else ""), False
    except OSError as exc:
        return None, "cannot read its key file (%s)" % os_reason(exc), False
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
        return None, "cannot read it (%s)" % os_reason(exc), False
    except ValueError:
        return None, "it is not UTF-8 text", False
    try:
        table = parse_coords(text, "the CSV")
    except ValueError as exc:
        return None, str(exc), False
    if table.md5s != list(md5s):
        return None, "it lists other photos than its key says", False
    if not np.isfinite(table.xy).all():
        return None, "a coordinate is not finite", False
    sealed = "coords_sha256" in stored
    if sealed and stored["coords_sha256"] != coords_digest(table.md5s, table.xy):
        return None, "its coordinates were changed after they were written", False
    return table.xy, "", sealed


def _file_text(path) -> str:
    """The UTF-8 text of ``path``, newlines as they are (``OSError``/``ValueError`` when unreadable)."""
    with open(path, newline="", encoding="utf-8") as f:
        return f.read()


def coords_digest(md5s, xy) -> str:
    """sha256 of the md5s and their coordinates (float64, as the CSV's ``repr`` round-trips them)."""
    h = hashlib.sha256("\n".join(md5s).encode())
    h.update(np.ascontiguousarray(xy, dtype="<f8").tobytes())
    return h.hexdigest()


# --- the coordinates CSV -----------------------------------------------------------------------------

class Coords(NamedTuple):
    """A coordinates CSV: photo md5s, their ``(n, 2)`` positions and first paths as printed."""
    md5s: list
    xy: np.ndarray
    paths: list


def coords_csv_text(md5s, coords, paths) -> str:
    """The CSV: header ``md5,x,y,path``, then one row per photo with its first original path
    (made printable, quoted by the csv module)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(HEADER)
    for md5, (x, y), path in zip(md5s, coords, paths):
        w.writerow([md5, repr(float(x)), repr(float(y)), printable(path)])
    return buf.getvalue()


def read_coords(csv_path) -> Coords:
    """Read a coordinates CSV by its header's names, so columns added later (or in another order)
    do not matter; ``path`` may be absent (''). Raises ``OSError`` or ``ValueError`` (not a
    coordinates CSV: no md5/x/y columns, a short row or a bad number)."""
    return parse_coords(_file_text(csv_path), csv_path)


def parse_coords(text: str, name="coordinates CSV") -> Coords:
    """:func:`read_coords` of the CSV's ``text`` (``name`` only for the messages)."""
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise ValueError("%s: not a CSV file (%s)" % (name, exc)) from None
    header = rows[0] if rows else None
    if header is None or not {"md5", "x", "y"} <= set(header):
        raise ValueError("%s: not a coordinates CSV (no md5, x, y header)" % name)
    col = {h: header.index(h) for h in HEADER if h in header}
    md5s, xy, paths = [], [], []
    for n, row in enumerate(rows[1:], 2):
        try:
            md5s.append(row[col["md5"]])
            xy.append((float(row[col["x"]]), float(row[col["y"]])))
            paths.append(row[col["path"]] if "path" in col else "")
        except (IndexError, ValueError):
            raise ValueError("%s line %d: not a coordinates row" % (name, n)) from None
    return Coords(md5s, np.array(xy, dtype=np.float64).reshape(-1, 2), paths)
