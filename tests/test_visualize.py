"""Stage 3: join, layout (UMAP, fallbacks, the kept map), the coords CSV, the command, the notebook, and the
page itself driven in headless chromium (one nearest photo per hover, click pins it)."""
import csv
import os

import numpy as np
import pytest

from conftest import ROOT, wait_until
from photomap import colours, details, features, folders, infolog, meta, page, projection
from photomap.exif import FROM_ORIGINAL, PhotoInfo
from photomap.commands import visualize
from photomap.join import Photos, join, summary
from photomap_tools import browser
from photomap_tools.synthetic import fake_md5, write_map_inputs

XSS_NAME = "<img src=x onerror=alert(1)>.jpg"


@pytest.fixture
def stage3(run_main):
    """``stage3(*args)``: visualize.py's main in this process; returns (exit status, stderr text)."""
    def run(*args):
        status, out, err = run_main(visualize.main, *args)
        assert out == "", "stdout carries no logs"
        return status, "\n".join(err)
    return run


def main_args(meta_path, thumbs, feats, out, *extra):
    return ["--meta", meta_path, "--thumbs", thumbs, "--features", feats, "-o", out, *extra]


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


# --- join ------------------------------------------------------------------------------------------

def test_join_counts_every_left_out_kind_in_one_line(tmp_path, stage3):
    meta_path, thumbs, feats, paths = write_map_inputs(tmp_path, 6)
    copy_md5 = fake_md5(0)
    extra = meta.format_entry(copy_md5, "/photos/a/copy of img_000.jpg")
    extra += meta.format_entry(copy_md5, "/photos/b/" + XSS_NAME)
    features.save_vector(features.feature_path_for_md5(feats, fake_md5(90)), np.ones(24))  # no .meta line
    features.save_vector(features.feature_path_for_md5(feats, fake_md5(91)), np.ones(24))  # no .meta line
    extra += meta.format_entry(fake_md5(92), "/photos/a/no_features.jpg")  # thumbnail, no vector
    from PIL import Image
    Image.new("RGB", (8, 8)).save(os.path.join(thumbs, fake_md5(92) + ".jpg"))
    extra += meta.format_entry(fake_md5(93), "/photos/a/no_thumb.jpg")  # vector, no thumbnail
    features.save_vector(features.feature_path_for_md5(feats, fake_md5(93)), np.ones(24))
    extra += meta.format_error("/photos/a/broken.jpg", "cannot identify image file")
    extra += meta.format_error("/photos/a/broken2.jpg", "truncated")
    with open(meta_path, "a", encoding="utf-8") as f:
        f.write(extra)

    photos = join(meta_path, thumbs, feats)

    assert photos.md5s == sorted(paths)
    assert photos.features.shape == (6, 24)
    i = photos.md5s.index(copy_md5)
    assert photos.paths[i] == ["/photos/a/img_000.jpg", "/photos/a/copy of img_000.jpg", "/photos/b/" + XSS_NAME]
    assert photos.copies[i] == 3
    assert dict(photos.left_out) == {"features without a .meta line": 2, ".meta md5s without features": 1,
                                     ".meta md5s without thumbnail": 1, "# error lines": 2}
    line = ("6 photos (8 files) on the map; left out: 2 # error lines, 1 .meta md5s without features, "
            "1 .meta md5s without thumbnail, 2 features without a .meta line")
    assert summary(photos) == line
    rc, err = stage3(*main_args(meta_path, thumbs, feats, tmp_path / "map.html"))
    assert rc == 0 and err.splitlines()[0] == "visualize: " + line


def test_paths_stay_real_and_are_written_printable(tmp_path, stage3):
    meta_path, thumbs, feats, _ = write_map_inputs(tmp_path, 2)
    awkward = "/photos/caf\udce9\tnew\nline.jpg"
    with open(meta_path, "w", encoding="utf-8") as f:
        f.write(meta.format_entry(fake_md5(0), "/photos/a/img_000.jpg") + meta.format_entry(fake_md5(1), awkward))
    photos = join(meta_path, thumbs, feats)
    assert photos.paths[1] == [awkward]  # the real path, as the .meta log gives it
    assert stage3(*main_args(meta_path, thumbs, feats, tmp_path / "map.html"))[0] == 0
    rows = read_csv(tmp_path / "map.coords.csv")
    assert rows[2][3] == "/photos/caf\\xe9\\tnew\\nline.jpg"  # one line, every byte visible
    # The page's details store the common folder once and each path below it, both printable.
    (shard,) = details.shards(details.columns(photos, page.photo_root(photos)), page.photo_root(photos))
    assert shard["root"] == "/photos/"
    assert shard["columns"]["paths"] == [["a/img_000.jpg"], ["caf\\xe9\\tnew\\nline.jpg"]]


def test_vectors_with_nan_or_infinity_are_left_out_and_counted(tmp_path, stage3):
    meta_path, thumbs, feats, paths = write_map_inputs(tmp_path, 6)
    bad = np.ones(24)
    bad[3] = np.nan
    features.save_vector(features.feature_path_for_md5(feats, fake_md5(1)), bad)
    features.save_vector(features.feature_path_for_md5(feats, fake_md5(2)), np.full(24, np.inf))
    photos = join(meta_path, thumbs, feats)
    assert photos.md5s == [fake_md5(i) for i in (0, 3, 4, 5)] and np.isfinite(photos.features).all()
    assert summary(photos) == "4 photos (4 files) on the map; left out: 2 non-finite vectors"
    rc, err = stage3(*main_args(meta_path, thumbs, feats, tmp_path / "map.html"))
    assert rc == 0, err
    assert [r[0] for r in read_csv(tmp_path / "map.coords.csv")[1:]] == photos.md5s


