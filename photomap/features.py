"""The feature folder, written and read only here: one float32 ``<input basename>.npy`` per image
(``<md5>.jpg.npy`` for a stage-1 thumbnail) and a ``features.json`` sidecar naming the model,
weights, preprocessing, precision and dimension that produced them."""
import functools
import json
import os

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
    """Read one vector; raises ``OSError``/``ValueError`` if the file is missing or not a 1-D array."""
    vec = np.load(path, allow_pickle=False)
    if vec.ndim != 1:
        raise ValueError("%s: expected a 1-D vector, got shape %s" % (path, vec.shape))
    return vec.astype(np.float32, copy=False)


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


def load_for_md5s(features_dir, md5s):
    """Load the vectors of the given thumbnail md5s.

    Returns ``(matrix, found, problems)``: an ``(n, d)`` float32 array for the md5s in ``found``
    (input order kept), and ``problems`` mapping each md5 left out to a short reason.
    """
    rows, found, problems = [], [], {}
    dim = None
    for md5 in md5s:
        try:
            vec = load_vector(feature_path_for_md5(features_dir, md5))
        except FileNotFoundError:
            problems[md5] = "no feature vector"
            continue
        except (OSError, ValueError) as exc:
            problems[md5] = "unreadable feature vector (%s)" % exc
            continue
        if dim is None:
            dim = vec.shape[0]
        if vec.shape[0] != dim:
            problems[md5] = "feature vector of size %d, expected %d" % (vec.shape[0], dim)
            continue
        rows.append(vec)
        found.append(md5)
    matrix = np.stack(rows) if rows else np.zeros((0, dim or 0), np.float32)
    return matrix, found, problems


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
    import io

    buf = io.BytesIO()
    np.save(buf, np.zeros(dim, dtype=np.float32))
    return buf.tell()


def is_complete(path, dim: int) -> bool:
    """Whether ``path`` holds a whole vector of size ``dim`` (checked by file size, without reading it)."""
    try:
        return os.stat(path).st_size == vector_file_size(dim)
    except OSError:
        return False
