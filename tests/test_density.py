"""A large map in a real browser (photomap/density.py, js/density.js): zoomed out it draws a density
image that shows where photos crowd, zoomed in it draws the photos in view, sized and shaded by how
crowded the view is; hover and pin find the right photo either way. A small map draws every photo."""
from contextlib import contextmanager

import numpy as np
import pytest

from conftest import wait_until
from photomap import density, page
from photomap.join import Photos
from photomap_tools import browser
from photomap_tools.synthetic import fake_md5

N_DENSE = 26000  # one crowded island around (0, 0)
N_FIELD = 4000  # a sparse field over [-30, 30]^2 around it
ALONE = (33.0, 33.0)  # photo 0, apart from every other (yet inside the first view: page.frame_box)


def coords():
    rng = np.random.default_rng(7)
    dense = rng.normal(size=(N_DENSE, 2))
    field = rng.uniform(-30, 30, size=(N_FIELD, 2))
    return np.vstack([[ALONE], field, dense]).astype(np.float32)


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """A map of 30,001 photos (over the point budget), its details in shards, served; thumbnails for
    the lone photo and the sparse field (the ones hovered)."""
    from PIL import Image

    root = tmp_path_factory.mktemp("big")
    thumbs = root / "thumbs"
    thumbs.mkdir()
    xy = coords()
    n = len(xy)
    assert n > density.POINT_BUDGET
    md5s = [fake_md5(i) for i in range(n)]
    for i in range(1 + N_FIELD):
        Image.new("RGB", (16, 12), (i % 256, 90, 40)).save(thumbs / (md5s[i] + ".jpg"))
    photos = Photos(md5s=md5s, paths=[["/photos/set/img_%d.jpg" % i] for i in range(n)],
                    features=np.zeros((n, 2), np.float32), thumbs_dir=str(thumbs))
    labels = ["lone"] + ["field"] * N_FIELD + ["island"] * N_DENSE
    page.write_map(root / "map.html", photos, xy, labels)
    with browser.serve(root) as server:
        yield {"server": server, "xy": xy, "md5s": md5s}


DRAWN_JS = browser.PLOT_VIEW_JS + """
const [pts, img] = [pv.model.renderers[0], pv.model.renderers.find((r) => r.glyph.type == "ImageRGBA")];
const value = (v) => (typeof v == "object" && v != null) ? v.value : v;
const out = {points: pts.visible ? pts.data_source.get_length() : 0, size: value(pts.glyph.size),
             alpha: value(pts.glyph.fill_alpha), image: null};
if (img != null && img.visible) {
  const d = img.data_source.data, a = d.image[0], [rows, cols] = a.shape;
  // The opacity of the image's cell at each data point asked about (arguments[1]: [[x, y], ...]).
  const alpha = (x, y) => {
    const i = Math.floor((x - d.x[0]) / d.dw[0] * cols), j = Math.floor((y - d.y[0]) / d.dh[0] * rows);
    return (i < 0 || j < 0 || i >= cols || j >= rows) ? -1 : a[j * cols + i] >>> 24;
  };
  out.image = {rows, cols, alpha: arguments[1].map(([x, y]) => alpha(x, y))};
}
return out;
"""


def drawn(driver, at=()):
    return driver.execute_script(DRAWN_JS, page.PLOT_NAME, [list(map(float, p)) for p in at])


def zoom_to(driver, x0, x1, y0, y1):
    """Set the view as bokeh's zoom tools do (marked as the user's, so no auto-ranging undoes it)."""
    driver.execute_script(browser.PLOT_VIEW_JS + """
pv.model.x_range.have_updated_interactively = pv.model.y_range.have_updated_interactively = true;
pv.model.x_range.setv({start: arguments[1], end: arguments[2]});
pv.model.y_range.setv({start: arguments[3], end: arguments[4]});""", page.PLOT_NAME, x0, x1, y0, y1)


def tooltip_src(driver):
    return driver.execute_script(
        "const t = document.querySelector('.%s'); return t && t.style.display != 'none' ? "
        "t.querySelector('img').getAttribute('src') : null" % page.TOOLTIP_CLASS)


def open_big(driver, big):
    driver.get(big["server"].url + "map.html")
    browser.wait_for_plot(driver, page.PLOT_NAME)


