#!/usr/bin/env python3
"""Benchmark stage 3 at 10k and 100k points: UMAP, page build and size, render and hover in Chromium.

    .venv/bin/python bench/bench_map.py                  # 10k and 100k points
    .venv/bin/python bench/bench_map.py --sizes 10000
    .venv/bin/python bench/bench_map.py --mosaic --sizes 100000   # the mosaic's pan/zoom frames only

Stage 3 at scale: synthetic 512-d features and tiny thumbnails (scratch data in bench/out/, reused),
then UMAP time, page build time and size, and in headless chromium the time to first render, the
hover-to-tooltip and hover-to-image latencies and how many tooltip images a hover leaves (must be 1).
The reference is bokeh's own hit test at the same spot: the number of points under the cursor, i.e.
how many tooltips (and thumbnail requests) bokeh's default hover would have stacked there.

``--mosaic``: on synthetic islands (no UMAP), the time of a pan frame (ranges set, then two animation
frames: bokeh's paint and the mosaic's update) zoomed in with the mosaic drawing ~its budget of
pictures, against the same page built dots-only, alternated; and the thumbnails fetched per zoom step
from the whole map into one island.
"""
import argparse
import io
import os
import statistics
import sys
import time

import numpy as np

from photomap import colours, page, projection
from photomap.join import join
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


def browser_figures(site_root, coords, n_hovers=15):
    """Time to first render, hover latencies, tooltip images and requests per hover in chromium."""
    rng = np.random.default_rng(1)
    out = {}
    with browser.serve(site_root) as server, browser.chrome() as d:
        d.set_page_load_timeout(300)
        d.get(server.url + "map.html")
        browser.wait_for_plot(d, page.PLOT_NAME, timeout=300)
        out["first_render_s"] = d.execute_script("return performance.now()") / 1000
        to_tip, to_img, imgs_after, under_cursor, requests = [], [], [], [], []
        for j in rng.choice(len(coords), n_hovers, replace=False):
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
        out.update(hover_to_tooltip_ms=1000 * statistics.median(to_tip),
                   hover_to_image_ms=1000 * statistics.median(to_img),
                   hover_to_image_max_ms=1000 * max(to_img),
                   tooltip_images=sorted(set(imgs_after)), thumb_requests_per_hover=sorted(set(requests)),
                   points_under_cursor_median=statistics.median(under_cursor),
                   points_under_cursor_max=max(under_cursor))
    return out


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
SET_RANGES_JS = browser.PLOT_VIEW_JS + """
pv.model.x_range.setv({start: arguments[1], end: arguments[2]});
pv.model.y_range.setv({start: arguments[3], end: arguments[4]});
"""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="10000,100000", help="comma-separated point counts")
    p.add_argument("--mosaic", action="store_true", help="only the mosaic's pan/zoom figures (issue 17)")
    args = p.parse_args(argv)
    if args.mosaic:
        for n in (int(s) for s in args.sizes.split(",")):
            fig = mosaic_figures(n)
            print("bench_map: mosaic: " + ", ".join("%s=%s" % (k, "%.3g" % v if isinstance(v, float) else v)
                                                    for k, v in fig.items()), flush=True)
        return 0
    print("bench_map: umap-learn numba compile (300-point warm-up) %.1fs" % warm_up_numba(), flush=True)
    for n in (int(s) for s in args.sizes.split(",")):
        fig = run(n)
        print("bench_map: " + ", ".join("%s=%s" % (k, "%.3g" % v if isinstance(v, float) else v)
                                        for k, v in fig.items()), flush=True)
        if fig.get("tooltip_images", [1]) != [1]:
            print("bench_map: FAIL: a hover left %s tooltip images, expected 1" % fig["tooltip_images"],
                  file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
