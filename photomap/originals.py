"""Whether the originals a .meta log names are still there, and what they are (pixels, bytes).

A .meta log only grows, so photos deleted or moved since stage 1 still have lines. Each path is
``present``, ``missing`` (its folder tree is reachable but the file is not there) or ``unreachable``
(the whole folder tree holding it is not there: an unplugged drive, a moved backup, or relative paths
read from another working folder; nothing can be said about its files, and it is said once).
"""
import os
from collections import Counter
from dataclasses import dataclass, field

from .report import printable

PRESENT, MISSING, UNREACHABLE = "present", "missing", "unreachable"
# EXIF orientations 5-8 store the picture turned by 90 degrees: width and height swap for a viewer.
_TURNED = (5, 6, 7, 8)


@dataclass
class Originals:
    """``status`` maps each path to PRESENT, MISSING or UNREACHABLE; ``unreachable`` lists the folders
    that are not there (each the top of a tree of photos), with how many paths each held."""
    status: dict = field(default_factory=dict)
    unreachable: list = field(default_factory=list)

    def counts(self) -> Counter:
        return Counter(self.status.values())


def check(paths) -> Originals:
    """The status of every path in ``paths`` (strings as the .meta log gives them).

    Paths are split into trees: one per top-level folder under their common folder (one per first
    component when they share none). A tree whose own common folder is not there is unreachable as a
    whole; in a reachable tree each folder is listed once and each file looked up in that listing."""
    paths = list(dict.fromkeys(paths))
    out = Originals()
    for top, members in sorted(_trees(paths).items()):
        if not os.path.isdir(top):
            out.unreachable.append((top, len(members)))
            out.status.update((p, UNREACHABLE) for p in members)
            continue
        listings = {}
        for p in members:
            folder, name = os.path.split(p)
            if folder not in listings:
                listings[folder] = _listing(folder or os.curdir)
            names = listings[folder]
            out.status[p] = UNREACHABLE if names is None else PRESENT if name in names else MISSING
    return out


def _trees(paths):
    """Folder at the top of each tree -> its paths (see :func:`check`)."""
    dirs = [os.path.dirname(p) for p in paths]
    try:
        common = os.path.commonpath(dirs) if dirs else ""
    except ValueError:  # absolute and relative paths mixed: no common folder
        common = None
    by_top = {}
    for p, d in zip(paths, dirs):
        rel = os.path.relpath(d, common) if common else d
        parts = [c for c in rel.split(os.sep) if c not in ("", os.curdir)]
        key = (common is None and os.path.isabs(p), parts[0] if parts else "")
        by_top.setdefault(key, []).append(p)
    out = {}
    for members in by_top.values():
        top = os.path.commonpath([os.path.dirname(p) for p in members]) or os.curdir
        out.setdefault(top, []).extend(members)
    return out


def _listing(folder):
    """Names in ``folder``: an empty set when it is gone, None when it cannot be read (no permission)."""
    try:
        return set(os.listdir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return set()
    except OSError:
        return None


def summary_line(originals: Originals) -> str:
    """One line about paths that are gone or cannot be checked, or None when every original is there."""
    counts = originals.counts()
    parts = []
    if counts[MISSING]:
        parts.append("%d original%s no longer exist%s (marked missing)" % (
            counts[MISSING], "" if counts[MISSING] == 1 else "s", "s" if counts[MISSING] == 1 else ""))
    if originals.unreachable:
        named = ", ".join("%s (%d)" % (printable(top), n) for top, n in originals.unreachable[:3])
        more = len(originals.unreachable) - 3
        parts.append("the originals under %s%s are not reachable (an unplugged drive, a moved folder, or "
                     "stage 1 ran in another folder?): %d path%s not checked, marked unreachable" % (
                         named, " and %d more folders" % more if more > 0 else "", counts[UNREACHABLE],
                         "" if counts[UNREACHABLE] == 1 else "s"))
    elif counts[UNREACHABLE]:
        parts.append("%d original%s in folders that cannot be read (marked unreachable)" % (
            counts[UNREACHABLE], "" if counts[UNREACHABLE] == 1 else "s"))
    return "; ".join(parts) if parts else None


def facts(path):
    """``(width, height, bytes)`` of the original at ``path`` as a viewer shows it (EXIF orientation
    applied), read from the file's header only, as every stage opens a photo (``image.opened``);
    None for what cannot be read."""
    from . import image

    try:
        size = os.stat(path).st_size
    except OSError:
        return None, None, None
    try:
        with image.opened(path, max_pixels=0) as img:
            w, h = img.size
            if image.orientation(img) in _TURNED:
                w, h = h, w
    except Exception:  # noqa: BLE001 -- any unreadable header: the size is simply unknown
        return None, None, size
    return w, h, size
