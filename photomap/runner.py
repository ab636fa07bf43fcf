"""The set-up every stage shares: core count, output-folder check, stray-temp clean-up, info lines,
the progress bar, per-item failure lines and the one-line summary."""
import os
import sys

from . import fsutil
from .report import SetupError, Tally


def cores() -> int:
    """Number of cores this process may use (its CPU affinity where the OS says)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


class Run:
    """One stage's run as the person at the terminal sees it, all on stderr.

    ``info`` lines read ``<stage>: text`` and are silenced by ``quiet`` unless ``always``;
    ``fail`` names one bad item in one line and counts its reason; ``summary`` prints the
    closing line. While a progress bar is shown, lines are written through it so they do not
    tear the bar.
    """

    def __init__(self, stage: str, quiet: bool = False):
        self.stage = stage
        self.quiet = quiet
        self.tally = Tally(stage)
        self.bar = None

    def info(self, text: str, always: bool = False) -> None:
        """Print ``<stage>: text`` unless quiet (``always``: said even with ``-q``)."""
        if always or not self.quiet:
            self.write("%s: %s" % (self.stage, text))

    def write(self, line: str) -> None:
        """One stderr line, through the progress bar when one is shown."""
        if self.bar is not None and not self.bar.disable:
            self.bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr)

    def output_dir(self, folder, what: str, names=None) -> None:
        """:meth:`check_output` then :meth:`clean_output`, for a stage with nothing to check between."""
        self.check_output(folder, what)
        self.clean_output(folder, names)

    def check_output(self, folder, what: str) -> None:
        """Create ``folder`` if needed and prove it writable; raises :class:`SetupError` naming
        ``what`` ("thumbnail folder")."""
        try:
            fsutil.check_writable_dir(folder)
        except OSError as exc:
            raise SetupError("cannot write to %s %s: %s" % (what, folder, exc.strerror or exc))

    def clean_output(self, folder, names=None) -> None:
        """Remove the temporary files a killed run left in ``folder`` (only those of the files
        ``names``, when given), and say how many."""
        removed = fsutil.remove_stray_temps(folder, only=names)
        if removed:
            self.info("removed %d temporary files left by an interrupted run" % removed)

    def progress(self, total: int, smoothing: float = 0.05):
        """Start the tqdm bar over ``total`` items (hidden with ``quiet``) and return it."""
        from tqdm import tqdm

        self.bar = tqdm(total=total, unit="img", file=sys.stderr, disable=True if self.quiet else None,
                        dynamic_ncols=True, smoothing=smoothing)
        return self.bar

    def fail(self, item, reason: str) -> None:
        """Count ``item`` as failed for ``reason`` and name it in one stderr line."""
        self.tally.fail(item, reason, progress=self.bar if self.bar is not None and not self.bar.disable
                        else None)

    def error(self, message: str) -> None:
        """Close the bar and print ``error: message``: a problem that ends the run midway."""
        self.close()
        print("error: " + message, file=sys.stderr)

    def close(self) -> None:
        """Close the progress bar (idempotent), so later lines start on a clean line."""
        if self.bar is not None:
            self.bar.close()

    def summary(self, order, rate_of: str, always: bool = False) -> None:
        """Close the bar and print the closing line (unless quiet; ``always``: even then): counts
        in ``order``, top failure reasons, elapsed time and ``rate_of`` items per second."""
        self.close()
        if always or not self.quiet:
            print(self.tally.summary(order, rate_of), file=sys.stderr)
