"""Stage 3's input: the .meta log, the thumbnail folder and the feature folder joined into one row
per photo (md5), with what was left out counted by reason."""
import os
import stat
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from . import featureload
from . import features as features_mod
from .meta import read_meta, thumb_name
from .report import printable


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


def join(meta_path, thumbs_dir, features_dir, say=None) -> Photos:
    """Join the three inputs into :class:`Photos` (see :func:`summary` for the line to say about it).

    A photo is kept when its md5 has a .meta line, a readable thumbnail ``<thumbs>/<md5>.jpg`` and a
    usable vector (:func:`featureload.load_matrix` checks each one); everything else is counted in
    ``left_out``, never raised, and each bad file is named in one line given to ``say`` (e.g.
    ``print``; None: silent). An unreadable .meta file or folder raises ``OSError`` (a fatal problem
    for the caller)."""
    say = say or (lambda line: None)
    meta = read_meta(meta_path)
    groups = meta.by_md5()
    left_out = Counter()
    listed = set(features_mod.listed_md5s(features_dir))
    left_out["features without a .meta line"] = len(listed - set(groups))
    with_thumb = []
    for md5 in sorted(groups):
        path = os.path.join(thumbs_dir, thumb_name(md5))
        problem = thumb_problem(path)
        if problem is None:
            with_thumb.append(md5)
        elif problem == "missing":
            left_out[".meta md5s without thumbnail"] += 1
        else:
            left_out["unreadable thumbnail"] += 1
            say("left out %s (%s): unreadable thumbnail (%s)" % (
                printable(path), printable(groups[md5][0]), problem))
    names = [features_mod.feature_name(thumb_name(m)) for m in with_thumb]
    got = featureload.load_matrix(features_dir, names)
    for line in got.notes:
        say(printable(line))
    for i, (reason, detail) in sorted(got.problems.items()):
        if reason == "missing vector":
            left_out[".meta md5s without features"] += 1
            continue
        left_out[reason] += 1
        say("left out %s (%s): %s%s" % (printable(os.path.join(features_dir, names[i])),
                                         printable(groups[with_thumb[i]][0]), reason,
                                         " (%s)" % detail if detail else ""))
    found = [with_thumb[i] for i in got.kept]
    left_out["# error lines"] = len(meta.errors)
    left_out["malformed .meta lines"] = meta.malformed
    return Photos(md5s=found, paths=[list(groups[m]) for m in found], features=got.matrix,
                  thumbs_dir=os.fspath(thumbs_dir), left_out=Counter({k: v for k, v in left_out.items() if v}),
                  model=_model_name(features_dir))


def thumb_problem(path):
    """``None`` when ``path`` is a readable, non-empty file; ``"missing"`` when there is nothing
    there; else a short reason (a folder, a symlink loop, empty, permission denied). The bytes are
    not decoded: that would cost minutes at a million thumbnails."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return "missing"
    except OSError as exc:
        return features_mod.os_reason(exc)
    if not stat.S_ISREG(st.st_mode):
        return "a folder, not a file" if stat.S_ISDIR(st.st_mode) else "not a regular file"
    if st.st_size == 0:
        return "empty file"
    if not st.st_mode & stat.S_IROTH and not os.access(path, os.R_OK):  # readable by all: no call
        return "permission denied"
    return None


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
        line += "; left out: " + ", ".join(_counted(n, k) for k, n in sorted(photos.left_out.items()))
    return line


PLURALISED = set(features_mod.REASONS) | {"unreadable thumbnail"}


def _counted(n: int, reason: str) -> str:
    """``"1 truncated vector"``, ``"2 truncated vectors"`` (other reasons are read as they are)."""
    return "%d %s%s" % (n, reason, "s" if n != 1 and reason in PLURALISED else "")
