// TapTool callback: clicking a point pins its photo in the panel beside the plot (the full-size
// thumbnail, every original path as selectable text, the copy count) and rings the point, until
// another point is clicked. The panel is a bokeh Div, whose text is HTML: every value goes through
// esc(), so a file name stays text.
//
// A function body (see map.js); Python passes `map`, `panel` (the Div), `ring` (the ring's
// ColumnDataSource) and `panel_width` (pixels); bokeh adds `cb_obj` (the tool) and `cb_data`
// ({geometries}: where the click was).

const CLICK_SLACK_PX = 16  // a click may land a little farther from a point than a hover needs to

return map.execute(cb_obj).then(async (photos) => {
  const g = cb_data.geometries
  const i = photos.nearest(g.x, g.y, photos.radius + CLICK_SLACK_PX)
  if (i < 0) return
  const newest = photos.ticket("pin")
  const photo = await photos.photo(i).catch((err) => ({failed: err.message}))
  if (!newest()) return
  if (photo.failed) {
    panel.text = `<div style="font:13px sans-serif;color:#a00">${esc(photo.failed)}</div>`
    return
  }
  panel.text = panel_html(photo, panel_width)
  ring.data = {x: [photos.source.data.x[i]], y: [photos.source.data.y[i]]}
})

function panel_html(photo, width) {
  const paths = photo.paths.map((p) =>
    `<div class="photomap-path" style="user-select:text;word-break:break-all;font-family:monospace;` +
    `margin-bottom:4px">${esc(p)}</div>`)
  return `<div class="photomap-pinned" style="font:13px sans-serif;width:${width - 24}px">` +
    `<img class="photomap-pinned-img" style="display:block;width:224px;max-width:100%" ` +
    `src="${esc(photo.thumb)}"><div style="margin:6px 0;color:#555">${esc(photo.note)}</div>` +
    paths.join("") + `</div>`
}

function esc(s) {
  return String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;").replace(/'/g, "&#39;")
}
