// The "near-duplicates" colour mode (a toggle beside the map): when on, the photos in a near-duplicate
// group are drawn on top, each group in one colour, and every other photo fades; off restores the map.
//
// A function body (see map.js); Python passes `scatter` (the map's points renderer), `layer` (the
// groups' renderer, hidden until asked for) and `faded` (the others' opacity meanwhile); bokeh adds
// `cb_obj` (the toggle).

const on = cb_obj.active
const glyphs = [scatter.glyph, scatter.nonselection_glyph, scatter.selection_glyph].filter((g) => g != null)
for (const glyph of glyphs) {
  glyph.photomap_alpha ??= glyph.fill_alpha  // the map's own opacity, put back when the mode is off
  glyph.fill_alpha = on ? faded : glyph.photomap_alpha
}
layer.visible = on
