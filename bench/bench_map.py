#!/usr/bin/env python3
"""Benchmark stage 3: UMAP, page build and size, render, hover and pan/zoom in Chromium.

    .venv/bin/python bench/bench_map.py                  # 10k and 100k photos through stage 3, the page of 1M
    .venv/bin/python bench/bench_map.py --sizes 10000 --pages ""
    .venv/bin/python bench/bench_map.py --sizes "" --pages 200000,1000000
    .venv/bin/python bench/bench_map.py --select --sizes 100000   # selection and neighbour details only
    .venv/bin/python bench/bench_map.py --mosaic --sizes 100000   # the mosaic's pan/zoom frames only

``--sizes``: stage 3 at scale on synthetic 512-d features and tiny thumbnails (scratch data in
bench/out/, reused): UMAP time, then the page. ``--pages``: the page alone, at sizes UMAP would take
too long for here: 40 Gaussian islands of photos laid out in 2-D (no features), thumbnails written
only for the photos hovered and their neighbours.

For each page: build time and size, and in headless chromium the time to first render (the plot
drawn, density image or points included), what the tab loaded by then, the hover-to-tooltip and
hover-to-image latencies and how many tooltip images a hover leaves (must be 1), the time of a pan
and of a zoom frame zoomed out and zoomed in to the point budget, the redraw once the view settles,
and the tab's memory. The reference for hover is bokeh's own hit test at the same spot: the number
of points under the cursor, i.e. how many tooltips bokeh's default hover would have stacked there.

``--select`` measures the page's selection and "more like this" instead (:func:`select_run`).
``--mosaic``: on synthetic islands (no UMAP), the time of a pan frame (ranges set, then two animation
frames: bokeh's paint and the mosaic's update) zoomed in with the mosaic drawing ~its budget of
pictures, against the same page built dots-only, alternated; and the thumbnails fetched per zoom step
from the whole map into one island (``--mosaic --sizes 100000``).
"""
import argparse
import io
import os
import re
import statistics
import sys
import time

import numpy as np

from photomap import actions, colours, density, page, projection, similar
from photomap.join import Photos, join
from photomap_tools import browser, synthetic

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

OUT = os.path.join(ROOT, "bench", "out")
DIM = 512


def make_dataset(n, seed=0):
    """Write n photos' thumbnails, vectors and .meta log under bench/out/n<N>/ (kept between runs):
    40 clusters of ReLU-like 512-d vectors, one tiny JPEG per cluster, in 40 folders over 25 years."""
    root = os.path.join(OUT, "n%d" % n)
    meta_path = os.path.join(root, "thumbs.meta")
    if not os.path.exists(meta_path):
        folders = ["%04d/folder_%02d" % (2000 + k % 25, k) for k in range(40)]
        synthetic.write_map_inputs(root, n, dim=DIM, folders=folders, spread=0.5, seed=seed,
                                   thumb_size=(32, 24), name="IMG_%06d.jpg", nonnegative=True)
    return root, meta_path, os.path.join(root, "thumbs"), os.path.join(root, "features")


HOVER_PROBE_JS = """
const tips = [...document.querySelectorAll('.%s')].filter((t) => getComputedStyle(t).display != 'none');
const imgs = tips.flatMap((t) => [...t.querySelectorAll('img')]);
const pv = Bokeh.index.query_one((v) => v.model != null && v.model.name == '%s' && v.frame != null);
return [tips.length, imgs.length, imgs.length ? imgs[0].naturalWidth : 0,
        imgs.length ? imgs[0].getAttribute('src') : null,
        pv.model.renderers[0].data_source.inspected.indices.length];
""" % (page.TOOLTIP_CLASS, page.PLOT_NAME)

# JS: what the plot draws now: [photos drawn as points, the density image's left edge or null].
DRAWN_JS = browser.PLOT_VIEW_JS + """
if (pv == null) return null;
const img = pv.model.renderers.find((r) => r.glyph.type == "ImageRGBA");
const pts = pv.model.renderers[0];
return [pts.visible ? pts.data_source.get_length() : 0,
        img != null && img.visible ? img.data_source.data.x[0] : null];
"""

