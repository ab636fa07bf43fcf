// The map's shared part: which photo is nearest a point of the plot, and what the page knows about a
// photo. Every other script of the page (hover.js, pin.js) reaches it through its `map` argument, a
// bokeh CustomJS holding this module, and shares the one object it returns:
//
//     const photos = await map.execute(obj)
//
// Python passes (bokeh args): `source`, the drawn points (columns x, y) with, per photo, `md5`,
// `paths` (below `root`, one per line), `copies` and `group`; `plot`; `prefix`, the thumbnails' URL
// prefix; `root`, the photos' common folder; `radius`, how near the pointer a point must be, in
// screen pixels.

class PhotoMap {
  constructor({source, plot, prefix, root, radius}) {
    this.source = source
    this.plot = plot
    this.prefix = prefix
    this.root = root
    this.radius = radius
  }

  // Index of the photo nearest data position (x, y), no farther than `radius` screen pixels, or -1.
  nearest(x, y, radius = this.radius) {
    const {x: xs, y: ys} = this.source.data
    const {x_range, y_range} = this.plot
    const kx = this.plot.inner_width / (x_range.end - x_range.start)
    const ky = this.plot.inner_height / (y_range.end - y_range.start)
    if (!isFinite(x) || !isFinite(y) || !isFinite(kx) || !isFinite(ky)) return -1
    let best = -1
    let best_d2 = radius * radius
    for (let i = 0; i < xs.length; i++) {
      const dx = (xs[i] - x) * kx
      if (dx > radius || dx < -radius) continue
      const dy = (ys[i] - y) * ky
      const d2 = dx * dx + dy * dy
      if (d2 < best_d2) {
        best_d2 = d2
        best = i
      }
    }
    return best
  }

  // What the page says about photo i: {md5, thumb (its URL), paths (every original path), copies,
  // group, note ("3 copies · trip")}. A Promise, so the details may later come from elsewhere than
  // the drawn data (fetched when asked for) without changing the scripts that show them.
  async photo(i) {
    const {md5, paths, copies, group} = this.source.data
    const n = copies[i]
    return {
      md5: md5[i],
      thumb: this.prefix + md5[i] + ".jpg",
      paths: paths[i].split("\n").map((p) => this.root + p),
      copies: n,
      group: group[i],
      note: n + (n == 1 ? " copy" : " copies") + " \u00b7 " + group[i],
    }
  }
}

let shared = null  // bokeh compiles this module once per page (per plot), so this is per plot

export default function (args) {
  if (shared === null) shared = new PhotoMap(args)
  return shared
}
