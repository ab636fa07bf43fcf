"""Originals that are gone: present / missing / unreachable per path, said once, and the originals' facts."""
import os
import shutil

import numpy as np
from PIL import Image

from conftest import make_photo
from photomap import originals, similar


def test_deleted_files_and_folders_are_missing_in_a_reachable_tree(tmp_path):
    root = tmp_path / "MyStuff"
    paths = [str(make_photo(root / folder / name, size=(64, 48))) for folder, name in
             [("2019", "a.jpg"), ("2019", "b.jpg"), ("2019/summer", "c.jpg"), ("2020", "d.jpg")]]
    os.remove(paths[1])
    shutil.rmtree(root / "2019" / "summer")
    result = originals.check(paths)
    assert [result.status[p] for p in paths] == ["present", "missing", "missing", "present"]
    assert result.unreachable == []
    assert originals.summary_line(result) == "2 originals no longer exist (marked missing)"


def test_an_unplugged_drive_is_unreachable_and_said_once(tmp_path):
    home, drive = tmp_path / "home" / "Pictures", tmp_path / "media" / "Backup"
    here = [str(make_photo(home / n, size=(32, 32))) for n in ("x.jpg", "y.jpg")]
    there = [str(make_photo(drive / d / "p.jpg", size=(32, 32))) for d in ("2001", "2002", "2003")]
    shutil.rmtree(drive)  # the mount folder vanishes with the drive
    result = originals.check(here + there)
    assert [result.status[p] for p in here] == ["present", "present"]
    assert {result.status[p] for p in there} == {"unreachable"}
    assert result.unreachable == [(str(drive), 3)]
    line = originals.summary_line(result)
    assert line.count("\n") == 0 and str(drive) in line and "3 paths not checked" in line

    os.makedirs(drive)  # a mount point left behind empty: still nothing of the tree is there
    assert {originals.check(there).status[p] for p in there} == {"unreachable"}
    assert originals.summary_line(originals.check(here)) is None


def test_relative_paths_read_from_another_folder_are_unreachable(tmp_path, monkeypatch):
    make_photo(tmp_path / "photos" / "a" / "1.jpg", size=(32, 32))
    make_photo(tmp_path / "photos" / "b" / "2.jpg", size=(32, 32))
    paths = ["photos/a/1.jpg", "photos/b/2.jpg", "photos/b/3.jpg"]
    monkeypatch.chdir(tmp_path)
    assert [originals.check(paths).status[p] for p in paths] == ["present", "present", "missing"]
    monkeypatch.chdir(tmp_path / "photos")
    assert set(originals.check(paths).status.values()) == {"unreachable"}


def test_facts_are_read_from_the_header_as_a_viewer_shows_the_photo(tmp_path):
    upright = make_photo(tmp_path / "up.jpg", size=(300, 200))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways, shown turned
    sideways = make_photo(tmp_path / "side.jpg", size=(300, 200), exif=exif.tobytes())
    (tmp_path / "notes.jpg").write_bytes(b"a text file")
    assert originals.facts(str(upright)) == (300, 200, os.path.getsize(upright))
    assert originals.facts(str(sideways)) == (200, 300, os.path.getsize(sideways))
    assert originals.facts(str(tmp_path / "notes.jpg")) == (None, None, 11)
    assert originals.facts(str(tmp_path / "gone.jpg")) == (None, None, None)


def test_duplicates_csv_marks_gone_originals(tmp_path):
    a = str(make_photo(tmp_path / "p" / "a.jpg", size=(64, 48)))
    b = str(make_photo(tmp_path / "p" / "b.jpg", size=(64, 48)))
    os.remove(b)
    page = tmp_path / "map.html"
    feats = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32)
    said = []
    similar.build(["a" * 32, "b" * 32, "c" * 32], feats, [[a], [b], [str(tmp_path / "p" / "c.jpg")]], page,
                  say=said.append)
    assert "2 originals no longer exist (marked missing)" in said
    text = open(similar.duplicates_csv_path(page), encoding="utf-8").read().splitlines()
    assert text[1].endswith(",64,48,%d,present" % os.path.getsize(a))
    assert text[2].endswith(",,,,missing")
