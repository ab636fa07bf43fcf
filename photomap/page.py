"""Stage 3 page side: the bokeh scatter whose hover shows the one nearest photo and whose click pins
it in a panel beside the plot, written as one self-contained HTML file (bokeh's JS inline)."""
import os

import numpy as np

from .fsutil import atomic_write

PLOT_NAME = "photomap-plot"  # lets tests and tools find the plot's view in the page
PANEL_NAME = "photomap-pin"
TOOLTIP_CLASS = "photomap-tooltip"
HOVER_RADIUS_PX = 8  # "within a few pixels": the nearest point farther than this shows nothing
PANEL_WIDTH = 280

# Shared by the hover and tap callbacks: nearest point to data position (x, y) in screen pixels.
_NEAREST_JS = """
function nearest(x, y, radius) {
  const xs = source.data.x, ys = source.data.y;
  const kx = plot.inner_width / (x_range.end - x_range.start);
  const ky = plot.inner_height / (y_range.end - y_range.start);
  if (!isFinite(x) || !isFinite(y) || !isFinite(kx) || !isFinite(ky)) return -1;
  let best = -1, bd = radius * radius;
  for (let i = 0; i < xs.length; i++) {
    const dx = (xs[i] - x) * kx;
    if (dx > radius || dx < -radius) continue;
    const dy = (ys[i] - y) * ky;
    const dd = dx * dx + dy * dy;
    if (dd < bd) { bd = dd; best = i; }
  }
  return best;
}
function paths_of(i) {
  return source.data.paths[i].split("\\n").map((p) => root + p);
}
"""

# One tooltip element per page, managed here (bokeh's own tooltips stack one per hit point), filled
# with DOM APIs only: paths go through textContent, so a file name can never become markup.
HOVER_JS = _NEAREST_JS + """
const g = cb_data.geometry;
let tip = document.getElementById(tip_id);
if (tip == null) {
  tip = document.createElement("div");
  tip.id = tip_id;
  tip.className = tip_class;
  Object.assign(tip.style, {position: "fixed", zIndex: 10000, pointerEvents: "none", display: "none",
    background: "white", border: "1px solid #888", borderRadius: "4px", padding: "6px",
    boxShadow: "0 2px 8px rgba(0,0,0,.3)", font: "12px sans-serif", maxWidth: "360px"});
  const img = document.createElement("img");
  Object.assign(img.style, {display: "block", maxWidth: "160px", maxHeight: "160px", marginBottom: "4px"});
  img.addEventListener("load", () => { img.style.visibility = "visible"; });
  tip.appendChild(img);
  const text = document.createElement("div");
  tip.appendChild(text);
  document.body.appendChild(tip);
  tip._index = -1;
  if (window._photomap_pointer == null) {
    window._photomap_pointer = {x: 0, y: 0};
    const track = (ev) => { window._photomap_pointer.x = ev.clientX; window._photomap_pointer.y = ev.clientY; };
    document.addEventListener("pointermove", track, true);
    document.addEventListener("mousemove", track, true);
  }
}
const i = (g.type == "point" && isFinite(g.sx) && isFinite(g.sy)) ? nearest(g.x, g.y, radius) : -1;
if (i < 0) {
  tip.style.display = "none";
  tip._index = -1;
} else {
  if (tip._index != i) {
    tip._index = i;
    const img = tip.firstChild, text = tip.lastChild;
    img.style.visibility = "hidden";
    img.src = prefix + source.data.md5[i] + ".jpg";
    text.replaceChildren();
    const ps = paths_of(i);
    for (const p of ps.slice(0, 5)) {
      const line = document.createElement("div");
      line.textContent = p;
      line.style.wordBreak = "break-all";
      text.appendChild(line);
    }
    const more = document.createElement("div");
    more.style.color = "#555";
    const n = source.data.copies[i];
    more.textContent = (ps.length > 5 ? "... " : "") + n + (n == 1 ? " copy" : " copies") +
      " \\u00b7 " + source.data.group[i];
    text.appendChild(more);
  }
  tip.style.display = "block";
  const p = window._photomap_pointer, w = tip.offsetWidth, h = tip.offsetHeight;
  const left = (p.x + 16 + w > window.innerWidth) ? p.x - 16 - w : p.x + 16;
  const top = (p.y + 16 + h > window.innerHeight) ? Math.max(0, p.y - 16 - h) : p.y + 16;
  tip.style.left = Math.max(0, left) + "px";
  tip.style.top = top + "px";
}
"""

