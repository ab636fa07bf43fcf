"""What a photo says about itself: when it was taken, by which camera, and where (EXIF), read from an
image already opened for its thumbnail, so the original is never read twice."""
import datetime
import math
import re
import warnings
from dataclasses import dataclass
from typing import Optional

# EXIF tags (https://exiftool.org/TagNames/EXIF.html): IFD0 holds DateTime, Make and Model; the Exif
# sub-IFD holds DateTimeOriginal and the offsets from UTC; the GPS sub-IFD holds the position.
_EXIF_IFD, _GPS_IFD = 0x8769, 0x8825
_MAKE, _MODEL, _DATETIME = 0x010F, 0x0110, 0x0132
_DATETIME_ORIGINAL, _OFFSET_TIME, _OFFSET_TIME_ORIGINAL = 0x9003, 0x9010, 0x9011
_GPS_LAT_REF, _GPS_LAT, _GPS_LON_REF, _GPS_LON = 1, 2, 3, 4

# Where ``taken`` came from; "" = unknown (the photo's own date tag is there but not a date).
FROM_ORIGINAL = "exif:DateTimeOriginal"   # the moment the shutter was pressed
FROM_DATETIME = "exif:DateTime"           # when the file was made or last edited by the camera/software
FROM_MTIME = "mtime"                      # the file's modification time: the photo carries no date
SOURCES = (FROM_ORIGINAL, FROM_DATETIME, FROM_MTIME, "")

# Photography began in the 1820s: an earlier year is a camera clock that was never set.
_FIRST_YEAR = 1826
_DATE = re.compile(r"(\d{4})[:\-/.](\d{1,2})[:\-/.](\d{1,2})(?:[ T]+(\d{1,2})[:.](\d{1,2})(?:[:.](\d{1,2}))?)?")
_OFFSET = re.compile(r"([+-])(\d{2}):(\d{2})")
_TEXT_MAX = 100


@dataclass(frozen=True)
class PhotoInfo:
    """One photo's facts. ``taken``: ISO 8601 (``2014-06-01T12:03:04``, with ``+02:00`` when the
    photo or the clock says its offset), "" when unknown; ``taken_source``: one of :data:`SOURCES`;
    ``make``/``model``: the camera's words, "" when absent; ``lat``/``lon``: degrees (WGS 84,
    south and west negative) or ``None``. GPS is private: see :mod:`photomap.infolog`."""
    taken: str = ""
    taken_source: str = ""
    make: str = ""
    model: str = ""
    lat: Optional[float] = None
    lon: Optional[float] = None

    @property
    def year(self) -> Optional[int]:
        """The year taken, or ``None`` when unknown."""
        return int(self.taken[:4]) if self.taken else None


def _text(value) -> str:
    """An EXIF ASCII value (str, bytes or junk) as one clean line: NULs and control characters
    dropped, whitespace collapsed, at most 100 characters."""
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if not isinstance(value, str):
        return ""
    value = "".join(c if c.isprintable() else " " for c in value.replace("\x00", " "))
    return " ".join(value.split())[:_TEXT_MAX]


def parse_exif_date(value, offset=None) -> Optional[str]:
    """An EXIF date-time (``"2014:06:01 12:03:04"``; ``-``, ``/`` or ``.`` separators, seconds or
    the time itself missing, trailing sub-seconds or junk tolerated) -> ISO 8601 text, with the
    EXIF ``offset`` (``"+02:00"``) appended when that is valid. ``None`` for anything that is not
    a real date: blanks, ``"0000:00:00 00:00:00"``, month 13, a year before photography, garbage."""
    match = _DATE.match(_text(value))
    if not match:
        return None
    y, mo, d, h, mi, s = (int(g) if g is not None else None for g in match.groups())
    try:
        if h is None:
            date = datetime.date(y, mo, d)
            return date.isoformat() if y >= _FIRST_YEAR else None
        when = datetime.datetime(y, mo, d, h, mi, s or 0)
    except ValueError:  # month 0, day 31 of April, hour 25...
        return None
    if y < _FIRST_YEAR:
        return None
    text = when.isoformat()
    off = _OFFSET.fullmatch(_text(offset))
    if off and int(off.group(2)) <= 14 and int(off.group(3)) < 60:
        text += off.group(0)
    return text


