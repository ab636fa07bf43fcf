"""The packed feature cache ``<feature folder>/.pack.npz``, written and read only here: the checked
vectors of a feature folder as one float32 matrix, with each file's name, size and mtime, so that a
re-run reads one file instead of one per photo.

The pack is a zip of plain ``.npy`` members (what ``np.savez`` writes, never pickled objects):
``kind`` and ``version`` (what this file is), ``names`` (file names, bytes, sorted), ``size`` and
``mtime_ns`` (int64, each file's stat when it was read), ``matrix`` (float32, one row per name) and
``seal`` (the zip CRC-32 of each other member, in that order). A member rewritten by another
program (``np.savez`` of edited arrays) no longer matches the seal, so the pack is not trusted."""
import os
import stat
import zipfile
from dataclasses import dataclass

import numpy as np

from .fsutil import atomic_write

PACK_NAME = ".pack.npz"  # hidden: stage 2's listing and `find -name '*.npy'` never see it
KIND = "photomap feature pack"
VERSION = 1
MEMBERS = ("kind", "version", "names", "size", "mtime_ns", "matrix")
CHUNK_ROWS = 1 << 15  # rows gathered and written at a time: a few tens of MB, never a second matrix
READ_CHUNK = 1 << 24


class BadPack(Exception):
    """Why a pack file cannot be trusted (its message is the one-line reason)."""


@dataclass
class Pack:
    """A pack read back: ``names[i]`` (bytes, sorted, unique) was ``size[i]`` bytes with
    ``mtime_ns[i]`` when its vector ``matrix[i]`` was read and checked."""
    names: np.ndarray
    size: np.ndarray
    mtime_ns: np.ndarray
    matrix: np.ndarray

    @property
    def dim(self) -> int:
        return self.matrix.shape[1]

    def rows_of(self, names) -> np.ndarray:
        """Row of each of ``names`` (file names, str) in the pack, -1 where it has none."""
        if not len(names) or not len(self.names):
            return np.full(len(names), -1, np.int64)
        wanted = encode_names(names)  # as wide as the longest, never cut
        pos = np.searchsorted(self.names, wanted).clip(0, len(self.names) - 1)
        return np.where(self.names[pos] == wanted, pos, -1)