def test_zoomed_out_a_large_map_is_a_density_image_and_hover_and_pin_find_the_photo(driver, big):
    open_big(driver, big)
    # The island's centre, a point of the sparse field, and empty space between them.
    field = big["xy"][1]
    state = wait_until(lambda: (s := drawn(driver, [(0, 0), field, (0, 12)]))["image"] and s, 10,
                       "the density image")
    assert state["points"] == 0  # not one of 30,001 markers drawn
    centre, sparse, empty = state["image"]["alpha"]
    assert centre == 255 and 0 < sparse < centre and empty == 0  # crowded and sparse places differ
    # The image is about as fine as the screen (one cell per IMAGE_CELL_PX pixels, view and margin).
    assert state["image"]["cols"] >= 200
    browser.hover_point(driver, page.PLOT_NAME, *ALONE)
    want = "thumbs/%s.jpg" % big["md5s"][0]
    wait_until(lambda: tooltip_src(driver) == want, 10, "the tooltip of the lone photo")
    cx, cy = browser.data_to_client(driver, page.PLOT_NAME, *ALONE)
    browser.mouse_click(driver, cx, cy)
    wait_until(lambda: [e.text for e in browser.deep_query(driver, ".photomap-path")] == ["/photos/set/img_0.jpg"],
               10, "the pin to show the lone photo")


def test_zoomed_in_the_photos_in_view_are_drawn_and_hover_and_pin_work(driver, big):
    open_big(driver, big)
    wait_until(lambda: drawn(driver)["image"], 10, "the density image")
    xy = big["xy"]
    # A part of the sparse field, away from the island: the photos there (and a margin) are drawn.
    x0, x1, y0, y1 = 10.0, 26.0, -26.0, -10.0
    zoom_to(driver, x0, x1, y0, y1)
    mx, my = density_margin(x0, x1), density_margin(y0, y1)
    near = (xy[:, 0] >= x0 - mx) & (xy[:, 0] <= x1 + mx) & (xy[:, 1] >= y0 - my) & (xy[:, 1] <= y1 + my)
    state = wait_until(lambda: (s := drawn(driver))["points"] == near.sum() and s, 10,
                       "the %d photos in view to be drawn" % near.sum())
    assert state["image"] is None and 0 < near.sum() < density.POINT_BUDGET
    # The photo in view farthest from any other, so a hover on it can only mean it.
    inside = np.flatnonzero((xy[:, 0] > x0 + 1) & (xy[:, 0] < x1 - 1) & (xy[:, 1] > y0 + 1) & (xy[:, 1] < y1 - 1))
    gaps = [np.sort(np.hypot(*(xy - xy[i]).T))[1] for i in inside]
    i = inside[int(np.argmax(gaps))]
    browser.hover_point(driver, page.PLOT_NAME, *xy[i])
    want = "thumbs/%s.jpg" % big["md5s"][i]
    wait_until(lambda: tooltip_src(driver) == want, 10, "the tooltip of photo %d" % i)
    cx, cy = browser.data_to_client(driver, page.PLOT_NAME, *xy[i])
    browser.mouse_click(driver, cx, cy)
    wait_until(lambda: [e.text for e in browser.deep_query(driver, ".photomap-path")] == ["/photos/set/img_%d.jpg" % i],
               10, "the pin to show photo %d" % i)


def test_markers_are_smaller_and_lighter_where_photos_crowd(driver, tmp_path):
    """A map of the budget's size, every photo drawn: seen whole, most photos crowd into one island a
    few dozen pixels wide; zoomed into the sparse field around it, they stand apart."""
    n = density.POINT_BUDGET
    xy = np.vstack([coords()[:1 + N_FIELD // 8], coords()[-(n - 1 - N_FIELD // 8):]])
    with small_map(driver, tmp_path, xy):
        crowded = wait_until(lambda: (s := drawn(driver))["alpha"] < 0.75 and s, 10, "lighter markers")
        zoom_to(driver, 10.0, 26.0, -26.0, -10.0)
        sparse = wait_until(lambda: (s := drawn(driver))["alpha"] == 0.75 and s, 10, "the sparse view's style")
    assert crowded["points"] == sparse["points"] == n
    assert crowded["size"] < sparse["size"] == 9


@contextmanager
def small_map(driver, tmp_path, xy):
    """A map of the photos at ``xy`` written into ``tmp_path``, served and open in ``driver``."""
    n = len(xy)
    photos = Photos(md5s=[fake_md5(i) for i in range(n)], paths=[["/p/%d.jpg" % i] for i in range(n)],
                    features=np.zeros((n, 2), np.float32), thumbs_dir=str(tmp_path / "thumbs"))
    page.write_map(tmp_path / "map.html", photos, xy, ["a"] * n)
    with browser.serve(tmp_path) as server:
        driver.get(server.url + "map.html")
        browser.wait_for_plot(driver, page.PLOT_NAME)
        yield


def test_a_small_map_draws_every_photo_and_no_image(driver, tmp_path):
    n = 300
    with small_map(driver, tmp_path, coords()[:n]):
        zoom_to(driver, 10.0, 26.0, -26.0, -10.0)  # zooming never drops photos from a small map
        wait_until(lambda: drawn(driver)["size"] == 9, 10, "the markers' size for a sparse view")
        state = drawn(driver)
    assert state["points"] == n and state["image"] is None


def density_margin(lo, hi):
    """How far beyond each side of the view the drawn photos reach (js/density.js's MARGIN)."""
    return 0.25 * (hi - lo)
