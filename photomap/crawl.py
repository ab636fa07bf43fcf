"""Stage 1's walk of a photo tree: which files are photos, in a deterministic order, each real folder
once."""
import os


def normalize_extensions(values) -> frozenset:
    """``["JPG", ".png", "tif,tiff"]`` -> ``{"jpg", "png", "tif", "tiff"}`` (lowercase, no dots)."""
    exts = set()
    for value in values:
        for part in str(value).split(","):
            part = part.strip().lower().lstrip(".")
            if part:
                exts.add(part)
    return frozenset(exts)


def dir_key(st):
    """A folder's identity from its ``os.stat`` result: ``(st_dev, st_ino)``."""
    return (st.st_dev, st.st_ino)


def crawl(root, extensions, exclude=(), on_error=None):
    """Yield the photo paths under ``root`` in a deterministic (sorted, depth-first) order.

    ``extensions`` is a set of lowercase suffixes without the dot, matched case-insensitively.
    Hidden files and folders (name starting with ".") are skipped, and so is any folder whose
    ``(st_dev, st_ino)`` is in ``exclude`` (the output folder). Symlinked folders are followed,
    but each real folder is entered once, so a symlink loop ends. ``on_error(path, reason)`` is
    called for a folder that cannot be listed.
    """
    exclude = set(exclude)
    visited = set()
    root = os.fspath(root)
    try:
        key = dir_key(os.stat(root))
    except OSError as exc:
        if on_error:
            on_error(root, "cannot list folder: %s" % (exc.strerror or exc))
        return
    if key in exclude:
        return
    visited.add(key)
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            if on_error:
                on_error(folder, "cannot list folder: %s" % (exc.strerror or exc))
            continue
        subdirs = []
        for entry in entries:
            name = entry.name
            if name.startswith("."):
                continue
            try:
                is_dir = entry.is_dir()  # follows symlinks; False for a dangling or self-loop link
            except OSError:
                continue
            if is_dir:
                try:
                    key = dir_key(entry.stat())
                except OSError:
                    continue
                if key in visited or key in exclude:
                    continue
                visited.add(key)
                subdirs.append(entry.path)
                continue
            dot = name.rfind(".")
            if dot <= 0 or name[dot + 1:].lower() not in extensions:
                continue
            try:
                if entry.is_file():
                    yield entry.path
            except OSError:
                continue
        # Depth-first in sorted order: push the subfolders reversed so the first one pops first.
        stack.extend(reversed(subdirs))
