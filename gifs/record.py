#!/usr/bin/env python3
"""Record the README's pictures from the real map page in headless Chromium.

    make gifs                      # the demo pipeline, then this script on its page
    ./gifs/record.py --page output/map_resnet18.html --dest gifs

Serves the page's folder with ``python -m http.server`` on 127.0.0.1, takes a still PNG (``map.png``)
of the largest cluster zoomed in until its photos show as pictures (the mosaic), then for the largest
clusters of the layout zooms in, hovers a sequence of photos so their thumbnail tooltips show, and
writes each as an animated GIF (``cluster1.gif`` ...). Every frame is a
browser screenshot; a small pointer is drawn by the page itself (headless screenshots show no cursor).
``regions.json`` beside the GIFs names each cluster's most common top-level folder, for captions.
"""
import argparse
import io
import json
import os
import sys
import time
from collections import Counter

import numpy as np

from photomap import page, projection
from photomap.folders import top_folders
from photomap.fsutil import atomic_write
from photomap.report import fatal
from photomap_tools import browser

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A pointer drawn in the page at the mouse position, so the frames show where the mouse is.
POINTER_JS = """
let p = document.getElementById("gif-pointer");
if (p == null) {
  p = document.createElement("div");
  p.id = "gif-pointer";
  p.innerHTML = '<svg width="18" height="26" viewBox="0 0 18 26"><path d="M1 1 L1 21 L6 16 L10 25 L13 24 L9 15 L16 15 Z" ' +
                'fill="white" stroke="black" stroke-width="1.5"/></svg>';
  Object.assign(p.style, {position: "fixed", zIndex: 20000, pointerEvents: "none", left: "0px", top: "0px"});
  document.body.appendChild(p);
}
p.style.left = arguments[0] + "px";
p.style.top = arguments[1] + "px";
"""

# Marked as the user's view, as bokeh's zoom tools do: otherwise the next redraw (the page restyles its
# markers for every new view) puts the automatic ranges back.
SET_RANGES_JS = browser.PLOT_VIEW_JS + """
pv.model.x_range.have_updated_interactively = pv.model.y_range.have_updated_interactively = true;
pv.model.x_range.setv({start: arguments[1], end: arguments[2]});
pv.model.y_range.setv({start: arguments[3], end: arguments[4]});
"""

GET_RANGES_JS = browser.PLOT_VIEW_JS + """
return [pv.model.x_range.start, pv.model.x_range.end, pv.model.y_range.start, pv.model.y_range.end];
"""

# Every picture of the mosaic has loaded (or there is none).
MOSAIC_READY_JS = """
return arguments[0].every((img) => img.complete && img.naturalWidth > 0);
"""

TOOLTIP_IMG_READY_JS = """
const tip = document.querySelector("." + arguments[0]);
if (tip == null || tip.style.display == "none") return false;
const img = tip.querySelector("img");
return img != null && img.complete && img.naturalWidth > 0;
"""


