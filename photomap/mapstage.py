"""Stage 3's run: join the inputs, lay the photos out (keeping the previous map's photos where they
were), colour them and write the page, saying on stderr what was left out, what happened to the map
and how to look at the result."""
import os
import time

from . import colours, page, projection, similar
from .join import join, summary
from .report import SetupError
from .runner import Run

STAGE = "visualize"
SERVE_PORT = 8000


def run(meta, thumbs, features, output, n_neighbors=15, min_dist=0.1, metric="cosine", seed=None,
        refit=False, colour="auto", dup_threshold="auto", neighbours="auto", neighbours_csv="auto",
        quiet=False, verbose=False) -> int:
    """Make the map page ``output`` from the .meta log ``meta``, the thumbnail folder ``thumbs`` and
    the feature folder ``features``; the map is kept beside the page and grown by the next run
    (``projection``), or laid out afresh and aligned to it with ``refit``; the neighbours, the
    near-duplicate groups and the originals' status are kept beside it too (``similar``).

    Returns the exit status (0); raises :class:`SetupError` for a fatal problem, before the page or
    its cache is written."""
    check_request(meta, thumbs, features, output, n_neighbors, min_dist, colour)
    threshold = similar.parse_threshold(dup_threshold)
    stage = Run(STAGE, quiet)
    out_dir = os.path.dirname(os.path.abspath(output))
    stage.output_dir(out_dir, "page folder", names=_written_beside(output))
    t0 = time.monotonic()
    photos = read_inputs(meta, thumbs, features, stage)
    stage.info(summary(photos))
    if len(photos) == 0:
        raise SetupError("no photo has a .meta line, a thumbnail and a feature vector: nothing to map")
    try:
        coords, _ = projection.load_or_project(photos.md5s, photos.features, photos.first_paths, output,
                                               say=stage.info, refit=refit, n_neighbors=n_neighbors,
                                               min_dist=min_dist, metric=metric, seed=seed)
    except ValueError as exc:  # umap-learn refusing the metric for these vectors, before any work
        raise SetupError("cannot compute the map: %s" % exc) from None
    sim = similar.build(photos.md5s, photos.features, photos.paths, output, dup_threshold=threshold,
                        method=neighbours, neighbours_csv=neighbours_csv, say=stage.info)
    t1 = time.monotonic()
    labels, colour_by = colours.groups(photos, colour, seed=seed)
    size = page.write_map(output, photos, coords, labels, colour_by,
                          details=similar.detail_columns(sim, photos.paths))
    if verbose:
        stage.info("layout %.1fs, page %.1fs, %.1f MB" % (t1 - t0, time.monotonic() - t1, size / 1e6))
    say_where(stage, output, len(photos))
    return 0


def check_request(meta, thumbs, features, output, n_neighbors, min_dist, colour) -> None:
    """Raise :class:`SetupError` for the first fatal problem with the inputs or the parameters."""
    if not os.path.isfile(meta):
        raise SetupError("no .meta file at %s" % meta)
    for folder, what in ((thumbs, "thumbnail folder"), (features, "feature folder")):
        if not os.path.isdir(folder):
            raise SetupError("no %s at %s" % (what, folder))
        try:
            with os.scandir(folder) as entries:
                next(entries, None)
        except OSError as exc:
            raise SetupError("cannot read the %s %s: %s" % (what, folder, exc.strerror or exc)) from None
    if os.path.isdir(output):
        raise SetupError("-o %s is a folder: give the page's file name (e.g. %s)" % (
            output, os.path.join(output, "map.html")))
    if n_neighbors < 2:
        raise SetupError("--n-neighbors must be at least 2")
    if not 0.0 <= min_dist <= 1.0:
        raise SetupError("--min-dist must be between 0 and 1")
    if colour not in colours.MODES:
        raise SetupError("unknown --colour %r (choose from %s)" % (colour, ", ".join(colours.MODES)))


def _written_beside(output) -> tuple:
    """Names of the files this stage writes in the page's folder (the page, the coordinates cache,
    the neighbour and duplicate files):
    only their leftover temporary files are cleared there, the folder being the user's."""
    return tuple(os.path.basename(p) for p in (output, *projection.coords_paths(output),
                                               *similar.file_paths(output)))


def read_inputs(meta, thumbs, features, stage: Run):
    """The joined :class:`photomap.join.Photos`, each bad file named in one line on ``stage``; an
    unreadable input is a :class:`SetupError`."""
    try:
        return join(meta, thumbs, features, say=stage.info)
    except OSError as exc:
        raise SetupError("cannot read %s: %s" % (exc.filename or meta, exc.strerror or exc)) from None


def say_where(stage: Run, output, n: int) -> None:
    """The closing lines: what was written, and how to look at it safely (served to this machine only)."""
    folder = os.path.dirname(output) or "."
    stage.info("wrote %s (%d photos). Look at it with:" % (output, n))
    if not stage.quiet:
        stage.write("  cd %s && python -m http.server %d --bind 127.0.0.1" % (folder, SERVE_PORT))
        stage.write("  then open http://127.0.0.1:%d/%s" % (SERVE_PORT, os.path.basename(output)))
