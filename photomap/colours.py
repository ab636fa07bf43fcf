"""Stage 3's colours: the ways the page can colour the photos (the map's islands, the top-level
folder, the year taken, one colour), each a code per photo, the groups' names, colours and sizes (for
the legend); and which one the page starts with."""
from dataclasses import dataclass

import numpy as np

from .folders import top_folders

MODES = ("auto", "cluster", "folder", "year", "none")
MAX_FOLDER_COLOURS = 10  # beyond this many top-level folders a legend stops helping
GREY = "#bdbdbd"         # unclustered photos, unknown years


@dataclass
class Scheme:
    """One way to colour the map: ``mode`` (``cluster``, ``folder``, ``year``, ``none``), ``title``
    (what the colours show), ``codes`` (n,) int: the group of each photo, an index into ``groups``
    (names), ``colours`` (one ``#rrggbb`` each) and ``sizes`` (photos each)."""
    mode: str
    title: str
    codes: np.ndarray
    groups: list
    colours: list
    sizes: list


def _scheme(mode, title, codes, groups, colours) -> Scheme:
    codes = np.asarray(codes, np.int32)
    sizes = np.bincount(codes, minlength=len(groups)).tolist() if len(codes) else [0] * len(groups)
    return Scheme(mode, title, codes, list(groups), list(colours), sizes)


def categorical(n) -> list:
    """``n`` distinct colours: Category10, Category20 (dark shades first, so neighbours in the list
    differ), or Turbo spread over ``n`` beyond 20."""
    from bokeh.palettes import Category10, Category20, Turbo256

    if n <= 10:
        return list(Category10[10][:n])
    if n <= 20:
        pal = Category20[20]
        return (list(pal[0::2]) + list(pal[1::2]))[:n]
    return [Turbo256[int(i * 255 / (n - 1))] for i in range(n)]


def by_cluster(ids, names=None) -> Scheme:
    """Islands: ``ids`` (n,) cluster id per photo (-1 unclustered, in grey, listed last), ``names``
    one label per id (``None``: "cluster N"). Largest cluster first. A cluster keeps its colour while
    it keeps its id (ids are kept from run to run), so the map's colours stay put as it grows."""
    ids = np.asarray(ids)
    k = int(ids.max()) + 1 if len(ids) else 0
    size = np.bincount(ids[ids >= 0], minlength=k) if k else np.zeros(0, int)
    present = sorted((int(c) for c in np.flatnonzero(size)), key=lambda c: (-size[c], c))
    palette = categorical(min(max(k, 1), 20))
    code_of = np.full(k + 1, len(present), np.int32)  # the last slot: unclustered
    code_of[present] = np.arange(len(present))
    groups = [(names[c] if names and names[c] else "cluster %d" % c) for c in present] + ["unclustered"]
    colours = [palette[c % len(palette)] for c in present] + [GREY]
    return _scheme("cluster", "cluster", code_of[np.where(ids >= 0, ids, k)], groups, colours)


def by_folder(photos) -> Scheme:
    """The top-level folder under the photos' common folder, in natural order."""
    folders = top_folders(photos.first_paths, among=[p for paths in photos.paths for p in paths])
    groups = sorted(set(folders), key=natural_key)
    index = {g: i for i, g in enumerate(groups)}
    return _scheme("folder", "top-level folder", [index[f] for f in folders], groups, categorical(len(groups)))


def by_year(years, mtime_only=0) -> Scheme:
    """The year each photo was taken (``years``: int or None), on a sequential palette from the
    earliest year to the latest (a gap of years keeps its place on the scale); unknown in grey,
    listed last. ``mtime_only`` photos were dated by their file's time: the title says how many."""
    from bokeh.palettes import Viridis256

    known = sorted({y for y in years if y is not None})
    groups = [str(y) for y in known] + ["unknown"]
    lo, hi = (known[0], known[-1]) if known else (0, 0)
    colours = [Viridis256[int(round((y - lo) / (hi - lo) * 230)) if hi > lo else 115] for y in known] + [GREY]
    index = {y: i for i, y in enumerate(known)}
    title = "year taken" + (" (%d dated by file time only)" % mtime_only if mtime_only else "")
    return _scheme("year", title, [index.get(y, len(known)) for y in years], groups, colours)


def one_colour(n) -> Scheme:
    return _scheme("none", "one colour", np.zeros(n, np.int32), ["photos"], categorical(1))


def schemes(photos, cluster_ids, cluster_names, years, mtime_only=0) -> list:
    """Every way the page can colour ``photos``: by cluster, folder, year taken, one colour."""
    return [by_cluster(cluster_ids, cluster_names), by_folder(photos), by_year(years, mtime_only),
            one_colour(len(photos))]


def starting(mode, options) -> Scheme:
    """The scheme of ``options`` the page starts with for ``--colour mode``: ``auto`` is the islands
    when there are at least 2, else the folders when there are 2..10, else one colour."""
    if mode not in MODES:
        raise ValueError("unknown colour mode %r (choose from %s)" % (mode, ", ".join(MODES)))
    by_mode = {s.mode: s for s in options}
    if mode != "auto":
        return by_mode[mode]
    if sum(1 for g, size in zip(by_mode["cluster"].groups[:-1], by_mode["cluster"].sizes) if size) >= 2:
        return by_mode["cluster"]
    if 2 <= len(by_mode["folder"].groups) <= MAX_FOLDER_COLOURS:
        return by_mode["folder"]
    return by_mode["none"]


def natural_key(label):
    """Sort key putting ``img2`` before ``img10``."""
    import re

    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(label))]
