"""Stage 1: crawl a photo tree, make one JPEG thumbnail per distinct file, print .meta lines."""
import hashlib
import io
import multiprocessing
import os
import signal
import sys

from . import exif, fsutil, infolog, meta, report
from .report import SetupError, Tally, printable

STAGE = "process_photos"
DEFAULT_EXTENSIONS = ("jpg", "jpeg", "png", "gif", "bmp", "tif", "tiff", "webp", "heic", "heif")
DEFAULT_SIZE = 224
DEFAULT_MAX_PIXELS = 200_000_000
JPEG_QUALITY = 90
WHITE = (255, 255, 255)

# Worker outcomes: a new thumbnail was written, one with this md5 was already in place,
# the input is bad (recorded as a "# error" line), or the thumbnail could not be written (fatal).
NEW, EXISTS, FAILED, OUTPUT_ERROR = "new", "exists", "failed", "output error"

# EXIF tag 0x0112 (Orientation): how the stored pixels must be turned or mirrored to show upright.
_ORIENTATION_TAG = 0x0112


def normalize_extensions(values) -> frozenset:
    """``["JPG", ".png", "tif,tiff"]`` -> ``{"jpg", "png", "tif", "tiff"}`` (lowercase, no dots)."""
    exts = set()
    for value in values:
        for part in str(value).split(","):
            part = part.strip().lower().lstrip(".")
            if part:
                exts.add(part)
    return frozenset(exts)


def _dir_key(st):
    return (st.st_dev, st.st_ino)


def crawl(root, extensions, exclude=(), on_error=None):
    """Yield the photo paths under ``root`` in a deterministic (sorted, depth-first) order.

    ``extensions`` is a set of lowercase suffixes without the dot, matched case-insensitively.
    Hidden files and folders (name starting with ".") are skipped, and so is any folder whose
    ``(st_dev, st_ino)`` is in ``exclude`` (the output folder). Symlinked folders are followed,
    but each real folder is entered once, so a symlink loop ends. ``on_error(path, reason)`` is
    called for a folder that cannot be listed.
    """
    exclude = set(exclude)
    visited = set()
    root = os.fspath(root)
    try:
        key = _dir_key(os.stat(root))
    except OSError as exc:
        if on_error:
            on_error(root, "cannot list folder: %s" % (exc.strerror or exc))
        return
    if key in exclude:
        return
    visited.add(key)
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            if on_error:
                on_error(folder, "cannot list folder: %s" % (exc.strerror or exc))
            continue
        subdirs = []
        for entry in entries:
            name = entry.name
            if name.startswith("."):
                continue
            try:
                is_dir = entry.is_dir()  # follows symlinks; False for a dangling or self-loop link
            except OSError:
                continue
            if is_dir:
                try:
                    key = _dir_key(entry.stat())
                except OSError:
                    continue
                if key in visited or key in exclude:
                    continue
                visited.add(key)
                subdirs.append(entry.path)
                continue
            dot = name.rfind(".")
            if dot <= 0 or name[dot + 1:].lower() not in extensions:
                continue
            try:
                if entry.is_file():
                    yield entry.path
            except OSError:
                continue
        # Depth-first in sorted order: push the subfolders reversed so the first one pops first.
        stack.extend(reversed(subdirs))


# ---------------------------------------------------------------- the per-file worker

_settings = {"out_dir": None, "size": DEFAULT_SIZE, "max_pixels": DEFAULT_MAX_PIXELS}


def init_worker(out_dir, size=DEFAULT_SIZE, max_pixels=DEFAULT_MAX_PIXELS, ignore_sigint=False):
    """Set up a worker process (or this process, for ``-j 1``) to make thumbnails."""
    from PIL import Image

    # Our own --max-pixels check runs on the header first; Pillow's bomb check would only
    # turn the same decision into an exception with a less useful message.
    Image.MAX_IMAGE_PIXELS = None
    try:
        import pillow_heif
        pillow_heif.register_heif_opener()
    except ImportError:  # HEIC/HEIF files then fail with "not an image"
        pass
    _settings.update(out_dir=os.fspath(out_dir), size=int(size), max_pixels=int(max_pixels or 0))
    if ignore_sigint:
        # Ctrl-C reaches the whole process group; only the parent handles it and stops the pool.
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _megapixels(n):
    return "%.1f MP" % (n / 1e6) if n >= 1e5 else "%g MP" % (n / 1e6)


