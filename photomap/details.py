"""Per-photo details beside the page, written and read only here: what the page shows about one photo
(md5, every original path, copy count, and whatever stage 3 adds: classes, date, neighbours...), kept
out of the drawn data so that a page of a million points loads only what it draws.

The details are cut into shards of :data:`SHARD_SIZE` photos by point index. A small map carries its
shards inline in the page (which then opens from disk too); a larger one keeps them in
``<page>.photos/<digest>/<k>.json`` (``<page>`` = the page path without ``.html``), fetched by the page
when a photo is hovered, pinned or selected. Each shard is UTF-8 JSON::

    {"format": "photomap-details", "version": 1, "start": 0, "root": "/photos/",
     "columns": {"md5": [...], "paths": [["trip/a.jpg", "old/a.jpg"], ...], "copies": [2, ...], ...}}

``paths`` are printable text (:func:`report.printable`) below ``root``; ``meta_paths`` gives a photo's
paths as its .meta lines write them (:func:`meta.escape_path`, whole) where that text differs from the
shown one (a backslash, a control character), else null: the page's selection list is written from
it. Every other column holds one JSON value (or null) per photo. ``<digest>`` names the shards' content: a page only ever points at a
complete folder of its own, and a rerun on the same inputs writes the same one."""
import hashlib
import json
import os
import shutil
import tempfile

from .fsutil import TMP_PREFIX
from .meta import escape_path
from .report import printable

FORMAT = "photomap-details"
VERSION = 1
SHARD_SIZE = 1000  # photos per shard: one hover fetches ~100 kB at most, a million photos make 1,000 files
INLINE_MAX = 5000  # photos: a map up to this size carries its details inline (~0.5 MB of the page)
BASE_COLUMNS = ("md5", "paths", "copies", "meta_paths")


def folder_for(page_path) -> str:
    """``<page>.photos``, the folder beside the page holding its detail shards."""
    base, ext = os.path.splitext(os.fspath(page_path))
    return (base if ext.lower() in (".html", ".htm") else os.fspath(page_path)) + ".photos"


def columns(photos, root: str, extra=None) -> dict:
    """The detail columns of :class:`photomap.join.Photos` ``photos`` whose paths lie below ``root``,
    plus ``extra`` ({name: one JSON-able value per photo}; a base column's name is refused)."""
    cols = {"md5": list(photos.md5s),
            "paths": [[printable(p[len(root):]) for p in paths] for paths in photos.paths],
            "copies": [len(p) for p in photos.paths],
            "meta_paths": [meta_paths(paths) for paths in photos.paths]}
    for name, values in (extra or {}).items():
        if name in cols:
            raise ValueError("detail column %r is already one of the base columns" % name)
        values = list(values)
        if len(values) != len(photos):
            raise ValueError("detail column %r has %d values for %d photos" % (name, len(values), len(photos)))
        cols[name] = values
    return cols


def meta_paths(paths):
    """``paths`` as the .meta log writes them, or None where each is already its printable text."""
    if all(p.isascii() and p.isprintable() and "\\" not in p for p in paths):  # the usual case, quickly
        return None
    listed = [escape_path(p) for p in paths]
    return None if all(m == printable(p) for m, p in zip(listed, paths)) else listed


def shards(cols: dict, root: str, size=SHARD_SIZE) -> list:
    """``cols`` cut into shard objects of ``size`` photos each (the last one shorter)."""
    n = len(cols["md5"])
    return [{"format": FORMAT, "version": VERSION, "start": start, "root": printable(root),
             "columns": {name: values[start:start + size] for name, values in cols.items()}}
            for start in range(0, n, size)]


def shard_text(shard) -> str:
    """One shard as the compact JSON text the page reads (unicode kept as such)."""
    return json.dumps(shard, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def write(page_path, texts) -> str:
    """Put the shard texts in ``<page>.photos/<digest>/`` (unless that complete folder is there
    already) and return the folder's URL relative to the page, e.g. ``map.photos/3fa9c2d1e0b4/``.

    The folder is written under a temporary name and renamed into place, so a page never points at a
    half-written one; call :func:`clear_stale` once the page itself is written."""
    digest = hashlib.sha256("\n".join(texts).encode("utf-8")).hexdigest()[:16]
    parent = folder_for(page_path)
    final = os.path.join(parent, digest)
    if not os.path.isdir(final):
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=TMP_PREFIX + digest + ".", dir=parent)
        try:
            os.chmod(tmp, 0o755)
            for k, text in enumerate(texts):
                with open(os.path.join(tmp, "%d.json" % k), "w", encoding="utf-8") as f:
                    f.write(text)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    from urllib.parse import quote
    return quote(os.path.basename(parent), safe="") + "/" + digest + "/"


def clear_stale(page_path, keep_url=None) -> int:
    """Remove the shard folders (and killed runs' temporary ones) in ``<page>.photos`` other than the
    one at ``keep_url`` (from :func:`write`; None: remove them all, and the folder); return how many."""
    parent = folder_for(page_path)
    keep = keep_url.rstrip("/").rsplit("/", 1)[-1] if keep_url else None
    try:
        names = os.listdir(parent)
    except OSError:
        return 0
    removed = 0
    for name in names:
        if name != keep:
            shutil.rmtree(os.path.join(parent, name), ignore_errors=True)
            removed += 1
    if keep is None:
        try:
            os.rmdir(parent)
        except OSError:
            pass
    return removed


def read(page_path, url=None) -> dict:
    """The detail columns kept beside the page (for scripts and tests): the newest complete shard
    folder, or the one at ``url``; raises ``ValueError`` for a shard this version cannot read."""
    parent = folder_for(page_path)
    if url is None:
        found = [n for n in os.listdir(parent) if not n.startswith(TMP_PREFIX)]
        if not found:
            raise ValueError("no detail shards in %s" % parent)
        folder = max((os.path.join(parent, n) for n in found), key=os.path.getmtime)
    else:
        folder = os.path.join(parent, url.rstrip("/").rsplit("/", 1)[-1])
    cols = {}
    for k in range(len(os.listdir(folder))):
        with open(os.path.join(folder, "%d.json" % k), encoding="utf-8") as f:
            shard = parse(f.read())
        for name, values in shard["columns"].items():
            cols.setdefault(name, []).extend(values)
    return cols


def parse(text: str) -> dict:
    """One shard from its JSON text; ``ValueError`` when it is not a shard of a version read here."""
    shard = json.loads(text)
    if not isinstance(shard, dict) or shard.get("format") != FORMAT:
        raise ValueError("not a photomap detail shard")
    if shard.get("version", 0) > VERSION:
        raise ValueError("detail shard version %s is newer than this photomap reads (%d)"
                         % (shard.get("version"), VERSION))
    return shard
