"""Stage 3's page: the bokeh scatter whose hover shows the one nearest photo and whose click pins it in
a panel beside the plot, written as one self-contained HTML file (bokeh's JS and ours inline).

The page's own JavaScript lives in ``photomap/js/``: ``map.js`` (one object per plot: the nearest photo
to a point, a photo's details) and one script per feature (``hover.js``, ``pin.js``; ``panel.js`` shares
the panel between them; ``density.js`` draws the points in view or a density image, see
:mod:`photomap.density`; selection, more like this and near-duplicates in :mod:`photomap.actions`). A new feature is
one more script, attached in :func:`build` to its bokeh event with ``callback("x.js", map=shared, ...)``."""
import os
import re
from importlib import resources
from urllib.parse import quote

import numpy as np

from . import actions, density
from . import details as shards_file
from .folders import common_folder
from .fsutil import atomic_write
from .report import printable

PLOT_NAME = "photomap-plot"  # lets tests and tools find the plot's view in the page
PANEL_NAME = "photomap-pin"
TOOLTIP_CLASS = "photomap-tooltip"
HOVER_RADIUS_PX = 8  # "within a few pixels": the nearest point farther than this shows nothing
PANEL_WIDTH = 280
OUTPUT_BACKEND = "canvas"  # bokeh's renderer for the plot (bench/bench_map.py --backend compares)
PANEL_BELOW_PX = 900  # a window narrower than this has the panel below the map, not beside it
MOSAIC_BUDGET = 300  # at most this many photos in view are drawn as pictures (bench/bench_map.py --mosaic)
MOSAIC_PX = (32, 128)  # a picture's longer side: smallest (many in view) and largest (few), screen pixels
# In a narrow window the row becomes a column: the map on top, the panel below it, a third of the height.
NARROW_CSS = """@media (max-width: %dpx) {
  :host { flex-direction: column !important; }
  :host > .bk-Figure { width: 100%% !important; flex: 1 1 auto !important; }
  :host > .bk-Div, :host > .bk-Column { width: auto !important; height: 33vh !important; flex: none !important; }
}"""
FRAME_PERCENTILES = (1, 99)  # the first view frames these percentiles of the points (plus a margin)

PANEL_HINT = ('<div style="font:13px sans-serif;color:#555">Hover a point to see its photo; '
              'click it to pin the photo, with every original path, here.</div>')


def thumb_prefix(page_path, thumbs_dir) -> str:
    """URL prefix of the thumbnails relative to the page's folder, e.g. ``torch_thumbs/``."""
    page_dir = os.path.dirname(os.path.abspath(os.fspath(page_path)))
    rel = os.path.relpath(os.path.abspath(os.fspath(thumbs_dir)), page_dir)
    return "/".join(quote(p, safe="") for p in rel.split(os.sep)) + "/"


def notebook_prefix(thumbs_dir, server_root=".") -> str:
    """Thumbnail URL prefix for a plot shown inside Jupyter, which serves a file at
    ``/files/<path under the folder the server was started in>`` (classic, Notebook 7 and Lab)."""
    rel = os.path.relpath(os.path.abspath(os.fspath(thumbs_dir)), os.path.abspath(server_root))
    return "/files/" + "/".join(quote(p, safe="") for p in rel.split(os.sep)) + "/"


def script(name: str) -> str:
    """The text of the page script ``photomap/js/<name>`` (package data: found from a checkout and
    from an installed package alike)."""
    return resources.files(__package__).joinpath("js", name).read_text(encoding="utf-8")


def callback(name: str, **args):
    """A bokeh ``CustomJS`` running ``photomap/js/<name>``, a function body that sees each of ``args``
    under its name: the one way Python hands data to the page's scripts."""
    from bokeh.models import CustomJS

    return CustomJS(code=script(name), args=args)


