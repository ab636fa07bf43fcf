"""Stage 3's bad inputs and caches: every kind of bad vector or thumbnail is left out with its reason
and the map is still written; the packed feature cache is used, updated and never trusted blindly;
the coordinates cache likewise."""
import csv
import json
import os
import time
import zipfile

import numpy as np
import pytest

from photomap import featureload, featurepack, features, projection
from photomap.commands import visualize
from photomap.join import join
from photomap_tools.synthetic import fake_md5 as md5_of
from photomap_tools.synthetic import write_map_inputs

DIM = 24


def age(folder, seconds=3600, only=None):
    """Date the files in ``folder`` (or those of ``only``) ``seconds`` back, so the pack takes them
    (it skips files changed within the last seconds, which could change again unseen)."""
    when = time.time() - seconds
    for name in os.listdir(folder) if only is None else only:
        os.utime(os.path.join(folder, name), (when, when), follow_symlinks=False)


def vec_path(feats, i):
    return features.feature_path_for_md5(feats, md5_of(i))


def main_args(meta_path, thumbs, feats, out, *extra):
    return ["--meta", meta_path, "--thumbs", thumbs, "--features", feats, "-o", out, *extra]


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def write_npy(path, array, **kw):
    with open(path, "wb") as f:
        np.save(f, array, **kw)


def summary_of(err):
    return [line for line in err.splitlines() if " on the map" in line][0]


@pytest.fixture
def dataset(tmp_path):
    meta_path, thumbs, feats, paths = write_map_inputs(tmp_path, 8, dim=DIM)
    age(feats)
    return meta_path, thumbs, feats, tmp_path / "map.html"


@pytest.fixture
def stage3(run_main):
    """``stage3(args)``: visualize.py's main in this process; returns (exit status, stderr text)."""
    def run(args):
        status, out, err = run_main(visualize.main, *args)
        assert out == "", "stdout carries no logs"
        return status, "\n".join(err)
    return run


# --- each kind of bad vector -----------------------------------------------------------------------

def _truncated(path):
    data = open(path, "rb").read()
    open(path, "wb").write(data[:100])  # the case: the first 100 bytes of a valid file


def _nan(path):
    vec = features.load_vector(path).copy()
    vec[3] = np.nan
    features.save_vector(path, vec)


def _replace_bytes(path, old, new):
    data = open(path, "rb").read()
    assert old in data
    open(path, "wb").write(data.replace(old, new))


def _fifo(path):
    os.remove(path)
    os.mkfifo(path)


def _loop(path):
    os.remove(path)
    os.symlink(os.path.basename(path), path)


def _folder(path):
    os.remove(path)
    os.mkdir(path)


BAD_VECTORS = {
    "cut short": (_truncated, "truncated vector", "cut short in its header"),
    "empty": (lambda p: open(p, "wb").close(), "truncated vector", "empty file"),
    "cut in its data": (lambda p: open(p, "r+b").truncate(200), "truncated vector", "200 of 224 bytes"),
    "NaN": (_nan, "non-finite vector", "1 NaN and 0 infinite of 24 values"),
    "inf": (lambda p: features.save_vector(p, np.full(DIM, np.inf)), "non-finite vector",
            "0 NaN and 24 infinite of 24 values"),
    "float64 beyond float32": (lambda p: write_npy(p, np.full(DIM, 1e300)), "non-finite vector",
                               "0 NaN and 24 infinite"),
    "all zero": (lambda p: features.save_vector(p, np.zeros(DIM)), "all-zero vector", "every value is 0"),
    "wrong length": (lambda p: features.save_vector(p, np.ones(DIM + 1)), "wrong-length vector",
                     "25 values, most vectors have 24"),
    "a JPEG": (lambda p: open(p, "wb").write(b"\xff\xd8\xff\xe0" + b"\0" * 300), "damaged vector",
               "not a .npy file"),
    "trailing bytes": (lambda p: open(p, "ab").write(b"xx"), "damaged vector", "2 unexpected bytes"),
    "bad header": (lambda p: open(p, "r+b").write(b"\x93NUMPY\x01\x00\x76\x00{'descr': 'zz"),
                   "damaged vector", "unreadable .npy header"),
    "unbalanced header": (lambda p: _replace_bytes(p, b"(24,), }", b"(24,)) }"), "damaged vector",
                          "unreadable .npy header (TokenError)"),  # found by bench/fuzz_map.py
    "pickled objects": (lambda p: write_npy(p, np.array([{"a": 1}], dtype=object), allow_pickle=True),
                        "unusable vector", "pickled Python objects"),
    "complex": (lambda p: write_npy(p, np.ones(DIM, np.complex64)), "unusable vector", "not real numbers"),
    "text": (lambda p: write_npy(p, np.array(["a"] * DIM)), "unusable vector", "not real numbers"),
    "2-D": (lambda p: write_npy(p, np.ones((2, DIM), np.float32)), "unusable vector", "not a vector"),
    "a folder": (_folder, "unreadable vector", "a folder, not a file"),
    "a symlink loop": (_loop, "unreadable vector", "a symlink loop"),
    "a fifo": (_fifo, "unreadable vector", "not a regular file"),
}


