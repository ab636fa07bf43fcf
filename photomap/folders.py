"""The photos' common folder (shared leading text of their paths) and each photo's top-level folder
under it (for colours and captions)."""
import os


def common_folder(paths) -> str:
    """The longest leading folder that every path in ``paths`` starts with, as written and with its
    trailing separator ('' when they share none), so ``common + rest`` gives back each path exactly.

    ``/photos/trip/a.jpg`` and ``/photos/home/b.jpg`` give ``/photos/``; a single path gives its own
    folder; ``a.jpg`` and ``/x/b.jpg`` give ''."""
    paths = list(paths)
    if not paths:
        return ""
    shared = os.path.commonprefix(paths)
    cut = shared.rfind(os.sep)
    return shared[:cut + 1] if cut >= 0 else ""


def top_folders(paths, among=None) -> list:
    """For each path, its first folder below the common folder of ``among`` (default: ``paths``):
    '.' for a path directly in it, the separator itself for an absolute path among relative ones.

    Unlike :func:`common_folder` (text shown to the user, kept as written), this names where a file
    is, so spellings are normalised first: ``./pics/a/x.jpg`` and ``pics/b/y.jpg`` are in ``a`` and ``b``."""
    paths = [os.path.normpath(p) for p in paths]
    common = common_folder(paths if among is None else (os.path.normpath(p) for p in among))
    out = []
    for path in paths:
        first, sep, _ = path[len(common):].partition(os.sep)
        out.append((first or os.sep) if sep else os.curdir)
    return out
