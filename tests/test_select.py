"""The page's ways to act on photos, in a real browser: box select and lasso (the count, the grid, the
downloaded and copied list), Esc, more like this (the neighbour strip against a brute-force kNN),
near-duplicate groups in the panel and as a map mode, and originals that are gone."""
import os

import numpy as np
import pytest

from conftest import wait_until
from photomap import actions, meta, page, similar
from photomap.join import Photos
from photomap_tools import browser
from photomap_tools.synthetic import fake_md5

N = 200  # more than the selection grid shows (60), even in half the map
SHARD = 50  # photos per detail shard: a selection spans several
XSS_NAME = "<img src=x onerror=alert(1)>.jpg"
# Photos 0-5 sit inside the box the tests drag (x, y in [-1, 1]); photo 0 has three near-duplicates (1-3).
INSIDE = {0: (-0.5, -0.5), 1: (0.5, -0.5), 2: (-0.5, 0.5), 3: (0.5, 0.5), 4: (0.0, 0.0), 5: (0.2, -0.7)}
BOX = (-1.0, -1.0, 1.0, 1.0)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A page of N photos through stage 3's own parts (neighbours, near-duplicate groups, originals'
    status from real files), its details in shards of SHARD photos, being served."""
    from PIL import Image

    root = tmp_path_factory.mktemp("select")
    thumbs, originals = root / "torch_thumbs", root / "originals"
    thumbs.mkdir()
    originals.mkdir()
    rng = np.random.default_rng(7)
    coords = rng.uniform(-5, 5, size=(N, 2))
    coords[np.abs(coords).max(axis=1) <= 1.3] += 3.0  # nothing near the box but the chosen photos
    for i, xy in INSIDE.items():
        coords[i] = xy
    features = rng.normal(size=(N, 32)).astype(np.float32)
    features[1:4] = features[0] + 0.01 * rng.normal(size=(3, 32)).astype(np.float32)
    md5s = [fake_md5(i) for i in range(N)]
    paths = [[str(originals / "trip" / ("img_%03d.jpg" % i))] for i in range(N)]
    paths[0] = [str(originals / "trip" / "with space ünï 写真.jpg"), str(originals / "backup" / XSS_NAME),
                str(originals / "old" / "a\\b.jpg")]  # a backslash: written as \\ in .meta and the list
    paths[1] = [str(originals / "trip" / "new\nline.jpg"), str(originals / "trip" / "gone.jpg")]
    paths[4] = ["/photomap-unplugged-drive/trip/img_004.jpg"]
    for i, photo in enumerate(paths):
        for p in photo:
            if not p.endswith("gone.jpg") and not p.startswith("/photomap-unplugged"):
                os.makedirs(os.path.dirname(p), exist_ok=True)
                open(p, "wb").close()
        Image.new("RGB", (64, 48), (i, 255 - i, 90)).save(thumbs / (md5s[i] + ".jpg"))
    photos = Photos(md5s=md5s, paths=paths, features=features, thumbs_dir=str(thumbs))
    html = root / "map.html"
    sim = similar.build(md5s, features, paths, html)
    page.write_map(html, photos, coords, ["trip"] * N, details=similar.detail_columns(sim, paths),
                   inline_max=0, shard_size=SHARD, mosaic=0)  # dots only: every thumbnail request is ours
    with browser.serve(root) as server:
        yield {"server": server, "coords": coords.astype(np.float32), "md5s": md5s, "paths": paths,
               "features": features, "sim": sim, "root": root}


def open_page(driver, site):
    driver.execute_cdp_cmd("Network.clearBrowserCache", {})
    driver.get(site["server"].url + "map.html")
    browser.wait_for_plot(driver, page.PLOT_NAME)
    driver.execute_script("window._alerted = false; window.alert = () => { window._alerted = true; };")


def use_tool(driver, name):
    driver.execute_script("Bokeh.documents[0].get_model_by_name(arguments[0]).active = true", name)


def drag_box(driver, box, shift=False):
    x0, y0, x1, y1 = box
    (ax, ay), (bx, by) = (browser.data_to_client(driver, page.PLOT_NAME, x, y) for x, y in ((x0, y0), (x1, y1)))
    steps = [(ax + (bx - ax) * t, ay + (by - ay) * t) for t in np.linspace(0, 1, 8)]
    browser.mouse_drag(driver, steps, shift=shift)


def in_box(coords, box):
    x0, y0, x1, y1 = box
    return [i for i, (x, y) in enumerate(coords) if x0 <= x <= x1 and y0 <= y <= y1]


def listed(paths, indices, site):
    """The list's expected lines: each path of each photo as .meta writes it, missing ones left out."""
    status = site["sim"].originals.status
    return [meta.escape_path(p) for i in indices for p in paths[i] if status[p] != "missing"]


