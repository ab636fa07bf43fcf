// Box select and lasso (bokeh's select tools; this runs on their selection event): the photos inside
// the drawn region become the selection (a drag with Shift held adds to it; Esc clears it and the pin).
// The panel's "selection" section says at once how many photos are selected; once their details are
// in (fetched by shard, photomap/details.py), how many original files they have, which of those are
// gone, a grid of up to GRID_MAX thumbnails (clicking one pins it), and two actions: Copy paths (to the
// clipboard) and Download list (selection.txt): one original path per line, every copy of every
// selected photo, each exactly as its .meta line writes it; paths whose original was missing when
// the map was made are left out (and counted).
//
// The selection is computed here on the full x, y arrays, not by bokeh's hit test on what is drawn:
// it must hold every photo in the region whatever the plot is showing.
//
// A function body (see map.js); Python passes `map`, `sections` (panel.js), `source` (whose
// `selected` shows the selection on the plot), `pin` (pin.js) and `panel_width`; bokeh adds `cb_obj`,
// the selection event ({geometry: rect x0 x1 y0 y1 or poly x y, in data units; final}).

const GRID_MAX = 60
const THUMB_PX = 60

return Promise.all([map.execute(cb_obj), sections.execute(cb_obj)]).then(async ([photos, panel]) => {
  if (!cb_obj.final) return
  set_up(photos, panel)
  const hit = inside(cb_obj.geometry, photos.source.data)
  const before = photos.selection?.indices
  const indices = photos.pointer.shift && before != null ? union(before, hit) : hit
  const newest = photos.ticket("select")
  if (indices.length == 0) {
    photos.escape.select()
    return
  }
  const sel = photos.selection = {indices, info: null, said: ""}
  source.selected.indices = Array.from(indices)
  panel.set("selection", selection_html(sel, photos))  // the count, before any detail is fetched
  const info = await gather(photos, indices).catch((err) => ({failed: err.message}))
  if (!newest()) return
  sel.info = info
  panel.set("selection", selection_html(sel, photos))
})

// Once per map: Esc clears the selection; the panel's buttons and thumbnails act on it.
function set_up(photos, panel) {
  if (photos.escape.select != null) return
  photos.escape.select = () => {
    photos.ticket("select")
    photos.selection = null
    source.selected.indices = []
    panel.set("selection", "")
  }
  panel.on("pin", (data) => pin.execute(null, {index: Number(data.index)}))
  panel.on("download-list", () => {
    const sel = photos.selection
    if (sel?.info?.lines == null) return
    const url = URL.createObjectURL(new Blob([list_text(sel.info.lines)], {type: "text/plain;charset=utf-8"}))
    const a = document.createElement("a")
    a.href = url
    a.download = "selection.txt"
    document.body.appendChild(a)
    a.click()
    a.remove()
    setTimeout(() => URL.revokeObjectURL(url), 60000)
    tell(panel, photos, sel, "downloaded selection.txt (" + count(sel.info.lines.length, "path") + ")")
  })
  panel.on("copy-paths", () => {
    const sel = photos.selection
    if (sel?.info?.lines == null) return
    const text = list_text(sel.info.lines)
    const done = () => tell(panel, photos, sel, "copied " + count(sel.info.lines.length, "path"))
    const fallback = () => copy_by_command(text) ? done() : tell(panel, photos, sel, "could not copy: the browser refused")
    if (navigator.clipboard?.writeText == null) fallback()
    else navigator.clipboard.writeText(text).then(done, fallback)
  })
}

// Sorted indices of the photos inside a rect or a polygon (data units).
function inside(g, data) {
  const {x, y} = data
  const out = []
  if (g.type == "rect") {
    const [x0, x1] = [Math.min(g.x0, g.x1), Math.max(g.x0, g.x1)]
    const [y0, y1] = [Math.min(g.y0, g.y1), Math.max(g.y0, g.y1)]
    for (let i = 0; i < x.length; i++) if (x[i] >= x0 && x[i] <= x1 && y[i] >= y0 && y[i] <= y1) out.push(i)
  } else if (g.type == "poly") {
    const px = Array.from(g.x), py = Array.from(g.y)
    const [x0, x1, y0, y1] = [Math.min(...px), Math.max(...px), Math.min(...py), Math.max(...py)]
    for (let i = 0; i < x.length; i++) {
      if (x[i] >= x0 && x[i] <= x1 && y[i] >= y0 && y[i] <= y1 && in_polygon(x[i], y[i], px, py)) out.push(i)
    }
  }
  return out
}

// Even-odd rule (a ray to the right crosses the outline an odd number of times), as bokeh's hit test.
function in_polygon(x, y, px, py) {
  let odd = false
  for (let a = 0, b = px.length - 1; a < px.length; b = a++) {
    if ((py[a] > y) != (py[b] > y) && x < (px[b] - px[a]) * (y - py[a]) / (py[b] - py[a]) + px[a]) odd = !odd
  }
  return odd
}

