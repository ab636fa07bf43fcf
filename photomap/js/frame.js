// Reset callback: the first view framed most of the points (page.frame_box); after a reset the plot
// ranges over all of them. Bokeh's reset has already ranged the plot on `box` when this runs, so the
// new corners range it again, at once, on the whole extent.
//
// A function body (see map.js); Python passes `box` (the invisible corners the plot is ranged on) and
// `everything` ({x: [min, max], y: [min, max]} of the points).

box.data = everything