def section_text(driver, css_class):
    found = browser.deep_query(driver, "." + css_class)
    return found[0].text if found else None


def count_line(driver):
    return section_text(driver, "photomap-selection-count")


def thumb_requests(server):
    return [p for p, _ in server.requests() if p.endswith(".jpg")]


def test_a_box_selects_the_photos_inside_and_downloads_every_path_exactly(driver, site, tmp_path):
    open_page(driver, site)
    use_tool(driver, actions.SELECT_TOOLS[0])
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(tmp_path)})
    drag_box(driver, BOX)
    inside = in_box(site["coords"], BOX)
    assert inside == sorted(INSIDE)  # the fixture: only the chosen photos
    files = sum(len(site["paths"][i]) for i in inside)
    want = "%d photos selected (%d files)" % (len(inside), files)
    wait_until(lambda: count_line(driver) == want, 10, want)
    assert sorted(driver.execute_script("return Bokeh.documents[0].get_model_by_name(arguments[0])"
                                        ".renderers[0].data_source.selected.indices", page.PLOT_NAME)) == inside
    assert section_text(driver, "photomap-selection-missing").startswith("\u26a0 1 file missing")
    assert "1 file on a drive" in section_text(driver, "photomap-selection-unreachable")
    grid = browser.deep_query(driver, "img.photomap-selection-img")
    assert [g.get_attribute("src").rsplit("/", 1)[1] for g in grid] == [site["md5s"][i] + ".jpg" for i in inside]
    browser.deep_query(driver, "button.photomap-download-list")[0].click()
    target = tmp_path / "selection.txt"
    wait_until(lambda: target.exists() and target.stat().st_size > 0, 10, "selection.txt to be downloaded")
    lines = listed(site["paths"], inside, site)
    assert target.read_bytes() == ("\n".join(lines) + "\n").encode("utf-8")
    assert "with space ünï 写真.jpg" in lines[0] and lines[1].endswith("/" + XSS_NAME)
    assert lines[2].endswith("old/a\\\\b.jpg") and lines[3].endswith("trip/new\\nline.jpg")  # .meta's escaping
    assert not [line for line in lines if "gone.jpg" in line]
    assert browser.deep_query(driver, 'img[src="x"]') == [] and driver.execute_script("return window._alerted") is False


def test_copy_paths_puts_the_same_list_on_the_clipboard(driver, site):
    open_page(driver, site)
    driver.execute_script("window._copied = null; navigator.clipboard.writeText = "
                          "(text) => { window._copied = text; return Promise.resolve(); }")
    use_tool(driver, actions.SELECT_TOOLS[0])
    drag_box(driver, BOX)
    button = wait_until(lambda: [b for b in browser.deep_query(driver, "button.photomap-copy-paths")
                                 if b.is_enabled()], 10, "Copy paths to be ready")[0]
    button.click()
    copied = wait_until(lambda: driver.execute_script("return window._copied"), 10, "the copied text")
    lines = listed(site["paths"], in_box(site["coords"], BOX), site)
    assert copied == "\n".join(lines) + "\n"
    said = "copied %d paths" % len(lines)
    wait_until(lambda: section_text(driver, "photomap-selection-said") == said, 10, said)


def test_shift_adds_to_the_selection_and_the_grid_shows_at_most_60_thumbnails(driver, site):
    server = site["server"]
    open_page(driver, site)
    use_tool(driver, actions.SELECT_TOOLS[0])
    drag_box(driver, BOX)
    wait_until(lambda: count_line(driver) and count_line(driver).startswith("6 photos"), 10, "the first box")
    before = len(thumb_requests(server))
    right = (1.5, -5.0, 5.0, 5.0)  # the whole map right of the box (a drag must start inside the plot)
    drag_box(driver, right, shift=True)
    both = sorted(set(in_box(site["coords"], BOX)) | set(in_box(site["coords"], right)))
    assert len(both) > 60
    files = sum(len(site["paths"][i]) for i in both)
    want = "%d photos selected (%d files)" % (len(both), files)
    wait_until(lambda: count_line(driver) == want, 10, want)
    shown = ["/torch_thumbs/%s.jpg" % site["md5s"][i] for i in both[:60]]
    grid = [g.get_attribute("src") for g in browser.deep_query(driver, "img.photomap-selection-img")]
    assert [g.rsplit("/", 1)[1] for g in grid] == [s.rsplit("/", 1)[1] for s in shown]
    wait_until(lambda: shown[-1] in thumb_requests(server), 10, "the grid's last thumbnail to be requested")
    assert set(thumb_requests(server)[before:]) <= set(shown)  # none of the other selected photos
    # A plain drag replaces the selection.
    drag_box(driver, BOX)
    wait_until(lambda: count_line(driver) and count_line(driver).startswith("6 photos selected"), 10, "a new selection")


