"""Map-quality figures: does the feature space find edited copies, and does the 2-D map keep neighbours?

The metrics take plain arrays, so they are tested on data with known answers and used by
``bench/quality.py`` on the real pipeline's output.
"""
import os

import numpy as np

EDITS = ("crop90", "downscale50", "jpeg60", "bright115", "dark60", "mirror", "sideways")
EXIF_ORIENTATION = 0x0112


def make_edits(src_path, dest_for_edit):
    """Write the edited copies of one photo; ``dest_for_edit(name)`` gives each output path.

    crop90: the central 90 %; downscale50: half the size; jpeg60: re-compressed at quality 60;
    bright115 / dark60: brightness +15 % / -40 %; mirror: flipped left to right; sideways: the pixels
    stored turned with an EXIF orientation that turns them back, as many cameras save. The source's
    EXIF orientation is applied first, as a viewer would.
    """
    from PIL import Image, ImageEnhance, ImageOps

    from photomap.image import read_rgb

    img = read_rgb(src_path)  # as the stages read it: upright, RGB, HEIC too
    w, h = img.size
    dx, dy = round(w * 0.05), round(h * 0.05)
    turned = Image.Exif()
    turned[EXIF_ORIENTATION] = 6  # "rotate 90 degrees clockwise to view"
    edits = {
        "crop90": (img.crop((dx, dy, w - dx, h - dy)), {}),
        "downscale50": (img.resize((max(1, w // 2), max(1, h // 2)), Image.LANCZOS), {}),
        "jpeg60": (img, {"quality": 60}),
        "bright115": (ImageEnhance.Brightness(img).enhance(1.15), {}),
        "dark60": (ImageEnhance.Brightness(img).enhance(0.6), {}),
        "mirror": (ImageOps.mirror(img), {}),
        "sideways": (img.transpose(Image.Transpose.ROTATE_90), {"exif": turned.tobytes()}),
    }
    for name, (out, options) in edits.items():
        out.save(dest_for_edit(name), "JPEG", **dict({"quality": 90}, **options))


def describe_weights(model, weights_path):
    """``(line, published)``: one line naming the weights file ``weights_path`` (default: the torch hub
    cache's file for ``model``), and whether it is torchvision's published file for that model."""
    import torchvision

    from photomap.model import hub_checkpoint_path, sha256_file

    default = torchvision.models.get_model_weights(model).DEFAULT
    url = default.url
    published = os.path.basename(url).rsplit("-", 1)[-1].split(".")[0]  # hash prefix in the name
    path = weights_path or hub_checkpoint_path(default)
    digest = sha256_file(path)
    if digest.startswith(published):
        return "weights: %s (published ImageNet weights, sha256 %s...)" % (path, digest[:12]), True
    return ("weights: %s (sha256 %s... is NOT the published %s file: e.g. random-init weights; "
            "these figures are only a floor)" % (path, digest[:12], os.path.basename(url))), False


def _knn(points, k, metric):
    """Indices of the ``k`` nearest other points of each row (itself excluded)."""
    from sklearn.neighbors import NearestNeighbors

    k = min(k, len(points) - 1)
    nn = NearestNeighbors(n_neighbors=k + 1, metric=metric).fit(points)
    idx = nn.kneighbors(points, return_distance=False)
    out = np.empty((len(points), k), dtype=np.int64)
    for i, row in enumerate(idx):  # drop self (not always column 0 when points coincide)
        row = row[row != i]
        out[i] = row[:k]
    return out


def copy_recall(points, copies, k, metric, siblings=None):
    """Share of copies whose original is among their ``k`` nearest points.

    ``copies`` is a list of ``(copy_index, original_index)``. ``siblings[copy_index]`` is the set of
    indices of the other edits of the same original: they are not counted as neighbours, so the
    question is "is the original found", not "is some other edit of it closer".
    """
    if not copies:
        return float("nan")
    from sklearn.neighbors import NearestNeighbors

    extra = max((len(s) for s in (siblings or {}).values()), default=0)
    n_query = min(len(points), k + 1 + extra)
    nn = NearestNeighbors(n_neighbors=n_query, metric=metric).fit(points)
    query = np.array([c for c, _ in copies])
    idx = nn.kneighbors(points[query], return_distance=False)
    hits = 0
    for (copy, original), row in zip(copies, idx):
        skip = {copy} | set((siblings or {}).get(copy, ()))
        row = [j for j in row if j not in skip][:k]
        hits += original in row
    return hits / len(copies)


def neighbour_preservation(features, coords, k=10):
    """Mean share of each point's ``k`` nearest feature-space (cosine) neighbours that are also
    among its ``k`` nearest map neighbours: 1.0 means the map keeps every local neighbourhood."""
    if len(features) < 3:
        return float("nan")
    a = _knn(features, k, "cosine")
    b = _knn(coords, k, "euclidean")
    return float(np.mean([len(set(x) & set(y)) / len(x) for x, y in zip(a, b)]))


def label_agreement(coords, labels, k=10):
    """``(share, chance)``: mean share of each point's ``k`` map neighbours with its own label,
    and the share expected from random neighbours (sum of squared label frequencies)."""
    labels = np.asarray(labels)
    if len(labels) < 3:
        return float("nan"), float("nan")
    idx = _knn(coords, k, "euclidean")
    share = float(np.mean(labels[idx] == labels[:, None]))
    _, counts = np.unique(labels, return_counts=True)
    chance = float(np.sum((counts / counts.sum()) ** 2))
    return share, chance


def group_scores(group_of, pairs, labels=None):
    """``(precision, recall)`` of near-duplicate groups on edited copies.

    ``group_of`` maps a point to its group id (points in no group are absent); ``pairs`` lists
    ``(copy, original)`` points. Recall: the share of pairs whose copy shares its original's group.
    Precision: the share of pairs of points grouped together that show the same picture. With
    ``labels`` (original point -> the picture it shows, e.g. from ``sample.source_picture``; a copy
    shows its original's) every grouped pair is judged by them. Without, only pairs involving an
    edited copy are judged: right when one original and its copies, or two originals that the groups
    themselves put together (a photo folder's own duplicates have no known answer). NaN where there
    is nothing to count."""
    family = {copy: original for copy, original in pairs}
    recall = float(np.mean([group_of.get(c) is not None and group_of.get(c) == group_of.get(o)
                            for c, o in pairs])) if pairs else float("nan")
    members = {}
    for point, gid in group_of.items():
        members.setdefault(gid, []).append(point)
    right = wrong = 0
    for group in members.values():
        for i, a in enumerate(group):
            for b in group[i + 1:]:
                fa, fb = family.get(a, a), family.get(b, b)
                if labels is not None:
                    same = labels.get(fa) is not None and labels.get(fa) == labels.get(fb)
                elif a in family or b in family:
                    same = fa == fb or (group_of.get(fa) is not None and group_of.get(fa) == group_of.get(fb))
                else:
                    continue
                right += same
                wrong += not same
    precision = right / (right + wrong) if right + wrong else float("nan")
    return precision, recall
