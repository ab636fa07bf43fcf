"""The map's drawing at any size: points where few are in view, a density image where many are, and
marker size and opacity from how many points share the screen (the browser side is js/density.js)."""
import numpy as np

# Points drawn at once, at most. Above it the view shows a density image (one pixel per few screen
# pixels, its colour the points' colours, its opacity their number) computed in the browser from the
# full x/y arrays, and the points come back as the view is zoomed in to fewer than this. Measured in
# bench/bench_map.py (bench/README.md): a pan frame with this many points stays under 100 ms in
# headless chromium on 2 cores with software GL; a real GPU draws more, but the image reads better
# than a solid blob of a million dots anyway.
POINT_BUDGET = 5000
IMAGE_CELL_PX = 2  # the density image's cell, in screen pixels: a lone photo is still a visible dot
REDRAW_QUIET_MS = 120  # after a pan or zoom, redraw for the new view once it has been still this long


def bounds(coords):
    """``(x0, x1, y0, y1)``: the box around ``coords`` (n, 2), where the density image starts."""
    coords = np.asarray(coords, dtype=np.float64).reshape(-1, 2)
    if len(coords) == 0:
        return 0.0, 1.0, 0.0, 1.0
    (x0, y0), (x1, y1) = coords.min(axis=0), coords.max(axis=0)
    return float(x0), float(x1), float(y0), float(y1)


def attach(plot, source, scatter, palette, shared, budget=POINT_BUDGET):
    """Make ``plot`` draw the photos of ``source`` (the full x, y, colour arrays) through
    ``scatter`` (a renderer whose data is ``source`` itself on a map of up to ``budget`` photos, else
    an empty source that ``js/density.js`` fills with the points in view) and, on a larger map, a
    density image while more than ``budget`` photos are in view. ``palette``: the colours of the
    colour indices; ``shared``: the page's ``map.js`` (whose source is ``source``). The plot's ranges
    must follow renderers of their own (``page._frame``), never the image redrawn around the view.
    Returns the density script's ``CustomJS`` (run on every change of view)."""
    from bokeh.models import ColumnDataSource

    from .page import callback

    image = None
    if len(source.data["x"]) > budget:
        x0, x1, y0, y1 = bounds(np.column_stack([source.data["x"], source.data["y"]]))
        image_source = ColumnDataSource(data={"image": [np.zeros((1, 1), np.uint32)], "x": [x0], "y": [y0],
                                              "dw": [x1 - x0 or 1.0], "dh": [y1 - y0 or 1.0]})
        image = plot.image_rgba(image="image", x="x", y="y", dw="dw", dh="dh", source=image_source,
                                level="image")
    script = callback("density.js", map=shared, plot=plot, scatter=scatter, image=image, palette=list(palette),
                      budget=budget, cell_px=IMAGE_CELL_PX, quiet_ms=REDRAW_QUIET_MS)
    for r in (plot.x_range, plot.y_range):
        r.js_on_change("start", script)
        r.js_on_change("end", script)
    plot.js_on_change("inner_width", script)
    plot.js_on_change("inner_height", script)
    return script


def drawn_source(n, source, budget=POINT_BUDGET):
    """The source the scatter draws: ``source`` itself for a map of up to ``budget`` photos, else an
    empty one with the same columns, filled in the browser with the photos in view."""
    from bokeh.models import ColumnDataSource

    if n <= budget:
        return source
    return ColumnDataSource(data={"x": np.zeros(0, np.float32), "y": np.zeros(0, np.float32),
                                  "colour": np.zeros(0, np.uint16)})
