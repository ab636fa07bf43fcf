// The colour switch: recolours the points by another scheme (islands, folder, year taken, none) and
// redraws the legend for it: one row per group with its colour, name and size. The legend is a bokeh
// Div, whose text is HTML: every name goes through esc(), so a folder name stays text.
//
// Runs when the switch changes, and once when the plot is first drawn (its ranges are set then).
//
// A function body (see map.js); Python passes `map`, `plot`, `chooser` (the switch: a RadioButtonGroup), `source` (the drawn
// points: `colour`, the codes drawn, and `colour_<mode>` for the other schemes), `mapper` (code k ->
// palette[k]), `legend` (the Div), `labels` (the islands' LabelSet, or null: shown while the colours
// are the islands'), `schemes` (mode -> {title, groups, colours, sizes}), `modes` (the
// switch's order) and `start` (the mode first drawn).

if (cb_obj !== chooser && legend.text != "") return  // a later range change: nothing to redraw
const mode = modes[chooser.active]
const scheme = schemes[mode]
const data = source.data
// The mode drawn now, kept outside the data: a column that is not one value per point would make
// bokeh take the points for fewer.
const drawn_modes = globalThis.photomap_drawn_modes ??= new WeakMap()
const drawn = drawn_modes.get(source) ?? start
if (drawn != mode) {
  if (data["colour_" + drawn] == null) data["colour_" + drawn] = data.colour  // keep it for a switch back
  data.colour = data["colour_" + mode] ?? new Uint8Array(data.x.length)  // "none": every photo group 0
  drawn_modes.set(source, mode)
}
mapper.palette = scheme.colours
mapper.low = -0.5
mapper.high = scheme.colours.length - 0.5
source.change.emit()
const density = globalThis.photomap_density?.get(plot)  // a large map's view (density.js): redrawn in these colours
if (density != null) {
  density.rgb = scheme.colours.map((c) => [1, 3, 5].map((k) => parseInt(c.slice(k, k + 2), 16)))
  density.redraw()
}
if (labels != null) labels.visible = mode == "cluster"
legend.text = legend_html(scheme)
return map.execute(cb_obj).then((photos) => { photos.groups = scheme.groups })  // the tooltip's group name

function legend_html(scheme) {
  const rows = scheme.groups.map((g, k) => scheme.sizes[k] == 0 ? "" :
    `<div class="photomap-legend-row" style="display:flex;align-items:center;gap:6px;margin:1px 0">` +
    `<span class="photomap-swatch" data-colour="${esc(scheme.colours[k])}" style="flex:none;width:11px;` +
    `height:11px;border-radius:6px;background:${esc(scheme.colours[k])}"></span>` +
    `<span class="photomap-legend-name" style="overflow:hidden;text-overflow:ellipsis;white-space:nowrap">` +
    `${esc(g)}</span><span style="margin-left:auto;color:#777">${scheme.sizes[k].toLocaleString("en")}</span></div>`)
  return `<div class="photomap-legend" style="font:12px sans-serif">` +
    `<div class="photomap-legend-title" style="color:#555;margin:2px 0 4px">Colour: ${esc(scheme.title)}</div>` +
    rows.join("") + `</div>`
}

function esc(s) {
  return String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;").replace(/'/g, "&#39;")
}
