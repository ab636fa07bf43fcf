"""Stage 1's ``--backfill-info``: the photo info (date taken, camera, GPS) of photos listed by a run
made before the info sidecar existed, read from their originals where those can still be reached."""
import hashlib
import multiprocessing
import os
import sys

from .report import Tally

OK, UNREACHABLE = "ok", "unreachable"


def lacking(log, known) -> list:
    """``[(md5, [paths...]), ...]`` for the md5s of the .meta ``log`` whose info is not in ``known``,
    in the order they were logged (each md5 once, with every path listing it)."""
    return [(md5, paths) for md5, paths in log.by_md5().items() if md5 not in known]


def read_one(job):
    """``(md5, paths)`` -> ``(md5, info, reason)``: the info of the first path whose bytes still have
    that md5 (``reason`` None), or ``(md5, None, reason)`` when none can be read or all changed."""
    from .exif import info_from_bytes

    md5, paths = job
    reason = "no path"
    for path in paths:
        try:
            with open(path, "rb") as f:
                data = f.read()
                mtime = os.fstat(f.fileno()).st_mtime
        except FileNotFoundError:
            reason = "original not found"
            continue
        except OSError as exc:
            reason = "cannot read original: %s" % (exc.strerror or exc)
            continue
        if hashlib.md5(data).hexdigest() != md5:
            reason = "original changed since it was listed"
            continue
        return md5, info_from_bytes(data, mtime), None
    return md5, None, reason


def backfill(log, writer, jobs, worker_args, quiet=False) -> Tally:
    """Record the info of every md5 of ``log`` that ``writer`` (an open
    :class:`~photomap.infolog.InfoWriter`) lacks, reading only those originals, with ``jobs``
    processes set up as thumbnail workers with ``worker_args`` (``(out_dir, size, max_pixels)``,
    so HEIC and the pixel limit behave as in a normal run). Returns the :class:`Tally`
    (``backfilled``, ``could not be read`` and its reasons); prints one summary line on stderr
    (unless ``quiet`` and every original could be read). KeyboardInterrupt propagates after the
    pool is stopped; what was written stays, and a rerun continues."""
    from tqdm import tqdm

    from .thumbs import init_worker

    todo = lacking(log, writer.known)
    tally = Tally("process_photos")
    if not todo:
        if not quiet:
            print("process_photos: every listed photo already has its info", file=sys.stderr)
        return tally
    bar = tqdm(total=len(todo), unit="img", file=sys.stderr, disable=True if quiet else None,
               dynamic_ncols=True, desc="info")
    pool = None
    try:
        if jobs == 1 or len(todo) == 1:
            init_worker(*worker_args)
            results = map(read_one, todo)
        else:
            pool = multiprocessing.Pool(min(jobs, len(todo)), initializer=init_worker,
                                        initargs=tuple(worker_args) + (True,))
            results = pool.imap(read_one, todo, max(1, min(16, len(todo) // (jobs * 64))))
        for md5, info, reason in results:
            bar.update(1)
            if info is None:
                tally.add("could not be read")
                tally.reasons[reason.split(":")[0]] += 1
            else:
                writer.add(md5, info)
                tally.add("backfilled")
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
            pool.join()
    missed = tally.counts["could not be read"]
    if missed or not quiet:  # said even with -q: those photos stay without a date
        why = " (%s)" % ", ".join("%s x%d" % kv for kv in tally.reasons.most_common(3)) if missed else ""
        print("process_photos: info backfilled for %d listed photos, %d could not be read%s" % (
            tally.counts["backfilled"], missed, why), file=sys.stderr)
    return tally
