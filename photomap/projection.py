"""Stage 3's 2-D layout: UMAP of the feature vectors (PCA or fixed places for tiny sets), kept beside the
page as ``<page stem>.coords.csv``: the map the next run grows (:mod:`photomap.stable`). The CSV is
written and read only here, and read back whatever wrote it."""
import csv
import io
import json
import math
import os
import re
import warnings
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from .fsutil import atomic_write
from .report import printable

DEFAULTS = {"n_neighbors": 15, "min_dist": 0.1, "metric": "cosine", "seed": None}
HEADER = ["md5", "x", "y", "path"]
_MD5 = re.compile(r"^[0-9a-f]{32}$")
_DELIMITERS = (",", ";", "\t")
_LARGEST = 1e100  # beyond this a coordinate is an editing slip, and its square would overflow


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


# --- the map beside the page ------------------------------------------------------------------------

def coords_paths(page_path):
    """``(csv_path, key_path)`` beside ``page_path``: the map itself, and the UMAP parameters of its
    last full layout."""
    stem = os.path.splitext(os.fspath(page_path))[0]
    return stem + ".coords.csv", stem + ".coords.key"


def load_or_project(md5s, features, paths, page_path, say=None, refit=False, **params):
    """Coordinates of the photos ``md5s`` (rows of ``features``; ``paths`` are their first original
    paths, for the CSV) and whether they were reused as they were: ``(coords, reused)``.

    The coordinates CSV beside ``page_path`` is the previous map: its photos keep their places,
    new photos are placed among them, removed ones disappear (:func:`stable.update`, which says what
    it did in one line given to ``say``). Without a usable previous map, or with ``refit``, the
    layout is computed afresh by :func:`project` (and aligned to the previous map with ``refit``)."""
    from . import stable

    say = say or (lambda line: None)
    params = dict(DEFAULTS, **params)
    csv_path, key_path = coords_paths(page_path)
    previous = read_previous(csv_path)
    laid_out_with = _read_params(key_path)
    outcome = stable.update(md5s, features, previous, lambda x: project(x, say=say, **params),
                            os.path.basename(csv_path), refit=refit, **params)
    reused = not outcome.laid_out and not outcome.removed and not previous.bad_rows  # (all kept)
    for line in ["reused the map coordinates in %s" % csv_path] if reused else outcome.lines:
        say(line)
    kept = bool(outcome.kept) and laid_out_with is not None
    changed = sorted(k for k, v in params.items() if kept and k != "seed" and laid_out_with.get(k, v) != v)
    if changed:
        say("kept the map laid out with %s; --refit lays it out with %s" % (
            ", ".join("%s=%s" % (k, laid_out_with[k]) for k in changed),
            ", ".join("%s=%s" % (k, params[k]) for k in changed)))
    write_coords(csv_path, md5s, outcome.coords, paths, only_if_changed=reused)
    if not reused:
        with atomic_write(key_path, "w") as f:
            json.dump({"n": len(md5s), "params": laid_out_with if kept else params}, f, sort_keys=True)
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


def write_coords(csv_path, md5s, coords, paths, only_if_changed=False) -> None:
    """Write the coordinates CSV atomically (skipped when ``only_if_changed`` and it is identical)."""
    text = coords_csv_text(md5s, coords, paths)
    if only_if_changed:
        try:
            with open(csv_path, newline="", encoding="utf-8") as f:
                if f.read() == text:
                    return
        except OSError:
            pass
    with atomic_write(csv_path, "w") as f:
        f.write(text)


