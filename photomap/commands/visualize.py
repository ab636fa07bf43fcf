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
from photomap import colours
from photomap.cli import Parser, UsageError
from photomap.report import SetupError, fatal


def build_parser():
    """The command-line parser; ``--help`` opens with the module docstring's command line."""
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
    p.add_argument("--colour", "--color", dest="colour", default="auto", choices=colours.MODES,
                   help="colour by top-level folder, by KMeans cluster, or auto (folders if 2..10)")
    p.add_argument("--dup-threshold", default="auto",
                   help="cosine similarity at which two photos count as near-duplicates (default auto: "
                        "derived from each photo's neighbours, for any model)")
    p.add_argument("--neighbours", "--neighbors", dest="neighbours", default="auto",
                   choices=("auto", "exact", "approximate"),
                   help="how the 12 nearest neighbours are found (auto: exact up to 20000 photos)")
    p.add_argument("--neighbours-csv", "--neighbors-csv", dest="neighbours_csv", default="auto",
                   choices=("auto", "always", "never"),
                   help="write <page>.neighbours.csv (auto: up to 100000 photos)")
    p.add_argument("-q", "--quiet", action="store_true", help="only errors on stderr")
    p.add_argument("-v", "--verbose", action="store_true", help="also print timings")
    return p


def main(argv=None) -> int:
    """Parse ``argv`` (default: sys.argv[1:]), run stage 3, return the exit status."""
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        return fatal(str(exc))
    from photomap import mapstage  # numpy and friends: after --help

    try:
        return mapstage.run(**vars(args))
    except SetupError as exc:
        return fatal(str(exc))
