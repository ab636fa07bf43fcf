"""Stage 1: turn a photo backup into 224px thumbnails and a resumable .meta log.

    ./process_photos.py -d /Volumes/MyStuff -o output/torch_thumbs -s 224 >> output/torch_thumbs.meta
    ./process_photos.py -d /Volumes/MyStuff -o output/torch_thumbs -s 224 -l output/torch_thumbs.meta | tee -a output/torch_thumbs.meta

Each photo under -d gets the line "<md5 of its bytes><TAB><path>" on stdout once its thumbnail
<output>/<md5>.jpg is in place; a photo that cannot be read gets "# error<TAB><path><TAB><reason>".
Progress and the summary go to stderr. The second command resumes: paths already in the -l file
are skipped without being opened. The .meta format is defined in photomap/meta.py.
"""
import argparse

from photomap import thumbs
from photomap.cli import Parser, UsageError, count
from photomap.report import SetupError, fatal
from photomap.runner import cores


def _pixel_count(text):
    try:
        value = int(float(text.replace("_", "")))
    except ValueError:
        raise argparse.ArgumentTypeError("not a number: %r" % text) from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 (no limit) or more, not %d" % value)
    return value


def build_parser():
    """The command-line parser; ``--help`` opens with the module docstring's command lines."""
    p = Parser(prog="process_photos.py", description=__doc__)
    p.add_argument("-d", "--dir", default=".", help="photo folder to crawl (default: .)")
    p.add_argument("-o", "--output", required=True,
                   help="thumbnail folder, created if missing; never crawled, even inside -d")
    p.add_argument("-s", "--size", type=count(1), default=thumbs.DEFAULT_SIZE,
                   help="thumbnails fit in SIZE x SIZE pixels (default: %(default)s)")
    p.add_argument("-l", "--file-list", metavar="META",
                   help=".meta of an earlier run: its paths are skipped (a missing file means a "
                        "fresh start)")
    p.add_argument("-x", "--extensions", nargs="+", metavar="EXT",
                   default=list(thumbs.DEFAULT_EXTENSIONS),
                   help="file extensions to take, any case (default: %(default)s)")
    p.add_argument("-j", "--jobs", type=count(1), default=None,
                   help="worker processes (default: all cores, here %d)" % cores())
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no progress bar, info or summary; per-file failures and errors only")
    p.add_argument("-v", "--verbose", action="store_true", help="one stderr line per photo")
    p.add_argument("--retry-errors", action="store_true",
                   help="retry paths recorded as '# error' in the -l file")
    p.add_argument("--max-pixels", type=_pixel_count, default=thumbs.DEFAULT_MAX_PIXELS,
                   help="skip images with more pixels than this, read from the header before "
                        "decoding; 0 = no limit (default: %(default)s)")
    p.add_argument("--backfill-info", action="store_true",
                   help="with -l: first record the date taken, camera and GPS of listed photos that "
                        "lack them (listed before <output>.info existed), reading only those originals")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="make the thumbnails on this Dask cluster (tcp://host:8786, or a scheduler "
                        "file); its workers must see -d and -o at the same paths. Needs the "
                        "'cluster' extra (pip install 'photomap[cluster]')")
    return p


def main(argv=None) -> int:
    """Parse ``argv`` (default: sys.argv[1:]), run stage 1, return the exit status."""
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        return fatal(str(exc))
    try:
        return thumbs.run(args.dir, args.output, size=args.size, file_list=args.file_list,
                          extensions=args.extensions, jobs=args.jobs, quiet=args.quiet,
                          verbose=args.verbose, retry_errors=args.retry_errors,
                          max_pixels=args.max_pixels, backfill_info=args.backfill_info,
                          scheduler=args.scheduler)
    except SetupError as exc:
        return fatal(str(exc))

