// The islands' labels: of every label (`every`, largest island first), those that fit the current view
// without touching one already placed go into `shown`, the LabelSet's source. Larger islands win a
// collision; zooming in makes room, so more labels appear. Runs when the view's ranges change.
//
// A function body (see map.js); Python passes `plot`, `every` and `shown` (ColumnDataSources of x, y,
// text) and `font` (the labels' CSS font, to measure them as drawn).

const PAD = 3  // pixels kept clear around each label
const {x_range: xr, y_range: yr} = plot
let width, height
try {
  [width, height] = [plot.inner_width, plot.inner_height]
} catch (err) {
  return  // not laid out yet: the ranges change again once it is
}
const kx = width / (xr.end - xr.start)
const ky = height / (yr.end - yr.start)
if (!isFinite(kx) || !isFinite(ky) || kx <= 0 || ky <= 0) return
const ctx = (globalThis.photomap_measure ??= document.createElement("canvas").getContext("2d"))
ctx.font = font
const {x, y, text} = every.data
const boxes = []
const out = {x: [], y: [], text: []}
for (let i = 0; i < text.length; i++) {
  const cx = (x[i] - xr.start) * kx
  const cy = (y[i] - yr.start) * ky
  const w = ctx.measureText(text[i]).width / 2 + PAD
  const h = 9 + PAD
  if (cx < 0 || cy < 0 || cx > width || cy > height) continue
  if (boxes.some(([bx, by, bw, bh]) => Math.abs(bx - cx) < bw + w && Math.abs(by - cy) < bh + h)) continue
  boxes.push([cx, cy, w, h])
  out.x.push(x[i])
  out.y.push(y[i])
  out.text.push(text[i])
}
const now = shown.data
if (now.text.length != out.text.length || now.text.some((t, i) => t != out.text[i])) shown.data = out
