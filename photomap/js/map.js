// The map's shared part, one per plot: which photo is nearest a point of the plot, what the page knows
// about a photo, and where the mouse is. The page's other scripts (hover.js, pin.js) get it through
// their `map` argument, a bokeh CustomJS running this file:
//
//     map.execute(cb_obj).then(async (photos) => { ... photos.nearest(x, y) ... })
//
// Like every script here, this file is the body of a function that bokeh calls with the args Python
// passes (bokeh's from_file convention for .js). Here: `source`, the drawn points (columns x, y and
// `colour`, an index into `groups`, the colour groups' names); `plot`; `prefix`, the thumbnails' URL
// prefix; `root`, the photos' common folder; `radius`, how near the pointer a point must be, in screen
// pixels; the per-photo details (photomap/details.py), `shard_size` photos per shard, either inline as
// `shards` (their JSON texts) or fetched from `shards_url` + "<k>.json" (relative to the page).
// Function bodies rather than ES modules: bokeh compiles those at once,
// while a module is imported asynchronously, once per event until the first import is done, so the
// first events could be handled out of order and each would get its own copy of this object.

class PhotoMap {
  constructor({source, plot, prefix, root, radius, groups, shards, shards_url, shard_size}) {
    this.source = source
    this.plot = plot
    this.prefix = prefix
    this.root = root
    this.radius = radius
    this.groups = groups
    this.shards_url = shards_url
    this.shard_size = shard_size
    this.shards = shards.map((text) => Promise.resolve(JSON.parse(text)))  // by number; fetched ones join
    this.pointer = {x: 0, y: 0, shift: false}  // in window pixels (hover events give canvas pixels)
    this.tickets = {}
    this.hovered = -1  // the photo whose tooltip shows (hover.js), or -1
    this.events = new EventTarget()  // "hover": the hovered photo changed (the mosaic raises it)
    const track = (ev) => { this.pointer.x = ev.clientX; this.pointer.y = ev.clientY }
    document.addEventListener("pointermove", track, true)
    document.addEventListener("mousemove", track, true)
    // Whether Shift was held as the last drag began (a shifted drag adds to the selection): bokeh's
    // selection event does not say.
    document.addEventListener("pointerdown", (ev) => { this.pointer.shift = ev.shiftKey }, true)
    // Esc clears what the scripts show (each registers its own clearing under its name: escape.pin = ...).
    this.escape = {}
    document.addEventListener("keydown", (ev) => {
      if (ev.key == "Escape") for (const clear of Object.values(this.escape)) clear()
    })
  }

  // Index of the photo nearest data position (x, y), no farther than `radius` screen pixels, or -1
  // (of several at the same distance, the lowest index). Only the grid cells within the radius are
  // searched: a scan of every photo took 38 ms a hover at a million photos here.
  nearest(x, y, radius = this.radius) {
    const {x: xs, y: ys} = this.source.data
    const {x_range, y_range} = this.plot
    const kx = this.plot.inner_width / (x_range.end - x_range.start)
    const ky = this.plot.inner_height / (y_range.end - y_range.start)
    if (!isFinite(x) || !isFinite(y) || !isFinite(kx) || !isFinite(ky) || xs.length == 0) return -1
    const g = this.grid()
    const [rx, ry] = [Math.abs(radius / kx), Math.abs(radius / ky)]
    const [c0, c1] = [g.col(x - rx), g.col(x + rx)]
    const [r0, r1] = [g.row(y - ry), g.row(y + ry)]
    let best = -1
    let best_d2 = radius * radius
    for (let r = r0; r <= r1; r++) {
      for (let c = c0; c <= c1; c++) {
        const cell = r * g.side + c
        for (let k = g.start[cell]; k < g.start[cell + 1]; k++) {
          const i = g.order[k]
          const dx = (xs[i] - x) * kx
          const dy = (ys[i] - y) * ky
          const d2 = dx * dx + dy * dy
          if (d2 < best_d2 || (d2 == best_d2 && i < best)) {
            best_d2 = d2
            best = i
          }
        }
      }
    }
    return best
  }