def marker_size(n: int) -> float:
    """Smaller markers as the map fills up, so dense regions stay readable."""
    return 9 if n <= 1000 else 6 if n <= 20000 else 4


def build(photos, coords, labels, prefix, colour_by="", details=None, shards_url=None,
          shard_size=shards_file.SHARD_SIZE, height=None, mosaic=MOSAIC_BUDGET):
    """The page's bokeh layout (the plot, then the pinned panel) for ``photos`` (a
    :class:`photomap.join.Photos`) at ``coords``, coloured by ``labels`` (see
    :func:`photomap.colours.groups`, whose description ``colour_by`` goes in the title).

    Only what is drawn goes into the plot's data (x, y as float32, each photo's colour as an index);
    what the page says about a photo (its md5, paths, copies and the ``details`` columns, see
    :func:`photomap.details.columns`) is in detail shards: inline, or fetched from ``shards_url``
    (from :func:`photomap.details.write`, cut at ``shard_size``) when given. Thumbnails are ``prefix + <md5>.jpg`` (see
    :func:`thumb_prefix`). The layout fills the window (``height=None``) or, in a notebook, its width at
    ``height`` pixels; up to ``mosaic`` photos in view are drawn as thumbnails (0: dots only)."""
    from bokeh.models import (BoxZoomTool, ColumnDataSource, Div, HoverTool, LinearColorMapper, PanTool,
                              ResetTool, SaveTool, WheelZoomTool)
    from bokeh.plotting import figure

    n = len(photos)
    coords = np.asarray(coords, dtype=np.float64).reshape(-1, 2)
    root = photo_root(photos)
    factors = sorted(set(labels), key=_natural_key)
    index = {f: k for k, f in enumerate(factors)}
    source = ColumnDataSource(data={
        "x": coords[:, 0].astype(np.float32), "y": coords[:, 1].astype(np.float32),
        "colour": np.fromiter((index[g] for g in labels), dtype=np.uint16, count=n)})
    plot = figure(title=_title(photos, colour_by if len(factors) > 1 else ""), output_backend=OUTPUT_BACKEND,
                  name=PLOT_NAME, active_scroll="auto", match_aspect=True,
                  tools=[PanTool(), WheelZoomTool(), BoxZoomTool(), ResetTool(), SaveTool()])
    plot.axis.visible = False
    plot.grid.visible = False
    size = marker_size(n)
    palette = _palette(len(factors))
    mapper = LinearColorMapper(palette=palette, low=-0.5, high=len(palette) - 0.5)  # index k -> palette[k]
    colour = {"field": "colour", "transform": mapper}
    scatter = plot.scatter("x", "y", source=density.drawn_source(n, source), size=size, alpha=0.75,
                           line_width=0, color=colour, nonselection_alpha=0.75, selection_alpha=0.75)
    ring = ColumnDataSource(data={"x": [], "y": [], "index": []})  # the pinned photo (similar.js follows it)
    plot.scatter("x", "y", source=ring, size=size + 10, fill_alpha=0, line_color="black", line_width=2,
                 level="overlay")  # above the mosaic's pictures (see mosaic.js)
    _frame(plot, coords)
    if len(factors) > 1:
        plot.add_layout(_legend(plot, factors, colour), "right")
    panel = Div(text=PANEL_HINT, name=PANEL_NAME,
                styles={"padding-left": "10px", "user-select": "text", "overflow-y": "auto"})
    inline = [] if shards_url else shard_texts(photos, root, details, shard_size)
    shared = callback("map.js", source=source, plot=plot, prefix=prefix, root=printable(root),
                      radius=HOVER_RADIUS_PX, groups=[str(f) for f in factors], shards=inline,
                      shards_url=shards_url or "", shard_size=shard_size)
    density.attach(plot, source, scatter, palette, shared)
    hover = HoverTool(tooltips=None, renderers=[scatter],
                      callback=callback("hover.js", map=shared, tip_id="photomap-tooltip-" + plot.id,
                                        tip_class=TOOLTIP_CLASS))
    sections = actions.sections(panel)
    pin = callback("pin.js", map=shared, sections=sections, ring=ring, panel_width=PANEL_WIDTH)
    plot.add_tools(hover)
    # Every click in the plot, not only one on a drawn point: a large map may be showing its density
    # image, and the pin finds the nearest photo itself.
    plot.js_on_event("tap", pin)
    above = actions.attach(plot, source, scatter, shared, sections, ring, pin, size, details, PANEL_WIDTH)
    if mosaic:
        _mosaic(plot, shared, mosaic)
    return _layout(plot, panel, height, above)


