"""The README's pictures: gifs/record.py on a tiny generated map, in the real browser."""
import os
import subprocess
import sys

import pytest
from PIL import Image, ImageChops

from conftest import ROOT
from photomap.commands import visualize
from photomap_tools import browser
from photomap_tools.synthetic import write_map_inputs

REASON = browser.skip_reason()
RECORD = os.path.join(ROOT, "gifs", "record.py")


def record(*args):
    """Run gifs/record.py as a user does; returns the CompletedProcess (text)."""
    return subprocess.run([sys.executable, RECORD] + [str(a) for a in args], capture_output=True, text=True,
                          timeout=300)


@pytest.fixture
def tiny_map(tmp_path, run_main):
    """Three well separated groups of 8 photos (thumbnails, vectors, .meta) and the page of their map."""
    inputs = write_map_inputs(tmp_path, 24, dim=32, folders=("red", "green", "blue"), spread=0.06,
                              name="IMG_%d.jpg")
    page = tmp_path / "map.html"
    assert run_main(visualize.main, "--meta", inputs.meta, "--thumbs", inputs.thumbs, "--features",
                    inputs.features, "-o", page, "--seed", 1, "-q").status == 0
    return page


@pytest.mark.skipif(REASON is not None, reason=REASON or "")
def test_recorder_writes_gifs_with_distinct_browser_frames(tmp_path, tiny_map):
    page = tiny_map
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