@pytest.mark.parametrize("kind", sorted(BAD_VECTORS))
def test_a_bad_vector_is_left_out_by_name_and_the_map_is_written(dataset, stage3, kind):
    meta_path, thumbs, feats, out = dataset
    corrupt, reason, detail = BAD_VECTORS[kind]
    corrupt(vec_path(feats, 2))
    rc, err = stage3(main_args(meta_path, thumbs, feats, out))
    assert rc == 0, err
    assert "Traceback" not in err
    line = [x for x in err.splitlines() if x.startswith("visualize: left out ")]
    assert len(line) == 1
    assert line[0].startswith("visualize: left out %s (/photos/c/img_002.jpg): %s (" % (
        vec_path(feats, 2), reason))
    assert detail in line[0]
    assert summary_of(err) == "visualize: 7 photos (7 files) on the map; left out: 1 %s" % reason
    on_map = [r[0] for r in read_csv(out.parent / "map.coords.csv")[1:]]
    assert on_map == [md5_of(i) for i in range(8) if i != 2]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file whatever its permissions")
def test_an_unreadable_vector_is_left_out(dataset, stage3):
    meta_path, thumbs, feats, out = dataset
    os.chmod(vec_path(feats, 1), 0)
    rc, err = stage3(main_args(meta_path, thumbs, feats, out))
    assert rc == 0 and "unreadable vector (permission denied)" in err
    assert summary_of(err).endswith("left out: 1 unreadable vector")


CONVERTED = {
    "float64": lambda v: v.astype(np.float64),
    "float16": lambda v: v.astype(np.float16),
    "big-endian": lambda v: v.astype(">f4"),
    "integers": lambda v: (v * 100).astype(np.int32),
    "a row of shape (1, d)": lambda v: v.reshape(1, -1),
}


@pytest.mark.parametrize("kind", sorted(CONVERTED))
def test_vectors_of_other_number_types_are_converted_not_lost(dataset, kind):
    meta_path, thumbs, feats, out = dataset
    vec = features.load_vector(vec_path(feats, 5))
    stored = CONVERTED[kind](vec)
    write_npy(vec_path(feats, 5), stored)
    photos = join(meta_path, thumbs, feats)
    assert photos.md5s == [md5_of(i) for i in range(8)]
    np.testing.assert_array_equal(photos.features[5], stored.reshape(-1).astype(np.float32))


def test_without_a_sidecar_the_length_of_most_vectors_wins(dataset, stage3):
    meta_path, thumbs, feats, out = dataset
    os.remove(os.path.join(feats, features.SIDECAR))
    for i in (0, 1):
        features.save_vector(vec_path(feats, i), np.ones(10))
    rc, err = stage3(main_args(meta_path, thumbs, feats, out))
    assert rc == 0
    assert summary_of(err).endswith("left out: 2 wrong-length vectors")
    assert "10 values, most vectors have 24" in err


def test_a_sidecar_that_disagrees_with_the_vectors_is_said_and_overruled(dataset, stage3):
    meta_path, thumbs, feats, out = dataset
    features.write_sidecar(feats, {"model": "resnet18", "dim": 512})
    rc, err = stage3(main_args(meta_path, thumbs, feats, out))
    assert rc == 0
    assert "features.json says 512 values per vector, but most vectors have 24: using 24" in err
    assert summary_of(err) == "visualize: 8 photos (8 files) on the map"


