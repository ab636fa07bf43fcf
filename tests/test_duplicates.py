"""Near-duplicate groups: on the demo sample through the real stages, on features whose duplicate structure
is known (at two similarity scales), against chains of unrelated photos, and on tiny maps."""
import csv
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from photomap import duplicates, meta, neighbours, similar
from photomap.commands import visualize
from photomap_tools import sample, synthetic

EDIT = re.compile(r"IMG_.+?(_crop\d|_mirror|_dark|_bright|_lowq|_sideways)?\.jpg$")
picture_of = sample.source_picture  # which scikit-image picture a sample file shows


def edit_of(path):
    m = EDIT.match(os.path.basename(path))
    return (m.group(1) or "original") if m else "scan"


def read_rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def demo(tmp_path_factory, random_weights):
    """The demo sample through stages 1 and 2 (random-init weights, offline) into a work folder."""
    work = tmp_path_factory.mktemp("demo")
    photos, thumbs, feats = work / "photos", work / "thumbs", work / "features"
    sample.make_sample(str(photos))
    with open(work / "thumbs.meta", "w") as out:
        subprocess.run([sys.executable, os.path.join(ROOT, "process_photos.py"), "-d", str(photos), "-o",
                        str(thumbs), "-q"], stdout=out, check=True, timeout=900)
    names = "\n".join(str(thumbs / n) for n in sorted(os.listdir(thumbs)) if n.endswith(".jpg"))
    # fp32: random-init features put every photo within cosine 0.98 of every other, and int8's rounding
    # (auto's choice on some CPUs) moves a re-encoded copy as far as a crop there; real features are
    # spread far wider than int8 moves them (its own check holds it within cosine 0.99 of fp32).
    subprocess.run([sys.executable, os.path.join(ROOT, "embeddings.py"), "-o", str(feats), "--weights",
                    str(random_weights), "--precision", "fp32", "-q", "-"], input=names + "\n", text=True,
                   check=True, timeout=900)
    return work


def run_stage3(run_main, demo, meta_path, page):
    run = run_main(visualize.main, "--meta", meta_path, "--thumbs", demo / "thumbs", "--features",
                   demo / "features", "-o", page, "--seed", 0, "-q")
    assert run.status == 0 and run.err == []
    return read_rows(similar.duplicates_csv_path(page))


def test_demo_sample_groups_copies_and_never_merges_different_pictures(demo, tmp_path, run_main):
    rows = run_stage3(run_main, demo, demo / "thumbs.meta", tmp_path / "map.html")
    log = meta.read_meta(demo / "thumbs.meta")
    groups = {}
    for r in rows:
        groups.setdefault(r["group"], []).append(r)
    assert len(groups) >= 10
    for gid, members in groups.items():
        assert len({picture_of(r["path"]) for r in members}) == 1, "one picture per group: %s" % members
        assert gid == min(r["md5"] for r in members), "the group id is its smallest md5"
        assert float(members[0]["similarity"]) == 1.0
        assert len({r["md5"] for r in members}) >= 2 or len(members) >= 2
    group_of = {r["path"]: r["group"] for r in rows}
    originals = {picture_of(p): p for p in log.entries if edit_of(p) == "original" and "backup" not in p}
    # A re-encoded copy and one stored sideways (EXIF) are the same picture even to random weights.
    for path in log.entries:
        if edit_of(path) in ("_lowq", "_sideways"):
            assert path in group_of and group_of[path] == group_of.get(originals[picture_of(path)]), path
    # The exact copies in "backup copy/" are listed next to their originals: one row per path.
    for name in ("astronaut", "camera"):
        copy = [p for p in log.entries if "backup copy" in p and name in p][0]
        assert group_of[copy] == group_of[originals[name]]
        (copy_row,) = [r for r in rows if r["path"] == copy]
        (orig_row,) = [r for r in rows if r["path"] == originals[name]]
        assert copy_row["md5"] == orig_row["md5"] and copy_row["bytes"] == orig_row["bytes"]
    for r in rows:  # the originals' facts, as a script choosing the best copy reads them
        assert r["status"] == "present" and int(r["bytes"]) == os.path.getsize(r["path"])
        if edit_of(r["path"]) == "_sideways":
            w, h = int(r["width"]), int(r["height"])
            assert (w, h) == [(int(o["width"]), int(o["height"])) for o in rows
                              if o["path"] == originals[picture_of(r["path"])]][0], "as a viewer shows it"


