"""Stage 3's input: the .meta log, the thumbnail folder and the feature folder joined into one row
per photo (md5), with what was left out counted by reason."""
import os
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from . import features as features_mod
from .meta import read_meta, thumb_name


@dataclass
class Photos:
    """The joined inputs, one row per md5 (sorted by md5, so the order never depends on the log).

    ``paths[i]`` lists every original path of ``md5s[i]`` exactly as the .meta log gives it (the real
    path: whoever writes it as text escapes it, see :func:`report.printable`); ``features`` is the
    ``(n, d)`` float32 matrix in the same order; ``left_out`` counts what the join dropped, by reason."""
    md5s: list
    paths: list
    features: np.ndarray
    thumbs_dir: str
    left_out: Counter = field(default_factory=Counter)
    model: str = ""  # from the feature folder's sidecar, for the page title

    def __len__(self):
        return len(self.md5s)

    @property
    def copies(self) -> list:
        """How many original paths each photo has (byte-identical copies share one md5)."""
        return [len(p) for p in self.paths]

    @property
    def first_paths(self) -> list:
        """Each photo's first original path, the one the coordinates CSV names."""
        return [p[0] for p in self.paths]


def join(meta_path, thumbs_dir, features_dir) -> Photos:
    """Join the three inputs into :class:`Photos` (see :func:`summary` for the line to say about it).

    A photo is kept when its md5 has a .meta line, a thumbnail ``<thumbs>/<md5>.jpg`` and a readable,
    finite vector of the common size; everything else is counted in ``left_out``, never raised. An
    unreadable .meta file or folder raises ``OSError`` (a fatal problem for the caller)."""
    meta = read_meta(meta_path)
    groups = meta.by_md5()
    left_out = Counter()
    listed = set(features_mod.listed_md5s(features_dir))
    left_out["features without a .meta line"] = len(listed - set(groups))
    with_thumb = []
    for md5 in sorted(groups):
        if os.path.isfile(os.path.join(thumbs_dir, thumb_name(md5))):
            with_thumb.append(md5)
        else:
            left_out[".meta md5s without thumbnail"] += 1
    matrix, found, problems = features_mod.load_for_md5s(features_dir, with_thumb)
    for reason in problems.values():
        key = ".meta md5s without features" if reason == "no feature vector" else \
            "unreadable or odd-sized vectors"
        left_out[key] += 1
    finite = np.isfinite(matrix).all(axis=1)
    if not finite.all():  # UMAP and PCA cannot place a NaN; one such vector must not stop the map
        left_out["vectors with NaN or infinite values"] = int((~finite).sum())
        matrix, found = matrix[finite], [m for m, ok in zip(found, finite) if ok]
    left_out["# error lines"] = len(meta.errors)
    left_out["malformed .meta lines"] = meta.malformed
    return Photos(md5s=found, paths=[list(groups[m]) for m in found], features=matrix,
                  thumbs_dir=os.fspath(thumbs_dir), left_out=Counter({k: v for k, v in left_out.items() if v}),
                  model=_model_name(features_dir))


def _model_name(features_dir) -> str:
    """The model named in the feature folder's sidecar ('' when absent or unreadable: only a title)."""
    try:
        info = features_mod.read_sidecar(features_dir) or {}
    except (OSError, ValueError):
        return ""
    return str(info.get("model", "")) if isinstance(info, dict) else ""


def summary(photos: Photos) -> str:
    """One line: photos and paths on the map, then each left-out reason with its count."""
    n_paths = sum(photos.copies)
    line = "%d photo%s (%d file%s) on the map" % (
        len(photos), "" if len(photos) == 1 else "s", n_paths, "" if n_paths == 1 else "s")
    if photos.left_out:
        line += "; left out: " + ", ".join("%d %s" % (n, k) for k, n in sorted(photos.left_out.items()))
    return line
