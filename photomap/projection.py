"""Stage 3's 2-D layout: UMAP of the feature vectors (PCA or fixed places for tiny sets, a lean path for
large ones: :mod:`photomap.largemap`), kept beside the page as ``<page stem>.coords.csv``: the map the
next run grows (:mod:`photomap.stable`). The CSV is written and read only here, and read back whatever
wrote it."""
import csv
import hashlib
import io
import json
import math
import os
import re
import warnings
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from . import largemap
from .features import os_reason
from .fsutil import atomic_write
from .report import printable

DEFAULTS = {"n_neighbors": 15, "min_dist": 0.1, "metric": "cosine", "seed": None}
HEADER = ["md5", "x", "y", "path"]
_MD5 = re.compile(r"^[0-9a-f]{32}$")
_DELIMITERS = (",", ";", "\t")
_LARGEST = 1e100  # beyond this a coordinate is an editing slip, and its square would overflow


def project(features: np.ndarray, n_neighbors=15, min_dist=0.1, metric="cosine", seed=None, say=None,
            large_values=None):
    """2-D coordinates (``(n, 2)`` float64) of the rows of ``features``.

    UMAP when there are more points than ``n_neighbors``; 1 point -> (0, 0); 2 points -> a line;
    otherwise PCA (of the L2-normalised rows for the cosine metric). A large map (more than
    ``large_values`` vector values, default :data:`largemap.LARGE_VALUES`) takes UMAP's lean path,
    :func:`largemap.project_large`, which says each step (and shows a bar of its epochs) on stderr.
    A fallback or a step is named in one line given to ``say`` (e.g. ``print``; None: silent).
    umap-learn's ``ValueError`` for a metric it does not know, or cannot use on these vectors, is
    passed on."""
    tell = say or (lambda line: None)
    n = features.shape[0]
    if n == 0:
        return np.zeros((0, 2))
    if n == 1:
        tell("1 photo: placed at (0, 0) (UMAP needs more points)")
        return np.zeros((1, 2))
    if n == 2:
        tell("2 photos: placed on a line (UMAP needs more points)")
        return np.array([[-1.0, 0.0], [1.0, 0.0]])
    if n <= n_neighbors:
        tell("only %d photos, UMAP needs more than n_neighbors=%d: laid out with PCA instead" % (n, n_neighbors))
        return _pca_2d(unit_rows(features) if metric == "cosine" else np.asarray(features, dtype=np.float64))
    layout = largemap.plan(n, features.shape[1], metric, large_values)
    if layout:
        return largemap.project_large(features, layout, n_neighbors, min_dist, metric, seed, say)
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

    :func:`lay_out`, then :meth:`Layout.save` of the CSV with no added columns."""
    layout = lay_out(md5s, features, paths, page_path, say=say, refit=refit, **params)
    layout.save()
    return layout.coords, layout.reused


@dataclass
class Layout:
    """A map made by :func:`lay_out` and not yet written: ``coords`` (n, 2) of ``md5s``, ``reused``
    (the previous map's coordinates as they were), ``previous`` (the :class:`PreviousMap` read, or
    None: its ``clusters`` are the previous run's cluster ids); :meth:`save` writes the CSV and key."""
    coords: np.ndarray
    reused: bool
    previous: object
    md5s: list
    paths: list
    page_path: str
    key_params: dict
    sealed: bool
    say: object

    def save(self, columns=None) -> None:
        """Write the coordinates CSV (with ``columns``, name -> per-photo values, after ``path``; see
        :func:`coords_csv_text`) and its key beside the page, unless the file already holds exactly
        that. One that cannot be written is said in one line, never raised."""
        csv_path, key_path = coords_paths(self.page_path)
        text = coords_csv_text(self.md5s, self.coords, self.paths, columns)
        try:
            if not (self.reused and self.sealed and _unchanged(csv_path, text)):  # else: nothing to write
                with atomic_write(csv_path, "w") as f:
                    f.write(text)
                with atomic_write(key_path, "w") as f:  # the key goes last: it vouches for the CSV beside it
                    json.dump({"params": self.key_params, "n": len(self.md5s),
                               "coords_sha256": coords_digest(self.md5s, self.coords)}, f, sort_keys=True)
                    f.write("\n")
        except OSError as exc:
            self.say("could not write the coordinates cache %s (%s): this map is not kept for the next run" % (
                printable(csv_path), os_reason(exc)))


def lay_out(md5s, features, paths, page_path, say=None, refit=False, **params) -> Layout:
    """The :class:`Layout` of the photos ``md5s`` (rows of ``features``; ``paths`` their first
    original paths, for the CSV); nothing is written until its :meth:`~Layout.save`.

    The coordinates CSV beside ``page_path`` is the previous map: its photos keep their places,
    new photos are placed among them, removed ones disappear (:func:`stable.update`, which says what
    it did in one line given to ``say``). Without a usable previous map, or with ``refit``, the
    layout is computed afresh by :func:`project` (and aligned to the previous map with ``refit``).
    A CSV changed since it was written keeps its readable rows (said in one line); a key file that
    cannot be trusted is ignored and written again (one line)."""
    from . import stable

    say = say or (lambda line: None)
    params = dict(DEFAULTS, **params)
    csv_path, key_path = coords_paths(page_path)
    previous = read_previous(csv_path)
    record, why = _read_key(key_path)
    if why and previous is not None:
        say("ignored the key file %s: %s; it is written again" % (printable(key_path), why))
    sealed = bool(record) and "coords_sha256" in record
    if sealed and previous is not None and not previous.problem and \
            record["coords_sha256"] != coords_digest(list(previous.xy), list(previous.xy.values())):
        sealed = False
        say("%s was changed after it was written: its readable rows are kept as the map" % printable(csv_path))
    outcome = stable.update(md5s, features, previous, lambda x: project(x, say=say, **params),
                            printable(os.path.basename(csv_path)), refit=refit, **params)
    reused = not outcome.laid_out and not outcome.removed and not previous.bad_rows  # (all kept)
    for line in ["reused the map coordinates in %s" % csv_path] if reused else outcome.lines:
        say(line)
    laid_out_with = record.get("params") if record and isinstance(record.get("params"), dict) else None
    kept = bool(outcome.kept) and laid_out_with is not None
    changed = sorted(k for k, v in params.items() if kept and k != "seed" and laid_out_with.get(k, v) != v)
    if changed:
        say("kept the map laid out with %s; --refit lays it out with %s" % (
            ", ".join("%s=%s" % (k, laid_out_with[k]) for k in changed),
            ", ".join("%s=%s" % (k, params[k]) for k in changed)))
    return Layout(outcome.coords, reused, previous, list(md5s), list(paths), os.fspath(page_path),
                  laid_out_with if kept else params, sealed, say)


MAX_KEY_BYTES = 1 << 16  # a key file is a few hundred bytes: anything much bigger is not ours


def _read_key(key_path):
    """``(record, why)``: the key file's dict (the UMAP parameters of the map's last full layout and
    the hash of the coordinates written), or None with the reason it cannot be used ('' when there
    is none)."""
    try:
        with open(key_path, "rb") as f:
            raw = f.read(MAX_KEY_BYTES + 1)
    except FileNotFoundError:
        return None, ""
    except OSError as exc:
        return None, "cannot read it (%s)" % os_reason(exc)
    try:
        record = json.loads(raw.decode("utf-8")) if len(raw) <= MAX_KEY_BYTES else None
    except ValueError:
        record = None
    if not isinstance(record, dict):
        return None, "not one this program wrote"
    return record, ""


def _file_text(path) -> str:
    """The UTF-8 text of ``path``, newlines as they are (``OSError``/``ValueError`` when unreadable)."""
    with open(path, newline="", encoding="utf-8") as f:
        return f.read()


def _unchanged(path, text) -> bool:
    """Whether the file at ``path`` holds exactly ``text`` (False when it cannot be read as text)."""
    try:
        return _file_text(path) == text
    except (OSError, ValueError):
        return False


def coords_digest(md5s, xy) -> str:
    """sha256 of the md5s and their coordinates (float64, as the CSV's ``repr`` round-trips them)."""
    h = hashlib.sha256("\n".join(md5s).encode())
    h.update(np.ascontiguousarray(np.asarray(xy, dtype=np.float64).reshape(-1, 2), dtype="<f8").tobytes())
    return h.hexdigest()


# --- the coordinates CSV -----------------------------------------------------------------------------

class Coords(NamedTuple):
    """A coordinates CSV: photo md5s, their ``(n, 2)`` positions and first paths as printed."""
    md5s: list
    xy: np.ndarray
    paths: list


def coords_csv_text(md5s, coords, paths, columns=None) -> str:
    """The CSV: header ``md5,x,y,path``, then one row per photo with its first original path
    (made printable, quoted by the csv module). ``columns`` (name -> one value per photo, e.g.
    ``cluster``, ``taken``, ``taken_source``: :func:`photomap.clusters_csv.coords_columns`) adds
    columns after ``path``, in the dict's order; values are written as ``str`` makes them printable."""
    columns = columns or {}
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(HEADER + list(columns))
    extra = list(zip(*(columns[name] for name in columns))) if columns else [()] * len(md5s)
    for md5, (x, y), path, more in zip(md5s, coords, paths, extra):
        w.writerow([md5, repr(float(x)), repr(float(y)), printable(path), *(printable(str(v)) for v in more)])
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


# --- the previous map: the CSV as a later run reads it ------------------------------------------------

@dataclass
class PreviousMap:
    """What a coordinates CSV says: ``xy`` maps md5 -> ``(x, y)`` for every row that could be read;
    ``bad_rows`` counts the rows that could not (bad md5, bad or missing number, repeated md5, the
    last row of a file cut short); ``problem`` says why nothing at all could be read ('' if it could);
    ``clusters`` maps md5 -> the cluster id the run that wrote it gave (from a ``cluster`` column,
    where there is one and its value is an integer: rows of earlier versions have none)."""
    xy: dict = field(default_factory=dict)
    bad_rows: int = 0
    problem: str = ""
    clusters: dict = field(default_factory=dict)


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
        return PreviousMap(problem="cannot read it (%s)" % os_reason(exc))
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
    names = [c.strip().lower() for c in _fields(lines[0], delimiter)] if body is not lines else []
    i_cluster = names.index("cluster") if "cluster" in names else None
    out = PreviousMap()
    for n, line in enumerate(body):
        if not line.strip():
            continue
        row = _fields(line, delimiter)
        parsed = _parse(row, columns, decimal_comma=delimiter != ",")
        if parsed is None or parsed[0] in out.xy or (cut and n == len(body) - 1 and len(row) < width):
            out.bad_rows += 1
        else:
            out.xy[parsed[0]] = parsed[1]
            if i_cluster is not None and i_cluster < len(row) and re.fullmatch(r"-?\d{1,9}", row[i_cluster].strip()):
                out.clusters[parsed[0]] = int(row[i_cluster])
    return out


def _layout(lines):
    """``(delimiter, (md5, x, y) column indices or None, fields per row, data lines)``."""
    for delimiter in _DELIMITERS:
        names = [c.strip().lower() for c in _fields(lines[0], delimiter)]
        if all(k in names for k in ("md5", "x", "y")):
            return delimiter, tuple(names.index(k) for k in ("md5", "x", "y")), len(names), lines[1:]
    for delimiter in _DELIMITERS:  # no header: rows of md5, x, y like the ones this module writes
        row = _fields(lines[0], delimiter)
        if _parse(row, (0, 1, 2), decimal_comma=delimiter != ",") is not None:
            return delimiter, (0, 1, 2), len(row), lines
    return ",", None, 0, lines


def _fields(line, delimiter) -> list:
    """The CSV fields of one line ([] when the csv module cannot read it, e.g. a stray carriage
    return inside it)."""
    try:
        return next(csv.reader([line], delimiter=delimiter), [])
    except csv.Error:
        return []


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