def read_coords(csv_path) -> Coords:
    """Read a coordinates CSV by its header's names, so columns added later (or in another order)
    do not matter; ``path`` may be absent (''). Raises ``OSError`` or ``ValueError`` (not a
    coordinates CSV: no md5/x/y columns, a short row or a bad number)."""
    with open(csv_path, newline="", encoding="utf-8") as f:
        rows = csv.reader(f)
        header = next(rows, None)
        if header is None or not {"md5", "x", "y"} <= set(header):
            raise ValueError("%s: not a coordinates CSV (no md5, x, y header)" % csv_path)
        col = {name: header.index(name) for name in HEADER if name in header}
        md5s, xy, paths = [], [], []
        for n, row in enumerate(rows, 2):
            try:
                md5s.append(row[col["md5"]])
                xy.append((float(row[col["x"]]), float(row[col["y"]])))
                paths.append(row[col["path"]] if "path" in col else "")
            except (IndexError, ValueError):
                raise ValueError("%s line %d: not a coordinates row" % (csv_path, n)) from None
    return Coords(md5s, np.array(xy, dtype=np.float64).reshape(-1, 2), paths)


# --- the previous map: the CSV as a later run reads it ------------------------------------------------

@dataclass
class PreviousMap:
    """What a coordinates CSV says: ``xy`` maps md5 -> ``(x, y)`` for every row that could be read;
    ``bad_rows`` counts the rows that could not (bad md5, bad or missing number, repeated md5, the
    last row of a file cut short); ``problem`` says why nothing at all could be read ('' if it could)."""
    xy: dict = field(default_factory=dict)
    bad_rows: int = 0
    problem: str = ""


def read_previous(csv_path):
    """The :class:`PreviousMap` in ``csv_path``, or None when there is no such file.

    Columns are found by name (``md5``, ``x``, ``y``, any case, any order, other columns ignored);
    a file without a header row is read as ``md5,x,y,...``. Never raises on content."""
    try:
        with open(csv_path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        return PreviousMap(problem="cannot read it (%s)" % (exc.strerror or exc))
    text = raw.decode("utf-8", errors="replace").lstrip("\ufeff").replace("\0", "")
    # One record per line: the writer escapes newlines in paths (report.printable), and reading
    # line by line means a quote left open by a hand edit costs that row only.
    lines = [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]
    while lines and not lines[0].strip():
        lines.pop(0)
    if not lines:
        return PreviousMap(problem="it is empty")
    delimiter, columns, width, body = _layout(lines)
    if columns is None:
        return PreviousMap(problem="it has no md5, x and y columns")
    # The writer ends every row with a newline: a last row without one that is also short of fields
    # was cut by a kill, maybe inside a number.
    cut = not text.endswith("\n")
    out = PreviousMap()
    for n, line in enumerate(body):
        if not line.strip():
            continue
        row = next(csv.reader([line], delimiter=delimiter), [])
        parsed = _parse(row, columns, decimal_comma=delimiter != ",")
        if parsed is None or parsed[0] in out.xy or (cut and n == len(body) - 1 and len(row) < width):
            out.bad_rows += 1
        else:
            out.xy[parsed[0]] = parsed[1]
    return out


def _layout(lines):
    """``(delimiter, (md5, x, y) column indices or None, fields per row, data lines)``."""
    for delimiter in _DELIMITERS:
        names = [c.strip().lower() for c in next(csv.reader([lines[0]], delimiter=delimiter), [])]
        if all(k in names for k in ("md5", "x", "y")):
            return delimiter, tuple(names.index(k) for k in ("md5", "x", "y")), len(names), lines[1:]
    for delimiter in _DELIMITERS:  # no header: rows of md5, x, y like the ones this module writes
        row = next(csv.reader([lines[0]], delimiter=delimiter), [])
        if _parse(row, (0, 1, 2), decimal_comma=delimiter != ",") is not None:
            return delimiter, (0, 1, 2), len(row), lines
    return ",", None, 0, lines


def _parse(row, columns, decimal_comma):
    """``(md5, (x, y))`` from ``row``, or None when the md5 or a number is missing or bad."""
    i_md5, i_x, i_y = columns
    if len(row) <= max(columns):
        return None
    md5 = row[i_md5].strip().lower()
    if not _MD5.match(md5):
        return None
    try:
        xy = tuple(float(row[i].strip().replace(",", ".") if decimal_comma else row[i].strip())
                   for i in (i_x, i_y))
    except ValueError:
        return None
    if not all(math.isfinite(v) and abs(v) < _LARGEST for v in xy):
        return None
    return md5, xy