@pytest.mark.parametrize("paths, common, tops", [
    (["/photos/trip/a.jpg", "/photos/home/b.jpg"], "/photos/", ["trip", "home"]),
    (["/photos/trip/a.jpg"], "/photos/trip/", ["."]),
    (["/p/a.jpg", "/p/x/b.jpg", "/p/xy/c.jpg"], "/p/", [".", "x", "xy"]),
    (["a.jpg", "/x/b.jpg"], "", [".", "/"]),
    # A log that mixes spellings: the page keeps each path as written, the colours see one folder.
    (["pics/x/p0.jpg", "./pics/y/p1.jpg"], "", ["x", "y"]),
    (["../pics/x/p0.jpg", "../pics/y/p1.jpg"], "../pics/", ["x", "y"]),
])
def test_common_folder_is_text_as_written_and_top_folders_name_the_folder(paths, common, tops):
    assert folders.common_folder(paths) == common
    assert all(p.startswith(common) for p in paths)
    assert folders.top_folders(paths) == tops


# --- layout ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_tiny_sets_get_a_layout_and_say_how(tmp_path, stage3, n):
    meta_path, thumbs, feats, paths = write_map_inputs(tmp_path, n)
    out = tmp_path / "out" / "map.html"
    rc, err = stage3(*main_args(meta_path, thumbs, feats, out))
    assert rc == 0, err
    rows = read_csv(tmp_path / "out" / "map.coords.csv")
    assert rows[0] == ["md5", "x", "y", "path", "cluster", "taken", "taken_source"]
    assert sorted(r[0] for r in rows[1:]) == sorted(paths) and {r[4] for r in rows[1:]} == {"-1"}
    xy = np.array([[float(r[1]), float(r[2])] for r in rows[1:]])
    fallback = [line for line in err.splitlines() if "UMAP needs more" in line]
    assert len(fallback) == 1
    if n == 1:
        assert xy.tolist() == [[0.0, 0.0]]
    elif n == 2:
        assert xy[0, 1] == xy[1, 1] and xy[0, 0] != xy[1, 0]
    else:
        assert "PCA" in fallback[0]
        assert len({tuple(p) for p in xy.round(6)}) == n  # distinct positions
    html = out.read_text(encoding="utf-8")
    assert "Photo map: %d photo%s (%d file%s) by resnet18 features" % ((n, "" if n == 1 else "s") * 2) in html
    assert "cd %s && python -m http.server 8000 --bind 127.0.0.1" % (tmp_path / "out") in err
    assert "http://127.0.0.1:8000/map.html" in err