def read_pack(path):
    """The pack at ``path`` as ``(Pack, "")``; ``(None, "")`` when there is none; ``(None, reason)``
    when the file cannot be trusted (truncated, flipped bytes, another program's file, edited)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None, ""
    except OSError as exc:
        return None, "cannot read it (%s)" % (exc.strerror or exc)
    if not stat.S_ISREG(st.st_mode):
        return None, "it is not a regular file"
    try:
        with zipfile.ZipFile(path) as zf:
            return _read(zf), ""
    except BadPack as exc:
        return None, str(exc)
    except Exception as exc:  # noqa: BLE001 (a cache that fails to read in any way is rebuilt, never raised)
        return None, "unreadable (%s: %s)" % (type(exc).__name__, " ".join(str(exc).split())[:100])


def _read(zf):
    found = sorted(i.filename for i in zf.infolist())
    if found != sorted(m + ".npy" for m in MEMBERS + ("seal",)):
        raise BadPack("not a photomap feature pack (it holds %s)" % (", ".join(found[:8]) or "nothing"))
    seal = _member(zf, "seal", "u4", 1)
    if seal.tolist() != [zf.getinfo(m + ".npy").CRC for m in MEMBERS]:
        raise BadPack("changed by another program (its checksums do not match)")
    kind, version = _member(zf, "kind", "U", 0), _member(zf, "version", "i8", 0)
    if str(kind) != KIND or int(version) != VERSION:
        raise BadPack("a %r pack of version %s, this is version %d" % (str(kind)[:40], version, VERSION))
    names = _member(zf, "names", "S", 1)
    n = len(names)
    size, mtime = _member(zf, "size", "i8", 1), _member(zf, "mtime_ns", "i8", 1)
    matrix = _member(zf, "matrix", "f4", 2)
    if len(size) != n or len(mtime) != n or matrix.shape[0] != n:
        raise BadPack("its arrays disagree on the number of vectors")
    if n and not (names[1:] > names[:-1]).all():
        raise BadPack("its names are not sorted and unique")
    return Pack(names, size, mtime, matrix)


def _member(zf, name, dtype, ndim):
    """Read member ``name``.npy, whose dtype must be ``dtype`` (a kind letter or an exact type) and
    with ``ndim`` dimensions; its header is checked against its size before any data is read."""
    info = zf.getinfo(name + ".npy")
    with zf.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version not in ((1, 0), (2, 0)):
            raise BadPack("member %s: unknown .npy version %s" % (name, version))
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
            np.lib.format.read_array_header_2_0
        shape, fortran, dt = read_header(f)
        ok_type = dt.kind == dtype if len(dtype) == 1 else dt == np.dtype(dtype)
        if not ok_type or dt.hasobject or fortran or len(shape) != ndim:
            raise BadPack("member %s: %s %s array, expected %d-D %s" % (name, dt, shape, ndim, dtype))
        count = int(np.prod(shape, dtype=np.int64))
        if f.tell() + count * dt.itemsize != info.file_size:
            raise BadPack("member %s: its size does not match its header" % name)
        out = np.empty(shape, dt)
        view, pos = memoryview(out.reshape(-1).view(np.uint8)), 0
        while pos < len(view):
            got = f.readinto(view[pos:pos + READ_CHUNK])
            if not got:
                raise BadPack("member %s: cut short" % name)
            pos += got
        f.read(1)  # reaching the end makes zipfile compare the member's CRC-32
    return out[()] if ndim == 0 else out


def encode_names(names) -> np.ndarray:
    """File names (str) as the pack stores them: a bytes array, as wide as the longest name."""
    return np.array([os.fsencode(n) for n in names], dtype="S") if len(names) else np.zeros(0, "S1")


def write_pack(path, names, size, mtime_ns, parts) -> None:
    """Write a pack at ``path`` atomically. ``names`` (bytes array, see :func:`encode_names`),
    ``size`` and ``mtime_ns`` list the entries; their vectors are, in the same order, ``matrix[rows]``
    of each ``(matrix, rows)`` in ``parts`` (gathered in chunks, so no second full matrix is built).
    Raises ``OSError``."""
    enc = np.asarray(names, dtype="S") if len(names) else np.zeros(0, "S1")
    order = np.argsort(enc, kind="stable")
    part_of = np.concatenate([np.full(len(r), k, np.int64) for k, (_, r) in enumerate(parts)] or
                             [np.zeros(0, np.int64)])[order]
    row_of = np.concatenate([np.asarray(r, np.int64) for _, r in parts] or [np.zeros(0, np.int64)])[order]
    dim = parts[0][0].shape[1] if parts else 0
    arrays = {"kind": np.array(KIND), "version": np.array(VERSION, np.int64), "names": enc[order],
              "size": np.asarray(size, np.int64)[order], "mtime_ns": np.asarray(mtime_ns, np.int64)[order]}
    with atomic_write(path) as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, arr in arrays.items():
            with zf.open(name + ".npy", "w", force_zip64=True) as m:
                np.lib.format.write_array(m, arr, allow_pickle=False)
        with zf.open("matrix.npy", "w", force_zip64=True) as m:
            np.lib.format.write_array_header_1_0(m, {"descr": "<f4", "fortran_order": False,
                                                     "shape": (len(enc), dim)})
            for start in range(0, len(enc), CHUNK_ROWS):
                stop = min(start + CHUNK_ROWS, len(enc))
                chunk = np.empty((stop - start, dim), np.float32)
                for k, (matrix, _) in enumerate(parts):
                    sel = part_of[start:stop] == k
                    chunk[sel] = matrix[row_of[start:stop][sel]]
                m.write(memoryview(chunk.astype("<f4", copy=False)).cast("B"))
        seal = np.array([zf.getinfo(m + ".npy").CRC for m in MEMBERS], np.uint32)
        with zf.open("seal.npy", "w") as m:
            np.lib.format.write_array(m, seal, allow_pickle=False)