function union(a, b) {
  return Array.from(new Set([...a, ...b])).sort((p, q) => p - q)
}

// What the panel and the list need about the selected photos, from their detail shards: `files` (every
// original path), `lines` (the list: each path as its .meta line writes it, missing ones left out),
// `missing` and `unreachable` (counts of paths) and `grid` (the first GRID_MAX photos' thumbnails).
async function gather(photos, indices) {
  const size = photos.shard_size
  const wanted = [...new Set(indices.map((i) => Math.floor(i / size)))]
  const shards = {}
  await Promise.all(wanted.map(async (k) => { shards[k] = await photos.shard(k) }))
  const info = {files: 0, lines: [], missing: 0, unreachable: 0, grid: []}
  for (const i of indices) {
    const shard = shards[Math.floor(i / size)]
    const j = i - shard.start
    const {paths, copies, md5} = shard.columns
    const listed = shard.columns.meta_paths?.[j]
    const status = shard.columns.path_status?.[j]
    info.files += copies[j]
    paths[j].forEach((p, k) => {
      const s = status?.[k] ?? "present"
      if (s == "missing") {
        info.missing++
        return
      }
      if (s == "unreachable") info.unreachable++
      info.lines.push(listed?.[k] ?? photos.root + p)
    })
    if (info.grid.length < GRID_MAX) {
      const gone = status != null && status.every((s) => s == "missing")
      info.grid.push({index: i, thumb: photos.prefix + md5[j] + ".jpg", title: photos.root + paths[j][0], gone})
    }
  }
  return info
}

function selection_html(sel, photos) {
  const n = sel.indices.length
  const info = sel.info
  const files = info == null ? " (counting files\u2026)" : info.failed ? "" : " (" + count(info.files, "file") + ")"
  const lines = [`<div class="photomap-selection-count" style="font-weight:bold">` +
    `${esc(count(n, "photo") + " selected" + files)}</div>`]
  if (info?.failed) lines.push(`<div style="color:#a00">${esc(info.failed)}</div>`)
  if (info?.missing) {
    lines.push(`<div class="photomap-selection-missing" style="color:#a00">\u26a0 ${esc(count(info.missing, "file"))} ` +
      `missing since the map was made: left out of the list</div>`)
  }
  if (info?.unreachable) {
    lines.push(`<div class="photomap-selection-unreachable" style="color:#a60">\u26a0 ${esc(count(info.unreachable, "file"))} ` +
      `on a drive or folder that was not connected when the map was made</div>`)
  }
  const ready = info?.lines?.length ? "" : " disabled"
  lines.push(`<div style="margin:6px 0"><button class="photomap-copy-paths" data-action="copy-paths"${ready}>` +
    `Copy paths</button> <button class="photomap-download-list" data-action="download-list"${ready}>` +
    `Download list</button></div>`)
  if (sel.said) lines.push(`<div class="photomap-selection-said" style="color:#555">${esc(sel.said)}</div>`)
  if (info?.grid) {
    const tiles = info.grid.map((t) =>
      `<img class="photomap-selection-img" data-action="pin" data-index="${t.index}" loading="lazy" ` +
      `src="${esc(t.thumb)}" title="${esc(t.title)}" style="width:${THUMB_PX}px;height:${THUMB_PX}px;` +
      `object-fit:cover;cursor:pointer${t.gone ? ";opacity:.35" : ""}">`)
    lines.push(`<div class="photomap-selection-grid" style="display:flex;flex-wrap:wrap;gap:3px">${tiles.join("")}</div>`)
    if (n > info.grid.length) lines.push(`<div style="color:#555">the first ${info.grid.length} of ${n.toLocaleString("en")}</div>`)
  }
  lines.push(`<div style="color:#777;margin-top:4px">Shift+drag adds \u00b7 Esc clears</div>`)
  return `<div class="photomap-selection" style="font:13px sans-serif;width:${panel_width - 24}px;` +
    `margin-bottom:10px;padding-bottom:8px;border-bottom:1px solid #ddd">${lines.join("")}</div>`
}

function tell(panel, photos, sel, said) {
  if (photos.selection !== sel) return
  sel.said = said
  panel.set("selection", selection_html(sel, photos))
}

function list_text(lines) {
  return lines.join("\n") + "\n"
}

function copy_by_command(text) {
  const area = document.createElement("textarea")
  area.value = text
  document.body.appendChild(area)
  area.select()
  let ok = false
  try { ok = document.execCommand("copy") } catch (err) { ok = false }
  area.remove()
  return ok
}

function count(n, noun) {
  return n.toLocaleString("en") + " " + noun + (n == 1 ? "" : "s")
}

function esc(s) {
  return String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;").replace(/'/g, "&#39;")
}
