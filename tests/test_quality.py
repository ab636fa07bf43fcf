"""The map-quality metrics on data whose answers are known."""
import numpy as np
from PIL import Image, ImageOps

from conftest import make_photo
from photomap_tools import quality


def test_copy_recall_finds_originals_and_ignores_siblings():
    # Originals at 0, 10, 20 on a line; their copies sit close to them.
    pts = np.array([[0.0], [10.0], [20.0], [0.4], [10.4], [19.6], [0.3]])
    pairs = [(3, 0), (4, 1), (5, 2), (6, 0)]
    siblings = {3: {6}, 6: {3}, 4: set(), 5: set()}
    assert quality.copy_recall(pts, pairs, 1, "euclidean", siblings) == 1.0
    # A copy placed next to the wrong original is a miss.
    wrong = pts.copy()
    wrong[5] = [9.0]  # now nearer to original 1 than to its own original 2
    assert quality.copy_recall(wrong, pairs, 1, "euclidean", siblings) == 0.75
    # Without the sibling rule, copy 6's nearest point is its sibling 3, not the original.
    assert quality.copy_recall(pts, pairs, 1, "euclidean", None) == 0.5


def test_neighbour_preservation_is_one_for_isometry_and_low_for_shuffle():
    rng = np.random.default_rng(0)
    angle = np.sort(rng.uniform(0, np.pi, 200))
    radius = rng.uniform(1, 5, 200)  # cosine ignores length: neighbours are by angle only
    feats = np.stack([np.cos(angle), np.sin(angle)], 1) * radius[:, None]
    coords = np.stack([angle * 7.0, np.zeros_like(angle)], 1)  # the angle laid out on a line
    assert quality.neighbour_preservation(feats, coords, k=10) > 0.95
    shuffled = coords[rng.permutation(len(coords))]
    assert quality.neighbour_preservation(feats, shuffled, k=10) < 0.3


def test_label_agreement_against_chance():
    coords = np.concatenate([np.zeros((30, 2)), np.full((30, 2), 100.0)]) + \
        np.random.default_rng(1).normal(size=(60, 2))
    labels = ["a"] * 30 + ["b"] * 30
    share, chance = quality.label_agreement(coords, labels, k=10)
    assert share == 1.0 and abs(chance - 0.5) < 1e-9
    share, _ = quality.label_agreement(coords, ["a", "b"] * 30, k=10)
    assert share < 0.7


def test_make_edits_writes_each_edit(tmp_path):
    src = make_photo(tmp_path / "p.jpg", size=(400, 300))
    out = {}
    quality.make_edits(src, lambda e: out.setdefault(e, str(tmp_path / (e + ".jpg"))))
    assert sorted(out) == sorted(quality.EDITS)
    sizes = {e: Image.open(p).size for e, p in out.items()}
    assert sizes["crop90"] == (360, 270) and sizes["downscale50"] == (200, 150)
    assert sizes["jpeg60"] == sizes["bright115"] == sizes["dark60"] == sizes["mirror"] == (400, 300)
    original = np.asarray(Image.open(src), float)
    assert np.asarray(Image.open(out["bright115"]), float).mean() > original.mean() * 1.08
    assert np.asarray(Image.open(out["dark60"]), float).mean() < original.mean() * 0.65
    assert np.abs(np.asarray(Image.open(out["mirror"]), float)[:, ::-1] - original).mean() < 4
    with Image.open(out["sideways"]) as side:
        assert side.size == (300, 400) and side.getexif()[0x0112] == 6
        upright = np.asarray(ImageOps.exif_transpose(side), float)
    assert np.abs(upright - original).mean() < 4, "a viewer shows the photo upright"


def test_group_scores_judge_copies_and_leave_the_folders_own_duplicates_alone():
    # originals 0, 1, 2; copies 10, 11 of 0 and 12 of 1, 13 of 2
    pairs = [(10, 0), (11, 0), (12, 1), (13, 2)]
    perfect = {0: "a", 10: "a", 11: "a", 1: "b", 12: "b"}
    assert quality.group_scores(perfect, pairs) == (1.0, 0.75)
    # originals 0 and 1 grouped by the tool (the folder's own duplicates): no error either way
    merged = {0: "a", 10: "a", 11: "a", 1: "a", 12: "a"}
    assert quality.group_scores(merged, pairs) == (1.0, 0.75)
    # copy 13 put with 0's family: its 3 pairs there are wrong, and it misses its own original
    wrong = {**perfect, 13: "a"}
    precision, recall = quality.group_scores(wrong, pairs)
    assert precision == 4 / 7 and recall == 0.75  # right: 3 pairs in a without 13, 1 in b
    assert np.isnan(quality.group_scores({}, [])[0])
    # with labels (what each original shows) every grouped pair is judged, originals' own too
    labels = {0: "cat", 1: "cat", 2: "dog"}
    assert quality.group_scores(merged, pairs, labels) == (1.0, 0.75)
    assert quality.group_scores({**merged, 2: "a"}, pairs, labels)[0] == 10 / 15


def test_report_flags_weights_that_are_not_the_published_file(random_weights, torch_home):
    for given in (str(random_weights), None):  # --weights, and the hub cache's resnet18-f37072fd.pth
        line, published = quality.describe_weights("resnet18", given)
        assert not published
        assert "is NOT the published resnet18-f37072fd.pth file" in line and "only a floor" in line