def _degrees(value, ref) -> Optional[float]:
    """A GPS coordinate (degrees, minutes, seconds as rationals, or one number) and its N/S/E/W
    reference -> signed degrees, or ``None`` when it is not a finite number."""
    try:
        parts = [float(v) for v in value] if isinstance(value, (tuple, list)) else [float(value)]
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    if not parts or len(parts) > 3 or not all(math.isfinite(p) for p in parts):
        return None
    deg = sum(p / 60 ** i for i, p in enumerate(parts))
    return -deg if _text(ref).upper()[:1] in ("S", "W") else deg


def _position(gps):
    lat = _degrees(gps.get(_GPS_LAT), gps.get(_GPS_LAT_REF)) if _GPS_LAT in gps else None
    lon = _degrees(gps.get(_GPS_LON), gps.get(_GPS_LON_REF)) if _GPS_LON in gps else None
    if lat is None or lon is None or abs(lat) > 90 or abs(lon) > 180:
        return None, None
    if lat == 0 and lon == 0:  # what receivers without a fix write; nobody photographs there
        return None, None
    return round(lat, 6), round(lon, 6)  # 6 decimals = 0.1 m: more is noise


def mtime_text(mtime) -> str:
    """A file modification time (seconds since the epoch) as local ISO 8601 with its offset."""
    return datetime.datetime.fromtimestamp(mtime).astimezone().isoformat(timespec="seconds")


def _header_exif(img):
    """The image's EXIF block as far as its header holds it, without decoding pixels (a PNG keeps
    its eXIf chunk after the pixels only rarely; Pillow would decode the whole image to find it)."""
    if img.format == "PNG" and "exif" not in img.info:
        return None
    return img.getexif()


def photo_info(img, mtime=None) -> PhotoInfo:
    """An opened PIL image (pixels not needed; ``None``: no image) and its file's modification time
    -> :class:`PhotoInfo`.

    The date is EXIF DateTimeOriginal, else EXIF DateTime, else ``mtime`` (``taken_source``
    says which). A date tag that is present but not a date ("0000:00:00 00:00:00", garbage) makes
    the date unknown rather than the file's mtime: such a camera's clock was not set, and the
    copy's mtime says nothing better. Never raises: a broken EXIF block gives what could be read.
    """
    try:
        with warnings.catch_warnings():  # Pillow warns "Corrupt EXIF data" on stderr for each such photo
            warnings.simplefilter("ignore")
            exif = _header_exif(img) if img is not None else None
    except Exception:  # noqa: BLE001 - a corrupt EXIF block is not worth losing the photo
        exif = None
    if exif is None:
        exif = {}
    try:
        sub = exif.get_ifd(_EXIF_IFD) if exif else {}
    except Exception:  # noqa: BLE001
        sub = {}
    try:
        gps = exif.get_ifd(_GPS_IFD) if exif else {}
    except Exception:  # noqa: BLE001
        gps = {}
    taken, source = "", ""
    candidates = ((sub.get(_DATETIME_ORIGINAL), sub.get(_OFFSET_TIME_ORIGINAL), FROM_ORIGINAL),
                  (exif.get(_DATETIME), sub.get(_OFFSET_TIME), FROM_DATETIME))
    present = False
    for value, offset, name in candidates:
        if not _text(value):  # absent or empty: the next source decides
            continue
        present = True
        text = parse_exif_date(value, offset)
        if text:
            taken, source = text, name
            break
    if not present and mtime is not None:
        try:
            taken, source = mtime_text(mtime), FROM_MTIME
        except (OverflowError, OSError, ValueError):
            pass
    lat, lon = _position(gps)
    return PhotoInfo(taken, source, _text(exif.get(_MAKE)), _text(exif.get(_MODEL)), lat, lon)


def info_from_bytes(data, mtime=None) -> PhotoInfo:
    """The :class:`PhotoInfo` of a photo's bytes already in memory, from its header alone (no pixels
    decoded); bytes that cannot be opened as an image give only their ``mtime``."""
    from . import image

    try:
        with image.opened(data, 0) as img:  # the header only: no pixel limit to apply
            return photo_info(img, mtime)
    except Exception:  # noqa: BLE001 - keep what the file system says
        return photo_info(None, mtime)