def _to_8bit(img):
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


def _has_alpha(img):
    return img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info


def _flatten(img):
    """Any mode -> RGB; transparency is composited on white."""
    from PIL import Image

    if img.mode == "RGB":
        return img
    if _has_alpha(img):
        rgba = img.convert("RGBA")
        out = Image.new("RGB", rgba.size, WHITE)
        out.paste(rgba, mask=rgba.getchannel("A"))
        return out
    return img.convert("RGB")  # L, CMYK, YCbCr, LAB, HSV


def render_thumbnail(img, size):
    """An opened (not yet decoded) PIL image -> an upright RGB image that fits in size x size.

    A JPEG is decoded at a reduced DCT scale (``draft``); the long side becomes ``size`` and a
    smaller image is never upscaled. The EXIF orientation is applied last (the fit box is square,
    so shrinking first gives the same picture for less work).
    """
    from PIL import Image

    try:  # read before conversions drop the tags; a broken EXIF block is not worth a failure
        orientation = img.getexif().get(_ORIENTATION_TAG, 1)
    except Exception:  # noqa: BLE001
        orientation = 1
    # Modes that resize cannot handle well (palette -> nearest neighbour, 16-bit -> unsupported)
    # are converted at full size; everything else is reduced first, while still cheap to decode.
    if img.mode in ("P", "PA", "1") or "transparency" in img.info:
        img = img.convert("RGBA" if _has_alpha(img) else "RGB")
    elif img.mode.startswith("I") or img.mode == "F":
        img = _to_8bit(img)
    else:
        # Decode a JPEG at the smallest DCT scale (1/2..1/8) that still leaves at least twice the
        # final size, the same quality rule as Image.thumbnail's reducing_gap=2; thumbnail itself
        # asks for 2*size on *both* sides, which for a 4:3 photo means scale 1/4 instead of 1/8.
        scale = size / max(img.width, img.height)
        if scale < 1:
            img.draft(None, (max(1, int(2 * img.width * scale)), max(1, int(2 * img.height * scale))))
    img.thumbnail((size, size), Image.Resampling.LANCZOS)
    img = _flatten(img)
    method = {  # the table of PIL.ImageOps.exif_transpose, applied to the small image
        2: Image.Transpose.FLIP_LEFT_RIGHT,
        3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_270,
        7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_90,
    }.get(orientation)
    return img.transpose(method) if method is not None else img


def make_thumbnail(path, out_dir=None, size=None, max_pixels=None):
    """Make ``<out_dir>/<md5>.jpg`` for the photo at ``path``; never raises for bad input.

    Returns ``(status, md5, reason, info)``: status is NEW, EXISTS (a thumbnail of these bytes was
    already in place, so nothing was decoded), FAILED (bad input; md5 may be None) or
    OUTPUT_ERROR (the thumbnail could not be written). ``md5`` is that of the file's bytes;
    ``info`` its :class:`~photomap.exif.PhotoInfo` (date taken, camera, GPS) from the same read,
    ``None`` when FAILED. Defaults come from :func:`init_worker`.
    """
    from PIL import Image

    out_dir = _settings["out_dir"] if out_dir is None else os.fspath(out_dir)
    size = _settings["size"] if size is None else size
    max_pixels = _settings["max_pixels"] if max_pixels is None else max_pixels
    try:
        with open(path, "rb") as f:
            data = f.read()
            mtime = os.fstat(f.fileno()).st_mtime
    except FileNotFoundError:
        return FAILED, None, "vanished before it could be read", None
    except IsADirectoryError:
        return FAILED, None, "not a file", None
    except OSError as exc:
        return FAILED, None, "cannot read: %s" % (exc.strerror or exc), None
    if not data:
        return FAILED, None, "empty file", None
    md5 = hashlib.md5(data).hexdigest()
    dest = os.path.join(out_dir, meta.thumb_name(md5))
    try:
        if os.path.getsize(dest) > 0:  # written atomically, so complete
            return EXISTS, md5, None, exif.info_from_bytes(data, mtime)
    except OSError:
        pass
    try:
        with Image.open(io.BytesIO(data)) as img:
            pixels = img.width * img.height
            if max_pixels and pixels > max_pixels:
                return FAILED, md5, "too large: %s > %g MP limit (--max-pixels)" % (
                    _megapixels(pixels), max_pixels / 1e6), None
            info = exif.photo_info(img, mtime)
            thumb = render_thumbnail(img, size)
            buf = io.BytesIO()
            thumb.save(buf, "JPEG", quality=JPEG_QUALITY)
    except Exception as exc:  # noqa: BLE001 - any decoder failure (MemoryError too) is bad input
        return FAILED, md5, report.image_error_reason(exc), None
    try:
        with fsutil.atomic_write(dest) as f:
            f.write(buf.getvalue())
    except OSError as exc:
        return OUTPUT_ERROR, md5, "cannot write %s: %s" % (dest, exc.strerror or exc), None
    return NEW, md5, None, info


