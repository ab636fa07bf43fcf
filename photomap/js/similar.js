// "More like this": follows the pin (runs whenever the ring's data changes). Under the pinned photo it
// shows the photo's 12 nearest neighbours in feature space (stage 3's `neighbours`, most similar first)
// as a strip of thumbnails with their cosine similarity, rings them on the map, and shows the photo's
// near-duplicate group ("3 near-duplicates", with thumbnails). Clicking a thumbnail moves the pin
// there. Thumbnails are only in the panel's HTML while shown, so only they are requested.
//
// A function body (see map.js); Python passes `map`, `sections` (panel.js: this script owns the
// "neighbours" and "duplicates" sections), `ring` (the pin's source, its `index` the pinned photo),
// `near` (the neighbours' marker source: x, y), `pin` (pin.js, to move the pin) and `panel_width`;
// bokeh adds `cb_obj` (the ring's source).

const THUMB_PX = 72
const GONE = {missing: "missing", unreachable: "not connected"}

return Promise.all([map.execute(cb_obj), sections.execute(cb_obj)]).then(async ([photos, panel]) => {
  panel.on("pin", (data) => pin.execute(null, {index: Number(data.index)}))
  const newest = photos.ticket("similar")
  const i = ring.data.index?.[0]
  panel.set("neighbours", "")  // the last photo's, until this one's come
  panel.set("duplicates", "")
  near.data = {x: [], y: []}
  if (i == null) return
  const photo = await photos.photo(i).catch(() => null)
  if (photo == null || !newest()) return
  const nb = photo.neighbours ?? []
  const {x, y} = photos.source.data
  near.data = {x: nb.map((j) => x[j]), y: nb.map((j) => y[j])}
  const dups = photo.duplicates ?? []
  const [others, members] = await Promise.all([nb, dups].map((rows) =>
    Promise.all(rows.map((j) => photos.photo(j).catch(() => null)))))
  if (!newest()) return
  if (nb.length) {
    const tiles = nb.map((j, k) => tile(j, others[k], (photo.neighbour_similarity?.[k] ?? NaN).toFixed(2)))
    panel.set("neighbours", section("photomap-neighbours", nb.length + " most similar photos", tiles))
  }
  if (dups.length) {
    const tiles = dups.map((j, k) => tile(j, members[k], (members[k]?.dup_similarity ?? NaN).toFixed(2)))
    const title = dups.length + (dups.length == 1 ? " near-duplicate" : " near-duplicates")
    panel.set("duplicates", section("photomap-duplicates", title, tiles))
  }
})

function section(css_class, title, tiles) {
  return `<div class="${css_class}" style="font:13px sans-serif;width:${panel_width - 24}px;margin-top:10px">` +
    `<div class="photomap-section-title" style="font-weight:bold;margin-bottom:4px">${esc(title)}</div>` +
    `<div style="display:flex;flex-wrap:wrap;gap:4px">${tiles.join("")}</div></div>`
}

// One clickable thumbnail of photo j with a caption (its similarity); marked when every original of it
// is gone. `photo` is null when its details could not be had.
function tile(j, photo, caption) {
  const status = photo?.path_status
  const gone = status != null && status.every((s) => s != "present") ? GONE[status[0]] ?? status[0] : ""
  const img = photo == null ? "" :
    `<img class="photomap-tile-img" src="${esc(photo.thumb)}" style="display:block;width:${THUMB_PX}px;` +
    `height:${THUMB_PX}px;object-fit:cover">`
  return `<a class="photomap-tile" data-action="pin" data-index="${j}" data-md5="${esc(photo?.md5 ?? "")}" ` +
    `title="${esc(photo?.paths?.[0] ?? "")}" style="cursor:pointer;width:${THUMB_PX}px;color:#555;font-size:11px;` +
    `text-align:center">${img}<div class="photomap-tile-caption">${esc(caption)}` +
    `${gone ? ` <span class="photomap-tile-gone" style="color:#a00">${esc(gone)}</span>` : ""}</div></a>`
}

function esc(s) {
  return String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;").replace(/'/g, "&#39;")
}