# The pinned panel is a bokeh Div: its text is HTML, so every value is escaped here.
TAP_JS = _NEAREST_JS + """
function esc(s) {
  return String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;").replace(/'/g, "&#39;");
}
const g = cb_data.geometries;
const i = nearest(g.x, g.y, radius + 16);
if (i >= 0) {
  const ps = paths_of(i), n = source.data.copies[i];
  panel.text = '<div class="photomap-pinned" style="font:13px sans-serif;width:' + (panel_width - 24) + 'px">' +
    '<img class="photomap-pinned-img" style="display:block;width:224px;max-width:100%" src="' +
    esc(prefix + source.data.md5[i] + ".jpg") + '">' +
    '<div style="margin:6px 0;color:#555">' + esc(n + (n == 1 ? " copy" : " copies") + " \\u00b7 " +
    source.data.group[i]) + '</div>' +
    ps.map((p) => '<div class="photomap-path" style="user-select:text;word-break:break-all;' +
      'font-family:monospace;margin-bottom:4px">' + esc(p) + '</div>').join("") + '</div>';
  pin.data = {x: [source.data.x[i]], y: [source.data.y[i]]};
}
"""

PANEL_HINT = ('<div style="font:13px sans-serif;color:#555">Hover a point to see its photo; '
              'click it to pin the photo, with every original path, here.</div>')


def thumb_prefix(page_path, thumbs_dir) -> str:
    """URL prefix of the thumbnails relative to the page's folder, e.g. ``torch_thumbs/``."""
    page_dir = os.path.dirname(os.path.abspath(os.fspath(page_path)))
    rel = os.path.relpath(os.path.abspath(os.fspath(thumbs_dir)), page_dir)
    return "/".join(quote_part(p) for p in rel.split(os.sep)) + "/"


def quote_part(part: str) -> str:
    from urllib.parse import quote

    return quote(part, safe="")


def _palette(n):
    from bokeh.palettes import Category10, Category20, Turbo256

    if n <= 10:
        return list(Category10[10][:max(n, 3)])[:n]
    if n <= 20:
        return list(Category20[20][:n])
    return [Turbo256[int(i * 255 / (n - 1))] for i in range(n)]


def marker_size(n: int) -> float:
    """Smaller markers as the map fills up, so dense regions stay readable."""
    return 9 if n <= 1000 else 6 if n <= 20000 else 4


