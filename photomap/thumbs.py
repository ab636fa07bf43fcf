"""Stage 1: crawl a photo tree, make one JPEG thumbnail per distinct file, print .meta lines."""
import hashlib
import io
import multiprocessing
import os
import signal
import sys
from contextlib import contextmanager
from functools import partial

from . import exif, fsutil, image, infolog, meta
from .crawl import crawl, dir_key, normalize_extensions
from .report import SetupError, printable
from .runner import Run, cores

STAGE = "process_photos"
DEFAULT_EXTENSIONS = ("jpg", "jpeg", "png", "gif", "bmp", "tif", "tiff", "webp", "heic", "heif")
DEFAULT_SIZE = 224
DEFAULT_MAX_PIXELS = 200_000_000
JPEG_QUALITY = 90

# Worker outcomes: a new thumbnail was written, one with this md5 was already in place,
# the input is bad (recorded as a "# error" line), or the thumbnail could not be written (fatal).
NEW, EXISTS, FAILED, OUTPUT_ERROR = "new", "exists", "failed", "output error"


# ---------------------------------------------------------------- the per-photo work

_settings = {"out_dir": None, "size": DEFAULT_SIZE, "max_pixels": DEFAULT_MAX_PIXELS}


def init_worker(out_dir, size=DEFAULT_SIZE, max_pixels=DEFAULT_MAX_PIXELS, ignore_sigint=False):
    """Set up a worker process (or this process, for ``-j 1``) to make thumbnails."""
    image.register_heif()
    _settings.update(out_dir=os.fspath(out_dir), size=int(size), max_pixels=int(max_pixels or 0))
    if ignore_sigint:
        # Ctrl-C reaches the whole process group; only the parent handles it and stops the pool.
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def render_thumbnail(img, size):
    """An opened (not yet decoded) PIL image -> an upright RGB image that fits in size x size.

    A JPEG is decoded at a reduced DCT scale (``draft``); the long side becomes ``size`` and a
    smaller image is never upscaled. The EXIF orientation is applied last (the fit box is square,
    so shrinking first gives the same picture for less work).
    """
    from PIL import Image

    turn = image.orientation(img)
    # Modes that resize cannot handle well (palette -> nearest neighbour, 16-bit -> unsupported)
    # are converted at full size; everything else is reduced first, while still cheap to decode.
    converted = image.resizable(img)
    if converted is img:
        # Decode a JPEG at the smallest DCT scale (1/2..1/8) that still leaves at least twice the
        # final size, the same quality rule as Image.thumbnail's reducing_gap=2; thumbnail itself
        # asks for 2*size on *both* sides, which for a 4:3 photo means scale 1/4 instead of 1/8.
        scale = size / max(img.width, img.height)
        if scale < 1:
            img.draft(None, (max(1, int(2 * img.width * scale)), max(1, int(2 * img.height * scale))))
    img = converted
    img.thumbnail((size, size), Image.Resampling.LANCZOS)
    return image.upright(image.flatten(img), turn)


def make_thumbnail(path, out_dir=None, size=None, max_pixels=None):
    """Make ``<out_dir>/<md5>.jpg`` for the photo at ``path``; never raises for bad input.

    Returns ``(status, md5, reason, info)``: status is NEW, EXISTS (a thumbnail of these bytes was
    already in place, so nothing was decoded), FAILED (bad input; md5 may be None) or
    OUTPUT_ERROR (the thumbnail could not be written). ``md5`` is that of the file's bytes;
    ``info`` its :class:`~photomap.exif.PhotoInfo` (date taken, camera, GPS) from the same read,
    ``None`` when FAILED. Defaults come from :func:`init_worker`.
    """
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
        with image.opened(data, max_pixels) as img:
            info = exif.photo_info(img, mtime)
            thumb = render_thumbnail(img, size)
            buf = io.BytesIO()
            thumb.save(buf, "JPEG", quality=JPEG_QUALITY)
    except Exception as exc:  # noqa: BLE001 - any decoder failure (MemoryError too) is bad input
        return FAILED, md5, image.error_reason(exc), None
    try:
        with fsutil.atomic_write(dest) as f:
            f.write(buf.getvalue())
    except OSError as exc:
        return OUTPUT_ERROR, md5, "cannot write %s: %s" % (dest, exc.strerror or exc), None
    return NEW, md5, None, info