# JS (async): move the view `steps` times (a pan: 2% of its width right; a zoom: 5% in, about its
# centre), each as one change of the ranges, as bokeh's pan and wheel-zoom tools make them, and
# time each until the frame that shows it (two animation frames later); between steps, the same wait
# with nothing changed, the reference (the machine's frame pacing under its current load, which on a
# shared 2-core machine moves more than anything measured). Returns [step ms, reference ms].
FRAMES_JS = browser.PLOT_VIEW_JS + """
const [kind, steps, done] = [arguments[1], arguments[2], arguments[arguments.length - 1]];
const {x_range: xr, y_range: yr} = pv.model;
xr.have_updated_interactively = yr.have_updated_interactively = true;  // as bokeh's tools do
const frame = () => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
const [out, idle] = [[], []];
(async () => {
  await frame();
  for (let k = 0; k < steps; k++) {
    let t0 = performance.now();
    await frame();
    idle.push(performance.now() - t0);
    t0 = performance.now();
    if (kind == "pan") {
      const d = 0.02 * (xr.end - xr.start);
      xr.setv({start: xr.start + d, end: xr.end + d});
    } else {
      const [cx, cy, wx, wy] = [(xr.start + xr.end) / 2, (yr.start + yr.end) / 2,
                                0.95 * (xr.end - xr.start) / 2, 0.95 * (yr.end - yr.start) / 2];
      xr.setv({start: cx - wx, end: cx + wx});
      yr.setv({start: cy - wy, end: cy + wy});
    }
    await frame();
    out.push(performance.now() - t0);
  }
  done([out, idle]);
})();
"""

ZOOM_JS = browser.PLOT_VIEW_JS + """
pv.model.x_range.have_updated_interactively = pv.model.y_range.have_updated_interactively = true;
pv.model.x_range.setv({start: arguments[1], end: arguments[2]});
pv.model.y_range.setv({start: arguments[3], end: arguments[4]});
"""


def browser_figures(site_root, coords, hovered=None, n_hovers=15):
    """Time to first render, what was loaded by then, hover latencies, tooltip images and requests per
    hover, pan and zoom frames, and the tab's memory in chromium. ``hovered``: the photos to hover
    (default: ``n_hovers`` at random)."""
    rng = np.random.default_rng(1)
    if hovered is None:
        hovered = rng.choice(len(coords), n_hovers, replace=False)
    out = {}
    with browser.serve(site_root) as server, browser.chrome() as d:
        d.set_page_load_timeout(300)
        d.set_script_timeout(300)
        d.get(server.url + "map.html")
        browser.wait_for_plot(d, page.PLOT_NAME, timeout=300)
        t0 = time.perf_counter()
        while not any(d.execute_script(DRAWN_JS, page.PLOT_NAME) or [0]) and time.perf_counter() - t0 < 60:
            time.sleep(0.01)
        out["first_render_s"] = d.execute_script("return performance.now()") / 1000
        out["loaded_at_render_mb"] = d.execute_script(
            "return performance.getEntries().filter((e) => e.transferSize != null)"
            ".reduce((s, e) => s + Math.max(e.transferSize, e.decodedBodySize ?? 0), 0)") / 1e6
        home = d.execute_script(browser.PLOT_VIEW_JS + "const {x_range: x, y_range: y} = pv.model;"
                                "return [x.start, x.end, y.start, y.end]", page.PLOT_NAME)
        out.update(view_figures(d, coords))
        d.execute_script(ZOOM_JS, page.PLOT_NAME, *home)
        wait_drawn(d, lambda pts, img: img is not None or pts == len(coords))
        to_tip, to_img, imgs_after, under_cursor, requests = [], [], [], [], []
        for j in hovered:
            cx, cy = browser.data_to_client(d, page.PLOT_NAME, *coords[j])
            browser.mouse_move(d, cx + 40, cy + 40)  # somewhere else first
            time.sleep(0.3)
            before = len([p for p, _ in server.requests() if p.endswith(".jpg")])
            t0 = time.perf_counter()
            browser.mouse_move(d, cx, cy)
            t_tip = None
            while time.perf_counter() - t0 < 10:
                tips, nimg, width, src, hits = d.execute_script(HOVER_PROBE_JS)
                if tips and t_tip is None:
                    t_tip = time.perf_counter() - t0
                if tips and width > 0:
                    break
            t_img = time.perf_counter() - t0
            to_tip.append(t_tip if t_tip is not None else float("nan"))
            to_img.append(t_img)
            imgs_after.append(nimg)
            under_cursor.append(hits)
            time.sleep(0.2)
            requests.append(len([p for p, _ in server.requests() if p.endswith(".jpg")]) - before)
        d.save_screenshot(os.path.join(site_root, "hover.png"))
        out.update(tab_memory(d))
        out.update(hover_to_tooltip_ms=1000 * statistics.median(to_tip),
                   hover_to_image_ms=1000 * statistics.median(to_img),
                   hover_to_image_max_ms=1000 * max(to_img),
                   tooltip_images=sorted(set(imgs_after)), thumb_requests_per_hover=sorted(set(requests)),
                   points_under_cursor_median=statistics.median(under_cursor),
                   points_under_cursor_max=max(under_cursor))
    return out


