"""./visualize.py --meta output/torch_thumbs.meta --thumbs output/torch_thumbs --features output/features_resnet18 -o output/map_resnet18.html

Stage 3: join the .meta log, the thumbnails and the feature vectors, lay the photos out in 2-D with
UMAP and write a self-contained bokeh page: hover a point to see that photo, click to pin it.
The map is kept beside the page (map_resnet18.coords.csv): run again after adding photos and the
photos already there stay where they were, new ones are placed among their look-alikes and removed
ones disappear; --refit lays everything out afresh, turned to match the previous map. Look at the
page with:

  cd output && python -m http.server 8000 --bind 127.0.0.1
  then open http://127.0.0.1:8000/map_resnet18.html
"""
import os
import sys
import time

from photomap.cli import Parser, UsageError
from photomap.fsutil import check_writable_dir
from photomap.report import fatal

SERVE_PORT = 8000


def parse_args(argv):
    p = Parser(usage=__doc__.splitlines()[0] + " [options]", description=__doc__.split("\n", 2)[2])
    p.add_argument("--meta", required=True, help="the .meta log written by process_photos.py")
    p.add_argument("--thumbs", required=True, help="the thumbnail folder (<md5>.jpg)")
    p.add_argument("--features", required=True, help="the feature folder written by embeddings.py")
    p.add_argument("-o", "--output", required=True, help="the HTML page to write")
    p.add_argument("--n-neighbors", type=int, default=15, help="UMAP n_neighbors (default 15)")
    p.add_argument("--min-dist", type=float, default=0.1, help="UMAP min_dist (default 0.1)")
    p.add_argument("--metric", default="cosine", help="UMAP metric (default cosine)")
    p.add_argument("--seed", type=int, default=None,
                   help="random seed: the same seed, inputs and previous map give the same map")
    p.add_argument("--refit", action="store_true",
                   help="lay every photo out afresh, then turn, flip and scale the result to match the "
                        "previous map as closely as possible")
    p.add_argument("--colour", "--color", dest="colour", default="auto",
                   choices=("auto", "folder", "cluster", "none"),
                   help="colour by top-level folder, by KMeans cluster, or auto (folders if 2..10)")
    p.add_argument("-q", "--quiet", action="store_true", help="only errors on stderr")
    p.add_argument("-v", "--verbose", action="store_true", help="also print timings")
    return p.parse_args(argv)


def check_inputs(args):
    """The first fatal problem with the arguments, as a message, or None."""
    if not os.path.isfile(args.meta):
        return "no .meta file at %s" % args.meta
    if not os.path.isdir(args.thumbs):
        return "no thumbnail folder at %s" % args.thumbs
    if not os.path.isdir(args.features):
        return "no feature folder at %s" % args.features
    if args.n_neighbors < 2:
        return "--n-neighbors must be at least 2"
    if not 0.0 <= args.min_dist <= 1.0:
        return "--min-dist must be between 0 and 1"
    out_dir = os.path.dirname(os.path.abspath(args.output))
    try:
        check_writable_dir(out_dir)
    except OSError as exc:
        return "cannot write to %s: %s" % (out_dir, exc.strerror or exc)
    return None


def main(argv=None) -> int:
    try:
        args = parse_args(argv)
    except UsageError as exc:
        return fatal(str(exc))
    from photomap import layout, page  # numpy and friends: after --help

    problem = check_inputs(args)
    if problem:
        return fatal(problem)
    log = None if args.quiet else sys.stderr
    t0 = time.monotonic()
    try:
        photos = layout.join(args.meta, args.thumbs, args.features, log=log)
    except OSError as exc:
        return fatal("cannot read %s: %s" % (args.meta, exc.strerror or exc))
    if len(photos) == 0:
        return fatal("no photo has a .meta line, a thumbnail and a feature vector: nothing to map")
    try:
        coords, _ = layout.load_or_embed(photos, args.output, log=log, refit=args.refit,
                                         n_neighbors=args.n_neighbors, min_dist=args.min_dist,
                                         metric=args.metric, seed=args.seed)
    except ValueError as exc:  # e.g. an unknown metric, reported by umap-learn
        return fatal("cannot compute the map: %s" % exc)
    t1 = time.monotonic()
    size = page.write_page(page.map_layout(photos, coords, args.output, args.colour, seed=args.seed),
                           args.output)
    t2 = time.monotonic()
    if args.verbose and log:
        print("visualize: layout %.1fs, page %.1fs, %.1f MB" % (t1 - t0, t2 - t1, size / 1e6), file=log)
    if log:
        folder = os.path.dirname(args.output) or "."
        print("visualize: wrote %s (%d photos). Look at it with:" % (args.output, len(photos)), file=log)
        print("  cd %s && python -m http.server %d --bind 127.0.0.1" % (folder, SERVE_PORT), file=log)
        print("  then open http://127.0.0.1:%d/%s" % (SERVE_PORT, os.path.basename(args.output)), file=log)
    return 0

