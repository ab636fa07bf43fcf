"""Reading a photo, the same way in every stage: open (HEIF too), the pixel limit from the header,
EXIF orientation, any mode to RGB (transparency on white, 16-bit scaled), and the reasons for bad files."""
import functools
import io
import os
from contextlib import contextmanager

from .report import one_line

WHITE = (255, 255, 255)
# EXIF tag 0x0112 (Orientation): how the stored pixels must be turned or mirrored to show upright.
ORIENTATION_TAG = 0x0112
_UPRIGHT = {  # orientation -> PIL transpose method, the table of PIL.ImageOps.exif_transpose
    2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE",
    6: "ROTATE_270", 7: "TRANSVERSE", 8: "ROTATE_90",
}


class EmptyFile(Exception):
    """A zero-byte file: it gets its own reason ("empty file")."""


class TooLarge(Exception):
    """More pixels than the caller's limit, known from the header alone (nothing was decoded)."""

    def __init__(self, pixels: int, limit: int):
        super().__init__("too large: %s > %g MP limit (--max-pixels)" % (_megapixels(pixels), limit / 1e6))


def _megapixels(n):
    return "%.1f MP" % (n / 1e6) if n >= 1e5 else "%g MP" % (n / 1e6)


@functools.lru_cache(maxsize=None)
def register_heif() -> bool:
    """Let Pillow open HEIC/HEIF (iPhone photos) through pillow-heif, once per process. Returns
    whether it could: without pillow-heif such files are "not an image"."""
    try:
        import pillow_heif
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    return True


@contextmanager
def opened(source, max_pixels=None):
    """Yield the PIL image of ``source`` (a path, or a file's bytes) with only its header read.

    ``max_pixels``: ``None`` keeps Pillow's own decompression-bomb guard; a number replaces it, for
    as long as the image is open, by this check of width x height from the header (:class:`TooLarge`;
    0 means no limit). Pillow's guard is a process-wide setting: it is put back on leaving, so
    nothing else in the process sees it changed (images are opened one at a time per process).
    Raises :class:`EmptyFile`, ``OSError`` and Pillow's errors for bad input.
    """
    from PIL import Image

    register_heif()
    guard = Image.MAX_IMAGE_PIXELS
    if max_pixels is not None:
        Image.MAX_IMAGE_PIXELS = None
    try:
        if isinstance(source, (bytes, bytearray)):
            stream, size = io.BytesIO(source), len(source)
        else:
            stream = open(source, "rb")
            size = os.fstat(stream.fileno()).st_size
        with stream:
            if size == 0:
                raise EmptyFile()
            with Image.open(stream) as img:
                pixels = img.width * img.height
                if max_pixels and pixels > max_pixels:
                    raise TooLarge(pixels, max_pixels)
                yield img
    finally:
        Image.MAX_IMAGE_PIXELS = guard


def orientation(img):
    """The EXIF orientation of an opened image (1..8, as :func:`upright` takes it); 1 when absent or
    unreadable (a broken EXIF block is not worth a failure). Read it before converting the image:
    conversions drop the tags."""
    try:
        return img.getexif().get(ORIENTATION_TAG, 1)
    except Exception:  # noqa: BLE001 - any EXIF parsing failure
        return 1


def upright(img, turn):
    """``img`` turned or mirrored as its EXIF orientation ``turn`` says (at any size: applied to a
    thumbnail, it gives the thumbnail of the upright photo)."""
    from PIL import Image

    method = _UPRIGHT.get(turn)
    return img.transpose(getattr(Image.Transpose, method)) if method is not None else img


def has_alpha(img) -> bool:
    """Whether ``img`` carries transparency (an alpha band, or a transparent palette/colour)."""
    return img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info


def resizable(img):
    """``img`` in a mode that resizing handles well: palette and 1-bit images (nearest-neighbour
    only) become RGB, or RGBA when transparent; 16/32-bit and float images are scaled to 8-bit
    grey. Every other mode is returned as it is (still undecoded, so a JPEG can use ``draft``)."""
    if img.mode in ("P", "PA", "1") or "transparency" in img.info:
        return img.convert("RGBA" if has_alpha(img) else "RGB")
    if img.mode.startswith("I") or img.mode == "F":
        return to_8bit(img)
    return img


def to_8bit(img):
    """A 16/32-bit integer or float single-channel image scaled (not clipped) to mode "L"."""
    import numpy as np
    from PIL import Image

    arr = np.asarray(img)
    if img.mode.startswith("I;16"):
        arr = arr.astype(np.float32) / 257.0
    elif img.mode == "I" and arr.size and arr.min() >= 0 and arr.max() <= 65535:
        arr = arr.astype(np.float32) / 257.0  # 16-bit samples in a 32-bit container
    elif img.mode == "F" and arr.size and arr.min() >= 0 and arr.max() <= 1:
        arr = arr.astype(np.float32) * 255.0
    else:  # anything else: stretch its own range
        arr = arr.astype(np.float64)
        lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
        arr = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else arr * 0
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "L")


def flatten(img):
    """An image from :func:`resizable` (or any 8-bit mode) -> RGB: transparency is composited on
    white; CMYK, grey, YCbCr and the rest are converted."""
    from PIL import Image

    if img.mode == "RGB":
        return img
    if has_alpha(img):
        rgba = img.convert("RGBA")
        out = Image.new("RGB", rgba.size, WHITE)
        out.paste(rgba, mask=rgba.getchannel("A"))
        return out
    return img.convert("RGB")


def to_rgb(img):
    """Any mode -> RGB, as every stage sees it: :func:`resizable`, then :func:`flatten`."""
    return flatten(resizable(img))


def read_rgb(source, max_pixels=None):
    """The whole image at ``source`` (a path or bytes), decoded, as an upright RGB PIL image.
    Animated images give their first frame. Raises on bad input (:func:`error_reason` names it)."""
    with opened(source, max_pixels) as img:
        img.load()
        turn = orientation(img)
        return upright(to_rgb(img), turn)


def error_reason(exc) -> str:
    """A short, fixed reason for an exception raised while reading or decoding one image
    (both stages use it, so the same bad file is named the same way in each)."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(exc, TooLarge):
        return str(exc)
    if isinstance(exc, FileNotFoundError):
        return "missing file"
    if isinstance(exc, IsADirectoryError):
        return "is a folder, not a file"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, EmptyFile):
        return "empty file"
    if isinstance(exc, UnidentifiedImageError):
        return "not an image (cannot identify image file)"
    if isinstance(exc, Image.DecompressionBombError):
        return "too many pixels (decompression bomb guard)"
    if isinstance(exc, MemoryError):
        return "out of memory while decoding"
    text = one_line(exc)
    if "truncated" in text.lower() or isinstance(exc, EOFError):
        return "truncated image"
    return "cannot decode: %s%s" % (type(exc).__name__, " (" + text[:120] + ")" if text else "")
