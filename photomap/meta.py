"""The .meta log: one ``<md5>\\t<path>`` line per photo, written and read only here.

Format (UTF-8, one record per line, ``\\n``-terminated):

* ``<32 lowercase hex md5>\\t<escaped original path>`` -- the thumbnail is ``<output>/<md5>.jpg``;
  the md5 is that of the source file's bytes, so byte-identical copies share one thumbnail.
* ``# error\\t<escaped path>\\t<reason>`` -- the file could not be made into a thumbnail.
* any other line starting with ``#`` is a comment.

Escaping keeps one record on one line and makes every path round-trip exactly:
backslash -> ``\\\\``, tab -> ``\\t``, newline -> ``\\n``, carriage return -> ``\\r``, and a byte that is
not valid UTF-8 (Linux file names are bytes) -> ``\\xNN``. A last line without its ``\\n`` (cut short by a
kill) and any malformed line are ignored by the reader, never a crash.
"""
import re
from dataclasses import dataclass, field

THUMB_EXT = ".jpg"
_MD5 = re.compile(r"[0-9a-f]{32}")
_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}
_UNESCAPES = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r"}
_UNESCAPE_RE = re.compile(r"\\(x[0-9a-fA-F]{2}|.)", re.S)
# Appended by a resumed run when the old log ends mid-line: two tabs make the cut fragment a line
# with too many fields, so the reader drops it instead of reading a truncated path as real.
CUT_MARKER = "\t\t# cut short by an interrupted run\n"


_NEEDS_ESCAPE = re.compile("[\\\\\t\n\r\udc80-\udcff]")


def escape_path(path: str) -> str:
    """Return ``path`` (as from ``os.fsdecode``) as one line-safe string; see the module docstring."""
    if not _NEEDS_ESCAPE.search(path):  # nearly every path: returned as is, without a loop per character
        return path
    out = []
    for ch in path:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif "\udc80" <= ch <= "\udcff":  # surrogateescape'd undecodable byte
            out.append("\\x%02x" % (ord(ch) - 0xDC00))
        else:
            out.append(ch)
    return "".join(out)


def unescape_path(text: str) -> str:
    """Invert :func:`escape_path`; raises ``ValueError`` on an unknown escape."""
    def repl(m):
        seq = m.group(1)
        if seq[0] == "x" and len(seq) == 3:
            return chr(0xDC00 + int(seq[1:], 16))
        if seq in _UNESCAPES:
            return _UNESCAPES[seq]
        raise ValueError("unknown escape \\" + seq)
    return _UNESCAPE_RE.sub(repl, text)


def _clean_reason(reason: str) -> str:
    text = " ".join(str(reason).split()) or "unknown error"
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def format_entry(md5: str, path: str) -> str:
    """One record line (with its ``\\n``) saying ``path`` has thumbnail ``<md5>.jpg``."""
    if not _MD5.fullmatch(md5):
        raise ValueError("not a lowercase hex md5: %r" % md5)
    return "%s\t%s\n" % (md5, escape_path(path))


def format_error(path: str, reason: str) -> str:
    """One ``# error`` line (with its ``\\n``) recording that ``path`` failed for ``reason``."""
    return "# error\t%s\t%s\n" % (escape_path(path), _clean_reason(reason))


def thumb_name(md5: str) -> str:
    """File name of the thumbnail of ``md5`` inside the thumbnail folder."""
    return md5 + THUMB_EXT


@dataclass
class MetaLog:
    """What a .meta file says: ``entries`` maps path -> md5; ``errors`` maps path -> reason
    for paths that failed and never succeeded later; ``malformed`` counts ignored lines."""
    entries: dict = field(default_factory=dict)
    errors: dict = field(default_factory=dict)
    malformed: int = 0
    ends_mid_line: bool = False

    def by_md5(self) -> dict:
        """md5 -> list of original paths, in the order they were logged."""
        groups = {}
        for path, md5 in self.entries.items():
            groups.setdefault(md5, []).append(path)
        return groups


def parse_lines(lines, log=None) -> MetaLog:
    """Fold complete text lines (each ending in ``\\n``) into a :class:`MetaLog`."""
    log = log or MetaLog()
    for line in lines:
        if not line.endswith("\n"):
            log.ends_mid_line = True  # cut short by a kill: ignore
            continue
        line = line[:-1]
        if line.endswith("\r"):
            line = line[:-1]
        if not line:
            continue
        try:
            if line.startswith("#"):
                parts = line.split("\t")
                if parts[0] == "# error" and len(parts) == 3:
                    path = unescape_path(parts[1])
                    if path not in log.entries:
                        log.errors[path] = parts[2]
                continue
            md5, sep, rest = line.partition("\t")
            if not sep or "\t" in rest or not _MD5.fullmatch(md5) or not rest:
                raise ValueError(line)
            path = unescape_path(rest)
        except ValueError:
            log.malformed += 1
            continue
        log.entries[path] = md5
        log.errors.pop(path, None)
    return log


def read_meta(path) -> MetaLog:
    """Read a .meta file; a missing file raises ``FileNotFoundError``."""
    with open(path, "rb") as f:  # split on b"\n" only: a stray "\r" is never a line break
        return parse_lines(raw.decode("utf-8", "surrogateescape") for raw in f)