  // The photos bucketed in a square grid of about 4 photos a cell over their bounding box, made at the
  // first ask (density.js asks once the first view is drawn; one pass and a counting sort):
  // {side, start, order, col(x), row(y)}, where the photos of cell r * side + c are
  // order[start[cell]] ... order[start[cell + 1] - 1].
  grid() {
    const {x: xs, y: ys} = this.source.data
    if (this._grid != null && this._grid.xs === xs && this._grid.ys === ys) return this._grid
    const n = xs.length
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity
    for (let i = 0; i < n; i++) {
      const [x, y] = [xs[i], ys[i]]
      if (x < x0) x0 = x
      if (x > x1) x1 = x
      if (y < y0) y0 = y
      if (y > y1) y1 = y
    }
    const side = Math.max(1, Math.ceil(Math.sqrt(n / 4)))
    const fx = side / ((x1 - x0) || 1)
    const fy = side / ((y1 - y0) || 1)
    const last = side - 1
    const col = (x) => Math.min(last, Math.max(0, Math.floor((x - x0) * fx)))
    const row = (y) => Math.min(last, Math.max(0, Math.floor((y - y0) * fy)))
    const cells = new Uint32Array(n)
    const start = new Uint32Array(side * side + 1)
    for (let i = 0; i < n; i++) {
      const c = Math.min(last, Math.floor((xs[i] - x0) * fx))  // inside the box: never below 0
      const r = Math.min(last, Math.floor((ys[i] - y0) * fy))
      cells[i] = r * side + c
      start[cells[i] + 1]++
    }
    for (let c = 0; c < side * side; c++) start[c + 1] += start[c]
    const order = new Uint32Array(n)
    const fill = start.slice(0, side * side)
    for (let i = 0; i < n; i++) order[fill[cells[i]]++] = i
    this._grid = {xs, ys, side, start, order, col, row}
    return this._grid
  }

  // Indices of the photos inside the plot's current view (in data order), widened by `margin` of its
  // width and height on each side, or null when more than `limit` are: one pass over the points that
  // stops as soon as the count passes the limit.
  in_view(limit, margin = 0) {
    const {x: xs, y: ys} = this.source.data
    const {x_range, y_range} = this.plot
    let [x0, x1] = [Math.min(x_range.start, x_range.end), Math.max(x_range.start, x_range.end)]
    let [y0, y1] = [Math.min(y_range.start, y_range.end), Math.max(y_range.start, y_range.end)]
    if (![x0, x1, y0, y1].every(isFinite)) return null
    const [mx, my] = [margin * (x1 - x0), margin * (y1 - y0)]
    ;[x0, x1, y0, y1] = [x0 - mx, x1 + mx, y0 - my, y1 + my]
    const found = []
    for (let i = 0; i < xs.length; i++) {
      const x = xs[i]
      if (x < x0 || x > x1) continue
      const y = ys[i]
      if (y < y0 || y > y1) continue
      if (found.length == limit) return null
      found.push(i)
    }
    return found
  }

  // Say that photo i (-1: none) is now the hovered one.
  hover(i) {
    if (i == this.hovered) return
    this.hovered = i
    this.events.dispatchEvent(new CustomEvent("hover", {detail: i}))
  }

  // A ticket for the newest request of one kind ("pin", ...): it says false once a newer one was
  // issued, so a slow answer never overwrites a later one.
  ticket(kind) {
    const n = this.tickets[kind] = (this.tickets[kind] ?? 0) + 1
    return () => this.tickets[kind] == n
  }

  // What the page says about photo i: {md5, thumb (its URL), paths (every original path), copies,
  // group (its colour group's name), note ("3 copies · trip")} and every other detail column stage 3
  // wrote (photomap/details.py). A Promise: the details may have to be fetched first; it fails with a
  // one-line reason when they cannot be (a page opened from disk cannot fetch).
  async photo(i) {
    const shard = await this.shard(Math.floor(i / this.shard_size))
    const j = i - shard.start
    const photo = {}
    for (const [name, values] of Object.entries(shard.columns)) photo[name] = values[j]
    const n = photo.copies
    photo.thumb = this.prefix + photo.md5 + ".jpg"
    photo.paths = photo.paths.map((p) => this.root + p)
    photo.group = this.groups[this.source.data.colour[i]]
    photo.note = n + (n == 1 ? " copy" : " copies") + " \u00b7 " + photo.group
    return photo
  }

  // Shard k of the details, fetched once (a failed fetch is tried again on the next ask).
  shard(k) {
    if (this.shards[k] == null) {
      if (location.protocol == "file:") {
        return Promise.reject(new Error("photo details need the page served: python -m http.server"))
      }
      this.shards[k] = fetch(this.shards_url + k + ".json").then((r) => {
        if (!r.ok) throw new Error("photo details not found (" + r.status + "): was the page moved?")
        return r.json()
      })
      this.shards[k].catch(() => { this.shards[k] = null })
    }
    return this.shards[k]
  }
}

// One per plot, made by whichever script asks first (a notebook may show several plots).
const maps = globalThis.photomap_maps ??= new WeakMap()
if (!maps.has(plot)) {
  maps.set(plot, new PhotoMap({source, plot, prefix, root, radius, groups, shards, shards_url, shard_size}))
}
return maps.get(plot)
