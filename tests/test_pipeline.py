"""End to end: the README's commands, typed as users type them, on a generated photo folder."""
import csv
import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, make_photo
from photomap import meta

COLORS = [(220, 30, 30), (30, 200, 40), (40, 60, 220), (230, 220, 30), (200, 40, 200), (20, 200, 210)]


def sh(script, cwd, env):
    return subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_readme_commands_build_a_page_with_every_photo(tmp_path, torch_home):
    photos = tmp_path / "MyStuff"
    for i, color in enumerate(COLORS):
        make_photo(photos / ("trip %d" % (i % 2)) / ("IMG_%04d.JPG" % i), size=(800, 600), color=color)
    make_photo(photos / "scans" / "été <b>.png", size=(300, 400), color=(90, 90, 90), fmt="PNG")
    shutil.copyfile(photos / "trip 0" / "IMG_0000.JPG", photos / "scans" / "copy of IMG_0000.jpg")
    (photos / "scans" / "broken.jpg").write_bytes(b"not a photo")

    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    cmds = """
        mkdir -p output
        {r}/process_photos.py -d MyStuff -o output/torch_thumbs -s 224 >> output/torch_thumbs.meta
        {r}/process_photos.py -d MyStuff -o output/torch_thumbs -s 224 -l output/torch_thumbs.meta | tee -a output/torch_thumbs.meta
        find output/torch_thumbs -name \\*.jpg | {r}/embeddings.py -o output/features_resnet18 -m resnet18 -
        {r}/visualize.py --meta output/torch_thumbs.meta --thumbs output/torch_thumbs \\
            --features output/features_resnet18 -o output/map_resnet18.html
    """.format(r=ROOT)
    res = sh(cmds, tmp_path, env)
    assert res.returncode == 0, res.stderr
    assert res.stdout == "", "the resumed run found nothing new, so tee printed nothing"

    log = meta.read_meta(tmp_path / "output" / "torch_thumbs.meta")
    assert len(log.entries) == 8 and list(log.errors) == ["MyStuff/scans/broken.jpg"]
    md5s = set(log.entries.values())
    assert len(md5s) == 7, "the byte-identical copy shares its original's md5"
    assert log.entries["MyStuff/scans/copy of IMG_0000.jpg"] == log.entries["MyStuff/trip 0/IMG_0000.JPG"]
    thumbs = {n[:-4] for n in os.listdir(tmp_path / "output" / "torch_thumbs") if n.endswith(".jpg")}
    assert thumbs == md5s
    feats = {n.split(".")[0] for n in os.listdir(tmp_path / "output" / "features_resnet18")
             if n.endswith(".jpg.npy")}
    assert feats == md5s

    page = (tmp_path / "output" / "map_resnet18.html").read_text(encoding="utf-8")
    with open(tmp_path / "output" / "map_resnet18.coords.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert {r["md5"] for r in rows} == md5s
    for md5 in md5s:
        assert md5 in page
    assert "http.server 8000 --bind 127.0.0.1" in res.stderr


def _transparent_png(path):
    """A 64 x 64 RGBA PNG: opaque red on the left, transparent black on the right, and a
    half-transparent blue band at the bottom."""
    import numpy as np
    from PIL import Image

    a = np.zeros((64, 64, 4), np.uint8)
    a[:, :32] = (200, 30, 30, 255)
    a[40:] = (20, 40, 220, 128)
    Image.fromarray(a, "RGBA").save(path)


def _deep_grey_png(path):
    """A 64 x 64 16-bit grey PNG: near black on the left, mid grey (in 16 bits) on the right."""
    import numpy as np
    from PIL import Image

    a = np.full((64, 64), 1000, np.uint16)
    a[:, 32:] = 128 * 257
    Image.fromarray(a).save(path)


@pytest.mark.parametrize("make", [_transparent_png, _deep_grey_png], ids=["alpha", "16-bit"])
def test_both_stages_see_the_same_pixels(tmp_path, random_weights, run_main, make):
    import numpy as np
    from PIL import Image
    from torchvision.transforms._presets import ImageClassification

    from photomap import decode, features
    from photomap.commands import embeddings, process_photos

    src = tmp_path / "src"
    src.mkdir()
    png = src / "odd.png"
    make(png)
    # Stage 1: the thumbnail (64 px fits in -s 64: not resized, only converted and saved as JPEG).
    status, out, err = run_main(process_photos.main, "-d", src, "-o", tmp_path / "thumbs", "-s", 64, "-j", 1)
    assert status == 0, err
    md5 = meta.parse_lines(iter(out.splitlines(True))).entries[str(png)]
    thumb = tmp_path / "thumbs" / meta.thumb_name(md5)
    seen_by_1 = np.asarray(Image.open(thumb), dtype=np.int16)
    # Stage 2 given the PNG straight: what its decode workers hand the network, at 64 px.
    pre = decode.Preprocess(ImageClassification(crop_size=64, resize_size=64))
    _, tensor, reason = decode.ImageFiles([str(png)], pre)[0]
    assert reason is None
    seen_by_2 = tensor.numpy().astype(np.int16)
    assert seen_by_2.shape == seen_by_1.shape == (64, 64, 3)
    assert np.abs(seen_by_2 - seen_by_1).mean() < 3, "the same picture, up to JPEG's rounding"
    if make is _transparent_png:
        assert seen_by_2[:32, 40:].min() == 255, "transparent is white (it was black in stage 2)"
    else:
        assert abs(int(seen_by_2[:, 48].mean()) - 128) <= 1, "16-bit is scaled (it was clipped to 255)"

    # And the vectors: the PNG straight into stage 2 and its stage-1 thumbnail agree.
    feats = tmp_path / "feats"
    status, _, err = run_main(embeddings.main, "-o", feats, "--device", "cpu", "-j", 0,
                              "--weights", random_weights, "-q", png, thumb)
    assert status == 0, err
    a, b = (features.load_vector(feats / features.feature_name(p)) for p in (png, thumb))
    assert float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))) >= 0.999
