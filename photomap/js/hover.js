// HoverTool callback: one tooltip per plot showing the photo nearest the pointer, and nothing over
// empty space. Bokeh's own tooltips would stack one per point under the cursor, so this one element
// is managed here, and filled through DOM calls only: a file name goes in as text, never as markup.
//
// A function body (see map.js); Python passes `map`, `tip_id` (the tooltip element's id, one per
// plot) and `tip_class` (its CSS class); bokeh adds `cb_obj` (the tool) and `cb_data` ({geometry}).

const MAX_PATHS = 5  // the tooltip lists this many paths at most; the pinned panel lists them all

return map.execute(cb_obj).then(async (photos) => {
  const g = cb_data.geometry
  const tip = document.getElementById(tip_id) ?? make_tooltip(tip_id, tip_class)
  const i = (g.type == "point" && isFinite(g.sx) && isFinite(g.sy)) ? photos.nearest(g.x, g.y) : -1
  photos.hover(i)
  if (i < 0) {
    tip.style.display = "none"
    tip.dataset.index = -1
    return
  }
  if (tip.dataset.index != i) {
    tip.dataset.index = i
    const photo = await photos.photo(i).catch((err) => ({failed: err.message}))
    if (tip.dataset.index != i) return  // the pointer moved on while the details came
    if (photo.failed) {
      tip.dataset.index = -1  // ask again on the next move (the server may be up by then)
      say(tip, photo.failed)
    } else {
      fill(tip, photo)
    }
  }
  tip.style.display = "block"
  place(tip, photos.pointer)
})

function make_tooltip(id, css_class) {
  const tip = document.createElement("div")
  tip.id = id
  tip.className = css_class
  Object.assign(tip.style, {
    position: "fixed", zIndex: 10000, pointerEvents: "none", display: "none", background: "white",
    border: "1px solid #888", borderRadius: "4px", padding: "6px", boxShadow: "0 2px 8px rgba(0,0,0,.3)",
    font: "12px sans-serif", maxWidth: "360px",
  })
  const img = document.createElement("img")
  Object.assign(img.style, {display: "block", maxWidth: "160px", maxHeight: "160px", marginBottom: "4px"})
  img.addEventListener("load", () => { img.style.visibility = "visible" })
  tip.appendChild(img)
  tip.appendChild(document.createElement("div"))  // the text: paths, then the note
  document.body.appendChild(tip)
  return tip
}

function fill(tip, photo) {
  const img = tip.firstChild
  const text = tip.lastChild
  img.style.visibility = "hidden"  // until the new photo has loaded, rather than show the last one
  img.src = photo.thumb
  text.replaceChildren()
  for (const path of photo.paths.slice(0, MAX_PATHS)) {
    const line = document.createElement("div")
    line.textContent = path
    line.style.wordBreak = "break-all"
    text.appendChild(line)
  }
  const note = document.createElement("div")
  note.style.color = "#555"
  note.textContent = (photo.paths.length > MAX_PATHS ? "... " : "") + photo.note
  text.appendChild(note)
}

// A one-line reason instead of a photo (its details could not be had).
function say(tip, reason) {
  tip.firstChild.style.visibility = "hidden"
  tip.firstChild.removeAttribute("src")
  const line = document.createElement("div")
  line.textContent = reason
  tip.lastChild.replaceChildren(line)
}

// Beside the pointer, on whichever side keeps the tooltip inside the window.
function place(tip, pointer) {
  const w = tip.offsetWidth
  const h = tip.offsetHeight
  const left = (pointer.x + 16 + w > window.innerWidth) ? pointer.x - 16 - w : pointer.x + 16
  const top = (pointer.y + 16 + h > window.innerHeight) ? Math.max(0, pointer.y - 16 - h) : pointer.y + 16
  tip.style.left = Math.max(0, left) + "px"
  tip.style.top = top + "px"
}
