"""The feature folder, written and read only here: one float32 ``<input basename>.npy`` per image
(``<md5>.jpg.npy`` for a stage-1 thumbnail) and a ``features.json`` sidecar naming the model,
weights, preprocessing, precision and dimension that produced them."""
import errno
import functools
import io
import json
import os
import stat
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from . import featurepack
from .fsutil import atomic_write
from .meta import thumb_name

SIDECAR = "features.json"
FORMAT_VERSION = 1
# Sidecar keys whose change makes old and new vectors incomparable: mixing them is refused.
IDENTITY_KEYS = ("model", "weights", "preprocessing", "dim")


def feature_name(input_path: str) -> str:
    """File name of the vector for ``input_path``: its basename plus ``.npy``."""
    return os.path.basename(os.fspath(input_path)) + ".npy"


def feature_path_for_md5(features_dir, md5: str) -> str:
    """Where stage 2 put the vector of thumbnail ``<md5>.jpg``."""
    return os.path.join(features_dir, feature_name(thumb_name(md5)))


def save_vector(path, vector) -> None:
    """Write ``vector`` as a float32 1-D ``.npy`` at ``path``, atomically."""
    with atomic_write(path) as f:
        np.save(f, np.asarray(vector, dtype=np.float32).reshape(-1))


def load_vector(path) -> np.ndarray:
    """Read one vector; raises ``OSError``/``ValueError`` if the file is missing or not a usable
    vector (see :func:`check_vector` for the checks, which never raise)."""
    vec, reason, detail = check_vector(path)
    if vec is None:
        raise ValueError("%s: %s (%s)" % (path, reason, detail))
    return vec


