"""The page's ways to act on what the map shows: select a region (box or lasso) and take its files,
"more like this" under the pinned photo, and the near-duplicates mode (``js/select.js``,
``js/similar.js``, ``js/duplicates.js``), all writing into the panel through ``js/panel.js``."""
import numpy as np

# The panel's sections, top to bottom: what is selected, then the pinned photo and what is like it.
SECTIONS = ("selection", "pinned", "neighbours", "duplicates")
SELECT_TOOLS = ("photomap-box-select", "photomap-lasso-select")
NEAR_NAME, LAYER_NAME, TOGGLE_NAME = "photomap-neighbours", "photomap-duplicates", "photomap-duplicates-mode"
NEAR_COLOUR = "#ff7f0e"  # the pinned photo's neighbours' rings (the pin's own ring is black)
FADED_ALPHA = 0.12  # unselected photos while there is a selection; photos in no group in that mode
TOGGLE_HEIGHT = 40


def sections(panel):
    """The panel's shared section object (``js/panel.js``) for the scripts that write into ``panel``."""
    from .page import callback

    return callback("panel.js", div=panel, order=list(SECTIONS))


def attach(plot, source, scatter, shared, panel_sections, ring, pin, size, details, panel_width) -> list:
    """Add selection, more like this and the near-duplicates mode to ``plot`` (whose ``scatter`` draws
    ``source``; ``shared`` is ``map.js``, ``ring`` the pin's source, ``pin`` the ``pin.js`` callback,
    ``size`` the markers' size). ``details`` are the page's detail columns
    (:func:`photomap.similar.detail_columns`; None: a page without them). Returns the widgets to put
    above the panel (the near-duplicates toggle where the map has groups)."""
    from bokeh.models import BoxSelectTool, ColumnDataSource, LassoSelectTool

    from .page import callback

    # Selection: bokeh's tools draw the region and say where it is; select.js finds the photos in it
    # over every photo (renderers=[]: bokeh's own hit test would only see what is drawn).
    tools = [BoxSelectTool(renderers=[], name=SELECT_TOOLS[0], continuous=False),
             LassoSelectTool(renderers=[], name=SELECT_TOOLS[1], continuous=False)]
    plot.add_tools(*tools)
    scatter.nonselection_glyph.fill_alpha = FADED_ALPHA
    plot.js_on_event("selectiongeometry", callback("select.js", map=shared, sections=panel_sections,
                                                   source=source, pin=pin, panel_width=panel_width))
    # More like this: follows the pin.
    near = ColumnDataSource(data={"x": [], "y": []})
    plot.scatter("x", "y", source=near, size=size + 6, fill_alpha=0, line_color=NEAR_COLOUR, line_width=2,
                 name=NEAR_NAME)
    ring.js_on_change("data", callback("similar.js", map=shared, sections=panel_sections, ring=ring,
                                       near=near, pin=pin, panel_width=panel_width))
    return near_duplicates_mode(plot, source, scatter, size, (details or {}).get("dup_group"))


def near_duplicates_mode(plot, source, scatter, size, dup_group) -> list:
    """The toggle that shows the near-duplicate groups (``dup_group``: each photo's group id or None)
    on the map, each group in one colour over the faded others; [] for a page without the column."""
    from bokeh.models import ColumnDataSource, LinearColorMapper, Toggle
    from bokeh.palettes import Category10

    from .page import callback

    if dup_group is None:
        return []
    members = np.array([i for i, g in enumerate(dup_group) if g is not None], dtype=np.int64)
    ids = {g: k for k, g in enumerate(sorted({g for g in dup_group if g is not None}))}
    palette = list(Category10[10])
    codes = np.array([ids[dup_group[i]] % len(palette) for i in members], dtype=np.uint8)
    # The members' places only (not every photo's flag): a few numbers per photo in a group.
    layer_source = ColumnDataSource(data={"x": source.data["x"][members], "y": source.data["y"][members],
                                          "colour": codes})
    mapper = LinearColorMapper(palette=palette, low=-0.5, high=len(palette) - 0.5)
    layer = plot.scatter("x", "y", source=layer_source, size=size + 2, alpha=0.95, line_color="black",
                         line_width=0.5, color={"field": "colour", "transform": mapper}, visible=False, name=LAYER_NAME)
    label = ("near-duplicates: %d group%s (%d photos)" % (len(ids), "" if len(ids) == 1 else "s", len(members))
             if len(ids) else "no near-duplicates")
    toggle = Toggle(label=label, active=False, disabled=not ids, height=30, name=TOGGLE_NAME)
    toggle.js_on_change("active", callback("duplicates.js", scatter=scatter, layer=layer, faded=FADED_ALPHA))
    return [toggle]
