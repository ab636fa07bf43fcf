"""The per-photo detail shards beside the page (photomap/details.py): what a script reads back, how a
rerun and an interrupted run leave the folder, and the versions read."""
import json
import os

import numpy as np
import pytest

from photomap import details, meta, page
from photomap.join import Photos
from photomap_tools.synthetic import fake_md5


def photos_at(tmp_path, n):
    paths = [["/photos/trip/img_%d.jpg" % i] + (["/photos/old/café %d.jpg" % i] if i % 3 == 0 else [])
             for i in range(n)]
    return Photos(md5s=[fake_md5(i) for i in range(n)], paths=paths,
                  features=np.zeros((n, 2), np.float32), thumbs_dir=str(tmp_path / "thumbs"))


def shard_folders(page_path):
    folder = details.folder_for(page_path)
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


def test_a_large_map_keeps_its_details_beside_the_page_and_a_script_reads_them_back(tmp_path):
    photos = photos_at(tmp_path, 7)
    out = tmp_path / "map.html"
    taken = ["2014-07-0%dT10:00:00" % i if i % 2 else None for i in range(7)]
    page.write_map(out, photos, np.arange(14.0).reshape(7, 2), ["a"] * 7, details={"taken": taken},
                   inline_max=4, shard_size=3)
    (digest,) = shard_folders(out)
    assert sorted(os.listdir(os.path.join(details.folder_for(out), digest))) == ["0.json", "1.json", "2.json"]
    cols = details.read(out)
    assert cols["md5"] == photos.md5s and cols["taken"] == taken
    assert cols["copies"] == [2, 1, 1, 2, 1, 1, 2]
    assert cols["paths"][3] == ["trip/img_3.jpg", "old/café 3.jpg"]  # below the root, unicode as is
    html = out.read_text(encoding="utf-8")
    assert fake_md5(5) not in html and "img_5" not in html  # the page carries only what is drawn
    assert "%s/%s/" % (os.path.basename(details.folder_for(out)), digest) in html


def test_a_small_map_carries_its_details_inline_and_clears_older_shards(tmp_path):
    photos = photos_at(tmp_path, 5)
    out = tmp_path / "map.html"
    page.write_map(out, photos, np.zeros((5, 2)), ["a"] * 5, inline_max=2, shard_size=2)
    assert len(shard_folders(out)) == 1
    page.write_map(out, photos, np.zeros((5, 2)), ["a"] * 5)
    assert not os.path.exists(details.folder_for(out))
    assert "img_4" in out.read_text(encoding="utf-8")


def test_a_rerun_writes_the_same_folder_and_a_changed_map_replaces_it(tmp_path):
    out = tmp_path / "map.html"
    photos = photos_at(tmp_path, 6)
    page.write_map(out, photos, np.zeros((6, 2)), ["a"] * 6, inline_max=0, shard_size=4)
    first = shard_folders(out)
    page.write_map(out, photos, np.zeros((6, 2)), ["a"] * 6, inline_max=0, shard_size=4)
    assert shard_folders(out) == first
    page.write_map(out, photos_at(tmp_path, 8), np.zeros((8, 2)), ["a"] * 8, inline_max=0, shard_size=4)
    (second,) = shard_folders(out)
    assert second != first[0] and len(details.read(out)["md5"]) == 8


def test_an_interrupted_write_leaves_the_old_page_and_its_shards_whole(tmp_path, monkeypatch):
    out = tmp_path / "map.html"
    page.write_map(out, photos_at(tmp_path, 6), np.zeros((6, 2)), ["a"] * 6, inline_max=0, shard_size=2)
    before_page, before = out.read_bytes(), shard_folders(out)
    calls = []

    def fail_on_second(*args, **kwargs):
        calls.append(args)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_open(*args, **kwargs)
    real_open = open
    monkeypatch.setattr("builtins.open", fail_on_second)
    with pytest.raises(KeyboardInterrupt):
        page.write_map(out, photos_at(tmp_path, 9), np.zeros((9, 2)), ["a"] * 9, inline_max=0, shard_size=2)
    monkeypatch.undo()
    assert out.read_bytes() == before_page and shard_folders(out) == before
    assert details.read(out)["md5"] == photos_at(tmp_path, 6).md5s


@pytest.mark.parametrize("text, reason", [
    ('{"format": "photomap-details", "version": 99, "start": 0, "columns": {}}', "newer"),
    ('{"format": "something else"}', "not a photomap detail shard"),
    ('[1, 2]', "not a photomap detail shard"),
])
def test_a_shard_this_version_cannot_read_is_refused_with_a_reason(text, reason):
    with pytest.raises(ValueError, match=reason):
        details.parse(text)


def test_a_detail_column_of_the_wrong_length_or_name_is_refused(tmp_path):
    photos = photos_at(tmp_path, 3)
    with pytest.raises(ValueError, match="2 values for 3 photos"):
        details.columns(photos, "/photos/", {"taken": [1, 2]})
    with pytest.raises(ValueError, match="base columns"):
        details.columns(photos, "/photos/", {"md5": [1, 2, 3]})
    shard = json.loads(details.shard_text(details.shards(details.columns(photos, "/photos/"), "/photos/")[0]))
    assert shard["version"] == details.VERSION and shard["start"] == 0


def test_meta_paths_are_kept_only_where_the_shown_text_differs_from_the_meta_line(tmp_path):
    photos = photos_at(tmp_path, 3)
    photos.paths[1] = ["/photos/a\\b.jpg", "/photos/tab\there.jpg"]
    photos.paths[2] = ["/photos/caf\udce9 \u5199 <img src=x>.jpg"]  # undecodable byte, unicode: the same text
    cols = details.columns(photos, "/photos/")
    assert cols["meta_paths"][0] is None and cols["meta_paths"][2] is None
    assert cols["meta_paths"][1] == ["/photos/a\\\\b.jpg", "/photos/tab\\there.jpg"]
    assert [meta.unescape_path(p) for p in cols["meta_paths"][1]] == photos.paths[1]