def pick_regions(xy, paths, n_regions, seed=0):
    """The ``n_regions`` largest clusters of the layout: ``[(member indices, caption)]``."""
    from sklearn.cluster import KMeans

    k = max(1, min(8, len(xy) // 5))
    labels = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(xy)
    folders = top_folders(paths)
    regions = []
    for label, _ in Counter(labels).most_common(n_regions):
        members = np.flatnonzero(labels == label)
        tops = Counter(folders[i] for i in members)
        top, n = tops.most_common(1)[0]
        regions.append((members, "%d photos, %d%% from folder '%s'" % (len(members), 100 * n // len(members), top)))
    return regions


def grab(driver):
    from PIL import Image

    return Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")


def save_gif(frames, durations, path, width):
    """Write ``frames`` (PIL images) as a looping GIF scaled to ``width`` pixels, atomically."""
    from PIL import Image

    scale = width / frames[0].width
    size = (width, round(frames[0].height * scale))
    small = [f.resize(size, Image.LANCZOS) for f in frames]
    with atomic_write(path) as f:
        small[0].save(f, "GIF", save_all=True, append_images=small[1:], duration=durations, loop=0,
                      optimize=True)


def zoom_target(pts, full):
    """Ranges ``[x0, x1, y0, y1]`` around points ``pts`` (a quarter of their extent added on each side),
    from the ``full`` ranges of the whole map (zoomed far enough in, the page draws them as pictures)."""
    lo, hi = pts.min(0), pts.max(0)
    pad = np.maximum((hi - lo) * 0.25, 1e-3 * (full[1] - full[0] + full[3] - full[2]))
    return [lo[0] - pad[0], hi[0] + pad[0], lo[1] - pad[1], hi[1] + pad[1]]


def wait_mosaic(driver, timeout=10.0):
    """Wait until every picture the mosaic shows has loaded; False if that took over ``timeout`` s."""
    t0 = time.monotonic()
    while not driver.execute_script(MOSAIC_READY_JS, browser.deep_query(driver, ".photomap-mosaic img")):
        if time.monotonic() - t0 > timeout:
            return False
        time.sleep(0.03)
    return True


def wait_tooltip(driver, timeout=5.0):
    t0 = time.monotonic()
    while not driver.execute_script(TOOLTIP_IMG_READY_JS, page.TOOLTIP_CLASS):
        if time.monotonic() - t0 > timeout:
            return False
        time.sleep(0.03)
    return True


def hover_with_pointer(driver, x, y):
    cx, cy = browser.hover_point(driver, page.PLOT_NAME, x, y)
    driver.execute_script(POINTER_JS, cx, cy)


def record_region(driver, xy, members, full, hovers, zoom_steps):
    """Frames and durations: zoom from ``full`` ranges onto ``members``, then hover up to ``hovers`` of them."""
    frames, durations = [grab(driver)], [800]
    pts = xy[members]
    target = zoom_target(pts, full)
    for step in range(1, zoom_steps + 1):
        t = step / zoom_steps
        driver.execute_script(SET_RANGES_JS, page.PLOT_NAME,
                              *[a + (b - a) * t for a, b in zip(full, target)])
        time.sleep(0.15)
        wait_mosaic(driver)
        frames.append(grab(driver))
        durations.append(120)
    # Hover points spread across the region: order by angle around its centre for a smooth path.
    centre = pts.mean(0)
    order = members[np.argsort(np.arctan2(*(pts - centre).T[::-1]))]
    chosen = order[np.linspace(0, len(order) - 1, min(hovers, len(order))).astype(int)]
    for i in dict.fromkeys(chosen):
        hover_with_pointer(driver, *xy[i])
        if wait_tooltip(driver):
            frames.append(grab(driver))
            durations.append(1100)
    browser.mouse_move(driver, 1, 1)
    driver.execute_script(SET_RANGES_JS, page.PLOT_NAME, *full)
    return frames, durations


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--page", default="output/map_resnet18.html", help="the map page (default %(default)s)")
    parser.add_argument("--dest", default=os.path.join(ROOT, "gifs"), help="folder for the GIFs and PNG")
    parser.add_argument("--regions", type=int, default=3, help="how many clusters to record (default 3)")
    parser.add_argument("--hovers", type=int, default=6, help="photos hovered per cluster (default 6)")
    parser.add_argument("--zoom-steps", type=int, default=5)
    parser.add_argument("--width", type=int, default=800, help="GIF width in pixels (default 800)")
    args = parser.parse_args(argv)
    if not os.path.isfile(args.page):
        return fatal("no map page at %s (run make demo first)" % args.page)
    try:
        md5s, xy, paths = projection.read_coords(projection.coords_paths(args.page)[0])
    except (OSError, ValueError) as exc:
        return fatal("cannot read the map coordinates beside %s: %s" % (args.page, exc))
    if len(md5s) == 0:
        return fatal("the map at %s has no photos" % args.page)
    reason = browser.skip_reason()
    if reason:
        return fatal("cannot record without a browser: " + reason)
    os.makedirs(args.dest, exist_ok=True)

    folder, name = os.path.split(os.path.abspath(args.page))
    regions = pick_regions(xy, paths, args.regions)
    captions = {}
    with browser.serve(folder) as server, browser.chrome(1280, 940) as driver:
        driver.get(server.url + name)
        browser.wait_for_plot(driver, page.PLOT_NAME)
        time.sleep(0.5)
        full = driver.execute_script(GET_RANGES_JS, page.PLOT_NAME)
        # The first picture: the largest cluster, zoomed in until its photos are drawn as pictures.
        driver.execute_script(SET_RANGES_JS, page.PLOT_NAME, *zoom_target(xy[regions[0][0]], full))
        time.sleep(0.3)
        wait_mosaic(driver)
        grab(driver).save(os.path.join(args.dest, "map.png"))
        driver.execute_script(SET_RANGES_JS, page.PLOT_NAME, *full)
        for n, (members, caption) in enumerate(regions, 1):
            frames, durations = record_region(driver, xy, members, full, args.hovers, args.zoom_steps)
            gif = "cluster%d.gif" % n
            save_gif(frames, durations, os.path.join(args.dest, gif), args.width)
            captions[gif] = caption
            print("gifs: %s: %d frames (%s)" % (gif, len(frames), caption), file=sys.stderr)
    with atomic_write(os.path.join(args.dest, "regions.json"), "w") as f:
        json.dump(captions, f, indent=2)
    print("gifs: wrote map.png and %d GIFs into %s" % (len(regions), args.dest), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
