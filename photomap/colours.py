"""Stage 3's colours: which group each photo is drawn in (top-level folder, KMeans cluster of the
features, or one colour) and what the groups are, for the legend and the title."""
import warnings
from collections import Counter

from .folders import top_folders

MODES = ("auto", "folder", "cluster", "none")
MAX_FOLDER_COLOURS = 10  # beyond this many top-level folders a legend stops helping: cluster instead
N_CLUSTERS = 10
MINI_BATCH_ABOVE = 20000  # full KMeans on 100k x 512 takes minutes on two cores; mini-batches take seconds


def groups(photos, mode="auto", seed=None):
    """Labels to colour by and what they are: returns ``(labels, description)``, one label per photo
    of ``photos`` (a :class:`photomap.join.Photos`).

    ``folder``: the top-level folder under the photos' common folder; ``cluster``: KMeans on the
    features; ``auto``: folders when there are 2..10 of them, else clusters; ``none``: one colour."""
    if mode not in MODES:
        raise ValueError("unknown colour mode %r (choose from %s)" % (mode, ", ".join(MODES)))
    n = len(photos)
    if mode == "none" or n == 0:
        return ["photos"] * n, "one colour"
    if mode in ("auto", "folder"):
        folders = top_folders(photos.first_paths, among=[p for paths in photos.paths for p in paths])
        if mode == "folder" or 2 <= len(set(folders)) <= MAX_FOLDER_COLOURS:
            return folders, "top-level folder"
    if n < 2:
        return ["cluster 1"] * n, "one cluster"
    return clusters(photos.features, seed), "KMeans cluster of the features"


def clusters(features, seed=None) -> list:
    """``cluster 1`` ... ``cluster k`` for each row of ``features`` (k = up to 10, by cosine KMeans),
    numbered by size so ``cluster 1`` is the biggest whatever KMeans' internal order."""
    n = features.shape[0]
    k = min(N_CLUSTERS, n)
    if k < 2:
        return ["cluster 1"] * n
    from sklearn.cluster import KMeans, MiniBatchKMeans

    from .projection import unit_rows

    rs = 0 if seed is None else seed
    if n > MINI_BATCH_ABOVE:
        km = MiniBatchKMeans(n_clusters=k, random_state=rs, n_init=3, batch_size=4096)
    else:
        km = KMeans(n_clusters=k, random_state=rs, n_init=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate points give fewer distinct clusters than k
        ids = km.fit_predict(unit_rows(features))
    order = [c for c, _ in Counter(ids.tolist()).most_common()]
    rank = {c: i + 1 for i, c in enumerate(order)}
    return ["cluster %d" % rank[c] for c in ids.tolist()]