def test_umap_seed_is_reproducible_and_separates_clusters(tmp_path):
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(3, 16)) * 3
    x = np.vstack([c + 0.1 * rng.normal(size=(20, 16)) for c in centres]).astype(np.float32)
    a = projection.project(x, seed=7)
    b = projection.project(x, seed=7)
    assert a.shape == (60, 2)
    np.testing.assert_array_equal(a, b)
    # Clusters stay apart: every point is nearer its own cluster's centre than any other.
    means = np.array([a[k * 20:(k + 1) * 20].mean(axis=0) for k in range(3)])
    nearest = np.argmin(((a[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
    assert nearest.tolist() == [k for k in range(3) for _ in range(20)]


def test_the_map_is_reused_and_kept_until_refit(tmp_path, stage3, monkeypatch):
    meta_path, thumbs, feats, _ = write_map_inputs(tmp_path, 30)
    out = tmp_path / "map.html"
    calls = []
    real_project = projection.project

    def spy(*a, **k):
        calls.append(k)
        return real_project(*a, **k)

    monkeypatch.setattr(projection, "project", spy)
    args = main_args(meta_path, thumbs, feats, out, "--seed", "3")
    assert stage3(*args)[0] == 0
    assert len(calls) == 1 and calls[0]["seed"] == 3 and calls[0]["n_neighbors"] == 15
    first = (tmp_path / "map.coords.csv").read_text()

    rc, err = stage3(*args)
    assert rc == 0 and len(calls) == 1  # UMAP not run again
    assert "reused the map coordinates" in err
    assert (tmp_path / "map.coords.csv").read_text() == first

    # Other UMAP parameters, a changed vector, a lost parameter record: the map is kept as it is.
    rc, err = stage3(*args + ["--min-dist", "0.3"])
    assert rc == 0 and len(calls) == 1
    assert "kept the map laid out with min_dist=0.1; --refit lays it out with min_dist=0.3" in err
    features.save_vector(features.feature_path_for_md5(feats, fake_md5(4)), np.arange(24))
    (tmp_path / "map.coords.key").write_text("{}")
    assert stage3(*args + ["--min-dist", "0.3"])[0] == 0
    assert len(calls) == 1 and (tmp_path / "map.coords.csv").read_text() == first

    rc, err = stage3(*args + ["--min-dist", "0.3", "--refit"])
    assert rc == 0 and len(calls) == 2 and calls[1]["min_dist"] == 0.3
    assert "visualize: refit 30 photos and aligned them to the previous map" in err
    assert (tmp_path / "map.coords.csv").read_text() != first


def test_a_growing_backup_keeps_its_map(tmp_path, stage3):
    meta_path, thumbs, feats, paths = write_map_inputs(tmp_path, 40)
    out = tmp_path / "map.html"
    csv_path = tmp_path / "map.coords.csv"
    args = main_args(meta_path, thumbs, feats, out, "--seed", "1")

    def the_map():
        return {r[0]: (r[1], r[2]) for r in read_csv(csv_path)[1:]}

    assert stage3(*args)[0] == 0
    first = the_map()

    # A month later: 8 more photos. The 40 stay exactly where they were; each new one lands by its kind.
    paths = write_map_inputs(tmp_path, 48).paths
    rc, err = stage3(*args)
    assert rc == 0 and "visualize: kept 40 photos in place, placed 8 new, removed 0" in err.splitlines()
    second = the_map()
    assert {m: second[m] for m in first} == first
    folder = {m: p[0].split("/")[2] for m, p in paths.items()}
    xy = {m: np.array(v, dtype=float) for m, v in second.items()}
    for m in set(second) - set(first):
        nearest = min(first, key=lambda o: np.linalg.norm(xy[o] - xy[m]))
        assert folder[nearest] == folder[m]

    # Some photos deleted from the backup: they disappear and nobody moves.
    gone = sorted(second)[::10]
    lines = [line for line in open(meta_path, encoding="utf-8") if line.split("\t")[0] not in gone]
    open(meta_path, "w", encoding="utf-8").writelines(lines)
    rc, err = stage3(*args)
    assert rc == 0 and "visualize: kept 43 photos in place, placed 0 new, removed 5" in err.splitlines()
    third = the_map()
    assert third == {m: v for m, v in second.items() if m not in gone}

    # Edited by hand: a garbled number, a row for a photo that no longer exists, a cut last line.
    text = csv_path.read_text(encoding="utf-8").splitlines(keepends=True)
    victim = text[3].split(",")[0]
    text[3] = text[3].replace(",", ",oops", 1)
    text.insert(5, "%s,1.0,2.0,/photos/long/gone.jpg\n" % ("f" * 32))
    cut = text[-1].split(",")[0]
    text[-1] = text[-1][:36]
    csv_path.write_text("".join(text), encoding="utf-8")
    rc, err = stage3(*args)
    assert rc == 0 and "Traceback" not in err
    assert ("visualize: kept 41 photos in place, placed 2 new, removed 1; ignored 2 unreadable rows of "
            "map.coords.csv (their photos placed as new)") in err.splitlines()
    fourth = the_map()
    assert {m: v for m, v in fourth.items() if m not in (victim, cut)} == \
        {m: v for m, v in third.items() if m not in (victim, cut)}

    # A map from another feature folder: nothing in common, so a fresh layout, said in one line.
    csv_path.write_text("md5,x,y,path\n%s,0.0,0.0,/elsewhere.jpg\n" % ("e" * 32), encoding="utf-8")
    rc, err = stage3(*args)
    assert rc == 0
    assert ("visualize: the previous map map.coords.csv shares no photo with these (made from another "
            "feature folder?): laid out 43 photos afresh") in err.splitlines()
    assert set(the_map()) == set(third)


def test_coords_csv_quotes_awkward_paths(tmp_path, stage3):
    meta_path, thumbs, feats, _ = write_map_inputs(tmp_path, 3)
    awkward = '/photos/a/"quoted", with commas.jpg'
    text = open(meta_path, encoding="utf-8").read().replace("/photos/a/img_000.jpg", awkward)
    text = text.replace("/photos/b/img_001.jpg", "/photos/b/" + XSS_NAME)
    open(meta_path, "w", encoding="utf-8").write(text)
    out = tmp_path / "map.html"
    assert stage3(*main_args(meta_path, thumbs, feats, out))[0] == 0
    rows = read_csv(tmp_path / "map.coords.csv")
    assert all(len(r) == 7 for r in rows)
    by_md5 = {r[0]: r for r in rows[1:]}
    assert by_md5[fake_md5(0)][3] == awkward
    assert by_md5[fake_md5(1)][3] == "/photos/b/" + XSS_NAME
    assert '"/photos/a/""quoted"", with commas.jpg"' in (tmp_path / "map.coords.csv").read_text()


def test_coords_csv_is_read_by_column_name(tmp_path, stage3):
    """Later columns (clusters, labels...) or another column order do not stop the reader or the cache."""
    meta_path, thumbs, feats, _ = write_map_inputs(tmp_path, 4)
    out = tmp_path / "map.html"
    assert stage3(*main_args(meta_path, thumbs, feats, out))[0] == 0
    csv_path = tmp_path / "map.coords.csv"
    written = projection.read_coords(csv_path)
    rows = read_csv(csv_path)
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["cluster", "y", "x", "md5", "path", "label"])
        for md5, x, y, path, *_ in rows[1:]:
            w.writerow(["3", y, x, md5, path, "beach"])
    again = projection.read_coords(csv_path)
    assert again.md5s == written.md5s and again.paths == written.paths
    np.testing.assert_array_equal(again.xy, written.xy)
    rc, err = stage3(*main_args(meta_path, thumbs, feats, out))
    assert rc == 0 and "reused the map coordinates" in err
    assert read_csv(csv_path) == rows  # and written back in the page's own format
    csv_path.write_text("md5,path\nabc,x.jpg\n", encoding="utf-8")
    with pytest.raises(ValueError, match="not a coordinates CSV"):
        projection.read_coords(csv_path)


def test_colours_start_with_the_islands_else_folders(tmp_path):
    meta_path, thumbs, feats, _ = write_map_inputs(tmp_path, 40, folders="wxyz")
    photos = join(meta_path, thumbs, feats)
    folder = colours.by_folder(photos)
    assert folder.title == "top-level folder" and folder.groups == ["w", "x", "y", "z"]
    no_islands = colours.schemes(photos, np.full(40, -1), None, [None] * 40)
    assert colours.starting("auto", no_islands).mode == "folder"
    islands = colours.schemes(photos, np.arange(40) % 4, None, [None] * 40)
    assert colours.starting("auto", islands).mode == "cluster"
    many = tmp_path / "many"
    meta_path, thumbs, feats, _ = write_map_inputs(many, 40, folders="abcdefghijklmnop")
    photos = join(meta_path, thumbs, feats)
    assert colours.starting("auto", colours.schemes(photos, np.full(40, -1), None, [None] * 40)).mode == "none"
    assert colours.starting("folder", colours.schemes(photos, np.full(40, -1), None, [None] * 40)).groups \
        == list("abcdefghijklmnop")


# --- the command's fatal errors ----------------------------------------------------------------------

def test_help_opens_with_the_real_command_line(capsys):
    with pytest.raises(SystemExit) as exc:
        visualize.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: ./visualize.py --meta output/torch_thumbs.meta --thumbs output/torch_thumbs "
                          "--features output/features_resnet18 -o output/map_resnet18.html")
    assert "python -m http.server 8000 --bind 127.0.0.1" in out


def test_a_bad_flag_is_one_error_line(stage3):
    rc, err = stage3("--meta", "m", "--colour", "plaid")
    assert rc == 2
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "plaid" in err


@pytest.mark.parametrize("broken, message", [
    ("meta", "error: no .meta file at "),
    ("thumbs", "error: no thumbnail folder at "),
    ("features", "error: no feature folder at "),
    ("empty", "error: no photo has a .meta line, a thumbnail and a feature vector: nothing to map"),
])
def test_fatal_problems_are_one_error_line(tmp_path, stage3, broken, message):
    meta_path, thumbs, feats, _ = write_map_inputs(tmp_path, 3)
    if broken == "meta":
        meta_path = str(tmp_path / "missing.meta")
    elif broken == "thumbs":
        thumbs = str(tmp_path / "missing")
    elif broken == "features":
        feats = str(tmp_path / "missing")
    else:
        open(meta_path, "w").write(meta.format_error("/photos/x.jpg", "unreadable"))
    rc, err = stage3(*main_args(meta_path, thumbs, feats, tmp_path / "map.html"))
    assert rc == 2
    assert err.splitlines()[-1].startswith(message)
    assert [line for line in err.splitlines() if line.startswith("error:")] == [err.splitlines()[-1]]
    assert "Traceback" not in err and not (tmp_path / "map.html").exists()


def test_a_metric_umap_does_not_know_is_one_error_line(tmp_path, stage3):
    meta_path, thumbs, feats, _ = write_map_inputs(tmp_path, 20)
    rc, err = stage3(*main_args(meta_path, thumbs, feats, tmp_path / "map.html", "--metric", "nope"))
    assert rc == 2 and "Traceback" not in err
    assert err.splitlines()[-1] == "error: cannot compute the map: metric is neither callable nor a recognised string"
    assert not (tmp_path / "map.html").exists() and not (tmp_path / "map.coords.csv").exists()


def test_a_killed_run_leaves_no_temporary_files_only_its_own_are_cleared(tmp_path, stage3):
    meta_path, thumbs, feats, _ = write_map_inputs(tmp_path / "in", 3)
    out = tmp_path / "out"
    out.mkdir()
    left = [".tmp-map.html.k1w2", ".tmp-map.coords.csv.x9", ".tmp-map.coords.key.q", ".tmp-map.neighbours.npz.z3",
            ".tmp-map.clusters.csv.z"]
    others = [".tmp-notes.txt.a1", ".tmp-map.html"]  # not a temporary name of this page's files
    for name in left + others:
        (out / name).write_text("partial")
    rc, err = stage3(*main_args(meta_path, thumbs, feats, out / "map.html"))
    assert rc == 0
    assert "removed 5 temporary files left by an interrupted run" in err
    assert sorted(os.listdir(out)) == sorted(others + ["map.coords.csv", "map.coords.key", "map.html",
                                                       "map.neighbours.npz", "map.neighbours.csv",
                                                       "map.duplicates.csv", "map.clusters.csv"])


# --- the notebook ----------------------------------------------------------------------------------

def test_notebook_runs_top_to_bottom_on_a_generated_dataset(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    meta_path, thumbs, feats, paths = write_map_inputs(tmp_path, 8)
    out = tmp_path / "out" / "map.html"
    os.makedirs(out.parent)
    for key, value in (("META", meta_path), ("THUMBS", thumbs), ("FEATURES", feats), ("OUTPUT", out)):
        monkeypatch.setenv("PHOTOMAP_" + key, str(value))
    nb = nbformat.read(os.path.join(ROOT, "visualize.ipynb"), as_version=4)
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": ROOT}}).execute()
    rows = read_csv(tmp_path / "out" / "map.coords.csv")
    assert sorted(r[0] for r in rows[1:]) == sorted(paths)
    html = out.read_text(encoding="utf-8")
    assert "Photo map: 8 photos" in html and "thumbs/" in html
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    shown = [o for o in outputs if "application/vnd.bokehjs_exec.v0+json" in o.get("data", {})]
    assert len(shown) == 1  # the inline plot
    assert any("computed and saved to" in o.get("text", "") for o in outputs)
    # The neighbours and the groups as Python objects: photo 0's nearest neighbour, printed first.
    text = "".join(o.get("text", "") for o in outputs)
    assert "photo 0: " in text and "nearest neighbours" in text
    # Run again: the coordinates come from the cache.
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": ROOT}}).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert any("reused from" in o.get("text", "") for o in outputs)


# --- the page in a real browser ------------------------------------------------------------------

CLUSTER = [(2.0, 2.0), (2.0004, 2.0), (2.0, 2.0004)]  # within one pixel of each other on the page
SINGLES = [(-3.0, -3.0), (3.0, -3.0), (-3.0, 3.0), (0.0, 0.0)]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A page (built through the library, at chosen coordinates) and its thumbnails, being served."""
    from PIL import Image

    root = tmp_path_factory.mktemp("site")
    thumbs = root / "torch_thumbs"
    thumbs.mkdir()
    points = SINGLES + CLUSTER
    md5s = [fake_md5(i) for i in range(len(points))]
    paths = [["/photos/trip/img_%d.jpg" % i] for i in range(len(points))]
    paths[0] = ["/photos/trip/" + XSS_NAME, "/photos/backup/" + XSS_NAME, "/photos/old/a & b.jpg"]
    for i, md5 in enumerate(md5s):
        Image.new("RGB", (224, 168), (30 * i, 200 - 20 * i, 90)).save(thumbs / (md5 + ".jpg"))
    photos = Photos(md5s=md5s, paths=paths, features=np.zeros((len(md5s), 2), np.float32),
                    thumbs_dir=str(thumbs))
    labels = ["trip"] * len(md5s)
    # Dots only: these tests count the thumbnails hovering asks for (tests/test_mosaic.py: the pictures).
    view = page.build(photos, points, labels, page.thumb_prefix(root / "map.html", thumbs), mosaic=0)
    page.write_page(view, root / "map.html")
    with browser.serve(root) as server:
        yield {"server": server, "points": points, "md5s": md5s, "paths": paths}


def open_page(driver, site):
    driver.execute_cdp_cmd("Network.clearBrowserCache", {})  # every test sees the requests it causes
    driver.get(site["server"].url + "map.html")
    browser.wait_for_plot(driver, page.PLOT_NAME)
    driver.execute_script(
        "window._alerted = false; window.alert = () => { window._alerted = true; };"
        "document.addEventListener('pointerup', (e) => { window._last_pointerup = e.timeStamp; }, true);")


TOOLTIP_STATE_JS = """
const tips = [...document.querySelectorAll('.%s')].filter((t) => getComputedStyle(t).display != 'none');
return tips.map((t) => ({imgs: [...t.querySelectorAll('img')].map((i) => [i.naturalWidth, i.complete,
  i.getAttribute('src')]), lines: [...t.querySelectorAll(':scope > div > div')].map((d) => d.textContent),
  children: t.querySelectorAll('*').length}));
""" % page.TOOLTIP_CLASS

# Bokeh reads two taps whose events are closer than this (by the events' timeStamp) as one double tap:
# UIGestures.doubletap_threshold in bokeh's ui_gestures.ts.
DOUBLETAP_MS = 300


def tooltips_shown(driver, src=None):
    """The visible tooltips once at least one shows and every image in them has loaded (with ``src``,
    once the shown image is that one); the test fails if that does not happen within 10 s."""
    def loaded():
        state = driver.execute_script(TOOLTIP_STATE_JS)
        imgs = [img for tip in state for img in tip["imgs"]]
        if state and all(width > 0 for width, _, _ in imgs) and (src is None or src in [i[2] for i in imgs]):
            return state
        return None
    return wait_until(loaded, 10, "a tooltip with its photo loaded" + (" (%s)" % src if src else ""))


def thumb_requests(server):
    return [p for p, _ in server.requests() if p.endswith(".jpg")]


def wait_for_request(server, path):
    """Wait until the server has been asked for ``path``; returns every thumbnail request so far."""
    return wait_until(lambda: path in thumb_requests(server) and thumb_requests(server), 10,
                      "the server to be asked for %s" % path)


def pinned_paths(driver):
    return [el.text for el in browser.deep_query(driver, ".photomap-path")]


def test_hover_shows_one_tooltip_with_the_photo_and_literal_file_names(driver, site):
    open_page(driver, site)
    x, y = site["points"][0]
    browser.hover_point(driver, page.PLOT_NAME, x, y, dx=2, dy=-1)  # a few pixels off still finds it
    state = tooltips_shown(driver)
    assert len(state) == 1
    (tip,) = state
    assert len(tip["imgs"]) == 1
    width, complete, src = tip["imgs"][0]
    assert width == 224 and complete and src == "torch_thumbs/%s.jpg" % site["md5s"][0]
    assert tip["lines"][:3] == site["paths"][0]  # the HTML-like name is shown as text
    assert tip["lines"][3].startswith("3 copies")
    assert browser.deep_query(driver, 'img[src="x"]') == []
    assert driver.execute_script("return document.querySelectorAll('.%s img').length" % page.TOOLTIP_CLASS) == 1
    # An injected <img src=x onerror=...> would have asked the server for /x, and had its error, before
    # a photo hovered later loads: hover one, wait for it, then check nothing ran.
    later = "torch_thumbs/%s.jpg" % site["md5s"][1]
    browser.hover_point(driver, page.PLOT_NAME, *site["points"][1])
    tooltips_shown(driver, src=later)
    wait_for_request(site["server"], "/" + later)
    assert [p for p, _ in site["server"].requests() if p.rstrip("/").endswith("/x")] == []
    assert driver.execute_script("return window._alerted") is False


def test_points_within_one_pixel_still_give_exactly_one_tooltip(driver, site):
    open_page(driver, site)
    x, y = site["points"][len(SINGLES)]
    cx, cy = browser.data_to_client(driver, page.PLOT_NAME, x, y)
    cx2, cy2 = browser.data_to_client(driver, page.PLOT_NAME, *site["points"][-1])
    assert abs(cx2 - cx) < 1 and abs(cy2 - cy) < 1  # the fixture really is that dense
    cluster_paths = [p[0] for p in site["paths"][len(SINGLES):]]
    for dx in (0, 0.3, 0.6):
        browser.mouse_move(driver, cx + dx, cy + dx)
        state = tooltips_shown(driver)
        assert len(state) == 1 and len(state[0]["imgs"]) == 1 and state[0]["imgs"][0][0] == 224
        assert state[0]["lines"][0] in cluster_paths
    assert len(browser.deep_query(driver, "." + page.TOOLTIP_CLASS)) == 1


def test_hovering_empty_space_shows_nothing(driver, site):
    open_page(driver, site)
    browser.hover_point(driver, page.PLOT_NAME, *site["points"][3])
    assert len(tooltips_shown(driver)) == 1
    before = len(thumb_requests(site["server"]))
    browser.hover_point(driver, page.PLOT_NAME, 1.5, -1.5)  # far from every point
    wait_until(lambda: driver.execute_script(TOOLTIP_STATE_JS) == [], 10, "the tooltip to hide")
    assert thumb_requests(site["server"])[before:] == []


def test_a_quick_sweep_right_after_opening_ends_on_the_photo_under_the_pointer(driver, site):
    """The first moves arrive while the page's scripts are still being compiled: they must be handled
    in order, so the tooltip ends on the last point passed, not on an earlier one."""
    open_page(driver, site)
    stops = [browser.data_to_client(driver, page.PLOT_NAME, *p) for p in site["points"][:4]]
    empty = browser.data_to_client(driver, page.PLOT_NAME, 1.5, -1.5)
    for cx, cy in [stops[0], empty, stops[1], empty, stops[2], empty, stops[3]]:
        browser.mouse_move(driver, cx, cy)
    want = "torch_thumbs/%s.jpg" % site["md5s"][3]
    wait_until(lambda: [img[2] for tip in driver.execute_script(TOOLTIP_STATE_JS) for img in tip["imgs"]] == [want],
               10, "the tooltip to show the last photo passed, %s" % want)


def test_only_the_hovered_thumbnail_is_requested(driver, site):
    server = site["server"]
    open_page(driver, site)
    before = len(thumb_requests(server))
    first, second = ["/torch_thumbs/%s.jpg" % site["md5s"][i] for i in (1, 2)]
    browser.hover_point(driver, page.PLOT_NAME, *site["points"][1])
    tooltips_shown(driver, src=first[1:])
    # Any other thumbnail the first hover asked for would reach the server before the second one.
    browser.hover_point(driver, page.PLOT_NAME, *site["points"][2])
    tooltips_shown(driver, src=second[1:])
    assert wait_for_request(server, second)[before:] == [first, second]


def test_click_pins_the_photo_with_every_path(driver, site):
    open_page(driver, site)
    cx, cy = browser.hover_point(driver, page.PLOT_NAME, *site["points"][0])
    browser.mouse_click(driver, cx, cy)
    (img,) = wait_until(lambda: [i for i in browser.deep_query(driver, "img.photomap-pinned-img")
                                 if driver.execute_script("return arguments[0].naturalWidth", i)], 10,
                        "the pinned photo to load")
    assert len(browser.deep_query(driver, "img.photomap-pinned-img")) == 1
    assert driver.execute_script("return [arguments[0].naturalWidth, arguments[0].clientWidth]", img) \
        == [224, 224]
    assert pinned_paths(driver) == site["paths"][0]
    assert driver.execute_script("return window._alerted") is False
    assert browser.deep_query(driver, 'img[src="x"]') == []
    # Hovering another point keeps the pin (checked once its tooltip shows); clicking it replaces the pin.
    cx, cy = browser.hover_point(driver, page.PLOT_NAME, *site["points"][2])
    tooltips_shown(driver, src="torch_thumbs/%s.jpg" % site["md5s"][2])
    assert pinned_paths(driver) == site["paths"][0]
    wait_until(lambda: driver.execute_script("return performance.now() - window._last_pointerup") > DOUBLETAP_MS,
               5, "bokeh's double-tap window after the first click to pass")
    browser.mouse_click(driver, cx, cy)
    wait_until(lambda: pinned_paths(driver) == site["paths"][2], 10, "the pin to show the clicked photo")


def test_command_page_hover_finds_each_photo(driver, tmp_path, stage3):
    meta_path, thumbs, feats, paths = write_map_inputs(tmp_path, 5)
    out = tmp_path / "map.html"
    assert stage3(*main_args(meta_path, thumbs, feats, out))[0] == 0
    rows = read_csv(tmp_path / "map.coords.csv")[1:]
    with browser.serve(tmp_path) as server:
        driver.get(server.url + "map.html")
        browser.wait_for_plot(driver, page.PLOT_NAME)
        for md5, x, y, first, *_ in rows:
            browser.hover_point(driver, page.PLOT_NAME, float(x), float(y))
            state = tooltips_shown(driver, src="thumbs/%s.jpg" % md5)
            assert len(state) == 1 and [img[2] for img in state[0]["imgs"]] == ["thumbs/%s.jpg" % md5]
            assert state[0]["imgs"][0][0] == 224 and state[0]["lines"][0] == first == paths[md5][0]


def test_notebook_inline_plot_hovers_and_pins_like_the_page(driver, tmp_path, monkeypatch):
    """The notebook's inline plot (executed, exported to HTML as Jupyter shows it) behaves as the page."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nbconvert = pytest.importorskip("nbconvert")
    meta_path, thumbs, feats, paths = write_map_inputs(tmp_path, 8)
    for key, value in (("META", meta_path), ("THUMBS", thumbs), ("FEATURES", feats),
                       ("OUTPUT", tmp_path / "map.html"), ("THUMB_URL", "thumbs/")):
        monkeypatch.setenv("PHOTOMAP_" + key, str(value))
    nb = nbformat.read(os.path.join(ROOT, "visualize.ipynb"), as_version=4)
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": ROOT}}).execute()
    body, _ = nbconvert.HTMLExporter().from_notebook_node(nb)
    (tmp_path / "notebook.html").write_text(body, encoding="utf-8")
    rows = read_csv(tmp_path / "map.coords.csv")[1:]
    with browser.serve(tmp_path) as server:
        driver.get(server.url + "notebook.html")
        browser.wait_for_plot(driver, page.PLOT_NAME)
        md5, x, y = rows[0][0], float(rows[0][1]), float(rows[0][2])
        browser.hover_point(driver, page.PLOT_NAME, x, y)
        state = tooltips_shown(driver)
        assert len(state) == 1 and len(state[0]["imgs"]) == 1
        width, _, src = state[0]["imgs"][0]
        assert width > 0 and src == "thumbs/%s.jpg" % md5
        assert state[0]["lines"][0] == paths[md5][0]
        # The same mosaic: all 8 photos are in view, each drawn as its thumbnail, each asked for once.
        md5s = [r[0] for r in rows]
        wait_until(lambda: sorted(driver.execute_script(
            "return arguments[0].filter((i) => i.naturalWidth > 0).map((i) => i.getAttribute('src'))",
            browser.deep_query(driver, ".photomap-mosaic img"))) == sorted("thumbs/%s.jpg" % m for m in md5s),
            10, "the mosaic to show all 8 photos")
        assert sorted(thumb_requests(server)) == sorted("/thumbs/%s.jpg" % m for m in md5s)
        cx, cy = browser.data_to_client(driver, page.PLOT_NAME, x, y)
        browser.mouse_click(driver, cx, cy)
        wait_until(lambda: pinned_paths(driver) == paths[md5], 10, "the pin to show the clicked photo")
        # More like this, as on the page: the other 7 photos, most similar first.
        strip = wait_until(lambda: browser.deep_query(driver, ".photomap-neighbours .photomap-tile"), 10,
                           "the neighbour strip")
        assert sorted(t.get_attribute("data-md5") for t in strip) == sorted(r[0] for r in rows[1:])


@pytest.fixture(scope="module")
def sharded_site(tmp_path_factory):
    """The same photos as ``site``, with their details in shard files beside the page (three per shard),
    as a large map keeps them."""
    from PIL import Image

    root = tmp_path_factory.mktemp("sharded")
    thumbs = root / "torch_thumbs"
    thumbs.mkdir()
    points = SINGLES + CLUSTER
    md5s = [fake_md5(100 + i) for i in range(len(points))]
    paths = [["/photos/trip/img_%d.jpg" % i, "/photos/copy/img_%d.jpg" % i] for i in range(len(points))]
    paths[1] = ["/photos/trip/" + XSS_NAME]
    for i, md5 in enumerate(md5s):
        Image.new("RGB", (224, 168), (30 * i, 90, 200 - 20 * i)).save(thumbs / (md5 + ".jpg"))
    photos = Photos(md5s=md5s, paths=paths, features=np.zeros((len(md5s), 2), np.float32),
                    thumbs_dir=str(thumbs))
    page.write_map(root / "map.html", photos, points, ["trip"] * len(md5s), inline_max=0, shard_size=3, mosaic=0)
    with browser.serve(root) as server:
        yield {"server": server, "points": points, "md5s": md5s, "paths": paths, "root": root}


def shard_requests(server):
    return [p for p, _ in server.requests() if p.endswith(".json")]


def test_a_sharded_page_fetches_each_shard_once_when_a_photo_in_it_is_shown(driver, sharded_site):
    server = sharded_site["server"]
    open_page(driver, sharded_site)
    assert shard_requests(server) == []  # nothing fetched before a photo is shown
    for i in (4, 1, 5, 0):  # shards 1, 0, 1, 0
        browser.hover_point(driver, page.PLOT_NAME, *sharded_site["points"][i])
        state = tooltips_shown(driver, src="torch_thumbs/%s.jpg" % sharded_site["md5s"][i])
        assert state[0]["lines"][:len(sharded_site["paths"][i])] == sharded_site["paths"][i]
    fetched = shard_requests(server)
    assert len(fetched) == 2 and sorted(p.rsplit("/", 1)[1] for p in fetched) == ["0.json", "1.json"]
    assert browser.deep_query(driver, 'img[src="x"]') == [] and driver.execute_script("return window._alerted") is False
    cx, cy = browser.hover_point(driver, page.PLOT_NAME, *sharded_site["points"][6])
    browser.mouse_click(driver, cx, cy)
    wait_until(lambda: pinned_paths(driver) == sharded_site["paths"][6], 10, "the pin to show the clicked photo")
    assert [p.rsplit("/", 1)[1] for p in shard_requests(server)][2:] == ["2.json"]


def test_a_sharded_page_opened_from_disk_shows_the_map_and_says_hover_needs_the_server(driver, sharded_site):
    driver.get((sharded_site["root"] / "map.html").as_uri())
    browser.wait_for_plot(driver, page.PLOT_NAME)
    browser.hover_point(driver, page.PLOT_NAME, *sharded_site["points"][0])
    lines = wait_until(lambda: [line for tip in driver.execute_script(TOOLTIP_STATE_JS) for line in tip["lines"]],
                       10, "the tooltip to say why there is no photo")
    assert lines == ["photo details need the page served: python -m http.server"]


# --- the colour switch, the islands' labels and the pinned photo's facts ----------------------------

@pytest.fixture(scope="module")
def islands_site(tmp_path_factory):
    """A page of two named islands (grids of points, so each point's centre pixel is its own), every
    colour scheme, photo facts, and the years alternating inside each island."""
    from PIL import Image

    from photomap import classifier, colours, facts, islands

    root = tmp_path_factory.mktemp("islands")
    thumbs, feats = root / "thumbs", root / "features"
    thumbs.mkdir()
    feats.mkdir()
    grid = np.array([(i % 6, i // 6) for i in range(36)], float) * 0.25
    coords = np.concatenate([grid + (-3, 0), grid + (3, 0)])
    n = len(coords)
    vectors = np.zeros((n, 2), np.float32)
    vectors[:36, 0] = vectors[36:, 1] = 1
    classifier.save(feats, 4 * np.eye(2), np.zeros(2), ("seashore", "<b>dog</b>"))
    found = islands.find_islands(coords, vectors, feats)
    md5s = [fake_md5(i) for i in range(n)]
    for md5 in md5s:
        Image.new("RGB", (224, 168), (90, 90, 90)).save(thumbs / (md5 + ".jpg"))
    photos = Photos(md5s=md5s, paths=[["/photos/%s/img_%d.jpg" % ("ab"[i % 2], i)] for i in range(n)],
                    features=vectors, thumbs_dir=str(thumbs))
    years = [2010 if i % 2 == 0 else 2015 for i in range(n)]
    options = colours.schemes(photos, found.ids, found.names, years)
    table = infolog.InfoTable({m: PhotoInfo("%d-07-01T10:00:00" % y, FROM_ORIGINAL, "Canon", "Canon EOS 5D", 1.5, 2.5)
                               for m, y in zip(md5s, years)})
    page.write_map(root / "map.html", photos, coords, None, details=facts.page_details(md5s, found, table),
                   schemes=options, start="cluster", islands=found, note="labels come from random weights")
    with browser.serve(root) as server:
        yield {"server": server, "coords": coords, "ids": found.ids, "years": years, "names": found.names}


def pixel_colours(driver, points):
    """The colour drawn at the centre of each data point (tuples, to compare)."""
    return [tuple(c) for c in browser.point_colours(driver, page.PLOT_NAME, points)]


def legend_rows(driver):
    return [el.text for el in browser.deep_query(driver, ".photomap-legend-name")]


def test_colour_switch_recolours_the_points_and_the_legend_follows(driver, islands_site):
    site = islands_site
    driver.get(site["server"].url + "map.html")
    browser.wait_for_plot(driver, page.PLOT_NAME)
    ids, years, coords = site["ids"], site["years"], site["coords"]
    # a, b: one island, other years; c: the other island, a's year.
    a = next(i for i in range(len(ids)) if ids[i] == 0 and years[i] == 2010)
    b = next(i for i in range(len(ids)) if ids[i] == 0 and years[i] == 2015)
    c = next(i for i in range(len(ids)) if ids[i] == 1 and years[i] == 2010)
    names = [site["names"][0], site["names"][1], "unclustered"]
    wait_until(lambda: legend_rows(driver)[:2] == names[:2], 10, "the islands' legend")
    # Both labels are drawn on the map, as text (the class name "<b>dog</b>" is not markup).
    shown = wait_until(lambda: browser.labels_shown(driver), 10, "the labels")
    assert sorted(shown) == sorted(site["names"]) and "<b>dog</b>" in shown
    assert not browser.deep_query(driver, "b")  # drawn on the canvas as text, never markup
    pa, pb, pc = wait_until(lambda: (lambda px: px if px[0] == px[1] != px[2] else None)(
        pixel_colours(driver, [coords[a], coords[b], coords[c]])), 10, "a and b in one colour, c in another")
    browser.choose_colours(driver, "year")
    wait_until(lambda: legend_rows(driver) == ["2010", "2015"], 10, "the legend to list the years")
    assert browser.labels_shown(driver) == []  # the islands' names go with the islands' colours
    wait_until(lambda: (lambda px: px[0] == px[2] != px[1])(pixel_colours(driver, [coords[a], coords[b], coords[c]])),
               10, "a and c in one colour (2010), b in another (2015)")
    browser.choose_colours(driver, "islands")
    wait_until(lambda: legend_rows(driver)[:2] == names[:2], 10, "the islands' legend back")
    assert sorted(browser.labels_shown(driver)) == sorted(shown)
    wait_until(lambda: pixel_colours(driver, [coords[a], coords[b], coords[c]]) == [pa, pb, pc], 10,
               "the islands' colours back")
    assert browser.weights_note(driver) == "labels come from random weights"


def test_pinned_photo_shows_its_classes_date_and_camera_but_no_gps(driver, islands_site):
    site = islands_site
    driver.get(site["server"].url + "map.html")
    browser.wait_for_plot(driver, page.PLOT_NAME)
    i = int(np.flatnonzero(site["ids"] == 1)[0])
    cx, cy = browser.hover_point(driver, page.PLOT_NAME, *site["coords"][i])
    browser.mouse_click(driver, cx, cy)
    facts = wait_until(lambda: [el.text for el in browser.deep_query(driver, ".photomap-facts > div")], 10,
                       "the pinned photo's facts")
    name_1 = site["names"][1]
    assert facts[0].startswith(name_1 + " ") and facts[0].endswith("%") and len(facts) == 2 + 2  # 2 classes
    assert facts[2] == "taken %d-07-01 10:00:00" % site["years"][i] and facts[3] == "Canon EOS 5D"
    assert float(facts[0].split()[-1][:-1]) > float(facts[1].split()[-1][:-1])  # best class first
    assert not browser.deep_query(driver, ".photomap-gps")  # private unless --show-gps


def test_island_labels_make_room_for_each_other_and_more_appear_zoomed_in(driver, tmp_path):
    """Twelve islands side by side with long names: larger islands' labels win at full view, none
    overlapping; zoomed onto two islands, both their labels show."""
    from photomap import classifier, colours, islands

    k = 12
    grid = np.array([(i % 6, i // 6) for i in range(36)], float) * 0.25
    sizes = [36 - 2 * (i % 3) for i in range(k)]  # unequal, so priorities differ
    coords = np.concatenate([grid[:s] + (3.0 * i, 0) for i, s in enumerate(sizes)])
    owner = np.repeat(np.arange(k), sizes)
    vectors = np.eye(k, dtype=np.float32)[owner]
    names = tuple("%s retriever %d" % ("golden labrador"[:6 + i % 9], i) for i in range(k))
    classifier.save(tmp_path, 6 * np.eye(k), np.zeros(k), names)
    found = islands.find_islands(coords, vectors, tmp_path)
    assert len(found.rows()) == k
    md5s = [fake_md5(i) for i in range(len(coords))]
    photos = Photos(md5s=md5s, paths=[["/p/%d.jpg" % i] for i in range(len(coords))], features=vectors,
                    thumbs_dir=str(tmp_path))
    options = colours.schemes(photos, found.ids, found.names, [None] * len(coords))
    page.write_map(tmp_path / "map.html", photos, coords, None, schemes=options, start="cluster", islands=found)
    with browser.serve(tmp_path) as server:
        driver.get(server.url + "map.html")
        browser.wait_for_plot(driver, page.PLOT_NAME)
        full = wait_until(lambda: browser.labels_shown(driver), 10, "labels at full view")
        assert 1 < len(full) < k
        biggest = [found.names[r.cluster] for r in found.rows() if r.size == max(sizes)]
        assert set(biggest) & set(full)
        boxes = driver.execute_script(LABEL_BOXES_JS)
        assert all(not (abs(a[0] - b[0]) < (a[2] + b[2]) / 2 and abs(a[1] - b[1]) < (a[3] + b[3]) / 2)
                   for i, a in enumerate(boxes) for b in boxes[i + 1:]), boxes
        hidden = [n for n in found.names if n not in full]
        i = found.names.index(hidden[0])
        x = coords[found.ids == i].mean(axis=0)
        # Marked as the user's view, as bokeh's zoom tools do (else the page's next restyle restores it).
        driver.execute_script(browser.PLOT_VIEW_JS + "pv.model.x_range.have_updated_interactively = "
                              "pv.model.y_range.have_updated_interactively = true;"
                              "pv.model.x_range.setv({start: arguments[1] - 2.5, end: arguments[1] + 2.5});"
                              "pv.model.y_range.setv({start: -2, end: 3});", page.PLOT_NAME, float(x[0]))
        wait_until(lambda: hidden[0] in browser.labels_shown(driver), 10, "the hidden label once zoomed in")


# Each shown label's box on the canvas: [centre x, centre y, width, height] in CSS pixels.
LABEL_BOXES_JS = """
const v = Bokeh.index.query_one((v) => v.model != null && v.model.name == 'photomap-labels');
const pv = v.parent, d = v.model.source.data;
const ctx = document.createElement('canvas').getContext('2d');
ctx.font = 'bold 12px sans-serif';
return d.text.map((t, i) => [pv.frame.x_scale.compute(d.x[i]), pv.frame.y_scale.compute(d.y[i]),
                             ctx.measureText(t).width, 14]);
"""
