"""Keep a map as the backup grows: photos of the previous map stay exactly where they were and new
ones are placed among their feature-space neighbours; ``--refit`` lays out afresh, then aligns the new
picture to the previous map (Procrustes), so it stays recognisable."""
from dataclasses import dataclass, field

import numpy as np

from . import placement

REFIT_SHARE = 0.30  # above this share of new photos the run suggests --refit (see update())
MIN_SHARED = 3  # fewer shared photos anchor no picture (nor a Procrustes fit): lay out afresh


@dataclass
class Outcome:
    """What :func:`update` did: ``coords`` (``(n, 2)``, in the order of the md5s given), the counts,
    ``lines`` (what to say on stderr) and ``laid_out`` (False when no layout was computed at all)."""
    coords: np.ndarray
    kept: int = 0
    placed: int = 0
    removed: int = 0
    laid_out: bool = True
    lines: list = field(default_factory=list)


def update(md5s, features, previous, embed, name, refit=False, n_neighbors=15, min_dist=0.1,
           metric="cosine", seed=None) -> Outcome:
    """Coordinates for ``md5s`` (rows of ``features``) given the ``previous`` map.

    ``previous`` is a :class:`projection.PreviousMap` or None (no previous map); ``embed(features)``
    makes a fresh layout; ``name`` names the previous map in the lines. Photos of the previous
    map keep their coordinates exactly; the others are placed by :func:`placement.place`. With
    ``refit`` the layout is made afresh and aligned to the previous map by :func:`align`."""
    n = len(md5s)
    counts = "%s photos" % _n(n)
    if previous is None:
        return Outcome(embed(features), lines=["refit: no previous map %s to align to: laid "
                                               "out %s afresh" % (name, counts)] if refit else [])
    problem = previous.problem
    if not problem and not previous.xy:
        problem = ("it has no rows" if not previous.bad_rows else "its only row could not be read"
                   if previous.bad_rows == 1 else "none of its %s rows could be read" % _n(previous.bad_rows))
    if problem:
        return Outcome(embed(features), lines=["could not use the previous map %s (%s): laid out %s "
                                               "afresh" % (name, problem, counts)])
    shared = np.array([m in previous.xy for m in md5s], dtype=bool)
    n_shared = int(shared.sum())
    removed = len(previous.xy) - n_shared
    ignored = ("; ignored %s unreadable row%s of %s (their photos placed as new)"
               % (_n(previous.bad_rows), "" if previous.bad_rows == 1 else "s", name)
               if previous.bad_rows else "")
    if n_shared < min(MIN_SHARED, n):
        what = "no photo" if n_shared == 0 else "only %d photo%s" % (n_shared, "" if n_shared == 1 else "s")
        return Outcome(embed(features), placed=n, removed=removed, lines=[
            "the previous map %s shares %s with these (made from another feature folder?): "
            "laid out %s afresh" % (name, what, counts)])
    old_xy = np.array([previous.xy[m] for m, s in zip(md5s, shared) if s], dtype=np.float64)
    if refit:
        fresh = embed(features)
        coords, moved, residual = align(fresh, shared, old_xy)
        return Outcome(coords, placed=n - n_shared, removed=removed, lines=[
            "refit %s and aligned them to the previous map on %s shared photos (rotation, "
            "reflection, scale): median move %.1f%% of the map's extent, Procrustes residual %.2f; "
            "%s new, removed %s%s" % (counts, _n(n_shared), 100 * moved, residual, _n(n - n_shared),
                                      _n(removed), ignored)])
    coords = np.zeros((n, 2))
    coords[shared] = old_xy
    new = n - n_shared
    if new:
        coords = placement.place(features, coords, shared, n_neighbors=n_neighbors,
                                 min_dist=min_dist, metric=metric, seed=seed)
    out = Outcome(coords, kept=n_shared, placed=new, removed=removed, laid_out=bool(new), lines=[
        "kept %s photos in place, placed %s new, removed %s%s"
        % (_n(n_shared), _n(new), _n(removed), ignored)])
    if new > REFIT_SHARE * n:
        # Suggested, not done: a refit moves every photo, and keeping them is what was asked for.
        out.lines.append("%d%% of the map is new: --refit lays every photo out afresh, "
                         "aligned to this map, and can give the new photos' groups more room"
                         % round(100 * new / n))
    return out


def _n(count) -> str:
    return "{:,}".format(count)


def align(fresh, shared, old_xy):
    """``(aligned, median_move, residual)``: ``fresh`` (``(n, 2)``) rotated/reflected, uniformly
    scaled and shifted so that its ``shared`` rows best match ``old_xy`` (least squares).

    ``median_move`` is the shared photos' median distance from their old place as a share of the
    old map's extent (the longer side of its bounding box); ``residual`` is the RMS distance left
    after alignment over the RMS distance from the old map's centre (0: the same picture, 1: no
    resemblance)."""
    scale, rotation, shift = procrustes(fresh[shared], old_xy)
    aligned = scale * fresh @ rotation + shift
    gap = np.linalg.norm(aligned[shared] - old_xy, axis=1)
    spread = np.linalg.norm(old_xy - old_xy.mean(axis=0), axis=1)
    extent = float(np.ptp(old_xy, axis=0).max())
    rms_spread = float(np.sqrt(np.mean(spread ** 2)))
    residual = float(np.sqrt(np.mean(gap ** 2)) / rms_spread) if rms_spread > 0 else 0.0
    return aligned, float(np.median(gap) / extent) if extent > 0 else 0.0, residual


def procrustes(source, target):
    """``(scale, rotation, shift)`` minimising ``|scale * source @ rotation + shift - target|``
    over orthogonal ``rotation`` (reflections allowed): the classical SVD solution."""
    mu_s, mu_t = source.mean(axis=0), target.mean(axis=0)
    s, t = source - mu_s, target - mu_t
    u, sv, vt = np.linalg.svd(s.T @ t)
    rotation = u @ vt
    norm = float((s ** 2).sum())
    scale = float(sv.sum() / norm) if norm > 0 else 1.0
    return scale, rotation, mu_t - scale * mu_s @ rotation
