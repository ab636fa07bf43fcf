"""End to end: the README's commands, typed as users type them, on a generated photo folder."""
import csv
import os
import shutil
import subprocess
import sys

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
