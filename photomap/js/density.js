// What the plot draws for the current view, redrawn whenever the view changes (pan, zoom, reset,
// resize), once it has been still for `quiet_ms`:
// - up to `budget` photos in view: the photos themselves, through `scatter`; on a large map its data
//   is set here to the photos in view (and a margin around it, so a short pan shows no gap);
// - more: a density image over the view (`image`, a bokeh image_rgba renderer; null on a map of up to
//   `budget` photos), one cell per `cell_px` screen pixels, each cell the mean colour of its photos
//   and more opaque the more photos it holds, on a log scale: a lone photo is still a faint dot.
// Either way the markers' size and opacity follow how crowded the view is: smaller and lighter where
// many photos share a few pixels, so that overlapping points add up and dense places look dense.
// The hover and the pin never use what is drawn: they search the full arrays (map.js's nearest()).
//
// A function body (see map.js); Python passes `map` (map.js: the full x, y, colour arrays are its
// source), `plot`, `scatter`, `image`, `palette` (the colours of the colour indices, "#rrggbb"),
// `budget`, `cell_px` and `quiet_ms` (photomap/density.py); bokeh adds `cb_obj`.

const STYLE_CELL_PX = 8  // how crowded the view is: photos per 8x8-pixel cell around a typical photo
const MARGIN = 0.25  // drawn beyond each side of the view, as a fraction of its width or height

class Density {
  constructor(photos) {
    this.photos = photos
    this.timer = null
    this.drawn = false
    this.rgb = palette.map((c) => [1, 3, 5].map((k) => parseInt(c.slice(k, k + 2), 16)))
  }

  // Redraw soon: at once for the first view, else once the view has been still for quiet_ms (a pan
  // sends a change per frame; redrawing at each would make every frame wait for it).
  schedule() {
    clearTimeout(this.timer)
    this.timer = setTimeout(() => this.redraw(), this.drawn ? quiet_ms : 0)
  }

  redraw() {
    const view = this.view()
    if (view == null) return
    if (!this.drawn) {
      // The hover's search grid (map.js), built once the first view is drawn rather than at the first
      // hover, where it took 0.4-0.8 s at a million photos.
      (globalThis.requestIdleCallback ?? setTimeout)(() => this.photos.grid())
    }
    this.drawn = true
    const {x, y, colour} = this.photos.source.data
    if (image == null) {  // a small map: every photo is drawn all the time, only the style changes
      this.style(x, y, null, view)
      return
    }
    const box = widen(view, MARGIN)
    const inside = this.photos.in_view(budget, MARGIN)
    if (inside != null) {
      scatter.data_source.data = {x: pick(x, inside, Float32Array), y: pick(y, inside, Float32Array),
                                  colour: pick(colour, inside, Uint16Array)}
      this.style(x, y, inside, view)
      scatter.visible = true
      image.visible = false
    } else {
      image.data_source.data = this.raster(x, y, colour, box, view)
      image.visible = true
      scatter.visible = false
      scatter.data_source.data = {x: new Float32Array(0), y: new Float32Array(0), colour: new Uint16Array(0)}
    }
  }

  // The view in data units and its size in screen pixels, or null before the plot is laid out.
  view() {
    const {x_range, y_range, inner_width: w, inner_height: h} = plot
    const v = {x0: Math.min(x_range.start, x_range.end), x1: Math.max(x_range.start, x_range.end),
               y0: Math.min(y_range.start, y_range.end), y1: Math.max(y_range.start, y_range.end), w, h}
    const ok = [v.x0, v.x1, v.y0, v.y1].every(isFinite) && v.x1 > v.x0 && v.y1 > v.y0 && w > 0 && h > 0
    return ok ? v : null
  }