def _worker(path):
    return path, make_thumbnail(path)


# ---------------------------------------------------------------- the driver


def _line_writer(stream):
    """A function writing one whole line per call, flushed at once (one ``os.write`` when the
    stream has a real file descriptor, so a kill never leaves half a line)."""
    try:
        stream.flush()
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        def write(text):
            stream.write(text)
            stream.flush()
        return write

    def write(text):
        data = text.encode("utf-8")
        while data:
            data = data[os.write(fd, data):]
    return write


def default_jobs() -> int:
    """Number of cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def run(root=".", out_dir=None, size=DEFAULT_SIZE, file_list=None, extensions=DEFAULT_EXTENSIONS,
        jobs=None, quiet=False, verbose=False, retry_errors=False,
        max_pixels=DEFAULT_MAX_PIXELS, backfill_info=False) -> int:
    """Thumbnail every photo under ``root`` into ``out_dir`` and print its .meta line.

    ``file_list`` is the .meta of an earlier run: paths listed there are skipped without being
    opened (failed ones too, unless ``retry_errors``). Lines go to stdout as each thumbnail
    lands; progress, per-file failures and the summary go to stderr. Each new photo's date taken,
    camera and GPS go into ``<out_dir>.info`` (:mod:`photomap.infolog`) before its line;
    ``backfill_info`` first records them for listed photos that lack them, reading only those
    originals. Returns the exit status
    (0 completed, 130 interrupted, 1 output failure); raises :class:`SetupError` before any work
    for a missing ``root``, an unwritable ``out_dir`` or an unreadable ``file_list``.
    """
    from tqdm import tqdm

    stderr = sys.stderr
    jobs = jobs or default_jobs()
    extensions = normalize_extensions(extensions)

    def info(text):
        if not quiet:
            print("%s: %s" % (STAGE, text), file=stderr)

    # ---- everything that can be fatal, before any work
    if size < 1:
        raise SetupError("--size must be a positive number of pixels, not %d" % size)
    if jobs < 1:
        raise SetupError("--jobs must be at least 1, not %d" % jobs)
    if not extensions:
        raise SetupError("--extensions lists no extension")
    if not os.path.isdir(root):
        raise SetupError("photo folder %s %s" % (
            root, "is not a folder" if os.path.exists(root) else "does not exist"))
    if out_dir is None:
        raise SetupError("no thumbnail folder given (-o)")
    try:
        fsutil.check_writable_dir(out_dir)
    except OSError as exc:
        raise SetupError("cannot write to thumbnail folder %s: %s" % (out_dir, exc.strerror or exc))
    if backfill_info and file_list is None:
        raise SetupError("--backfill-info needs -l META: it fills in the photos that file lists")
    log = meta.MetaLog()
    fresh_note = None
    if file_list is not None:
        try:
            log = meta.read_meta(file_list)
        except FileNotFoundError:
            fresh_note = "%s not found: starting fresh" % file_list
        except OSError as exc:
            raise SetupError("cannot read file list %s: %s" % (file_list, exc.strerror or exc))
    try:
        info_log = infolog.InfoWriter(out_dir)
    except OSError as exc:
        raise SetupError("cannot write photo info file %s: %s" % (
            infolog.info_path(out_dir), exc.strerror or exc))
    except ValueError as exc:
        raise SetupError("cannot use photo info file: %s" % exc)
    write_line = _line_writer(sys.stdout)

    # ---- the run
    tally = Tally(STAGE)
    if fresh_note:
        print("%s: %s" % (STAGE, fresh_note), file=stderr)  # said even with -q: it changes what runs
    elif file_list is not None:
        info("resuming from %s: %d paths listed, %d failed before%s" % (
            file_list, len(log.entries), len(log.errors),
            ", %d malformed lines ignored" % log.malformed if log.malformed else ""))
    removed = fsutil.remove_stray_temps(out_dir)
    if removed:
        info("removed %d temporary files left by an interrupted run" % removed)
    if log.ends_mid_line:
        write_line(meta.CUT_MARKER)  # the old log's cut last line becomes malformed, not a path

    listed = set(log.entries)
    if not retry_errors:
        listed.update(log.errors)
    known_md5 = set(log.entries.values())
    out_key = _dir_key(os.stat(out_dir))
    status, finished = 0, False
    bar = pool = None
    try:
        if backfill_info:
            from .backfill import backfill
            backfill(log, info_log, jobs, (out_dir, size, max_pixels), quiet)
        todo = []
        for path in crawl(root, extensions, exclude={out_key}, on_error=tally.fail):
            if path in listed:
                tally.add("already listed")
            else:
                todo.append(path)
        info("%d photos to do under %s (%d already listed), %d jobs" % (
            len(todo), root, tally.counts["already listed"], jobs))
        bar = tqdm(total=len(todo), unit="img", file=stderr, disable=True if quiet else None,
                   dynamic_ncols=True, smoothing=0.05)
        if not todo:
            results = iter(())
        elif jobs == 1 or len(todo) == 1:
            init_worker(out_dir, size, max_pixels)
            results = map(_worker, todo)
        else:
            pool = multiprocessing.Pool(min(jobs, len(todo)), initializer=init_worker,
                                        initargs=(out_dir, size, max_pixels, True))
            # Small chunks keep the output flowing in order and lose little work to a kill.
            chunksize = max(1, min(4, len(todo) // (jobs * 64)))
            results = pool.imap(_worker, todo, chunksize)
        for path, (state, md5, reason, info) in results:
            bar.update(1)
            if state == OUTPUT_ERROR:
                bar.close()
                print("error: %s" % reason, file=stderr)
                status = 1
                break
            if state == FAILED:
                write_line(meta.format_error(path, reason))
                tally.fail(path, reason, progress=None if bar.disable else bar)
                continue
            info_log.add(md5, info)  # before the .meta line: a listed path is never redone
            write_line(meta.format_entry(md5, path))
            if md5 in known_md5:
                kind = "duplicates"
            else:
                kind = "new thumbnails" if state == NEW else "reused thumbnails"
                known_md5.add(md5)
            tally.add(kind)
            if verbose:
                label = {"duplicates": "duplicate"}.get(kind, kind.split()[0])
                bar.write("%s: %s %s %s" % (STAGE, label, md5, printable(path)), file=stderr)
        finished = True
    except KeyboardInterrupt:
        status = 130
    except BrokenPipeError:
        status = 1
        try:
            print("error: standard output was closed; stopping", file=stderr)
        except OSError:
            pass
    except OSError as exc:  # the info sidecar (or stdout) could not be written: disk full...
        status = 1
        print("error: %s" % (exc.strerror or exc), file=stderr)
    finally:
        info_log.close()
        if bar is not None:
            bar.close()
        if pool is not None:
            if finished and not status:
                pool.close()
            else:
                pool.terminate()
            pool.join()
    tally.add("images", sum(tally.counts[k] for k in (
        "new thumbnails", "reused thumbnails", "duplicates", "failed")))
    order = ["new thumbnails"] + (["reused thumbnails"] if tally.counts["reused thumbnails"] else [])
    order += ["duplicates", "already listed"]
    if status == 130:
        print("%s: interrupted; resume with -l <the .meta file>" % STAGE, file=stderr)
    if not quiet or status == 130:
        print(tally.summary(order, "images"), file=stderr)
    return status