def test_lasso_selects_the_photos_inside_the_drawn_outline(driver, site):
    open_page(driver, site)
    use_tool(driver, actions.SELECT_TOOLS[1])
    outline = [(-4.5, -4.5), (4.5, -4.5), (0.0, 4.5)]
    screen = [browser.data_to_client(driver, page.PLOT_NAME, x, y) for x, y in outline]
    path = [(a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t)
            for a, b in zip(screen, screen[1:] + screen[:1]) for t in np.linspace(0, 1, 6, endpoint=False)]
    points = [browser.data_to_client(driver, page.PLOT_NAME, x, y) for x, y in site["coords"]]
    clear_in, near_edge = [], []
    for i, p in enumerate(points):
        (near_edge if edge_distance(p, screen) < 3 else clear_in if inside_polygon(p, screen) else []).append(i)
    assert len(clear_in) > 20 and len(near_edge) < len(clear_in) // 4
    browser.mouse_drag(driver, path + [path[0]])
    got = wait_until(lambda: driver.execute_script(
        "return Bokeh.documents[0].get_model_by_name(arguments[0]).renderers[0].data_source.selected.indices",
        page.PLOT_NAME), 10, "a lasso selection")
    assert set(clear_in) <= set(got) <= set(clear_in) | set(near_edge)
    wait_until(lambda: (count_line(driver) or "").startswith("%d photos selected (" % len(got)), 10, "the count")


def edge_distance(p, polygon):
    best = np.inf
    for a, b in zip(polygon, polygon[1:] + polygon[:1]):
        a, b, q = np.array(a), np.array(b), np.array(p)
        t = np.clip(np.dot(q - a, b - a) / np.dot(b - a, b - a), 0, 1)
        best = min(best, float(np.linalg.norm(q - (a + t * (b - a)))))
    return best


def inside_polygon(p, polygon):
    x, y = p
    odd = False
    for (xa, ya), (xb, yb) in zip(polygon, polygon[-1:] + polygon[:-1]):
        if (ya > y) != (yb > y) and x < (xb - xa) * (y - ya) / (yb - ya) + xa:
            odd = not odd
    return odd


def pin(driver, site, i):
    cx, cy = browser.hover_point(driver, page.PLOT_NAME, *site["coords"][i])
    browser.mouse_click(driver, cx, cy)
    want = [meta.escape_path(p).replace("\\\\", "\\") for p in site["paths"][i]]
    seen = []

    def pinned():
        seen[:] = browser.deep_read(driver, ".photomap-path", "el.innerText")
        return seen == want

    try:
        wait_until(pinned, 10, "photo %d pinned" % i)
    except pytest.fail.Exception:  # say what the panel showed instead, and where the click went
        pytest.fail("photo %d not pinned after 10 s: the panel lists %r, not %r (clicked at %.0f, %.0f)" % (
            i, seen, want, cx, cy), pytrace=False)


def tiles(driver, css_class):
    return [(t.get_attribute("data-md5"), t.find_element("css selector", ".photomap-tile-caption").text)
            for t in browser.deep_query(driver, "." + css_class + " .photomap-tile")]


def test_a_click_shows_the_12_nearest_neighbours_requested_only_then(driver, site):
    server = site["server"]
    open_page(driver, site)
    i = 40
    unit = site["features"] / np.linalg.norm(site["features"], axis=1, keepdims=True)
    cos = unit @ unit[i]
    cos[i] = -np.inf
    nearest = np.argsort(-cos, kind="stable")[:12]
    strip = {"/torch_thumbs/%s.jpg" % site["md5s"][j] for j in nearest}
    before = len(thumb_requests(server))
    browser.hover_point(driver, page.PLOT_NAME, *site["coords"][i])  # a hover does not fetch the strip
    wait_until(lambda: "/torch_thumbs/%s.jpg" % site["md5s"][i] in thumb_requests(server), 10, "the hovered photo")
    assert not strip & set(thumb_requests(server)[before:])
    pin(driver, site, i)
    got = wait_until(lambda: tiles(driver, "photomap-neighbours"), 10, "the neighbour strip")
    assert [md5 for md5, _ in got] == [site["md5s"][j] for j in nearest]
    assert [float(s) for _, s in got] == pytest.approx([cos[j] for j in nearest], abs=0.006)
    wait_until(lambda: strip <= set(thumb_requests(server)), 10, "the strip's thumbnails")
    allowed = strip | {"/torch_thumbs/%s.jpg" % site["md5s"][i]}
    assert set(thumb_requests(server)[before:]) <= allowed
    near = driver.execute_script("const r = Bokeh.documents[0].get_model_by_name(arguments[0]);"
                                 "return [Array.from(r.data_source.data.x), Array.from(r.data_source.data.y)]",
                                 actions.NEAR_NAME)
    assert np.allclose(np.array(near).T, site["coords"][nearest])
    # Clicking a neighbour moves the pin there.
    j = int(nearest[2])
    [t for t in browser.deep_query(driver, ".photomap-neighbours .photomap-tile")
     if t.get_attribute("data-md5") == site["md5s"][j]][0].click()
    wait_until(lambda: [p.text for p in browser.deep_query(driver, ".photomap-path")] == site["paths"][j], 10,
               "the pin to move to the clicked neighbour")
    ring = driver.execute_script("""
        const plot = Bokeh.documents[0].get_model_by_name(arguments[0]);
        return plot.renderers.map((r) => r.data_source.data.index).find((v) => v != null && v.length);""",
                                 page.PLOT_NAME)
    assert list(ring) == [j]


