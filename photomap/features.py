"""The feature folder, written and read only here: one float32 ``<input basename>.npy`` per image
(``<md5>.jpg.npy`` for a stage-1 thumbnail) and a ``features.json`` sidecar naming the model,
weights, preprocessing, precision and dimension that produced them."""
import errno
import functools
import io
import json
import os
import stat

import numpy as np

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
    except Exception as exc:  # noqa: BLE001 (numpy's parser of foreign bytes raises more kinds than it
        # documents, e.g. tokenize.TokenError for unbalanced brackets: any of them means a damaged header)
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
