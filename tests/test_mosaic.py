"""The map page's mosaic (photos in view drawn as thumbnails when zoomed in), its window-filling layout and
its first view, in the real browser."""
import numpy as np
import pytest

from conftest import wait_until
from photomap import page
from photomap.join import Photos
from photomap_tools import browser
from photomap_tools.synthetic import fake_md5

N = 3000
OUTLIERS = [(60.0, 55.0), (-70.0, 40.0), (65.0, -80.0)]

RANGES_JS = browser.PLOT_VIEW_JS + """
return [pv.model.x_range.start, pv.model.x_range.end, pv.model.y_range.start, pv.model.y_range.end];
"""
# Marked as the user's view, as bokeh's zoom tools do (else the page's next restyle restores the automatic ranges).
SET_RANGES_JS = browser.PLOT_VIEW_JS + """
pv.model.x_range.have_updated_interactively = pv.model.y_range.have_updated_interactively = true;
pv.model.x_range.setv({start: arguments[1], end: arguments[2]});
pv.model.y_range.setv({start: arguments[3], end: arguments[4]});
"""
FRAME_JS = browser.PLOT_VIEW_JS + """
const r = pv.canvas_view.el.getBoundingClientRect(), f = pv.frame.bbox;
return [r.left + f.left, r.top + f.top, f.width, f.height];
"""
# The mosaic's pictures: [photo index, src, naturalWidth, z-index, left, top] of each one on the map.
PICTURES_JS = """[Number(el.dataset.index), el.getAttribute('src'), el.naturalWidth, el.style.zIndex,
  el.getBoundingClientRect().left, el.getBoundingClientRect().top]"""


def test_the_first_view_leaves_out_outliers_and_a_map_without_them_is_framed_whole():
    rng = np.random.default_rng(0)
    points = rng.uniform(-3, 3, (1000, 2))  # no outliers: the percentiles plus the margin reach every point
    x0, x1, y0, y1 = page.frame_box(points)
    assert (x0, x1, y0, y1) == (points[:, 0].min(), points[:, 0].max(), points[:, 1].min(), points[:, 1].max())
    with_outliers = np.vstack([points, OUTLIERS])
    x0, x1, y0, y1 = page.frame_box(with_outliers)
    assert -6 < x0 < -2 and 2 < x1 < 6 and -6 < y0 < -2 and 2 < y1 < 6
    assert page.frame_box([(1.0, 2.0)]) == (1.0, 1.0, 2.0, 2.0)


WINDOW = (1400, 900)  # the browser's window (the driver fixture, conftest.py)


@pytest.fixture(scope="module")
def big_site(tmp_path_factory):
    """A map of 3,000 photos in 12 tight islands plus three far outliers, written by page.write_map, served."""
    from PIL import Image

    root = tmp_path_factory.mktemp("mosaic")
    thumbs = root / "thumbs"
    thumbs.mkdir()
    rng = np.random.default_rng(3)
    centres = rng.uniform(-10, 10, (12, 2))
    points = centres[rng.integers(0, len(centres), N)] + rng.normal(0, 0.6, (N, 2))
    points[:len(OUTLIERS)] = OUTLIERS
    md5s = [fake_md5(i) for i in range(N)]
    for i, md5 in enumerate(md5s):
        size = (24, 18) if i % 2 else (18, 24)
        Image.new("RGB", size, tuple(int(v) for v in rng.integers(0, 256, 3))).save(thumbs / (md5 + ".jpg"))
    photos = Photos(md5s=md5s, paths=[["/photos/%d.jpg" % i] for i in range(N)],
                    features=np.zeros((N, 2), np.float32), thumbs_dir=str(thumbs))
    page.write_map(root / "map.html", photos, points, ["g%d" % (i % 3) for i in range(N)], inline_max=1000)
    with browser.serve(root) as server:
        yield {"server": server, "points": points, "md5s": md5s, "centres": centres}


def open_map(driver, site):
    driver.set_window_size(1400, 900)
    driver.execute_cdp_cmd("Network.clearBrowserCache", {})
    driver.get(site["server"].url + "map.html")
    browser.wait_for_plot(driver, page.PLOT_NAME)
    return len(site["server"].requests())


def thumbs_asked(server, since=0):
    return [p for p, _ in server.requests()[since:] if p.endswith(".jpg")]


def pictures(driver):
    return browser.deep_read(driver, ".photomap-mosaic img", PICTURES_JS)


def in_view(points, ranges):
    x0, x1, y0, y1 = ranges
    return set(np.flatnonzero((points[:, 0] >= x0) & (points[:, 0] <= x1) &
                              (points[:, 1] >= y0) & (points[:, 1] <= y1)).tolist())


def zoom_to(driver, x0, x1, y0, y1):
    """Set the plot's ranges (as a zoom does) and return the ranges the plot then has."""
    driver.execute_script(SET_RANGES_JS, page.PLOT_NAME, x0, x1, y0, y1)
    return wait_until(lambda: (lambda r: r if np.allclose(r, [x0, x1, y0, y1]) else None)(
        driver.execute_script(RANGES_JS, page.PLOT_NAME)), 10, "the plot to take the new ranges")