def test_a_near_duplicate_group_and_gone_originals_are_shown_with_the_pin(driver, site):
    open_page(driver, site)
    pin(driver, site, 1)
    group = next(g for g in site["sim"].groups if 1 in g.members)
    assert sorted(group.members) == [0, 1, 2, 3]
    title = wait_until(lambda: section_text(driver, "photomap-duplicates"), 10, "the near-duplicates section")
    assert title.startswith("3 near-duplicates")
    assert sorted(md5 for md5, _ in tiles(driver, "photomap-duplicates")) == [site["md5s"][j] for j in (0, 2, 3)]
    gone = browser.deep_query(driver, ".photomap-path-gone")
    assert [g.get_attribute("data-status") for g in gone] == ["missing"]  # gone.jpg, the second path
    pin(driver, site, 4)
    wait_until(lambda: [g.get_attribute("data-status") for g in browser.deep_query(driver, ".photomap-path-gone")]
               == ["unreachable"], 10, "the unplugged drive's mark")
    wait_until(lambda: section_text(driver, "photomap-duplicates") is None, 10, "no group for photo 4")
    # The map mode: the groups drawn on top, the others faded; off puts the map back.
    label = "near-duplicates: %d group" % len(site["sim"].groups)
    button = [b for b in browser.deep_query(driver, ".bk-btn") if b.text.startswith(label)][0]
    state = """const layer = Bokeh.documents[0].get_model_by_name(arguments[0]);
        const plot = Bokeh.documents[0].get_model_by_name(arguments[1]);
        return [layer.visible, layer.data_source.data.x.length, plot.renderers[0].glyph.fill_alpha];"""
    visible, members, _ = driver.execute_script(state, actions.LAYER_NAME, page.PLOT_NAME)
    assert not visible and members == sum(len(g.members) for g in site["sim"].groups)
    button.click()
    wait_until(lambda: driver.execute_script(state, actions.LAYER_NAME, page.PLOT_NAME)[0], 10, "the groups drawn")
    assert driver.execute_script(state, actions.LAYER_NAME, page.PLOT_NAME)[2] in (actions.FADED_ALPHA, {"value": actions.FADED_ALPHA})
    button.click()
    wait_until(lambda: not driver.execute_script(state, actions.LAYER_NAME, page.PLOT_NAME)[0], 10, "the groups hidden again")


def test_esc_clears_the_selection_and_the_pin(driver, site):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    open_page(driver, site)
    pin(driver, site, 0)
    wait_until(lambda: tiles(driver, "photomap-neighbours"), 10, "the neighbour strip")
    use_tool(driver, actions.SELECT_TOOLS[0])
    drag_box(driver, BOX)
    wait_until(lambda: (count_line(driver) or "").startswith("6 photos selected ("), 10, "the selection")
    ActionChains(driver).send_keys(Keys.ESCAPE).perform()
    wait_until(lambda: browser.deep_query(driver, ".photomap-selection, .photomap-pinned, .photomap-neighbours") == [],
               10, "the panel to clear")
    data = driver.execute_script("""
        const plot = Bokeh.documents[0].get_model_by_name(arguments[0]);
        return [plot.renderers[0].data_source.selected.indices.length,
                plot.renderers.map((r) => r.data_source.data.index).find((v) => v != null).length];""",
                                 page.PLOT_NAME)
    assert data == [0, 0]
    hint = driver.execute_script("return Bokeh.documents[0].get_model_by_name(arguments[0]).text", page.PANEL_NAME)
    assert hint == page.PANEL_HINT