def test_bad_thumbnails_are_left_out_by_name(dataset, stage3):
    meta_path, thumbs, feats, out = dataset
    open(os.path.join(thumbs, md5_of(0) + ".jpg"), "wb").close()
    _folder(os.path.join(thumbs, md5_of(1) + ".jpg"))
    _loop(os.path.join(thumbs, md5_of(2) + ".jpg"))
    os.remove(os.path.join(thumbs, md5_of(3) + ".jpg"))
    rc, err = stage3(main_args(meta_path, thumbs, feats, out))
    assert rc == 0
    assert "%s.jpg (/photos/a/img_000.jpg): unreadable thumbnail (empty file)" % md5_of(0) in err
    assert "unreadable thumbnail (a folder, not a file)" in err
    assert "unreadable thumbnail (a symlink loop)" in err
    assert summary_of(err) == ("visualize: 4 photos (4 files) on the map; left out: "
                               "1 .meta md5s without thumbnail, 3 unreadable thumbnails")


def test_every_vector_bad_is_one_error_line(dataset, stage3):
    meta_path, thumbs, feats, out = dataset
    for i in range(8):
        features.save_vector(vec_path(feats, i), np.zeros(DIM))
    rc, err = stage3(main_args(meta_path, thumbs, feats, out))
    assert rc == 2
    assert [x for x in err.splitlines() if x.startswith("error:")] == [
        "error: no photo has a .meta line, a thumbnail and a feature vector: nothing to map"]


def test_an_output_path_that_is_a_folder_is_one_error_line(dataset, stage3):
    meta_path, thumbs, feats, out = dataset
    out.mkdir()
    rc, err = stage3(main_args(meta_path, thumbs, feats, out))
    assert rc == 2 and err.startswith("error: -o %s is a folder" % out) and len(err.splitlines()) == 1


# --- the packed feature cache ----------------------------------------------------------------------

def count_reads(monkeypatch):
    """Count the vector files opened by :func:`featureload.check_vector` from now on."""
    opened = []
    real = featureload.check_vector

    def spy(path, *a, **k):
        opened.append(os.path.basename(path))
        return real(path, *a, **k)

    monkeypatch.setattr(featureload, "check_vector", spy)
    return opened


def names_of(n):
    return [features.feature_name(md5_of(i) + ".jpg") for i in range(n)]


def test_a_rerun_takes_unchanged_vectors_from_the_pack_and_rereads_only_changed_ones(dataset, monkeypatch):
    _, _, feats, _ = dataset
    first = featureload.load_matrix(feats, names_of(8))
    pack = os.path.join(feats, featurepack.PACK_NAME)
    assert os.path.isfile(pack) and first.kept == list(range(8)) and not first.notes
    written = os.stat(pack).st_mtime_ns
    opened = count_reads(monkeypatch)

    again = featureload.load_matrix(feats, names_of(8))
    assert opened == [] and os.stat(pack).st_mtime_ns == written  # nothing opened, nothing rewritten
    np.testing.assert_array_equal(again.matrix, first.matrix)

    features.save_vector(vec_path(feats, 3), np.arange(DIM))  # changed
    os.remove(vec_path(feats, 5))  # removed
    features.save_vector(vec_path(feats, 9), np.full(DIM, 2.0))  # new
    age(feats, 1800, [names_of(10)[3], names_of(10)[9]])
    got = featureload.load_matrix(feats, names_of(10))
    assert sorted(opened) == sorted(names_of(10)[i] for i in (3, 9))
    assert got.kept == [0, 1, 2, 3, 4, 6, 7, 9] and got.problems == {5: ("missing vector", ""),
                                                                      8: ("missing vector", "")}
    np.testing.assert_array_equal(got.matrix[3], np.arange(DIM))
    np.testing.assert_array_equal(got.matrix[[0, 1, 2, 4, 5, 6]], first.matrix[[0, 1, 2, 4, 6, 7]])
    packed, why = featurepack.read_pack(pack)
    assert why == "" and [os.fsdecode(n) for n in packed.names] == [names_of(10)[i] for i in got.kept]

    del opened[:]
    assert featureload.load_matrix(feats, names_of(10)).kept == got.kept and opened == []


def test_a_file_changed_seconds_ago_is_read_again_until_it_is_older(dataset, monkeypatch):
    _, _, feats, _ = dataset
    featureload.load_matrix(feats, names_of(8))
    features.save_vector(vec_path(feats, 1), np.arange(DIM))  # just now: mtime within the racy window
    opened = count_reads(monkeypatch)
    featureload.load_matrix(feats, names_of(8))
    featureload.load_matrix(feats, names_of(8))
    assert opened == [names_of(8)[1]] * 2
    age(feats, 1800, [names_of(8)[1]])
    featureload.load_matrix(feats, names_of(8))
    del opened[:]
    np.testing.assert_array_equal(featureload.load_matrix(feats, names_of(8)).matrix[1], np.arange(DIM))
    assert opened == []


