"""Run bookkeeping shared by the stages: per-item failure lines, counters and the one-line summary."""
import re
import sys
import time
from collections import Counter


class SetupError(Exception):
    """A problem found before any work starts (bad option, missing folder, unknown model...);
    the entry point turns its message into one ``error:`` line with :func:`fatal`."""


def fatal(message: str) -> int:
    """Print ``error: message`` on stderr and return the exit status for ``main`` to return."""
    print("error: " + message, file=sys.stderr)
    return 2


class Tally:
    """Counts item outcomes and failure reasons for the end-of-run summary line."""

    def __init__(self, stage: str):
        self.stage = stage
        self.counts = Counter()
        self.reasons = Counter()
        self.start = time.monotonic()

    def add(self, status: str, n: int = 1) -> None:
        self.counts[status] += n

    def fail(self, item: str, reason: str, progress=None) -> None:
        """Count a failed item and name it in one stderr line (through tqdm when a bar is shown)."""
        self.counts["failed"] += 1
        self.reasons[short_reason(reason)] += 1
        line = "%s: skipped %s: %s" % (self.stage, printable(item), reason)
        if progress is not None:
            progress.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr)

    def summary(self, order, rate_of: str) -> str:
        """One line: each count in ``order``, top failure reasons, elapsed and ``rate_of`` items/s."""
        elapsed = time.monotonic() - self.start
        parts = ["%d %s" % (self.counts[k], k) for k in order]
        if self.counts["failed"]:
            top = ", ".join("%s x%d" % (r, n) for r, n in self.reasons.most_common(3))
            parts.append("%d failed (%s)" % (self.counts["failed"], top))
        else:
            parts.append("0 failed")
        rate = self.counts[rate_of] / elapsed if elapsed > 0 else 0.0
        return "%s: %s in %.1fs (%.1f images/s)" % (self.stage, ", ".join(parts), elapsed, rate)


def one_line(obj) -> str:
    """``str(obj)`` with all whitespace runs (newlines included) collapsed to single spaces."""
    return " ".join(str(obj).split())


def short_reason(reason: str) -> str:
    """The reason without its item-specific tail, for grouping in the summary."""
    return str(reason).split(":")[0].strip()[:60]


_CONTROL = re.compile("[\x00-\x1f\x7f]")


def printable(path: str) -> str:
    """``path`` (as from ``os.fsdecode``) as one printable line: undecodable bytes and control
    characters become ``\\xNN`` (tab, newline and carriage return ``\\t``, ``\\n``, ``\\r``);
    everything else, unicode included, is kept."""
    text = str(path)
    if text.isascii() and text.isprintable():  # most paths, at a million photos a page: no copy, no scan
        return text
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    if not _CONTROL.search(text):  # unicode but nothing to escape: one regex scan, no loop per character
        return text
    named = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}
    return "".join(named.get(c, "\\x%02x" % ord(c)) if c < " " or c == "\x7f" else c for c in text)
