"""Command-line plumbing shared by the three entry points: a parser whose mistakes become one
``error: ...`` line (no usage dump), and number types with clear messages."""
import argparse
import os
import sys


class UsageError(Exception):
    """A bad flag or value; ``str()`` is the message for ``report.fatal``."""


class Parser(argparse.ArgumentParser):
    """``ArgumentParser`` that keeps the docstring's layout and raises :class:`UsageError`."""

    def __init__(self, **kwargs):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(**kwargs)

    def error(self, message):  # one "error: ..." line instead of usage + message
        raise UsageError(message)


def count(minimum):
    """An argparse type: a whole number of at least ``minimum``."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError("not a whole number: %r" % text) from None
        if value < minimum:
            raise argparse.ArgumentTypeError("must be at least %d, not %d" % (minimum, value))
        return value
    return parse


def exit_now(status: int):
    """Flush stdout and stderr, then end the process with ``status``, skipping Python's teardown.

    For the entry points that import torch or umap: tearing down their ~2,000 modules at interpreter
    exit takes 0.5-1 s on its own. Call it only after ``main`` returned, when every file is
    closed and in place and every worker process has been joined.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