def build(photos, coords, labels, prefix, colour_by="", root=None, width=900, height=720):
    """The bokeh layout (plot + pinned panel) for ``photos`` at ``coords`` coloured by ``labels``.

    ``prefix`` is the thumbnail URL prefix (see :func:`thumb_prefix`); the tooltip and panel show
    ``root + relative path`` for every path, so the common folder is stored once, not per point."""
    from bokeh.layouts import row
    from bokeh.models import (BoxZoomTool, ColumnDataSource, CustomJS, Div, HoverTool, Legend, LegendItem,
                              PanTool, ResetTool, SaveTool, TapTool, WheelZoomTool)
    from bokeh.plotting import figure
    from bokeh.transform import factor_cmap

    n = len(photos)
    coords = np.asarray(coords, dtype=np.float64).reshape(-1, 2)
    if root is None:
        root = _common_prefix_dir(photos.paths)
    rel = ["\n".join(p[len(root):] for p in paths) for paths in photos.paths]
    factors = sorted(set(labels), key=_natural_key)
    source = ColumnDataSource(data={
        "x": coords[:, 0].astype(np.float32), "y": coords[:, 1].astype(np.float32),
        "md5": list(photos.md5s), "paths": rel,
        "copies": np.asarray(photos.copies, dtype=np.int32), "group": list(labels)})
    files = sum(photos.copies)
    title = "Photo map: %d photo%s (%d file%s)%s%s" % (
        n, "" if n == 1 else "s", files, "" if files == 1 else "s",
        " by %s features" % photos.model if photos.model else "",
        ", coloured by " + colour_by if colour_by else "")
    plot = figure(title=title, width=width, height=height, output_backend="webgl", name=PLOT_NAME,
                  tools=[PanTool(), WheelZoomTool(), BoxZoomTool(), ResetTool(), SaveTool()],
                  active_scroll="auto", match_aspect=True)
    plot.axis.visible = False
    plot.grid.visible = False
    size = marker_size(n)
    scatter = plot.scatter("x", "y", source=source, size=size, alpha=0.75, line_width=0,
                           color=factor_cmap("group", _palette(len(factors)), factors),
                           nonselection_alpha=0.75, selection_alpha=0.75)
    pin = ColumnDataSource(data={"x": [], "y": []})
    plot.scatter("x", "y", source=pin, size=size + 10, fill_alpha=0, line_color="black", line_width=2)
    if len(factors) > 1:
        # Explicit items (legend_field would list groups in order of first appearance in the data).
        first = {}
        for i, label in enumerate(labels):
            first.setdefault(label, i)
        legend = Legend(items=[LegendItem(label=str(f), renderers=[scatter], index=first[f]) for f in factors],
                        label_text_font_size="9pt", spacing=0, padding=4)
        plot.add_layout(legend, "right")
    panel = Div(text=PANEL_HINT, width=PANEL_WIDTH, height=height, name=PANEL_NAME,
                styles={"padding-left": "10px", "user-select": "text", "overflow-y": "auto"})
    args = dict(source=source, plot=plot, x_range=plot.x_range, y_range=plot.y_range,
                prefix=prefix, root=root, radius=HOVER_RADIUS_PX)
    tip_id = "photomap-tooltip-" + plot.id
    hover = HoverTool(tooltips=None, renderers=[scatter],
                      callback=CustomJS(args=dict(args, tip_id=tip_id, tip_class=TOOLTIP_CLASS),
                                        code=HOVER_JS))
    tap = TapTool(renderers=[scatter], behavior="inspect",
                  callback=CustomJS(args=dict(args, panel=panel, pin=pin, panel_width=PANEL_WIDTH),
                                    code=TAP_JS))
    plot.add_tools(hover, tap)
    return row(plot, panel)


def _common_prefix_dir(path_lists) -> str:
    """The longest common leading folder of all paths, with its trailing separator ('' if none)."""
    flat = [p for paths in path_lists for p in paths]
    if not flat:
        return ""
    prefix = os.path.commonprefix(flat)
    cut = prefix.rfind("/")
    return prefix[:cut + 1] if cut >= 0 else ""


def _natural_key(label):
    import re

    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(label))]


def page_html(layout, title=None) -> str:
    """The standalone HTML of ``layout`` with bokeh's JavaScript inline (opens with no internet);
    the browser tab shows ``title``, by default the plot's own title."""
    from bokeh.embed import file_html
    from bokeh.resources import INLINE

    if title is None:
        title = layout.children[0].title.text
    return file_html(layout, INLINE, title)  # the template escapes the title itself


def write_page(layout, path, title=None) -> int:
    """Write the page atomically at ``path`` (see :func:`page_html`); return its size in bytes."""
    data = page_html(layout, title).encode("utf-8")
    with atomic_write(path) as f:
        f.write(data)
    return len(data)


def notebook_prefix(thumbs_dir, server_root=".") -> str:
    """Thumbnail URL prefix for a plot shown inside Jupyter, which serves a file at
    ``/files/<path under the folder the server was started in>`` (classic, Notebook 7 and Lab)."""
    rel = os.path.relpath(os.path.abspath(os.fspath(thumbs_dir)), os.path.abspath(server_root))
    return "/files/" + "/".join(quote_part(p) for p in rel.split(os.sep)) + "/"


def show_inline(layout) -> None:
    """Show ``layout`` in a Jupyter notebook, bokeh JS inline, with the same hover and pin."""
    from bokeh.io import output_notebook, show
    from bokeh.resources import INLINE

    output_notebook(INLINE, hide_banner=True)
    show(layout)


def map_layout(photos, coords, page_path, colour="auto", seed=None, prefix=None):
    """The page layout for joined ``photos`` at ``coords``, coloured by ``colour`` (see
    :func:`photomap.layout.colour_groups`); thumbnail URLs are ``prefix + <md5>.jpg``, by default
    relative to the folder of ``page_path``."""
    from .layout import colour_groups

    labels, colour_by = colour_groups(photos, colour, seed=seed)
    if prefix is None:
        prefix = thumb_prefix(page_path, photos.thumbs_dir)
    return build(photos, coords, labels, prefix,
                 colour_by=colour_by if len(set(labels)) > 1 else "")