def frame_box(coords, percentiles=FRAME_PERCENTILES):
    """The first view's ``(x0, x1, y0, y1)`` for ``coords`` (n, 2): the ``percentiles`` of each axis
    widened by a tenth of their span, never beyond the points' extent, so that a few outliers do not
    shrink the rest (a map without outliers gets its whole extent)."""
    coords = np.asarray(coords, dtype=np.float64).reshape(-1, 2)
    lo, hi = np.percentile(coords, percentiles, axis=0)
    margin = (hi - lo) / 10
    lo = np.maximum(lo - margin, coords.min(axis=0))
    hi = np.minimum(hi + margin, coords.max(axis=0))
    return float(lo[0]), float(hi[0]), float(lo[1]), float(hi[1])


def _frame(plot, coords):
    """Range the plot on an invisible box: :func:`frame_box` at first (bokeh keeps its aspect at any
    window size), the points' whole extent once the reset tool is used."""
    from bokeh.models import ColumnDataSource

    if len(coords) == 0:
        return
    x0, x1, y0, y1 = frame_box(coords)
    box = ColumnDataSource(data={"x": [x0, x1], "y": [y0, y1]})
    corners = plot.scatter("x", "y", source=box, size=0, alpha=0, level="underlay")
    plot.x_range.renderers = plot.y_range.renderers = [corners]
    lo, hi = coords.min(axis=0), coords.max(axis=0)
    everything = {"x": [float(lo[0]), float(hi[0])], "y": [float(lo[1]), float(hi[1])]}
    plot.js_on_event("reset", callback("frame.js", box=box, everything=everything))


def _mosaic(plot, shared, budget):
    """Draw the photos in view as thumbnails while at most ``budget`` are (see ``js/mosaic.js``)."""
    code = callback("mosaic.js", map=shared, budget=budget, min_px=MOSAIC_PX[0], max_px=MOSAIC_PX[1])
    for r in (plot.x_range, plot.y_range):
        r.js_on_change("start", code)
        r.js_on_change("end", code)


def _layout(plot, panel, height=None, above=()):
    """The plot and the pinned panel filling the window (panel beside the plot, or below it in a
    window narrower than ``PANEL_BELOW_PX``), or, with ``height``, the width of a notebook's cell;
    the widgets ``above`` (from :func:`photomap.actions.attach`) sit over the panel."""
    from bokeh.layouts import column, row
    from bokeh.models import InlineStyleSheet

    if height is not None:
        plot.sizing_mode, plot.height = "stretch_width", height
        panel.width, panel.height = PANEL_WIDTH, height - actions.TOGGLE_HEIGHT * len(above)
        side = column(*above, panel, width=PANEL_WIDTH) if above else panel
        return row(plot, side, sizing_mode="stretch_width")
    plot.sizing_mode = "stretch_both"
    panel.sizing_mode = "stretch_height"
    panel.width = PANEL_WIDTH
    side = column(*above, panel, width=PANEL_WIDTH, sizing_mode="stretch_height") if above else panel
    narrow = InlineStyleSheet(css=NARROW_CSS % PANEL_BELOW_PX)
    return row(plot, side, sizing_mode="stretch_both", stylesheets=[narrow])