def read_sidecar(features_dir):
    """The sidecar dict of ``features_dir``, or ``None`` when there is none yet."""
    try:
        with open(os.path.join(features_dir, SIDECAR), encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def write_sidecar(features_dir, info: dict) -> None:
    """Record what produced the vectors in ``features_dir`` (atomically)."""
    data = dict(info, format_version=FORMAT_VERSION)
    with atomic_write(os.path.join(features_dir, SIDECAR), "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")


def mismatch(old: dict, new: dict):
    """The first identity key on which two sidecars differ, as ``(key, old, new)``, or ``None``."""
    for key in IDENTITY_KEYS:
        if key in old and key in new and old[key] != new[key]:
            return key, old[key], new[key]
    return None


def listed_md5s(features_dir):
    """md5s of all ``<md5>.jpg.npy`` vectors present in ``features_dir``."""
    suffix = ".jpg.npy"
    try:
        names = os.listdir(features_dir)
    except FileNotFoundError:
        return []
    return sorted(n[: -len(suffix)] for n in names if n.endswith(suffix) and not n.startswith("."))


@functools.lru_cache(maxsize=None)
def vector_file_size(dim: int) -> int:
    """Size in bytes of the ``.npy`` that :func:`save_vector` writes for a ``dim``-long vector."""
    buf = io.BytesIO()
    np.save(buf, np.zeros(dim, dtype=np.float32))
    return buf.tell()


def is_complete(path, dim: int) -> bool:
    """Whether ``path`` holds a whole vector of size ``dim`` (checked by file size, without reading it)."""
    try:
        return os.stat(path).st_size == vector_file_size(dim)
    except OSError:
        return False


# ---------------------------------------------------------------------------- checking vectors

# Why a vector is left out, in the order the checks run; each is counted in stage 3's summary line.
REASONS = ("missing vector", "unreadable vector", "truncated vector", "damaged vector", "unusable vector",
           "wrong-length vector", "non-finite vector", "all-zero vector")
MAX_VECTOR_BYTES = 1 << 26  # 16M float32 values: far beyond any model's features, so no reading a video
NPY_MAGIC = b"\x93NUMPY"


def os_reason(exc: OSError) -> str:
    """A short reason for an ``OSError`` met while opening a file."""
    if exc.errno == errno.ELOOP:
        return "a symlink loop"
    if isinstance(exc, IsADirectoryError):
        return "a folder, not a file"
    if isinstance(exc, PermissionError):
        return "permission denied"
    return exc.strerror or str(exc)


@functools.lru_cache(maxsize=None)
def _npy_header(dim: int) -> bytes:
    """The exact header :func:`save_vector` writes for a ``dim``-long vector (the fast path's key)."""
    buf = io.BytesIO()
    np.save(buf, np.zeros(dim, dtype=np.float32))
    return buf.getvalue()[:buf.tell() - 4 * dim]


def check_vector(path, st=None, dim=None):
    """Read and check the vector file at ``path`` (``st``: its ``os.stat``, taken here if ``None``).

    Returns ``(vector, None, "")`` for a usable one (1-D float32, converted from another number
    type if need be), else ``(None, reason, detail)`` with ``reason`` one of :data:`REASONS`.
    Never raises: a missing, unreadable or malformed file is an answer, not an error. ``dim`` (the
    expected length, if known) only speeds up reading files exactly as stage 2 writes them."""
    try:
        st = os.stat(path) if st is None else st
    except FileNotFoundError:
        return None, "missing vector", ""
    except OSError as exc:
        return None, "unreadable vector", os_reason(exc)
    if stat.S_ISDIR(st.st_mode):
        return None, "unreadable vector", "a folder, not a file"
    if not stat.S_ISREG(st.st_mode):  # a fifo would block the read forever
        return None, "unreadable vector", "not a regular file"
    if st.st_size == 0:
        return None, "truncated vector", "empty file"
    if st.st_size > MAX_VECTOR_BYTES:
        return None, "damaged vector", "%d bytes, far too big for a vector" % st.st_size
    try:
        with open(path, "rb") as f:
            data = f.read(st.st_size + 1)
    except OSError as exc:
        return None, "unreadable vector", os_reason(exc)
    if len(data) != st.st_size:
        return None, "unreadable vector", "changed while it was read"
    if dim and len(data) == vector_file_size(dim) and data.startswith(_npy_header(dim)):
        vec = np.frombuffer(data, np.float32, offset=len(_npy_header(dim)))
    else:
        vec, reason, detail = _parse_npy(data)
        if vec is None:
            return None, reason, detail
    return _check_values(vec)


def _parse_npy(data: bytes):
    """``(vector, None, "")`` from the bytes of any ``.npy`` holding one numeric vector, else
    ``(None, reason, detail)``. Never unpickles: an object array is refused from its header."""
    if not data.startswith(NPY_MAGIC):
        if NPY_MAGIC.startswith(data):
            return None, "truncated vector", "cut short in its header"
        return None, "damaged vector", "not a .npy file"
    if len(data) < 10:
        return None, "truncated vector", "cut short in its header"
    major = data[6]
    if major not in (1, 2, 3):
        return None, "damaged vector", "unknown .npy version %d" % major
    start = 10 if major == 1 else 12
    length = int.from_bytes(data[8:start], "little")
    if len(data) < start + length:
        return None, "truncated vector", "cut short in its header"
    f = io.BytesIO(data)
    try:
        np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(f)
    except (ValueError, TypeError, SyntaxError, EOFError, OverflowError, RecursionError) as exc:
        return None, "damaged vector", "unreadable .npy header (%s)" % type(exc).__name__
    if dtype.hasobject:
        return None, "unusable vector", "holds pickled Python objects, never loaded"
    if dtype.fields is not None or dtype.subdtype is not None or dtype.kind not in "fiu":
        return None, "unusable vector", "values of type %s, not real numbers" % dtype
    if sum(1 for s in shape if s != 1) > 1:
        return None, "unusable vector", "a %d-D array of shape %s, not a vector" % (len(shape), shape)
    count = int(np.prod(shape, dtype=np.int64))
    if count == 0:
        return None, "unusable vector", "holds no values"
    end = f.tell() + count * dtype.itemsize
    if len(data) < end:
        return None, "truncated vector", "%d of %d bytes" % (len(data), end)
    if len(data) > end:
        return None, "damaged vector", "%d unexpected bytes after the vector" % (len(data) - end)
    with np.errstate(over="ignore", invalid="ignore"):  # out-of-range values become inf: checked next
        return np.frombuffer(data, dtype, count, f.tell()).astype(np.float32), None, ""


def _check_values(vec):
    """``(vec, None, "")`` when every value is finite and not all are zero."""
    finite = np.isfinite(vec)
    if not finite.all():
        nan = int(np.isnan(vec).sum())
        return None, "non-finite vector", "%d NaN and %d infinite of %d values" % (
            nan, vec.size - int(finite.sum()) - nan, vec.size)
    if not vec.any():
        # Cosine distance is undefined for it, and a real image never gives one: a placeholder.
        return None, "all-zero vector", "every value is 0: no direction to compare"
    return vec, None, ""


# ---------------------------------------------------------------------------- a folder at once

# A file changed this close to a scan could change again within the same mtime tick unseen (FAT
# keeps mtimes to 2 s): such files are read, but not packed until a later run.
RACY_NS = 2_000_000_000


@dataclass
class Loaded:
    """What :func:`load_matrix` found: ``matrix`` (float32) holds the vectors of ``names[i]`` for
    ``i`` in ``kept``, in that order; ``problems[i]`` is ``(reason, detail)`` for each name left
    out; ``notes`` are lines worth saying once (the pack rebuilt, a sidecar disagreeing)."""
    matrix: np.ndarray
    kept: list
    problems: dict
    notes: list = field(default_factory=list)


def load_matrix(folder, names, pack=True) -> Loaded:
    """Read and check the vectors ``<folder>/<name>`` of ``names`` (file names, unique).

    Each vector is checked (:func:`check_vector`); bad ones are left out with a reason, never
    raised. The length is that of most vectors (``features.json``'s ``dim`` breaks a tie), and
    vectors of another length are left out. With ``pack``, unchanged files (same size and mtime)
    are taken from the packed cache (:mod:`featurepack`) instead of being opened, and the pack is
    rewritten when anything changed. Raises ``OSError`` only if the folder cannot be listed."""
    folder = os.fspath(folder)
    scan_ns = time.time_ns()
    present = set(os.listdir(folder))
    notes, problems, fresh = [], {}, {}
    pack_path = os.path.join(folder, featurepack.PACK_NAME)
    old, why = featurepack.read_pack(pack_path) if pack else (None, "")
    if why:
        notes.append("ignored the feature pack %s: %s; rebuilding it" % (pack_path, why))
    rows = old.rows_of(names) if old is not None else np.full(len(names), -1, np.int64)
    hint = _sidecar_dim(folder)
    size, mtime, regular = _stat_all(folder, names, present, problems)
    hit = regular & (rows >= 0)
    if old is not None and len(old.names):
        at = np.where(hit, rows, 0)
        hit &= (old.size[at] == size) & (old.mtime_ns[at] == mtime)
    from_pack = np.flatnonzero(hit).tolist()
    for i in np.flatnonzero((size >= 0) & ~hit).tolist():
        vec, reason, detail = check_vector(os.path.join(folder, names[i]), None,
                                           hint or (old.dim if old is not None else None))
        if vec is None:
            problems[i] = (reason, detail)
        else:
            fresh[i] = vec
    lengths = Counter({old.dim: len(from_pack)} if from_pack else {})
    lengths.update(len(v) for v in fresh.values())
    dim = _majority(lengths, hint)
    if hint and lengths and dim != hint:
        notes.append("%s says %d values per vector, but most vectors have %d: using %d" % (
            os.path.join(folder, SIDECAR), hint, dim, dim))
    if old is not None and from_pack and old.dim != dim:
        fresh.update((i, old.matrix[rows[i]]) for i in from_pack)
        from_pack = []
    for i in [i for i, v in fresh.items() if len(v) != dim]:
        problems[i] = ("wrong-length vector", "%d values, most vectors have %d" % (len(fresh[i]), dim))
        del fresh[i]
    kept, read = sorted(from_pack + list(fresh)), sorted(fresh)
    matrix = _assemble(kept, dim, old, rows, from_pack, fresh)
    if pack:
        new = [i for i in read if mtime[i] < scan_ns - RACY_NS]
        note = _update_pack(pack_path, old, why, names, rows, present, from_pack,
                            (matrix, np.searchsorted(kept, new)), new, (size, mtime), dim)
        if note:
            notes.append(note)
    return Loaded(matrix, kept, problems, notes)


def _stat_all(folder, names, present, problems):
    """``(size, mtime_ns, regular)`` arrays for ``names`` (size -1 where there is no file: the
    reason goes in ``problems``). Stats go through one open handle of the folder, so no path is
    built or looked up again for each of a million names."""
    n = len(names)
    size, mtime, regular = [-1] * n, [0] * n, [False] * n
    by_fd = os.stat in os.supports_dir_fd
    fd = os.open(folder, os.O_RDONLY) if by_fd else None
    try:
        for i, name in enumerate(names):
            if name not in present:
                problems[i] = ("missing vector", "")
                continue
            try:
                st = os.stat(name, dir_fd=fd) if by_fd else os.stat(os.path.join(folder, name))
            except OSError as exc:
                problems[i] = ("unreadable vector", os_reason(exc))
                continue
            size[i], mtime[i], regular[i] = st.st_size, st.st_mtime_ns, stat.S_ISREG(st.st_mode)
    finally:
        if fd is not None:
            os.close(fd)
    return np.array(size, np.int64), np.array(mtime, np.int64), np.array(regular, bool)


def _sidecar_dim(folder):
    """``dim`` from ``features.json`` when it is a positive integer, else ``None`` (never raises)."""
    try:
        info = read_sidecar(folder)
    except (OSError, ValueError):
        return None
    dim = info.get("dim") if isinstance(info, dict) else None
    return dim if isinstance(dim, int) and not isinstance(dim, bool) and dim > 0 else None


def _majority(lengths: Counter, hint):
    """The most common vector length; ``hint`` wins a tie it is part of (0 when there are none)."""
    if not lengths:
        return hint or 0
    top = max(lengths.values())
    tied = sorted(n for n, c in lengths.items() if c == top)
    return hint if hint in tied else tied[-1]


def _assemble(kept, dim, old, rows, from_pack, fresh):
    """The ``(len(kept), dim)`` matrix: pack rows where they were taken from it, read ones elsewhere."""
    from_pack = np.asarray(from_pack, np.int64)
    if old is not None and len(from_pack) == len(kept) == len(old.names) and \
            (rows[from_pack] == np.arange(len(kept))).all():
        return old.matrix  # the common re-run: every row, in order, no copy
    kept = np.asarray(kept, np.int64)
    matrix = np.empty((len(kept), dim), np.float32)
    at, src = np.searchsorted(kept, from_pack), rows[from_pack]
    # Both sides are sorted by name, so the pack's rows come in long runs: copy run by run, as
    # slices (several times faster than a gather, and no third full-size matrix).
    cuts = np.flatnonzero((np.diff(at) != 1) | (np.diff(src) != 1)) + 1
    for a, b in zip([0] + cuts.tolist(), cuts.tolist() + [len(at)]):
        if b > a:
            matrix[at[a]:at[a] + b - a] = old.matrix[src[a]:src[a] + b - a]
    for k, i in zip(np.searchsorted(kept, sorted(fresh)).tolist(), sorted(fresh)):
        matrix[k] = fresh.pop(i)  # popped: each vector read is let go once it is in the matrix
    return matrix


def _update_pack(pack_path, old, why, names, rows, present, from_pack, new_rows, new, stats, dim):
    """Rewrite the pack when anything changed: it keeps the rows still valid (and those of files in
    the folder that were not asked for this time), drops rows of removed or changed files, adds
    the vectors read now: ``names[i]`` for ``i`` in ``new``, whose vectors are ``matrix[at]`` for
    ``(matrix, at)`` = ``new_rows``. Returns a line to say when it could not be written, else ``None``."""
    size, mtime = stats
    if old is not None and not new and len(from_pack) == len(old.names):
        return None  # every row was used as it is: nothing to write
    keep_old = np.zeros(0, np.int64)
    if old is not None and old.dim == dim:
        asked, used = np.zeros(len(old.names), bool), np.zeros(len(old.names), bool)
        asked[rows[rows >= 0]] = True
        used[rows[from_pack]] = True
        keep = used | ~asked  # a row asked for stays only if it was taken as it was
        # Rows nobody asked for this time (another page's photos) stay while their file is there.
        keep[[r for r in np.flatnonzero(~asked).tolist() if os.fsdecode(old.names[r]) not in present]] = False
        keep_old = np.flatnonzero(keep)
    dropped = (len(old.names) if old is not None else 0) - len(keep_old)
    if not new and not dropped and (old is not None or not why):
        return None
    parts = [new_rows]
    new_names = featurepack.encode_names([names[i] for i in new])
    all_names, size, mtime = new_names, size[new], mtime[new]
    if len(keep_old):
        parts.insert(0, (old.matrix, keep_old))
        all_names = np.concatenate([old.names[keep_old], new_names]) if len(new) else old.names[keep_old]
        size = np.concatenate([old.size[keep_old], size])
        mtime = np.concatenate([old.mtime_ns[keep_old], mtime])
    try:
        featurepack.write_pack(pack_path, all_names, size, mtime, parts)
    except OSError as exc:
        return "could not write the feature pack %s (%s): every vector is read again next time" % (
            pack_path, os_reason(exc))
    return None
