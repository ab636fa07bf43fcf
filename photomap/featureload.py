"""Stage 3's reading of a feature folder: every vector of the photos asked for checked
(:func:`features.check_vector`), a bad one left out with its reason, never raised; unchanged files
taken from the packed cache (:mod:`featurepack`) instead of being opened again."""
import os
import stat
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from . import featurepack
from .features import SIDECAR, check_vector, os_reason, read_sidecar

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
