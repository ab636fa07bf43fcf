"""The coordinates CSV beside the page (``<page stem>.coords.csv``), written and read only here.

Written as ``md5,x,y,path`` (one row per photo, ``repr`` floats, so a value read back is the value
written). Read back as the *previous map* of a later run, whatever wrote it: this version, an older
or newer one with more columns (``cluster``, ``taken``...), a spreadsheet (``;`` and decimal commas,
a byte-order mark), a hand edit or a run killed mid-write. Rows that cannot be read are counted,
never raised: their photos are simply placed as new.
"""
import csv
import io
import math
import re
from dataclasses import dataclass, field

from .fsutil import atomic_write

HEADER = ["md5", "x", "y", "path"]
_MD5 = re.compile(r"^[0-9a-f]{32}$")
_DELIMITERS = (",", ";", "\t")
_LARGEST = 1e100  # beyond this a coordinate is an editing slip, and its square would overflow


def csv_text(md5s, coords, first_paths) -> str:
    """The CSV text: ``HEADER`` then one row per photo (``coords[i]`` is ``(x, y)`` of ``md5s[i]``)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(HEADER)
    for md5, (x, y), path in zip(md5s, coords, first_paths):
        w.writerow([md5, repr(float(x)), repr(float(y)), path])
    return buf.getvalue()


def write(csv_path, md5s, coords, first_paths, only_if_changed=False) -> None:
    """Write the CSV atomically (skipped when ``only_if_changed`` and the file already says the same)."""
    text = csv_text(md5s, coords, first_paths)
    if only_if_changed:
        try:
            with open(csv_path, newline="", encoding="utf-8") as f:
                if f.read() == text:
                    return
        except (OSError, UnicodeDecodeError):
            pass
    with atomic_write(csv_path, "w") as f:
        f.write(text)


@dataclass
class PreviousMap:
    """What a coordinates CSV says: ``xy`` maps md5 -> ``(x, y)`` for every row that could be read;
    ``bad_rows`` counts the rows that could not (bad md5, bad or missing number, repeated md5, the
    last row of a file cut short); ``problem`` says why nothing at all could be read ('' if it could)."""
    xy: dict = field(default_factory=dict)
    bad_rows: int = 0
    problem: str = ""


def read_previous(csv_path):
    """The :class:`PreviousMap` in ``csv_path``, or None when there is no such file.

    Columns are found by name (``md5``, ``x``, ``y``, any case, any order, other columns ignored);
    a file without a header row is read as ``md5,x,y,...``. Never raises on content."""
    try:
        with open(csv_path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        return PreviousMap(problem="cannot read it (%s)" % (exc.strerror or exc))
    text = raw.decode("utf-8", errors="replace").lstrip("\ufeff").replace("\0", "")
    # One record per line: the writer escapes newlines in paths (report.printable), and reading
    # line by line means a quote left open by a hand edit costs that row only.
    lines = [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]
    while lines and not lines[0].strip():
        lines.pop(0)
    if not lines:
        return PreviousMap(problem="it is empty")
    delimiter, columns, width, body = _layout(lines)
    if columns is None:
        return PreviousMap(problem="it has no md5, x and y columns")
    # The writer ends every row with a newline: a last row without one that is also short of fields
    # was cut by a kill, maybe inside a number.
    cut = not text.endswith("\n")
    out = PreviousMap()
    for n, line in enumerate(body):
        if not line.strip():
            continue
        row = next(csv.reader([line], delimiter=delimiter), [])
        parsed = _parse(row, columns, decimal_comma=delimiter != ",")
        if parsed is None or parsed[0] in out.xy or (cut and n == len(body) - 1 and len(row) < width):
            out.bad_rows += 1
        else:
            out.xy[parsed[0]] = parsed[1]
    return out


def _layout(lines):
    """``(delimiter, (md5, x, y) column indices or None, fields per row, data lines)``."""
    for delimiter in _DELIMITERS:
        names = [c.strip().lower() for c in next(csv.reader([lines[0]], delimiter=delimiter), [])]
        if all(k in names for k in ("md5", "x", "y")):
            return delimiter, tuple(names.index(k) for k in ("md5", "x", "y")), len(names), lines[1:]
    for delimiter in _DELIMITERS:  # no header: rows of md5, x, y like the ones this module writes
        row = next(csv.reader([lines[0]], delimiter=delimiter), [])
        if _parse(row, (0, 1, 2), decimal_comma=delimiter != ",") is not None:
            return delimiter, (0, 1, 2), len(row), lines
    return ",", None, 0, lines


def _parse(row, columns, decimal_comma):
    """``(md5, (x, y))`` from ``row``, or None when the md5 or a number is missing or bad."""
    i_md5, i_x, i_y = columns
    if len(row) <= max(columns):
        return None
    md5 = row[i_md5].strip().lower()
    if not _MD5.match(md5):
        return None
    try:
        xy = tuple(float(row[i].strip().replace(",", ".") if decimal_comma else row[i].strip())
                   for i in (i_x, i_y))
    except ValueError:
        return None
    if not all(math.isfinite(v) and abs(v) < _LARGEST for v in xy):
        return None
    return md5, xy
