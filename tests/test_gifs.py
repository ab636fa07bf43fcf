"""The README's pictures: gifs/record.py on a tiny generated map, in the real browser."""
import importlib.util
import os

import numpy as np
import pytest
from PIL import Image, ImageChops

from conftest import ROOT
from photomap import browser, features, meta

REASON = browser.skip_reason()


def load_script(rel):
    spec = importlib.util.spec_from_file_location(os.path.basename(rel)[:-3], os.path.join(ROOT, rel))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_map(tmp_path, n_per=8):
    """Three well separated groups of photos: thumbnails, feature vectors, .meta and the page."""
    thumbs, feats = tmp_path / "thumbs", tmp_path / "features"
    thumbs.mkdir()
    feats.mkdir()
    rng = np.random.default_rng(0)
    lines = []
    for g, (folder, colour) in enumerate([("red", (220, 40, 40)), ("green", (40, 200, 60)), ("blue", (40, 60, 220))]):
        centre = rng.normal(size=32) * 5
        for i in range(n_per):
            md5 = "%032x" % (g * 100 + i + 1)
            Image.new("RGB", (224, 168), colour).save(thumbs / (md5 + ".jpg"))
            features.save_vector(features.feature_path_for_md5(feats, md5), centre + rng.normal(size=32) * 0.3)
            lines.append(meta.format_entry(md5, "/photos/%s/IMG_%d.jpg" % (folder, i)))
    (tmp_path / "thumbs.meta").write_text("".join(lines), encoding="utf-8")
    page = tmp_path / "map.html"
    visualize = load_script("visualize.py")
    assert visualize.main(["--meta", str(tmp_path / "thumbs.meta"), "--thumbs", str(thumbs),
                           "--features", str(feats), "-o", str(page), "--seed", "1", "-q"]) == 0
    return page


@pytest.mark.skipif(REASON is not None, reason=REASON or "")
def test_recorder_writes_gifs_with_distinct_browser_frames(tmp_path):
    page = tiny_map(tmp_path)
    dest = tmp_path / "gifs"
    record = load_script("gifs/record.py")
    assert record.main(["--page", str(page), "--dest", str(dest), "--regions", "2", "--hovers", "3",
                        "--zoom-steps", "2", "--width", "400"]) == 0
    assert Image.open(dest / "map.png").size[0] > 600
    for name in ("cluster1.gif", "cluster2.gif"):
        gif = Image.open(dest / name)
        assert gif.is_animated and gif.n_frames >= 5  # start, 2 zoom steps, hovered photos
        frames = []
        for i in range(gif.n_frames):
            gif.seek(i)
            frames.append(gif.convert("RGB"))
        distinct = sum(ImageChops.difference(a, b).getbbox() is not None for a, b in zip(frames, frames[1:]))
        assert distinct >= 4, "zooming and hovering change what the browser shows"
    captions = (dest / "regions.json").read_text()
    assert "cluster1.gif" in captions and "from folder" in captions


def test_recorder_refuses_a_missing_page(tmp_path, capsys):
    record = load_script("gifs/record.py")
    assert record.main(["--page", str(tmp_path / "nope.html"), "--dest", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip().startswith("error: no map page at")