def test_names_not_asked_for_stay_in_the_pack_for_the_next_page(dataset, monkeypatch):
    _, _, feats, _ = dataset
    featureload.load_matrix(feats, names_of(8))
    featureload.load_matrix(feats, names_of(3))  # a page of three photos from the same folder
    opened = count_reads(monkeypatch)
    assert featureload.load_matrix(feats, names_of(8)).kept == list(range(8)) and opened == []


def _edited(pack):
    arrays = dict(np.load(pack))
    arrays["matrix"] = arrays["matrix"] + 1  # a hand edit, saved the usual way
    np.savez(pack, **arrays)


def _foreign(pack):
    np.savez(pack, matrix=np.ones((8, DIM), np.float32))


def _flipped(pack):
    """Flip the last byte of the matrix (inside the zip, past the member's local header)."""
    with zipfile.ZipFile(pack) as zf:
        info = zf.getinfo("matrix.npy")
    data = bytearray(open(pack, "rb").read())
    at = info.header_offset
    name_len, extra_len = (int.from_bytes(data[at + k:at + k + 2], "little") for k in (26, 28))
    data[at + 30 + name_len + extra_len + info.compress_size - 1] ^= 0xFF
    open(pack, "wb").write(bytes(data))


BAD_PACKS = {
    "cut short": (lambda p: open(p, "r+b").truncate(os.path.getsize(p) // 2), "unreadable (BadZipFile"),
    "a flipped byte": (_flipped, "unreadable (BadZipFile: Bad CRC-32"),
    "empty": (lambda p: open(p, "wb").close(), "unreadable (BadZipFile"),
    "another program's npz": (_foreign, "not a photomap feature pack (it holds matrix.npy)"),
    "edited by hand": (_edited, "changed by another program"),
    "a symlink loop": (_loop, "cannot read it (Too many levels of symbolic links)"),
}


@pytest.mark.parametrize("kind", sorted(BAD_PACKS))
def test_a_bad_pack_is_ignored_in_one_line_and_rebuilt(dataset, stage3, kind):
    meta_path, thumbs, feats, out = dataset
    good = featureload.load_matrix(feats, names_of(8)).matrix.copy()
    pack = os.path.join(feats, featurepack.PACK_NAME)
    corrupt, why = BAD_PACKS[kind]
    corrupt(pack)
    rc, err = stage3(main_args(meta_path, thumbs, feats, out))
    assert rc == 0
    said = [x for x in err.splitlines() if "feature pack" in x]
    assert len(said) == 1 and said[0].startswith("visualize: ignored the feature pack %s: %s" % (pack, why))
    assert said[0].endswith("; rebuilding it")
    assert featurepack.read_pack(pack)[1] == ""
    np.testing.assert_array_equal(join(meta_path, thumbs, feats).features, good)


def test_a_pack_that_cannot_be_written_is_said_and_the_map_still_made(dataset, stage3):
    meta_path, thumbs, feats, out = dataset
    os.mkdir(os.path.join(feats, featurepack.PACK_NAME))
    rc, err = stage3(main_args(meta_path, thumbs, feats, out))
    assert rc == 0 and "8 photos (8 files) on the map" in err
    pack = os.path.join(feats, featurepack.PACK_NAME)
    assert "ignored the feature pack %s: it is not a regular file" % pack in err
    assert "could not write the feature pack" in err and "every vector is read again next time" in err


def test_the_pack_is_plain_arrays_without_pickles(dataset):
    _, _, feats, _ = dataset
    featureload.load_matrix(feats, names_of(8))
    with zipfile.ZipFile(os.path.join(feats, featurepack.PACK_NAME)) as zf:
        assert sorted(zf.namelist()) == sorted(m + ".npy" for m in featurepack.MEMBERS + ("seal",))
    with np.load(os.path.join(feats, featurepack.PACK_NAME), allow_pickle=False) as z:
        assert z["matrix"].shape == (8, DIM) and z["matrix"].dtype == np.float32
        assert z["names"][0] == features.feature_name(md5_of(0) + ".jpg").encode()


# --- the coordinates cache -------------------------------------------------------------------------

def _edit_csv(path):
    text = open(path, encoding="utf-8").read().splitlines()
    cells = text[1].split(",")
    cells[1] = "12.5"
    text[1] = ",".join(cells)
    open(path, "w", encoding="utf-8").write("\n".join(text) + "\n")


def _cut_csv(path):
    lines = open(path, encoding="utf-8").read().splitlines(keepends=True)
    open(path, "w", encoding="utf-8").write("".join(lines[:-2]))


# What a run makes of a broken coordinates CSV or key: the CSV is the previous map (issue 14), so its
# readable rows are kept and only a CSV that cannot be read at all means a fresh layout; the key only
# records the layout's parameters and vouches for the CSV, so a bad one is ignored and written again.
BAD_COORDS = {  # kind: (file, how, a line it gives, laid out afresh)
    "csv edited by hand": ("csv", _edit_csv, "map.coords.csv was changed after it was written: its "
                           "readable rows are kept as the map", False),
    "csv cut short": ("csv", _cut_csv, "kept 6 photos in place, placed 2 new, removed 0", False),
    "csv cut in a row": ("csv", lambda p: open(p, "r+b").truncate(60),
                         "could not use the previous map map.coords.csv (its only row could not be read)",
                         True),
    "csv not UTF-8": ("csv", lambda p: open(p, "wb").write(b"\xff\xfe\x00garbage"),
                      "could not use the previous map map.coords.csv (it has no md5, x and y columns)", True),
    "csv a folder": ("csv", _folder, "could not use the previous map map.coords.csv (cannot read it (a "
                     "folder, not a file))", True),
    "key garbage": ("key", lambda p: open(p, "wb").write(b"\x00\x01{not json"),
                    "map.coords.key: not one this program wrote; it is written again", False),
    "key a JSON list": ("key", lambda p: open(p, "w").write("[1, 2]"),
                        "map.coords.key: not one this program wrote; it is written again", False),
    "key a folder": ("key", _folder, "map.coords.key: cannot read it (a folder, not a file)", False),
    "key removed": ("key", os.remove, "reused the map coordinates", False),
}


@pytest.mark.parametrize("kind", sorted(BAD_COORDS))
def test_a_bad_coordinates_csv_or_key_never_loses_the_map(dataset, stage3, monkeypatch, kind):
    meta_path, thumbs, feats, out = dataset
    args = main_args(meta_path, thumbs, feats, out, "--seed", "1")
    assert stage3(args)[0] == 0
    csv_path, key_path = projection.coords_paths(out)
    good = read_csv(csv_path)
    which, corrupt, line, afresh = BAD_COORDS[kind]
    corrupt(csv_path if which == "csv" else key_path)
    kept = {r[0]: r[1:3] for r in read_csv(csv_path)[1:]} if which == "key" or not afresh else {}
    calls = []
    real = projection.project
    monkeypatch.setattr(projection, "project", lambda *a, **k: calls.append(1) or real(*a, **k))
    rc, err = stage3(args)
    assert rc == 0 and len(calls) == afresh and "Traceback" not in err, err
    assert line in err, err
    if os.path.isdir(csv_path if which == "csv" else key_path):
        assert "visualize: could not write the coordinates cache %s" % csv_path in err
        return
    now = read_csv(csv_path)
    assert [r[0] for r in now] == [r[0] for r in good]
    if afresh:  # the layout the first run made: the same photos and seed
        assert now == good
    else:  # every readable row kept its place, an edited one too
        assert [r[1:3] for r in now[1:] if r[0] in kept] == [kept[r[0]] for r in now[1:] if r[0] in kept]
        assert len(kept) >= 6
    rc, err = stage3(args)
    assert len(calls) == afresh and "reused the map coordinates" in err


def test_a_non_finite_coordinate_is_a_row_placed_again(dataset, stage3):
    meta_path, thumbs, feats, out = dataset
    args = main_args(meta_path, thumbs, feats, out)
    assert stage3(args)[0] == 0
    csv_path, key_path = projection.coords_paths(out)
    key = json.load(open(key_path))
    del key["coords_sha256"]  # a key written before the coordinates were sealed: still readable
    json.dump(key, open(key_path, "w"))
    rc, err = stage3(args)
    assert "reused the map coordinates" in err and "coords_sha256" in json.load(open(key_path))
    json.dump(key, open(key_path, "w"))  # unsealed again, and now the CSV is edited
    text = open(csv_path).read().splitlines()
    text[2] = ",".join([text[2].split(",")[0], "nan"] + text[2].split(",")[2:])
    open(csv_path, "w").write("\n".join(text) + "\n")
    rc, err = stage3(args)
    assert rc == 0 and ("kept 7 photos in place, placed 1 new, removed 0; ignored 1 unreadable row of "
                        "map.coords.csv (their photos placed as new)") in err
    assert all(np.isfinite(float(r[1])) for r in read_csv(csv_path)[1:])