def test_the_first_view_of_a_large_map_frames_its_islands_and_requests_no_thumbnail(driver, big_site):
    points, server = big_site["points"], big_site["server"]
    since = open_map(driver, big_site)
    x0, x1, y0, y1 = driver.execute_script(RANGES_JS, page.PLOT_NAME)
    seen = in_view(points, (x0, x1, y0, y1))
    assert len(seen) >= 0.98 * (N - len(OUTLIERS))  # (nearly) every photo of the islands
    assert not seen & set(range(len(OUTLIERS)))  # but not the far outliers
    assert x1 - x0 < 60 and y1 - y0 < 60
    # A hovered photo's thumbnail is the first and only one asked for: the mosaic asked for none.
    i = len(OUTLIERS) + 7
    browser.hover_point(driver, page.PLOT_NAME, *points[i])
    want = "/thumbs/%s.jpg" % big_site["md5s"][i]
    assert wait_until(lambda: thumbs_asked(server, since) or None, 10, "the hovered thumbnail") == [want]
    assert pictures(driver) == []
    # The reset tool shows every photo, outliers too.
    (reset,) = browser.deep_query(driver, ".bk-tool-icon-reset")
    reset.click()
    everything = (points[:, 0].min(), points[:, 0].max(), points[:, 1].min(), points[:, 1].max())
    wait_until(lambda: in_view(points, driver.execute_script(RANGES_JS, page.PLOT_NAME)) == set(range(N)), 10,
               "the reset to show all %d photos, %s" % (N, everything))


def test_zooming_in_draws_the_photos_in_view_and_zooming_out_returns_to_dots(driver, big_site):
    points, md5s, server = big_site["points"], big_site["md5s"], big_site["server"]
    since = open_map(driver, big_site)
    cx, cy = big_site["centres"][0]
    ranges = zoom_to(driver, cx - 1.2, cx + 1.2, cy - 0.8, cy + 0.8)
    shown = in_view(points, ranges)
    assert 10 < len(shown) <= page.MOSAIC_BUDGET
    drawn = wait_until(lambda: (lambda p: p if len(p) == len(shown) and all(w > 0 for _, _, w, *_ in p) else None)(
        pictures(driver)), 20, "a picture of each of the %d photos in view, loaded" % len(shown))
    assert {i for i, *_ in drawn} == shown
    assert all(src == "thumbs/%s.jpg" % md5s[i] for i, src, *_ in drawn)
    asked = thumbs_asked(server, since)
    assert sorted(asked) == sorted("/thumbs/%s.jpg" % md5s[i] for i in shown)  # those, each once
    # Each picture sits on its point.
    for i, _, _, _, left, top in drawn[:20]:
        px, py = browser.data_to_client(driver, page.PLOT_NAME, *points[i])
        assert abs(left - px) < 70 and abs(top - py) < 70
    # The hovered photo's picture comes to the front.
    i = sorted(shown)[len(shown) // 2]
    browser.hover_point(driver, page.PLOT_NAME, *points[i])
    wait_until(lambda: [z for j, _, _, z, *_ in pictures(driver) if j == i] == ["1"], 10,
               "the hovered picture to come to the front")
    # Zoomed out: dots only, nothing more asked for (checked once a hover far away has been answered).
    browser.mouse_move(driver, 1, 1)
    zoom_to(driver, -40, 40, -40, 40)
    wait_until(lambda: pictures(driver) == [], 10, "the pictures to go")
    far = max(range(len(OUTLIERS), N), key=lambda j: np.hypot(*(points[j] - (cx, cy))))
    browser.hover_point(driver, page.PLOT_NAME, *points[far])
    want = "/thumbs/%s.jpg" % md5s[far]
    wait_until(lambda: want in thumbs_asked(server, since), 10, "the hovered thumbnail")
    assert thumbs_asked(server, since)[len(asked):] == [want]


def test_the_page_fills_the_window_and_follows_it(driver, big_site):
    open_map(driver, big_site)
    _, _, width, height = driver.execute_script(FRAME_JS, page.PLOT_NAME)
    inner = driver.execute_script("return [innerWidth, innerHeight]")
    assert width > inner[0] - page.PANEL_WIDTH - 250 and height > inner[1] - 150  # the map takes the window
    (panel,) = browser.deep_query(driver, ".bk-Div")

    def placed():
        left, top, w, h = driver.execute_script(FRAME_JS, page.PLOT_NAME)
        p = driver.execute_script("const r = arguments[0].getBoundingClientRect(); return [r.left, r.top]", panel)
        return (round(w), round(h)), "beside" if p[0] >= left + w else "below" if p[1] >= top + h else "over"

    assert placed()[1] == "beside"
    driver.set_window_size(700, 900)
    size, where = wait_until(lambda: (lambda s: s if s[0][0] < 700 and s[1] == "below" else None)(placed()), 10,
                             "the map to narrow with the panel below it")
    assert size[0] > driver.execute_script("return innerWidth") - 150  # all but the toolbar and the legend
    driver.set_window_size(1600, 1000)
    wait_until(lambda: (lambda s: s if s[0][0] > 1100 and s[1] == "beside" else None)(placed()), 10,
               "the map to widen with the panel beside it")