def wait_drawn(d, condition, timeout=60):
    """Seconds until what the plot draws (points drawn, image's left edge) satisfies ``condition``."""
    t0 = time.perf_counter()
    while not condition(*d.execute_script(DRAWN_JS, page.PLOT_NAME)):
        if time.perf_counter() - t0 > timeout:
            return float("nan")
        time.sleep(0.005)
    return time.perf_counter() - t0


def view_figures(d, coords):
    """Pan and zoom frames (median and worst, ms; and the median frame with nothing changed, the
    reference) at the first view and zoomed in on the densest
    place until at most the point budget is in view, and the redraw after a pan once the view is
    still (seconds, including the redraw's quiet wait of density.REDRAW_QUIET_MS)."""
    out = {}

    def frames(kind, label, steps=20):
        ms, idle = d.execute_async_script(FRAMES_JS, page.PLOT_NAME, kind, steps)
        out[label + "_frame_ms"] = statistics.median(ms)
        out[label + "_frame_max_ms"] = max(ms)
        out[label + "_idle_frame_ms"] = statistics.median(idle)

    before = d.execute_script(DRAWN_JS, page.PLOT_NAME)
    frames("pan", "pan_out")
    out["redraw_after_pan_s"] = wait_drawn(d, lambda pts, img: [pts, img] != before)
    frames("zoom", "zoom_out")
    # Zoom in on the densest place (a 2-D histogram's fullest cell) until the budget holds what is in view.
    counts, ex, ey = np.histogram2d(coords[:, 0], coords[:, 1], bins=64)
    i, j = np.unravel_index(np.argmax(counts), counts.shape)
    cx, cy = (ex[i] + ex[i + 1]) / 2, (ey[j] + ey[j + 1]) / 2
    half = float(max(np.ptp(coords[:, 0]), np.ptp(coords[:, 1]), 1e-9)) / 2
    while half > 1e-9:
        half /= 1.5
        inside = ((np.abs(coords[:, 0] - cx) <= 1.5 * half) & (np.abs(coords[:, 1] - cy) <= 1.5 * half)).sum()
        if inside <= density.POINT_BUDGET:
            break
    d.execute_script(ZOOM_JS, page.PLOT_NAME, *map(float, (cx - half, cx + half, cy - half, cy + half)))
    out["zoom_in_redraw_s"] = wait_drawn(d, lambda pts, img: img is None and pts > 0)
    out["points_in_view"] = d.execute_script(DRAWN_JS, page.PLOT_NAME)[0]
    frames("pan", "pan_in")
    frames("zoom", "zoom_in")
    return out


def tab_memory(d):
    """The tab's JavaScript heap, and the resident memory of all of chromium's processes (MB)."""
    d.execute_cdp_cmd("Performance.enable", {})
    metrics = {m["name"]: m["value"] for m in d.execute_cdp_cmd("Performance.getMetrics", {})["metrics"]}
    out = {"js_heap_mb": metrics.get("JSHeapUsedSize", float("nan")) / 1e6}
    try:
        import psutil

        root = psutil.Process(d.service.process.pid)
        out["chromium_rss_mb"] = sum(p.memory_info().rss for p in root.children(recursive=True)) / 1e6
    except (ImportError, psutil.Error):
        pass
    return out