def test_group_ids_stay_while_groups_do(demo, tmp_path, run_main):
    before = run_stage3(run_main, demo, demo / "thumbs.meta", tmp_path / "a.html")
    again = run_stage3(run_main, demo, demo / "thumbs.meta", tmp_path / "a.html")
    assert again == before, "the same inputs give the same file"
    # Without the clock's photos (deleted from the backup before stage 1) the other groups keep their ids.
    lines = (demo / "thumbs.meta").read_text(encoding="utf-8").splitlines(keepends=True)
    fewer = tmp_path / "fewer.meta"
    fewer.write_text("".join(line for line in lines if "IMG_clock" not in line), encoding="utf-8")
    after = run_stage3(run_main, demo, fewer, tmp_path / "b.html")

    def by_group(rows):
        out = {}
        for r in rows:
            out.setdefault(r["group"], set()).add(r["path"])
        return out
    old, new = by_group(before), by_group(after)
    kept = {g: paths for g, paths in old.items() if not any("IMG_clock" in p for p in paths)}
    assert kept and all(new.get(g) == paths for g, paths in kept.items())


def pictures(scale_offset=0.0, seed=0, n=400, n_dup=60, latent=32, dim=512):
    """CNN-like features of ``n`` different pictures (ReLU of a random 32-d signal) plus 1-3 edited
    copies of ``n_dup`` of them (a small move of the signal). ``scale_offset`` adds the same large
    vector to every photo: every cosine then lies above 0.96, as with some pretrained models.
    Returns ``(features, picture index of each row)``."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(latent, dim)) / np.sqrt(latent)
    z = [rng.normal(size=(n, latent))]
    truth = list(range(n))
    for p in rng.choice(n, n_dup, replace=False):
        for _ in range(int(rng.integers(1, 4))):
            z.append(z[0][p] + 0.2 * rng.normal(size=(1, latent)))
            truth.append(p)
    f = np.maximum(np.concatenate(z) @ w + 0.02 * rng.normal(size=(len(truth), dim)), 0)
    return (f + scale_offset * np.abs(f).mean()).astype(np.float32), np.array(truth)


def grouping(feats, threshold=None):
    md5s = ["%032x" % i for i in range(len(feats))]
    groups, rule = duplicates.find_groups(neighbours.unit_rows(feats), neighbours.compute(feats), md5s,
                                          threshold=threshold)
    return sorted(sorted(g.members) for g in groups), rule


@pytest.mark.parametrize("offset", [0.0, 10.0])
def test_derived_threshold_finds_known_duplicates_at_any_similarity_scale(offset):
    feats, truth = pictures(offset)
    cos = neighbours.unit_rows(feats) @ neighbours.unit_rows(feats).T
    assert (cos.min() > 0.96) == (offset > 0), "the two scales really differ"
    want = sorted(sorted(np.flatnonzero(truth == t).tolist()) for t in set(truth) if (truth == t).sum() > 1)
    got, rule = grouping(feats)
    assert got == want
    median = float(np.median(rule.photo_thresholds()))
    assert (median > 0.99) == (offset > 0), "the threshold moved with the scale: %.4f" % median


def test_one_fixed_cosine_fails_on_one_of_the_scales():
    # Why the default is derived: a cosine that suits one model's scale is wrong for the other's.
    plain, truth = pictures(0.0)
    squeezed, _ = pictures(10.0)
    want = len({t for t in set(truth) if (truth == t).sum() > 1})
    loose, _ = grouping(squeezed, threshold=0.95)
    strict, _ = grouping(plain, threshold=0.99)
    assert max(len(g) for g in loose) > 100, "0.95 merges unrelated photos when all cosines are high"
    assert len(strict) < want / 2, "0.99 misses most copies on the plain scale"


def test_a_chain_of_small_steps_is_not_one_group():
    # 40 photos along an arc, each a small step from the last: neighbours qualify pairwise, but the
    # ends are different pictures; the guard keeps every group within what two edits can span.
    rng = np.random.default_rng(3)
    base, turn = np.linalg.qr(rng.normal(size=(64, 2)))[0].T
    angles = np.arange(40) * 0.02
    feats = (np.cos(angles)[:, None] * base + np.sin(angles)[:, None] * turn).astype(np.float32)
    x = neighbours.unit_rows(feats)
    limit = 1 - np.cos(0.025)  # every step qualifies
    groups, rule = duplicates.find_groups(x, neighbours.compute(feats), ["%032x" % i for i in range(40)],
                                          threshold=1 - limit)
    assert len(groups) >= 3
    for g in groups:
        spread = 1 - (x[g.members] @ x[g.members].T).min()
        assert spread <= duplicates.CHAIN_FACTOR * limit + 1e-6


def test_tiny_maps_and_maps_without_duplicates(tmp_path):
    page = tmp_path / "map.html"
    one = similar.build(["a" * 32], np.ones((1, 8), np.float32), [["/p/a.jpg", "/q/a.jpg"]], page)
    rows = read_rows(similar.duplicates_csv_path(page))
    assert [g.members for g in one.groups] == [[0]], "byte-identical copies are a group on their own"
    assert [r["path"] for r in rows] == ["/p/a.jpg", "/q/a.jpg"]
    assert {r["similarity"] for r in rows} == {"1.000000"}
    assert {r["status"] for r in rows} == {"unreachable"}

    two = np.array([[1, 0, 0, 0], [1, 0, 0, 0]], np.float32)
    same = similar.build(["a" * 32, "b" * 32], two, [["/a"], ["/b"]], page)
    assert [g.members for g in same.groups] == [[0, 1]], "identical features: duplicates even in 2 photos"
    two[1] = [0.9, 0.1, 0, 0]
    differ = similar.build(["a" * 32, "b" * 32], two, [["/a"], ["/b"]], page)
    assert differ.groups == [], "two photos give nothing to derive a threshold from: nothing is claimed"

    feats, truth = pictures(n_dup=0)
    md5s = ["%032x" % i for i in range(len(feats))]
    none = similar.build(md5s, feats, [["/p/%d.jpg" % i] for i in range(len(feats))], page)
    assert none.groups == []
    assert (tmp_path / "map.duplicates.csv").read_text() == ",".join(duplicates.CSV_HEADER) + "\n"


def test_csv_quotes_awkward_paths_and_reads_back(tmp_path):
    paths = [["/a/with, comma.jpg", '/a/"quoted".jpg'], ["/a/new\nline.jpg"], ["/a/été <img src=x>.jpg"]]
    groups = [duplicates.Group("a" * 32, [0, 1, 2], [1.0, 0.98765432, 0.9])]
    out = tmp_path / "d.csv"
    duplicates.write_csv(out, groups, ["a" * 32, "b" * 32, "c" * 32], paths,
                         facts={"/a/with, comma.jpg": (640, 480, 12345)},
                         status={"/a/with, comma.jpg": "present", "/a/new\nline.jpg": "missing"})
    back = duplicates.read_csv(out)
    rows = back["a" * 32]
    # written as the coordinates CSV writes paths: printable (a newline as \\n), quoted by the csv module
    assert [r["path"] for r in rows] == ["/a/with, comma.jpg", '/a/"quoted".jpg', "/a/new\\nline.jpg",
                                         "/a/été <img src=x>.jpg"]
    assert rows[0]["width"] == 640 and rows[0]["bytes"] == 12345 and rows[1]["width"] is None
    assert [r["similarity"] for r in rows] == [1.0, 1.0, 0.987654, 0.9]
    assert [r["status"] for r in rows] == ["present", "", "missing", ""]


def test_dup_threshold_option_is_checked_before_any_work_and_used(run_main, tmp_path):
    inputs = synthetic.write_map_inputs(tmp_path / "in", 30)
    args = ["--meta", inputs.meta, "--thumbs", inputs.thumbs, "--features", inputs.features,
            "-o", tmp_path / "map.html"]
    bad = run_main(visualize.main, *args, "--dup-threshold", "high")
    assert bad.status == 2 and bad.err == [
        "error: --dup-threshold must be auto or a cosine similarity above -1 and at most 1, not 'high'"]
    assert os.listdir(tmp_path) == ["in"], "nothing written"
    fixed = run_main(visualize.main, *args, "--dup-threshold", "0.9999")
    assert fixed.status == 0
    assert [line for line in fixed.err if "near-duplicate group" in line] == [
        "visualize: 0 near-duplicate groups (0 photos, 0 files); threshold: cosine 0.9999 (--dup-threshold)"]
    auto = run_main(visualize.main, *args)
    assert any(line.startswith("visualize: 12 nearest neighbours of each photo (exact)") for line in auto.err)
    assert any("threshold from the data: cosine" in line for line in auto.err)