def photo_root(photos) -> str:
    """The photos' common folder: paths in the page and its detail shards are written below it."""
    return common_folder(p for paths in photos.paths for p in paths)


def shard_texts(photos, root, details=None, shard_size=shards_file.SHARD_SIZE) -> list:
    """The JSON texts of the photos' detail shards (see :mod:`photomap.details`)."""
    cols = shards_file.columns(photos, root, details)
    return [shards_file.shard_text(s) for s in shards_file.shards(cols, root, shard_size)]


def write_map(path, photos, coords, labels, colour_by="", details=None, inline_max=shards_file.INLINE_MAX,
              shard_size=shards_file.SHARD_SIZE, mosaic=MOSAIC_BUDGET) -> int:
    """Write the page at ``path`` with its detail shards (inline for a map of up to ``inline_max``
    photos, else in ``<page>.photos/``, see :mod:`photomap.details`), then remove the shards of
    earlier pages; return the page's size in bytes. ``details``: more detail columns (see
    :func:`photomap.details.columns`); ``mosaic``: see :func:`build`."""
    root = photo_root(photos)
    texts = shard_texts(photos, root, details, shard_size)
    url = None if len(photos) <= inline_max else shards_file.write(path, texts)
    view = build(photos, coords, labels, thumb_prefix(path, photos.thumbs_dir), colour_by, details, url,
                 shard_size, mosaic=mosaic)
    size = write_page(view, path)
    shards_file.clear_stale(path, url)
    return size


def _title(photos, colour_by: str) -> str:
    n, files = len(photos), sum(photos.copies)
    return "Photo map: %d photo%s (%d file%s)%s%s" % (
        n, "" if n == 1 else "s", files, "" if files == 1 else "s",
        " by %s features" % photos.model if photos.model else "",
        ", coloured by " + colour_by if colour_by else "")


def _legend(plot, factors, colour):
    """A legend naming each group in ``factors`` order, drawn from a renderer of its own (one
    undrawn point per group, in ``colour``): what the map draws changes with the view."""
    from bokeh.models import ColumnDataSource, Legend, LegendItem

    k = len(factors)
    keys = ColumnDataSource(data={"x": np.full(k, np.nan, np.float32), "y": np.full(k, np.nan, np.float32),
                                  "colour": np.arange(k, dtype=np.uint16)})
    swatch = plot.scatter("x", "y", source=keys, size=9, alpha=0.75, line_width=0, color=colour)
    return Legend(items=[LegendItem(label=str(f), renderers=[swatch], index=i) for i, f in enumerate(factors)],
                  label_text_font_size="9pt", spacing=0, padding=4)


def _palette(n):
    from bokeh.palettes import Category10, Category20, Turbo256

    if n <= 10:
        return list(Category10[10][:max(n, 3)])[:n]
    if n <= 20:
        return list(Category20[20][:n])
    return [Turbo256[int(i * 255 / (n - 1))] for i in range(n)]


def _natural_key(label):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(label))]


def page_html(view, title=None) -> str:
    """The standalone HTML of ``view`` (from :func:`build`) with all JavaScript inline (opens with no
    internet); the browser tab shows ``title``, by default the plot's own title."""
    from bokeh.embed import file_html
    from bokeh.resources import INLINE

    if title is None:
        title = view.children[0].title.text
    return file_html(view, INLINE, title)  # the template escapes the title itself


def write_page(view, path, title=None) -> int:
    """Write the page atomically at ``path`` (see :func:`page_html`); return its size in bytes."""
    data = page_html(view, title).encode("utf-8")
    with atomic_write(path) as f:
        f.write(data)
    return len(data)


def show_inline(view) -> None:
    """Show ``view`` in a Jupyter notebook, bokeh JS inline, with the same hover and pin."""
    from bokeh.io import output_notebook, show
    from bokeh.resources import INLINE

    output_notebook(INLINE, hide_banner=True)
    show(view)