def island_coords(n, seed=0):
    """``n`` photos in 40 Gaussian islands of different sizes and spreads (a UMAP-like layout)."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-15, 15, size=(40, 2))
    weights = rng.uniform(0.3, 3, 40)
    k = rng.choice(40, n, p=weights / weights.sum())
    return (centres[k] + rng.normal(size=(n, 2)) * rng.uniform(0.3, 1.5, 40)[k, None]).astype(np.float32), k


def run_page(n, n_hovers=15):
    """The page alone for ``n`` synthetic photos (see the module docstring)."""
    from PIL import Image

    from photomap_tools.synthetic import fake_md5

    root = os.path.join(OUT, "page%d" % n)
    thumbs = os.path.join(root, "thumbs")
    os.makedirs(thumbs, exist_ok=True)
    coords, k = island_coords(n)
    md5s = [fake_md5(i) for i in range(n)]
    photos = Photos(md5s=md5s, paths=[["/photos/%04d/folder_%02d/IMG_%07d.jpg" % (2000 + c % 25, c, i)]
                                      for i, c in enumerate(k)],
                    features=np.zeros((n, 1), np.float32), thumbs_dir=thumbs)
    hovered = np.random.default_rng(1).choice(n, n_hovers, replace=False)
    for j in hovered:  # the photo and its neighbours: a hover may find one of them first
        for i in np.argsort(np.hypot(*(coords - coords[j]).T))[:20]:
            Image.new("RGB", (32, 24), (int(k[i]) * 6, 90, 40)).save(os.path.join(thumbs, md5s[i] + ".jpg"))
    labels = ["%04d/folder_%02d" % (2000 + c % 25, c) for c in k]
    html = os.path.join(root, "map.html")
    t, cpu = time.perf_counter(), time.process_time()
    size = page.write_map(html, photos, coords, labels, "top-level folder")
    # CPU time beside wall time: on a shared machine the wall time is mostly other jobs' turn.
    fig = dict(n=n, backend=page.OUTPUT_BACKEND, page_build_s=time.perf_counter() - t,
               page_build_cpu_s=time.process_time() - cpu, page_mb=size / 1e6)
    reason = browser.skip_reason()
    if reason:
        fig["browser"] = "skipped: " + reason
    else:
        fig.update(browser_figures(root, coords, hovered))
    return fig


def warm_up_numba():
    """Seconds for a tiny UMAP run: numba compiles umap-learn's kernels once per process, and that
    one-time cost would otherwise be billed to whichever size is measured first."""
    t = time.perf_counter()
    projection.project(np.random.default_rng(0).normal(size=(300, DIM)).astype(np.float32))
    return time.perf_counter() - t


def run(n):
    t = time.perf_counter()
    root, meta_path, thumbs, feats = make_dataset(n)
    gen_s = time.perf_counter() - t
    t = time.perf_counter()
    photos = join(meta_path, thumbs, feats)
    join_s = time.perf_counter() - t
    html = os.path.join(root, "map.html")
    for p in projection.coords_paths(html):  # time UMAP itself, not the cache
        if os.path.exists(p):
            os.unlink(p)
    t = time.perf_counter()
    coords, _ = projection.load_or_project(photos.md5s, photos.features, photos.first_paths, html)
    umap_s = time.perf_counter() - t
    t = time.perf_counter()
    coords2, reused = projection.load_or_project(photos.md5s, photos.features, photos.first_paths, html)
    cache_s = time.perf_counter() - t
    assert reused and np.allclose(coords, coords2)
    t = time.perf_counter()
    labels, colour_by = colours.groups(photos)
    size = page.write_map(html, photos, coords, labels, colour_by)
    page_s = time.perf_counter() - t
    fig = dict(n=n, data_s=gen_s, join_s=join_s, umap_s=umap_s, cache_reload_s=cache_s, page_build_s=page_s,
               page_mb=size / 1e6)
    reason = browser.skip_reason()
    if reason:
        fig["browser"] = "skipped: " + reason
    else:
        fig.update(browser_figures(root, coords))
    return fig


# In the page: when the mouse button comes up, and when the panel first says how many photos (and then
# how many files) are selected.
SELECT_PROBE_JS = """
const panel = Bokeh.documents[0].get_model_by_name(arguments[0]);
window._probe = {up: null, count: null, files: null};
document.addEventListener("pointerup", () => { window._probe = {up: performance.now(), count: null, files: null} }, true);
panel.properties.text.change.connect(() => {
  const p = window._probe, t = performance.now();
  if (p.up == null) return;
  if (p.count == null && / selected/.test(panel.text)) p.count = t - p.up;
  if (p.files == null && /selected \\([0-9,]+ files?\\)/.test(panel.text)) p.files = t - p.up;
});
"""


def folder_bytes(folder):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(folder) for f in fs)


def select_run(n, reps=3):
    """Selection and neighbour details at ``n`` photos: the neighbours and groups (similar.build), the
    page and its detail shards with and without those columns, and in chromium the time from releasing
    a box over half the map to the count shown and to the file count shown (medians of ``reps``)."""
    root, meta_path, thumbs, feats = make_dataset(n)
    photos = join(meta_path, thumbs, feats)
    # The features' first two principal components stand in for UMAP: the layout does not change these timings.
    centred = photos.features - photos.features.mean(axis=0)
    coords = centred @ np.linalg.svd(centred[:: max(1, n // 5000)], full_matrices=False)[2][:2].T
    labels, colour_by = colours.groups(photos, "folder")
    t = time.perf_counter()
    sim = similar.build(photos.md5s, photos.features, photos.paths, os.path.join(root, "select.html"))
    fig = dict(n=n, similar_s=time.perf_counter() - t, groups=len(sim.groups))
    for name, details in (("plain", None), ("select", similar.detail_columns(sim, photos.paths))):
        html = os.path.join(root, name + ".html")
        fig[name + "_page_mb"] = page.write_map(html, photos, coords, labels, colour_by, details) / 1e6
        fig[name + "_shards_mb"] = folder_bytes(os.path.splitext(html)[0] + ".photos") / 1e6
    reason = browser.skip_reason()
    if reason:
        fig["browser"] = "skipped: " + reason
        return fig
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    half = float(np.median(coords[:, 0]))
    with browser.serve(root) as server, browser.chrome() as d:
        d.set_page_load_timeout(300)
        d.get(server.url + "select.html")
        browser.wait_for_plot(d, page.PLOT_NAME, timeout=300)
        x0, x1, y0, y1 = d.execute_script("const p = Bokeh.documents[0].get_model_by_name(arguments[0]);"
                                          "return [p.x_range.start, p.x_range.end, p.y_range.start, p.y_range.end]",
                                          page.PLOT_NAME)
        box = (x0 + 0.01 * (x1 - x0), y0 + 0.01 * (y1 - y0), half, y1 - 0.01 * (y1 - y0))
        xs, ys = coords[:, 0].astype(np.float32), coords[:, 1].astype(np.float32)  # as the page holds them
        want = int(((xs >= box[0]) & (xs <= box[2]) & (ys >= box[1]) & (ys <= box[3])).sum())
        d.execute_script("Bokeh.documents[0].get_model_by_name(arguments[0]).active = true", actions.SELECT_TOOLS[0])
        d.execute_script(SELECT_PROBE_JS, page.PANEL_NAME)
        to_count, to_files = [], []
        for _ in range(reps):
            (ax, ay), (bx, by) = (browser.data_to_client(d, page.PLOT_NAME, x, y) for x, y in (box[:2], box[2:]))
            browser.mouse_drag(d, [(ax + (bx - ax) * k / 7, ay + (by - ay) * k / 7) for k in range(8)])
            t = time.perf_counter()
            while time.perf_counter() - t < 60 and not d.execute_script("return window._probe.files"):
                time.sleep(0.05)
            probe = d.execute_script("return window._probe")
            to_count.append(probe["count"])
            to_files.append(probe["files"])
            said = d.execute_script("return Bokeh.documents[0].get_model_by_name(arguments[0]).text", page.PANEL_NAME)
            fig["said"] = re.search(r"[0-9,]+ photos selected \([0-9,]+ files\)", said).group(0)
            ActionChains(d).send_keys(Keys.ESCAPE).perform()
        fig.update(in_box_numpy=want, count_shown_ms=statistics.median(to_count), count_shown_max_ms=max(to_count),
                   files_shown_ms=statistics.median(to_files), shard_requests=len(
                       [p for p, _ in server.requests() if p.endswith(".json")]))
    return fig


MOSAIC_FRAME_JS = browser.PLOT_VIEW_JS + """
const done = arguments[arguments.length - 1], dx = arguments[1];
const xr = pv.model.x_range, t0 = performance.now();
xr.setv({start: xr.start + dx, end: xr.end + dx});
requestAnimationFrame(() => requestAnimationFrame(() => done(performance.now() - t0)));
"""


def mosaic_site(n, mosaic):
    """A page of n photos on 40 synthetic islands (each photo its own tiny thumbnail) under
    bench/out/mosaic<n>/, dots-only when ``mosaic`` is 0; returns (folder, coords, page name)."""
    from PIL import Image

    from photomap.join import Photos

    root = os.path.join(OUT, "mosaic%d" % n)
    thumbs = os.path.join(root, "thumbs")
    rng = np.random.default_rng(0)
    centres = rng.uniform(-20, 20, (40, 2))
    coords = centres[rng.integers(0, 40, n)] + rng.normal(0, 1.0, (n, 2))
    md5s = [synthetic.fake_md5(i) for i in range(n)]
    if not os.path.isdir(thumbs):
        os.makedirs(thumbs)
        buf = io.BytesIO()
        Image.new("RGB", (32, 24), (120, 160, 200)).save(buf, "JPEG")
        jpeg = buf.getvalue()
        for md5 in md5s:
            with open(os.path.join(thumbs, md5 + ".jpg"), "wb") as f:
                f.write(jpeg)
    photos = Photos(md5s=md5s, paths=[["/photos/%d.jpg" % i] for i in range(n)],
                    features=np.zeros((n, 2), np.float32), thumbs_dir=thumbs)
    name = "mosaic.html" if mosaic else "dots.html"
    page.write_map(os.path.join(root, name), photos, coords, ["g%d" % (i % 40) for i in range(n)], mosaic=mosaic)
    return root, coords, name


def half_width(coords, centre, aspect, count):
    """Half the width of the view around ``centre`` (height = width * ``aspect``) that holds ``count`` points."""
    lo, hi = 0.0, float(np.ptp(coords, axis=0).max())
    for _ in range(40):
        mid = (lo + hi) / 2
        inside = np.sum((np.abs(coords[:, 0] - centre[0]) <= mid) & (np.abs(coords[:, 1] - centre[1]) <= mid * aspect))
        lo, hi = (mid, hi) if inside <= count else (lo, mid)
    return lo


def mosaic_figures(n, rounds=3, steps=12):
    """Pan-frame times with and without the mosaic, and thumbnails fetched per zoom step."""
    root, coords, _ = mosaic_site(n, 0)
    mosaic_site(n, page.MOSAIC_BUDGET)
    centre = np.median(coords[np.abs(coords - coords[0]).max(1) < 3], axis=0)
    frames = {"mosaic.html": [], "dots.html": []}
    per_step, drawn = [], []
    with browser.serve(root) as server, browser.chrome() as d:
        d.set_page_load_timeout(300)
        d.set_script_timeout(30)
        for _ in range(rounds):
            for name in frames:  # alternated, so drift in the machine's load hits both alike
                d.get(server.url + name)
                browser.wait_for_plot(d, page.PLOT_NAME, timeout=300)
                x0, x1, y0, y1 = d.execute_script(GET_RANGES_JS, page.PLOT_NAME)
                aspect = (y1 - y0) / (x1 - x0)
                half = half_width(coords, centre, aspect, page.MOSAIC_BUDGET * 4 // 5)
                d.execute_script(SET_RANGES_JS, page.PLOT_NAME, centre[0] - half, centre[0] + half,
                                 centre[1] - half * aspect, centre[1] + half * aspect)
                time.sleep(1)  # let the pictures come before the panning is timed (a benchmark, not a test)
                if name == "mosaic.html":
                    drawn.append(len(browser.deep_query(d, ".photomap-mosaic img")))
                for k in range(10):
                    frames[name].append(d.execute_async_script(MOSAIC_FRAME_JS, page.PLOT_NAME,
                                                               half / 20 * (1 if k % 2 else -1)))
        d.get(server.url + "mosaic.html")
        browser.wait_for_plot(d, page.PLOT_NAME, timeout=300)
        full = d.execute_script(GET_RANGES_JS, page.PLOT_NAME)
        for step in range(steps + 1):
            before = len([p for p, _ in server.requests() if p.endswith(".jpg")])
            k = 0.6 ** step
            w, h = (full[1] - full[0]) * k / 2, (full[3] - full[2]) * k / 2
            d.execute_script(SET_RANGES_JS, page.PLOT_NAME, centre[0] - w, centre[0] + w, centre[1] - h, centre[1] + h)
            time.sleep(1)
            per_step.append(len([p for p, _ in server.requests() if p.endswith(".jpg")]) - before)
    mosaic_ms, dots_ms = statistics.median(frames["mosaic.html"]), statistics.median(frames["dots.html"])
    return dict(n=n, budget=page.MOSAIC_BUDGET, pictures_drawn=statistics.median(drawn), pan_frame_mosaic_ms=mosaic_ms,
                pan_frame_dots_ms=dots_ms, ratio=mosaic_ms / dots_ms, thumbs_per_zoom_step=per_step)


GET_RANGES_JS = browser.PLOT_VIEW_JS + """
return [pv.model.x_range.start, pv.model.x_range.end, pv.model.y_range.start, pv.model.y_range.end];
"""
# Marked as the user's view, as bokeh's zoom tools do (else the page's next restyle restores the automatic ranges).
SET_RANGES_JS = browser.PLOT_VIEW_JS + """
pv.model.x_range.have_updated_interactively = pv.model.y_range.have_updated_interactively = true;
pv.model.x_range.setv({start: arguments[1], end: arguments[2]});
pv.model.y_range.setv({start: arguments[3], end: arguments[4]});
"""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="10000,100000", help="comma-separated photo counts, through stage 3")
    p.add_argument("--pages", default="1000000", help="comma-separated photo counts, the page alone")
    p.add_argument("--backend", choices=("webgl", "canvas"), default=page.OUTPUT_BACKEND,
                   help="bokeh's output backend for the plot (default %(default)s)")
    p.add_argument("--select", action="store_true",
                   help="measure selection (50%% of the map) and the neighbour details' size instead")
    p.add_argument("--mosaic", action="store_true", help="only the mosaic's pan/zoom figures (issue 17)")
    args = p.parse_args(argv)
    page.OUTPUT_BACKEND = args.backend
    if args.mosaic:
        for n in (int(s) for s in args.sizes.split(",")):
            fig = mosaic_figures(n)
            print("bench_map: mosaic: " + ", ".join("%s=%s" % (k, "%.3g" % v if isinstance(v, float) else v)
                                                    for k, v in fig.items()), flush=True)
        return 0
    sizes = [int(s) for s in args.sizes.split(",") if s]
    if args.select:
        runs = [(select_run, n) for n in sizes]
    else:
        if sizes:
            print("bench_map: umap-learn numba compile (300-point warm-up) %.1fs" % warm_up_numba(), flush=True)
        runs = [(run, n) for n in sizes] + [(run_page, int(s)) for s in args.pages.split(",") if s]
    for how, n in runs:
        fig = how(n)
        print("bench_map: " + ", ".join("%s=%s" % (k, "%.3g" % v if isinstance(v, float) else v)
                                        for k, v in fig.items()), flush=True)
        if fig.get("tooltip_images", [1]) != [1]:
            print("bench_map: FAIL: a hover left %s tooltip images, expected 1" % fig["tooltip_images"],
                  file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