def _worker(path):
    return path, make_thumbnail(path)


@contextmanager
def thumbnailer(todo, jobs, out_dir, size, max_pixels):
    """Yield the outcomes ``(path, (status, md5, reason, info))`` of the photos in ``todo``, in order,
    made by ``jobs`` worker processes (in this process for one job or one photo). Leaving before
    the last outcome (an output error, Ctrl-C, a closed stdout) stops the workers at once."""
    if jobs == 1 or len(todo) <= 1:
        init_worker(out_dir, size, max_pixels)
        yield map(_worker, todo)
        return
    pool = multiprocessing.Pool(min(jobs, len(todo)), initializer=init_worker,
                                initargs=(out_dir, size, max_pixels, True))
    # Small chunks keep the output flowing in order and lose little work to a kill.
    chunksize = max(1, min(4, len(todo) // (jobs * 64)))
    finished = []

    def outcomes():
        yield from pool.imap(_worker, todo, chunksize)
        finished.append(True)
    try:
        yield outcomes()
    finally:
        if finished:
            pool.close()
        else:
            pool.terminate()
        pool.join()


# ---------------------------------------------------------------- the run


def run(root=".", out_dir=None, size=DEFAULT_SIZE, file_list=None, extensions=DEFAULT_EXTENSIONS,
        jobs=None, quiet=False, verbose=False, retry_errors=False,
        max_pixels=DEFAULT_MAX_PIXELS, backfill_info=False, scheduler=None) -> int:
    """Thumbnail every photo under ``root`` into ``out_dir`` and print its .meta line.

    ``file_list`` is the .meta of an earlier run: paths listed there are skipped without being
    opened (failed ones too, unless ``retry_errors``). Lines go to stdout as each thumbnail
    lands; progress, per-file failures and the summary go to stderr. Each new photo's date taken,
    camera and GPS go into ``<out_dir>.info`` (:mod:`photomap.infolog`) before its line;
    ``backfill_info`` first records them for listed photos that lack them, reading only those
    originals (:mod:`photomap.backfill`). Returns the exit status
    (0 completed, 130 interrupted, 1 output failure); raises :class:`SetupError` before any work
    for a missing ``root``, an unwritable ``out_dir`` or an unreadable ``file_list``.
    """
    r = Run(STAGE, quiet)
    jobs = jobs or cores()
    extensions = normalize_extensions(extensions)
    check_request(root, out_dir, size, jobs, extensions, file_list, backfill_info)
    r.check_output(out_dir, "thumbnail folder")
    log, fresh = read_file_list(file_list)
    info_log = open_info_log(out_dir)
    engine, lost = thumbnailer, ()
    if scheduler is not None:
        from . import cluster
        engine, lost = partial(cluster.thumbnailer, cluster.connect(scheduler)), cluster.Lost
    write_line = _line_writer(sys.stdout)
    open_output(r, out_dir, file_list, log, fresh, write_line)

    status, known_md5 = 0, set(log.entries.values())
    try:
        if backfill_info:
            from .backfill import backfill
            backfill(log, info_log, jobs, (out_dir, size, max_pixels), quiet)
        todo = plan(r, root, out_dir, extensions, log, retry_errors)
        r.info("%d photos to do under %s (%d already listed), %d jobs" % (
            len(todo), root, r.tally.counts["already listed"], jobs))
        bar = r.progress(len(todo), smoothing=0.05)
        with engine(todo, jobs, out_dir, size, max_pixels) as outcomes:
            for path, (state, md5, reason, info) in outcomes:
                bar.update(1)
                if state == OUTPUT_ERROR:
                    r.error(reason)
                    status = 1
                    break
                if info is not None:
                    info_log.add(md5, info)  # before the .meta line: a listed photo is never redone
                record(r, write_line, path, state, md5, reason, known_md5, verbose)
    except KeyboardInterrupt:
        status = 130
    except lost as exc:
        r.error("%s; resume with -l <the .meta file>" % exc)
        status = 1
    except BrokenPipeError:
        status = 1
        try:
            r.error("standard output was closed; stopping")
        except OSError:
            pass
    except OSError as exc:  # the info sidecar (or stdout) could not be written: disk full...
        status = 1
        r.error(exc.strerror or str(exc))
    finally:
        info_log.close()

    r.tally.add("images", sum(r.tally.counts[k] for k in (
        "new thumbnails", "reused thumbnails", "duplicates", "failed")))
    order = ["new thumbnails"] + (["reused thumbnails"] if r.tally.counts["reused thumbnails"] else [])
    if status == 130:
        r.close()
        r.info("interrupted; resume with -l <the .meta file>", always=True)
    r.summary(order + ["duplicates", "already listed"], "images", always=status == 130)
    return status


def check_request(root, out_dir, size, jobs, extensions, file_list=None, backfill_info=False) -> None:
    """Raise :class:`SetupError` for a bad size, job count or extension list, a missing photo
    folder, no thumbnail folder, or ``--backfill-info`` without a file list."""
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
    if backfill_info and file_list is None:
        raise SetupError("--backfill-info needs -l META: it fills in the photos that file lists")


def open_info_log(out_dir):
    """The :class:`~photomap.infolog.InfoWriter` of ``out_dir``'s photo-info sidecar; raises
    :class:`SetupError` when it cannot be written or was written by another version."""
    try:
        return infolog.InfoWriter(out_dir)
    except OSError as exc:
        raise SetupError("cannot write photo info file %s: %s" % (
            infolog.info_path(out_dir), exc.strerror or exc))
    except ValueError as exc:
        raise SetupError("cannot use photo info file: %s" % exc)


def read_file_list(file_list):
    """``(log, note)``: the :class:`~photomap.meta.MetaLog` of ``file_list`` (empty without one),
    and a note when that file does not exist yet (a fresh start). Raises :class:`SetupError` when
    it cannot be read."""
    if file_list is None:
        return meta.MetaLog(), None
    try:
        return meta.read_meta(file_list), None
    except FileNotFoundError:
        return meta.MetaLog(), "%s not found: starting fresh" % file_list
    except OSError as exc:
        raise SetupError("cannot read file list %s: %s" % (file_list, exc.strerror or exc))


def open_output(r, out_dir, file_list, log, fresh, write_line) -> None:
    """Say where the run starts from, remove stray temporary files from ``out_dir``, and when the
    old log ends mid-line, write the marker that turns its cut last line into one the reader drops."""
    if fresh:
        r.info(fresh, always=True)  # said even with -q: it changes what runs
    elif file_list is not None:
        r.info("resuming from %s: %d paths listed, %d failed before%s" % (
            file_list, len(log.entries), len(log.errors),
            ", %d malformed lines ignored" % log.malformed if log.malformed else ""))
    r.clean_output(out_dir)
    if log.ends_mid_line:
        write_line(meta.CUT_MARKER)


def plan(r, root, out_dir, extensions, log, retry_errors) -> list:
    """The photos under ``root`` to make thumbnails of, in crawl order. Paths listed in ``log`` are
    counted as "already listed" and never opened (failed ones too, unless ``retry_errors``);
    folders that cannot be listed are named and counted as failed."""
    listed = set(log.entries)
    if not retry_errors:
        listed.update(log.errors)
    todo = []
    for path in crawl(root, extensions, exclude={dir_key(os.stat(out_dir))}, on_error=r.fail):
        if path in listed:
            r.tally.add("already listed")
        else:
            todo.append(path)
    return todo


def record(r, write_line, path, state, md5, reason, known_md5, verbose) -> None:
    """Write the .meta line of one photo's outcome and count it: a failure (named on stderr), a
    new or reused thumbnail, or a duplicate of an md5 in ``known_md5`` (which it extends)."""
    if state == FAILED:
        write_line(meta.format_error(path, reason))
        r.fail(path, reason)
        return
    write_line(meta.format_entry(md5, path))
    if md5 in known_md5:
        kind = "duplicates"
    else:
        kind = "new thumbnails" if state == NEW else "reused thumbnails"
        known_md5.add(md5)
    r.tally.add(kind)
    if verbose:
        label = {"duplicates": "duplicate"}.get(kind, kind.split()[0])
        r.write("%s: %s %s %s" % (STAGE, label, md5, printable(path)))


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
