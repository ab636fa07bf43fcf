// Tap event callback: clicking anywhere on the plot pins the photo nearest the click in the panel
// (the full-size thumbnail, every original path as selectable text, the copy count, a mark on each
// original that is gone) and rings its point, until another photo is clicked or Esc is pressed. Other
// scripts move the pin with pin.execute(null, {index: i}). The panel's HTML is text: every value goes
// through esc(), so a file name stays text.
//
// A function body (see map.js); Python passes `map`, `sections` (panel.js: the pinned photo is its
// "pinned" section), `ring` (the ring's ColumnDataSource: x, y and the pinned photo's `index`, which
// similar.js follows) and `panel_width` (pixels); bokeh adds `cb_obj`, the tap event (x, y: where the
// click was, in data units), and a script moving the pin passes `cb_data` ({index}).

const CLICK_SLACK_PX = 16  // a click may land a little farther from a point than a hover needs to
// What a path's status (photomap/originals.py) means to a person about to act on it.
const GONE = {missing: "missing: no longer at this path", unreachable: "drive or folder not connected"}

return Promise.all([map.execute(cb_obj), sections.execute(cb_obj)]).then(async ([photos, panel]) => {
  photos.escape.pin ??= () => {
    photos.ticket("pin")  // a pin still loading is dropped too
    panel.set("pinned", "")
    ring.data = {x: [], y: [], index: []}
  }
  const i = cb_data?.index ?? photos.nearest(cb_obj.x, cb_obj.y, photos.radius + CLICK_SLACK_PX)
  if (i < 0) return
  const newest = photos.ticket("pin")
  const photo = await photos.photo(i).catch((err) => ({failed: err.message}))
  if (!newest()) return
  if (photo.failed) {
    panel.set("pinned", `<div style="font:13px sans-serif;color:#a00">${esc(photo.failed)}</div>`)
    return
  }
  panel.set("pinned", panel_html(photo, panel_width))
  ring.data = {x: [photos.source.data.x[i]], y: [photos.source.data.y[i]], index: [i]}
})

function panel_html(photo, width) {
  const paths = photo.paths.map((p, k) =>
    `<div class="photomap-path" style="user-select:text;word-break:break-all;font-family:monospace;` +
    `margin-bottom:4px">${esc(p)}</div>` + gone_html(photo, k))
  return `<div class="photomap-pinned" style="font:13px sans-serif;width:${width - 24}px">` +
    `<img class="photomap-pinned-img" style="display:block;width:224px;max-width:100%" ` +
    `src="${esc(photo.thumb)}"><div style="margin:6px 0;color:#555">${esc(photo.note)}</div>` +
    paths.join("") + `</div>`
}

// A mark under path k when its original was not there when the map was made.
function gone_html(photo, k) {
  const status = photo.path_status?.[k]
  if (status == null || GONE[status] == null) return ""
  return `<div class="photomap-path-gone" data-status="${esc(status)}" style="color:#a00;margin:-2px 0 6px">` +
    `\u26a0 ${esc(GONE[status])}</div>`
}

function esc(s) {
  return String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;").replace(/'/g, "&#39;")
}
