"""Crash-safe file writes: write under a temporary name in the same folder, then rename into place."""
import os
import tempfile
from contextlib import contextmanager

TMP_PREFIX = ".tmp-"  # hidden and without the final suffix, so `find -name '*.jpg'` never sees it
_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_write(path, mode="wb"):
    """Yield a file object; on success it is renamed to ``path``, on error removed.

    A reader (or a resumed run) therefore only ever sees ``path`` absent or complete.
    """
    folder, name = os.path.split(os.fspath(path))
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX + name + ".", dir=folder or ".")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual permissions
        with os.fdopen(fd, mode) as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def remove_stray_temps(folder, only=None) -> int:
    """Delete temporary files left in ``folder`` by a killed run; return how many. ``only``: file
    names (e.g. ``["map.html"]``) whose temporary files alone are removed, for a folder shared with
    other programs' files."""
    removed = 0
    try:
        names = os.listdir(folder)
    except OSError:
        return 0
    prefixes = (TMP_PREFIX,) if only is None else tuple(TMP_PREFIX + name + "." for name in only)
    for name in names:
        if name.startswith(prefixes):
            try:
                os.unlink(os.path.join(folder, name))
                removed += 1
            except OSError:
                pass
    return removed


def check_writable_dir(folder) -> None:
    """Create ``folder`` if needed and prove a file can be written there; raises ``OSError``."""
    os.makedirs(folder, exist_ok=True)
    with tempfile.NamedTemporaryFile(prefix=TMP_PREFIX, dir=folder):
        pass
