"""Synthetic inputs for tests and benchmarks: random-init model weights, and stage 3's inputs (thumbnails,
clustered feature vectors, a .meta log) for any number of photos."""
import io
import os
from collections import namedtuple

import numpy as np

from photomap import features, meta
from photomap.fsutil import atomic_write

# What write_map_inputs made: the .meta path, the thumbnail and feature folders, and md5 -> [path].
MapInputs = namedtuple("MapInputs", "meta thumbs features paths")


def random_weights(path, model="resnet18", seed=0):
    """Save a random-init (seeded) torchvision ``model``'s state dict at ``path`` (kept if it exists) and
    return ``path``; torch's global random state is left as it was."""
    import torch
    import torchvision

    if not os.path.exists(path):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            state = torchvision.models.get_model(model, weights=None).state_dict()
        with atomic_write(os.fspath(path)) as f:
            torch.save(state, f)
    return path


def fake_md5(i):
    """The made-up md5 of synthetic photo ``i`` (32 hex digits, as in a .meta line)."""
    return "%032x" % (0xABC000 + i)


def write_map_inputs(root, n, dim=24, folders="abcd", spread=0.2, seed=0, thumb_size=(224, 168),
                     name="img_%03d.jpg", nonnegative=False):
    """Write ``n`` photos' stage-3 inputs under ``root``: ``thumbs/<md5>.jpg``, ``features/`` (vectors
    and sidecar) and ``thumbs.meta``; returns :class:`MapInputs`.

    Photo ``i`` lies in folder ``folders[i % len(folders)]`` (path ``/photos/<folder>/<name % i>``);
    its vector is that folder's random centre (unit normal per dimension) plus ``spread`` times
    normal noise, clipped at 0 like a ReLU's output when ``nonnegative``. Thumbnails are one JPEG per
    folder, in that folder's colour, ``thumb_size`` pixels.
    """
    rng = np.random.default_rng(seed)
    thumbs, feats = os.path.join(root, "thumbs"), os.path.join(root, "features")
    os.makedirs(thumbs, exist_ok=True)
    os.makedirs(feats, exist_ok=True)
    features.write_sidecar(feats, {"model": "resnet18", "dim": dim})
    centres = rng.normal(size=(len(folders), dim)).astype(np.float32)
    jpegs = [_jpeg(tuple(int(c) for c in rng.integers(0, 256, 3)), thumb_size) for _ in folders]
    lines, paths = [], {}
    for i in range(n):
        md5, group = fake_md5(i), i % len(folders)
        vector = centres[group] + spread * rng.normal(size=dim).astype(np.float32)
        features.save_vector(features.feature_path_for_md5(feats, md5),
                             np.maximum(vector, 0) if nonnegative else vector)
        with open(os.path.join(thumbs, meta.thumb_name(md5)), "wb") as f:
            f.write(jpegs[group])
        path = "/photos/%s/%s" % (folders[group], name % i)
        lines.append(meta.format_entry(md5, path))
        paths[md5] = [path]
    meta_path = os.path.join(root, "thumbs.meta")
    with atomic_write(meta_path) as f:  # written last: a complete .meta means complete inputs
        f.write("".join(lines).encode("utf-8"))
    return MapInputs(meta_path, thumbs, feats, paths)


def _jpeg(colour, size):
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "JPEG", quality=80)
    return buf.getvalue()


def clustered_vectors(n, dim=512, clusters=None, rank=8, noise=0.05, copies=0.0, seed=0):
    """``(x, labels, pairs)``: ``n`` float32 feature-like vectors in ``clusters`` groups (default ~sqrt(n)/4,
    at least 2), generated block by block so nothing but ``x`` is ever ``n × dim``.

    Each group is a centre (unit normal per dimension, clipped at 0 like a ReLU output), spread along
    its own ``rank`` random directions (the few ways one kind of photo varies), plus ``noise`` times
    normal noise in every dimension. A share ``copies`` of the rows are near-duplicates of the row
    before them (an edited copy: the same vector plus a tenth of the noise); ``pairs`` lists them as
    ``(copy, original)`` rows of an int64 array. ``labels`` (int32) are the groups."""
    rng = np.random.default_rng(seed)
    k = clusters or max(2, int(np.sqrt(n) / 4))
    centres = np.maximum(rng.normal(size=(k, dim)), 0).astype(np.float32)
    bases = (rng.normal(size=(k, rank, dim)) / np.sqrt(dim) * 2.0).astype(np.float32)
    labels = rng.integers(0, k, size=n).astype(np.int32)
    is_copy = rng.random(n) < copies
    is_copy[0] = False
    labels[is_copy] = labels[np.flatnonzero(is_copy) - 1]
    x = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 8192):
        part = slice(start, min(n, start + 8192))
        lab = labels[part]
        coef = rng.normal(size=(len(lab), rank)).astype(np.float32)
        x[part] = centres[lab] + np.einsum("nr,nrd->nd", coef, bases[lab]) \
            + noise * rng.normal(size=(len(lab), dim)).astype(np.float32)
    rows = np.flatnonzero(is_copy)
    for r in rows:  # in order, so a copy of a copy is still near its original
        x[r] = x[r - 1] + 0.1 * noise * rng.normal(size=dim).astype(np.float32)
    return x, labels, np.stack([rows, rows - 1], axis=1).astype(np.int64)


def cnn_features(n, dim=512, latent=32, clusters=200, seed=0):
    """``(n, dim)`` float32 vectors shaped like a CNN's pooled output: ReLU(W z + noise), with z drawn
    from ``clusters`` Gaussian blobs in ``latent`` dimensions (real features vary along far fewer
    directions than they have). ``latent=0`` gives plain Gaussian noise instead: no structure at all,
    the hardest case for approximate neighbour search."""
    rng = np.random.default_rng(seed)
    if latent == 0:
        return rng.normal(size=(n, dim)).astype(np.float32)
    centres = rng.normal(size=(clusters, latent)).astype(np.float32) * 2
    z = centres[rng.integers(0, clusters, n)] + rng.normal(size=(n, latent)).astype(np.float32)
    w = rng.normal(size=(latent, dim)).astype(np.float32) / np.sqrt(latent)
    return np.maximum(z @ w + 0.3 * rng.normal(size=(n, dim)).astype(np.float32), 0)
