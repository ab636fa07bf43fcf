"""The page's keys to the map: the colour switch (islands, folder, year taken, one colour) with the
legend that follows it, the islands' labels drawn at their centres, and the one-line note on the
labels' weights. Built here, attached to the plot by :func:`photomap.page.build`."""
import numpy as np

SWITCH_NAME = "photomap-colour-switch"
LEGEND_NAME = "photomap-legend"
NOTE_NAME = "photomap-note"
LABELS_NAME = "photomap-labels"
LABEL_FONT = "bold 12px sans-serif"  # the labels.js measure and the drawn text must agree
LEGEND_HEIGHT = 220


def _codes(scheme):
    """A scheme's codes as the smallest unsigned typed array that holds them (a million photos:
    1 MB a scheme)."""
    k = len(scheme.groups)
    return np.asarray(scheme.codes, np.uint8 if k <= 1 << 8 else np.uint16 if k <= 1 << 16 else np.uint32)


def colour_columns(schemes, start) -> dict:
    """The plot's colour columns: ``colour``, the starting scheme's codes (the one drawn), and
    ``colour_<mode>`` for each other scheme (``none`` needs none: all zero)."""
    by_mode = {s.mode: s for s in schemes}
    cols = {"colour": _codes(by_mode[start])}
    cols.update({"colour_" + s.mode: _codes(s) for s in schemes if s.mode not in (start, "none")})
    return cols


def scheme_table(schemes) -> dict:
    """What the page script needs of each scheme: mode -> {title, groups, colours, sizes}."""
    return {s.mode: {"title": s.title, "groups": [str(g) for g in s.groups], "colours": list(s.colours),
                     "sizes": [int(v) for v in s.sizes]} for s in schemes}


def add_keys(plot, mapper, source, shared, schemes, start, islands=None, note="", width=280):
    """The colour switch, the legend and the note (bokeh models, to place beside the plot, top to
    bottom), and the islands' labels drawn on ``plot``. ``shared``: the page's map.js callback;
    ``schemes``: :class:`photomap.colours.Scheme` list; ``start``: the mode drawn first; ``islands``: an :class:`photomap.islands.Islands` (named
    islands get labels, shown while the map is coloured by island; ``None`` or unnamed: none)."""
    from bokeh.models import Div, RadioButtonGroup

    from .page import callback

    modes = [s.mode for s in schemes]
    names = {"cluster": "islands", "folder": "folder", "year": "year", "none": "none"}
    switch = RadioButtonGroup(labels=[names.get(m, m) for m in modes], active=modes.index(start),
                              name=SWITCH_NAME, width=width - 10)
    legend = Div(text="", width=width, height=LEGEND_HEIGHT, name=LEGEND_NAME,
                 styles={"overflow-y": "auto", "padding-left": "10px"})
    note_div = Div(text=_esc(note), width=width, name=NOTE_NAME, visible=bool(note),
                   styles={"padding-left": "10px", "font": "12px sans-serif", "color": "#a35a00"})
    labelset = None
    if islands is not None and islands.names is not None:
        labelset = add_labels(plot, islands, start == "cluster")
    recolour = callback("colour.js", map=shared, plot=plot, chooser=switch, source=source, mapper=mapper, legend=legend,
                        labels=labelset, schemes=scheme_table(schemes), modes=modes, start=start)
    switch.js_on_change("active", recolour)
    # The plot's ranges are set when it is first drawn: that draws the legend too (once).
    plot.x_range.js_on_change("start", recolour)
    return [switch, note_div, legend] if note else [switch, legend]


def add_labels(plot, islands, visible=True):
    """Draw the named ``islands``' labels on ``plot`` (a LabelSet, returned): at each island's label
    place, largest island first; ``labels.js`` keeps those that fit the view without colliding."""
    from bokeh.models import ColumnDataSource, LabelSet

    from .page import callback

    rows = islands.rows()
    order = sorted(range(len(rows)), key=lambda i: -int(islands.placement.priority[rows[i].cluster]))
    every = ColumnDataSource(data={"x": [rows[i].x for i in order], "y": [rows[i].y for i in order],
                                   "text": [rows[i].label for i in order]})
    shown = ColumnDataSource(data={"x": [], "y": [], "text": []})
    labelset = LabelSet(x="x", y="y", text="text", source=shown, text_font_size="12px", text_font_style="bold",
                        text_align="center", text_baseline="middle", text_color="#222",
                        background_fill_color="white", background_fill_alpha=0.7, name=LABELS_NAME,
                        visible=visible, level="overlay")  # above the mosaic's pictures (see mosaic.js)
    plot.add_layout(labelset)
    place = callback("labels.js", plot=plot, every=every, shown=shown, font=LABEL_FONT)
    for rng in (plot.x_range, plot.y_range):
        rng.js_on_change("start", place)
        rng.js_on_change("end", place)
    return labelset


def _esc(text) -> str:
    import html

    return html.escape(str(text))
