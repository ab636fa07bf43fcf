// Range-change callback: when few enough photos are in view (`budget`), each is drawn as its own
// thumbnail at its point, on top of the dots; zoomed out again, only the dots remain. The pictures are
// <img> elements in one layer that bokeh's canvas holds between its primary layer (the dots) and its
// overlay layer (the pinned ring, the box-zoom box, labels drawn at the "overlay" level), so those stay
// on top; the layer lets the pointer through, so hover and pin work as before. Each picture's URL comes
// from photos.photo(i) (the page's data holds no md5s); a thumbnail is requested only while its photo is
// in view, once (its element is kept), and one whose photo left the view before it came is dropped.
//
// A function body (see map.js); Python passes `map`, `budget` (most photos in view drawn as pictures),
// `min_px` and `max_px` (a picture's longer side, in screen pixels); bokeh adds `cb_obj` (the range).

class Mosaic {
  constructor(photos, budget, min_px, max_px) {
    this.photos = photos
    this.budget = budget
    this.min_px = min_px
    this.max_px = max_px
    this.base_radius = photos.radius
    this.pictures = new Map()  // photo index -> <img>, in the order they were first shown
    this.shown = new Set()  // indices drawn now
    this.pending = false
    this.tries = 0
    this.layer = document.createElement("div")
    this.layer.className = "photomap-mosaic"
    Object.assign(this.layer.style, {position: "absolute", overflow: "hidden", pointerEvents: "none"})
    photos.events.addEventListener("hover", (ev) => this.raise(ev.detail))
    this.raised = -1
  }

  // Update at the next animation frame: one range change moves start and end, x and y, separately.
  schedule() {
    if (this.pending) return
    this.pending = true
    requestAnimationFrame(() => {
      this.pending = false
      this.update()
    })
  }

  // The plot's view, once bokeh has rendered it.
  view() {
    const plot = this.photos.plot
    return globalThis.Bokeh?.index?.query_one((v) => v.model === plot && v.frame != null) ?? null
  }

  update() {
    const pv = this.view()
    if (pv == null || !(pv.frame.bbox.width > 0)) {
      if (this.tries++ < 600) this.schedule()  // not rendered yet: try again next frame
      return
    }
    this.attach(pv)
    const ids = this.photos.in_view(this.budget)
    this.show(ids ?? [], pv.frame.bbox)
  }

  // Put the layer over the frame, above the dots, below bokeh's overlays; follow the plot's size.
  attach(pv) {
    const primary = pv.canvas_view.primary.el
    if (this.layer.previousSibling !== primary) primary.after(this.layer)
    const {left, top, width, height} = pv.frame.bbox
    Object.assign(this.layer.style, {left: left + "px", top: top + "px", width: width + "px", height: height + "px"})
    if (this.resizes == null) {
      this.resizes = new ResizeObserver(() => this.schedule())
      this.resizes.observe(pv.canvas_view.el)
    }
  }

  // Draw photos `ids` at their places in a frame of `box` pixels; drop every other picture.
  show(ids, box) {
    const {x: xs, y: ys} = this.photos.source.data
    const {x_range: xr, y_range: yr} = this.photos.plot
    const kx = box.width / (xr.end - xr.start)
    const ky = box.height / (yr.end - yr.start)
    // Fewer photos in view (zoomed in further) get bigger pictures, up to max_px.
    const side = Math.round(Math.min(this.max_px, Math.max(this.min_px,
      0.6 * Math.sqrt(box.width * box.height / Math.max(ids.length, 1)))))
    const now = new Set(ids)
    for (const i of this.shown) {
      if (!now.has(i)) this.hide(i)
    }
    for (const i of ids) {
      const img = this.pictures.get(i) ?? this.make(i)
      Object.assign(img.style, {left: (xs[i] - xr.start) * kx + "px", top: (yr.end - ys[i]) * ky + "px",
                                maxWidth: side + "px", maxHeight: side + "px"})
      if (!img.isConnected) this.layer.appendChild(img)
    }
    this.shown = now
    // Hovering a picture anywhere over it finds its photo, not only near its centre point.
    this.photos.radius = ids.length ? Math.max(this.base_radius, side / 2) : this.base_radius
    this.forget()
  }

  make(i) {
    const img = document.createElement("img")
    img.alt = ""
    img.dataset.index = i
    Object.assign(img.style, {position: "absolute", transform: "translate(-50%, -50%)", display: "block",
                              boxShadow: "0 0 0 1px rgba(255,255,255,.9), 0 1px 4px rgba(0,0,0,.45)",
                              visibility: "hidden"})
    img.addEventListener("load", () => { img.style.visibility = "visible" })
    this.pictures.set(i, img)
    this.photos.photo(i).then((photo) => {
      if (this.pictures.get(i) === img && this.shown.has(i)) img.src = photo.thumb
    }, () => this.pictures.delete(i))  // no details (page opened from disk): dots only; asked again later
    return img
  }

  // Take picture i off the map; one still loading is dropped, so its request is not waited on.
  hide(i) {
    const img = this.pictures.get(i)
    if (img == null) return
    img.remove()
    if (!img.complete || !img.getAttribute("src")) {
      img.removeAttribute("src")
      this.pictures.delete(i)
    }
  }

  // Keep at most a few screens of loaded pictures off the map (the oldest go first).
  forget() {
    let excess = this.pictures.size - 4 * this.budget
    for (const i of this.pictures.keys()) {
      if (excess <= 0) break
      if (!this.shown.has(i)) {
        this.pictures.delete(i)
        excess--
      }
    }
  }

  // The hovered photo's picture comes to the front, outlined.
  raise(i) {
    const old = this.pictures.get(this.raised)
    if (old != null) Object.assign(old.style, {zIndex: "", outline: ""})
    this.raised = i
    const img = this.pictures.get(i)
    if (img != null) Object.assign(img.style, {zIndex: 1, outline: "2px solid #222"})
  }
}

// (After the class: a class, unlike a function, does not exist before its declaration has run.)
return map.execute(cb_obj).then((photos) => {
  photos.mosaic ??= new Mosaic(photos, budget, min_px, max_px)
  photos.mosaic.schedule()
})
