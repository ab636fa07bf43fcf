"""The README's pictures: gifs/record.py on a tiny generated map, in the real browser."""
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, ImageChops

from conftest import ROOT
from photomap import features, meta
from photomap.commands import visualize
from photomap_tools import browser

REASON = browser.skip_reason()
RECORD = os.path.join(ROOT, "gifs", "record.py")


def record(*args):
    """Run gifs/record.py as a user does; returns the CompletedProcess (text)."""
    return subprocess.run([sys.executable, RECORD] + [str(a) for a in args], capture_output=True, text=True,
                          timeout=300)


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
    assert visualize.main(["--meta", str(tmp_path / "thumbs.meta"), "--thumbs", str(thumbs),
                           "--features", str(feats), "-o", str(page), "--seed", "1", "-q"]) == 0
    return page


@pytest.mark.skipif(REASON is not None, reason=REASON or "")
def test_recorder_writes_gifs_with_distinct_browser_frames(tmp_path):
    page = tiny_map(tmp_path)
    dest = tmp_path / "gifs"
    res = record("--page", page, "--dest", dest, "--regions", "2", "--hovers", "3", "--zoom-steps", "2",
                 "--width", "400")
    assert res.returncode == 0, res.stderr
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


def test_recorder_refuses_a_missing_page(tmp_path):
    res = record("--page", tmp_path / "nope.html", "--dest", tmp_path)
    assert res.returncode == 2
    assert res.stderr.splitlines() == ["error: no map page at %s (run make demo first)" % (tmp_path / "nope.html")]
