"""The photo-info sidecar ``<thumbnail folder>.info`` (date taken, camera, GPS), written and read only
here. It sits beside the thumbnail folder as the .meta log usually does (``output/torch_thumbs.info``
next to ``output/torch_thumbs.meta``), so the folder keeps holding thumbnails only.

Format (UTF-8, tab-separated, one record per line, ``\\n``-terminated, append-only):

* the first line names the columns: ``md5 taken taken_source make model lat lon``; a later version
  may add columns at the end, and the reader takes them by name;
* then one line per distinct photo (the md5 of its bytes, as in the .meta log): ``taken`` ISO 8601
  or empty, ``taken_source`` one of :data:`photomap.exif.SOURCES`, camera ``make``/``model``
  escaped as .meta paths are, ``lat``/``lon`` in degrees or both empty.

Like the .meta log: each line is one ``write``; a last line cut short by a kill is ignored (and a
resumed run first turns it into a malformed line); a malformed line is ignored, never a crash; an md5
is written once (the first line wins). GPS positions are private (a family's home): they are recorded
here, but nothing puts them into a page or its files unless the person asks for it.
"""
import os
import re
from dataclasses import dataclass, field

from . import fsutil
from .exif import PhotoInfo
from .meta import escape_path, unescape_path

SUFFIX = ".info"
COLUMNS = ("md5", "taken", "taken_source", "make", "model", "lat", "lon")
HEADER = "\t".join(COLUMNS) + "\n"
# More tabs than a record has fields: appended to a cut fragment, it can only make it malformed.
CUT_MARKER = "\t" * len(COLUMNS) + "# cut short by an interrupted run\n"
_MD5 = re.compile(r"[0-9a-f]{32}")


def info_path(thumbs_dir) -> str:
    """Where the sidecar of the thumbnail folder ``thumbs_dir`` lives: ``output/torch_thumbs/`` ->
    ``output/torch_thumbs.info``."""
    return os.path.abspath(os.fspath(thumbs_dir)) + SUFFIX


def format_line(md5: str, info: PhotoInfo) -> str:
    """One record line (with its ``\\n``) for the photo ``md5``."""
    if not _MD5.fullmatch(md5):
        raise ValueError("not a lowercase hex md5: %r" % md5)
    has_gps = info.lat is not None and info.lon is not None
    fields = (md5, info.taken, info.taken_source, escape_path(info.make), escape_path(info.model),
              "%.6f" % info.lat if has_gps else "", "%.6f" % info.lon if has_gps else "")
    return "\t".join(fields) + "\n"


@dataclass
class InfoTable:
    """What a sidecar says: ``by_md5`` maps md5 -> :class:`PhotoInfo`; ``malformed`` counts the
    lines ignored; ``ends_mid_line`` tells that the last line was cut short; ``header`` is False
    when the file does not start with a column line (then the columns of this version are assumed)."""
    by_md5: dict = field(default_factory=dict)
    malformed: int = 0
    ends_mid_line: bool = False
    header: bool = True


def _record(fields, index):
    md5 = fields[index["md5"]]
    if not _MD5.fullmatch(md5):
        raise ValueError("bad md5")
    get = lambda name: fields[index[name]] if name in index else ""  # noqa: E731
    lat, lon = get("lat"), get("lon")
    if bool(lat) != bool(lon):
        raise ValueError("half a position")
    taken = get("taken")
    if taken and not re.fullmatch(r"\d{4}-\d{2}-\d{2}\S*", taken):
        raise ValueError("bad date")
    return md5, PhotoInfo(taken, get("taken_source"), unescape_path(get("make")),
                          unescape_path(get("model")), float(lat) if lat else None,
                          float(lon) if lon else None)


def parse_lines(lines) -> InfoTable:
    """Fold text lines (each ending in ``\\n``; a last one without is cut) into an :class:`InfoTable`."""
    table = InfoTable()
    index = None
    for n, line in enumerate(lines):
        if not line.endswith("\n"):
            table.ends_mid_line = True
            continue
        fields = line[:-1].split("\t")
        if n == 0:
            if fields[0] == "md5":
                index = {name: i for i, name in enumerate(fields)}
                if "taken" not in index:
                    index = None
                continue
            table.header = False
        if index is None:
            index = {name: i for i, name in enumerate(COLUMNS)}
        try:
            if len(fields) != len(index):
                raise ValueError("wrong number of fields")
            md5, info = _record(fields, index)
        except (ValueError, KeyError):
            if line.strip():
                table.malformed += 1
            continue
        table.by_md5.setdefault(md5, info)
    return table


def read_info(thumbs_dir) -> InfoTable:
    """Read the sidecar of ``thumbs_dir``; raises ``FileNotFoundError`` when there is none."""
    with open(info_path(thumbs_dir), "rb") as f:
        return parse_lines(raw.decode("utf-8", "surrogateescape") for raw in f)


class InfoWriter:
    """Appends records to the sidecar of ``thumbs_dir``, each md5 once.

    Opening reads what is recorded (``known``), creates the file with its column line when there is
    none, and neutralises a last line cut by a kill. Raises ``OSError`` when the file cannot be read
    or written, ``ValueError`` when it was written with other columns (a newer version).
    """

    def __init__(self, thumbs_dir):
        self.path = info_path(thumbs_dir)
        self._remove_stray_temps()
        try:
            table = read_info(thumbs_dir)
        except FileNotFoundError:
            table = None
        if table is None or os.path.getsize(self.path) == 0:
            with fsutil.atomic_write(self.path) as f:
                f.write(HEADER.encode("utf-8"))
            table = InfoTable()
        elif not table.header or self._first_line() != HEADER:
            raise ValueError("%s was not written by this version of photomap (its first line is not %r)"
                             % (self.path, HEADER.strip()))
        self.known = set(table.by_md5)
        self.added = 0
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        if table.ends_mid_line:
            self._write(CUT_MARKER)

    def _remove_stray_temps(self) -> None:
        """Remove what a kill while creating the file left (only this file's temporaries)."""
        folder, name = os.path.split(self.path)
        for other in os.listdir(folder):
            if other.startswith(fsutil.TMP_PREFIX + name + "."):
                try:
                    os.unlink(os.path.join(folder, other))
                except OSError:
                    pass

    def _first_line(self) -> str:
        with open(self.path, encoding="utf-8", errors="surrogateescape") as f:
            return f.readline()

    def _write(self, text: str) -> None:
        """Append ``text``; an ``OSError`` says which file could not be written and why."""
        data = text.encode("utf-8", "surrogateescape")
        try:
            while data:  # one write for a line this short; the loop only guards a partial write
                data = data[os.write(self._fd, data):]
        except OSError as exc:
            raise OSError(exc.errno, "cannot write %s: %s" % (self.path, exc.strerror or exc)) from None

    def add(self, md5: str, info: PhotoInfo) -> bool:
        """Append the record of ``md5`` unless it is already there; True when written."""
        if md5 in self.known:
            return False
        self._write(format_line(md5, info))
        self.known.add(md5)
        self.added += 1
        return True

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def taken_columns(table, md5):
    """``(taken, taken_source)`` of ``md5`` for the coordinates CSV; ``("", "")`` when unknown.
    ``table`` is an :class:`InfoTable` or ``None`` (no sidecar)."""
    info = table.by_md5.get(md5) if table is not None else None
    return (info.taken, info.taken_source) if info is not None else ("", "")