  // Marker size and opacity from the photos in view (`inside`: their indices, or null for all):
  // a typical photo shares its 8x8-pixel cell with c others; markers shrink to leave each about its
  // share of the cell, and their opacity is set so that where c of them overlap they add up to 0.75,
  // the opacity of a lone marker: denser places come out darker, sparser ones lighter.
  style(x, y, inside, view) {
    const cells = new Map()
    const kx = view.w / STYLE_CELL_PX / (view.x1 - view.x0)
    const ky = view.h / STYLE_CELL_PX / (view.y1 - view.y0)
    const n = inside == null ? x.length : inside.length
    for (let k = 0; k < n; k++) {
      const i = inside == null ? k : inside[k]
      if (x[i] < view.x0 || x[i] > view.x1 || y[i] < view.y0 || y[i] > view.y1) continue
      const cell = Math.floor((x[i] - view.x0) * kx) * 65536 + Math.floor((y[i] - view.y0) * ky)
      cells.set(cell, (cells.get(cell) ?? 0) + 1)
    }
    let sum = 0
    let sum2 = 0
    for (const c of cells.values()) {
      sum += c
      sum2 += c * c
    }
    const crowd = sum > 0 ? sum2 / sum : 1  // photos in a typical photo's cell, itself included
    const size = clamp(1.25 * STYLE_CELL_PX / Math.sqrt(crowd), 3, 9)
    const overlap = crowd * (Math.PI / 4) * size * size / (STYLE_CELL_PX * STYLE_CELL_PX)
    const alpha = clamp(1 - Math.pow(0.25, 1 / Math.max(overlap, 1)), 0.2, 0.75)
    const glyph = scatter.glyph
    if (glyph.size != size || glyph.fill_alpha != alpha) {
      glyph.setv({size, fill_alpha: alpha})
      for (const g of [scatter.selection_glyph, scatter.nonselection_glyph, scatter.hover_glyph]) {
        if (g != null && g != "auto") g.setv({size, fill_alpha: alpha})
      }
    }
  }

  // The density image of the photos in `box`: a cell per cell_px screen pixels, its colour the mean
  // of its photos' colours, its opacity log(1 + count) against a typical photo's cell (so that the
  // typical photo is nearly opaque and a lone one is faint, never invisible). Bokeh's image data.
  raster(x, y, colour, box, view) {
    const nx = Math.max(1, Math.ceil(view.w * (box.x1 - box.x0) / (view.x1 - view.x0) / cell_px))
    const ny = Math.max(1, Math.ceil(view.h * (box.y1 - box.y0) / (view.y1 - view.y0) / cell_px))
    const count = new Uint32Array(nx * ny)
    const sums = new Float32Array(3 * nx * ny)
    const kx = nx / (box.x1 - box.x0)
    const ky = ny / (box.y1 - box.y0)
    const rgb = this.rgb
    for (let i = 0; i < x.length; i++) {
      const ix = Math.floor((x[i] - box.x0) * kx)
      const iy = Math.floor((y[i] - box.y0) * ky)
      if (ix < 0 || ix >= nx || iy < 0 || iy >= ny) continue
      const b = iy * nx + ix  // row 0 is the bottom of a bokeh image
      const c = rgb[colour[i]]
      count[b]++
      sums[3 * b] += c[0]
      sums[3 * b + 1] += c[1]
      sums[3 * b + 2] += c[2]
    }
    let sum = 0
    let sum2 = 0
    for (let b = 0; b < count.length; b++) {
      sum += count[b]
      sum2 += count[b] * count[b]
    }
    const scale = 1 / Math.log1p(2 * Math.max(1, sum > 0 ? sum2 / sum : 1))
    const pixels = new Uint32Array(nx * ny)
    const bytes = new Uint8ClampedArray(pixels.buffer)
    for (let b = 0; b < count.length; b++) {
      const c = count[b]
      if (c == 0) continue
      bytes[4 * b] = sums[3 * b] / c
      bytes[4 * b + 1] = sums[3 * b + 1] / c
      bytes[4 * b + 2] = sums[3 * b + 2] / c
      bytes[4 * b + 3] = 255 * Math.min(1, 0.3 + 0.7 * Math.log1p(c) * scale)
    }
    return {image: [image_array(pixels, ny, nx)], x: [box.x0], y: [box.y0], dw: [box.x1 - box.x0],
            dh: [box.y1 - box.y0]}
  }
}

function widen(v, f) {
  const dx = f * (v.x1 - v.x0)
  const dy = f * (v.y1 - v.y0)
  return {x0: v.x0 - dx, x1: v.x1 + dx, y0: v.y0 - dy, y1: v.y1 + dy}
}

function pick(values, indices, Type) {
  const out = new Type(indices.length)
  for (let k = 0; k < indices.length; k++) out[k] = values[indices[k]]
  return out
}

function clamp(v, lo, hi) {
  return Math.min(hi, Math.max(lo, v))
}

// A 2-D array as bokeh's image glyphs take it (a typed array that knows its shape).
function image_array(pixels, rows, cols) {
  return Bokeh.require("core/util/ndarray").ndarray(pixels, {dtype: "uint32", shape: [rows, cols]})
}

// One per plot (a notebook may show several plots).
return map.execute(cb_obj).then((photos) => {
  const all = globalThis.photomap_density ??= new WeakMap()
  if (!all.has(plot)) all.set(plot, new Density(photos))
  all.get(plot).schedule()
})
