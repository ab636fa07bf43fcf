"""The photos' common folder and each photo's top-level folder under it, read from the paths as
written (the .meta log's spelling, compared exactly like everywhere else in the pipeline)."""
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


def top_folders(paths, common=None) -> list:
    """For each path, its first folder below ``common`` (default: :func:`common_folder` of ``paths``):
    '.' for a path directly in the common folder, the separator itself for an absolute path among
    relative ones."""
    paths = list(paths)
    if common is None:
        common = common_folder(paths)
    out = []
    for path in paths:
        rest = path[len(common):] if path.startswith(common) else path
        first, sep, _ = rest.partition(os.sep)
        out.append((first or os.sep) if sep else os.curdir)
    return out
