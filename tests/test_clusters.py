"""Islands of the map: clusters found in the layout, stable ids, labels from a synthetic classifier
whose right answers are known, label placement, classifier.npz and <page>.clusters.csv."""
import csv
import os

import numpy as np
import pytest

from photomap import classifier, clusters, clusters_csv, infolog, islands, labels
from photomap.exif import FROM_MTIME, FROM_ORIGINAL, PhotoInfo

ISLAND_SIZES = (400, 250, 160, 100, 70)
CATEGORIES = ("seashore", "golden retriever", "document", "bicycle", "pizza",
              "web site", "Labrador retriever", "lakeside")
COMMON = 5           # probable everywhere: the most frequent class of every island
PARTNER = 6          # island 0 also loads on it: "golden retriever · Labrador retriever"
ISLAND_CLASS = (1, 0, 2, 3, 4)  # the class island i is made of


CENTRES = [20 * np.array([np.cos(a), np.sin(a)]) for a in 2 * np.pi * np.arange(5) / 5]


def island_map(seed=0, background=60):
    """Five round islands of different sizes on a ring, plus scattered photos between them.
    Returns (coords (n, 2), island of each photo (-1 = scattered))."""
    rng = np.random.default_rng(seed)
    parts, truth = [], []
    for i, size in enumerate(ISLAND_SIZES):
        parts.append(CENTRES[i] + rng.normal(size=(size, 2)))
        truth += [i] * size
    parts.append(rng.uniform(-28, 28, (background, 2)))
    truth += [-1] * background
    return np.concatenate(parts), np.array(truth)


def synthetic_classifier():
    """A classifier over 8-d vectors: class k reads dimension k, and the 'web site' class has a
    large bias, so it is the most probable class of nearly every photo."""
    weight = 4 * np.eye(len(CATEGORIES), dtype=np.float32)
    bias = np.zeros(len(CATEGORIES), np.float32)
    bias[COMMON] = 4.5
    return classifier.Classifier(weight, bias, CATEGORIES)


def island_vectors(truth, seed=0):
    """Feature vectors where island i's own class dominates what sets it apart."""
    rng = np.random.default_rng(seed)
    vectors = rng.normal(0, 0.3, (len(truth), len(CATEGORIES))).astype(np.float32)
    for i, cls in enumerate(ISLAND_CLASS):
        vectors[truth == i, cls] += 1.0
    vectors[truth == 0, PARTNER] += 0.9
    vectors[truth == -1] += rng.normal(0, 0.6, vectors[truth == -1].shape).astype(np.float32)
    return vectors


# ---------------------------------------------------------------- clusters

def test_each_island_is_one_cluster_by_size_and_scattered_photos_stay_unclustered():
    coords, truth = island_map()
    ids = clusters.find_clusters(coords)
    assert ids.dtype == np.int32 and ids.shape == truth.shape
    assert sorted(set(ids.tolist()) - {-1}) == [0, 1, 2, 3, 4]
    for i in range(len(ISLAND_SIZES)):  # island i (the i-th largest) is cluster i, nearly whole
        assert np.mean(ids[truth == i] == i) > 0.9
        assert set(ids[truth == i].tolist()) <= {i, -1}
    far = (truth == -1) & (np.min([np.linalg.norm(coords - c, axis=1) for c in CENTRES], axis=0) > 5)
    assert far.sum() > 20 and set(ids[far].tolist()) == {-1}  # scattered photos are not forced in
    assert list(clusters.sizes(ids)) == sorted(clusters.sizes(ids), reverse=True)


def test_same_layout_same_ids_and_tiny_maps_do_not_fail():
    coords, _ = island_map(seed=3)
    coords = np.round(coords, 1)  # many equal distances: the parallel engine's ties must not matter
    first = clusters.find_clusters(coords)
    for _ in range(3):
        assert np.array_equal(first, clusters.find_clusters(coords.copy()))
    for n in range(5):
        assert np.array_equal(clusters.find_clusters(np.zeros((n, 2))), np.full(n, -1))
    same_point = clusters.find_clusters(np.ones((40, 2)))  # 40 copies of one point
    assert same_point.shape == (40,)
    with pytest.raises(ValueError):
        clusters.find_clusters(np.zeros((10, 3)))


def test_min_cluster_size_grows_with_the_map():
    assert clusters.min_cluster_size(3) == 5
    assert [clusters.min_cluster_size(n) for n in (1_000, 100_000, 1_000_000)] == [32, 316, 1000]
    # In a 2,000-photo map, 12 photos off on their own are too few to name; 120 are an island.
    coords, _ = island_map()
    rng = np.random.default_rng(1)
    big = np.concatenate([coords, rng.normal((60, 60), 1, (120, 2)), rng.normal((-60, 60), 0.5, (12, 2)),
                          rng.uniform(-30, 30, (2000 - len(coords) - 132, 2))])
    ids = clusters.find_clusters(big)
    island = ids[len(coords):len(coords) + 120]
    values, counts = np.unique(island, return_counts=True)
    assert values[np.argmax(counts)] >= 0 and counts.max() > 0.9 * 120 and set(values.tolist()) - {-1} == {
        values[np.argmax(counts)]}
    assert set(ids[len(coords) + 120:len(coords) + 132].tolist()) == {-1}


def test_order_by_size_breaks_ties_by_position_not_raw_numbering():
    coords = np.array([[5, 0], [5, 1], [0, 0], [0, 1], [9, 9]], float)
    assert clusters.order_by_size([7, 7, 3, 3, -1], coords).tolist() == [1, 1, 0, 0, -1]
    assert clusters.order_by_size([3, 3, 7, 7, -1], coords).tolist() == [1, 1, 0, 0, -1]


def test_match_ids_keeps_old_ids_for_the_same_clusters():
    old = {"m%03d" % i: i // 10 for i in range(40)}       # clusters 0..3 of 10 photos
    old.update({"u%d" % i: -1 for i in range(5)})
    new = {}
    for i in range(40):                                    # the new run numbers them otherwise
        new["m%03d" % i] = {0: 2, 1: 0, 2: 1, 3: 3}[i // 10]
    for i in range(30, 40):                                # old cluster 3 split: 7 photos + 3 photos
        new["m%03d" % i] = 3 if i < 37 else 4
    del new["m000"]                                        # a photo removed ...
    new.update({"n%d" % i: 2 for i in range(8)})           # ... and 8 added to one cluster
    new.update({"x%d" % i: 5 for i in range(6)})           # a cluster of new photos only
    new.update({"u0": -1, "u1": 1})
    got = clusters.match_ids(old, new)
    assert set(got) == set(new)
    assert all(got["m%03d" % i] == i // 10 for i in range(1, 30))  # same clusters, same ids
    assert got["n0"] == 0                                  # the added photos join cluster 0
    assert [got["m%03d" % i] for i in range(30, 40)] == [3] * 7 + [4] * 3  # larger part keeps 3
    assert got["x0"] == 5 and got["u0"] == -1              # fresh ids start above the old ones
    assert got["u1"] == 2                                  # new cluster 1 is old cluster 2
    assert clusters.match_ids({}, {"a": 0, "b": -1}) == {"a": 0, "b": -1}


# ---------------------------------------------------------------- labels

def test_labels_name_each_island_by_its_distinctive_class_not_the_most_frequent():
    coords, truth = island_map()
    vectors = island_vectors(truth)
    ids = clusters.find_clusters(coords)
    clf = synthetic_classifier()
    summary = labels.summarise(vectors, clf, ids)
    # The naive label (most probable class on average) is the same everywhere: "web site".
    assert {int(np.argmax(row)) for row in summary.cluster_mean} == {COMMON}
    names = labels.cluster_labels(summary, clusters.sizes(ids), CATEGORIES)
    assert names == ["golden retriever · Labrador retriever", "seashore", "document", "bicycle", "pizza"]
    # Each photo's top 3 are those of its own softmax, best first.
    logits = vectors.astype(np.float64) @ clf.weight.T + clf.bias
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    assert np.array_equal(summary.top_classes, np.argsort(-probs, axis=1)[:, :3])
    assert np.allclose(summary.top_probs, np.sort(probs, axis=1)[:, ::-1][:, :3], atol=1e-5)
    i = int(np.flatnonzero(truth == 1)[0])
    top = labels.photo_classes(summary, CATEGORIES, i)
    assert {name for name, _ in top[:2]} == {"web site", "seashore"} and top[0][1] >= top[1][1] >= top[2][1]


def test_blockwise_sums_equal_one_pass(monkeypatch):
    coords, truth = island_map()
    vectors = island_vectors(truth)
    ids = clusters.find_clusters(coords)
    whole = labels.summarise(vectors, synthetic_classifier(), ids)
    monkeypatch.setattr(labels, "_CHUNK", 37)
    blocks = labels.summarise(vectors, synthetic_classifier(), ids)
    assert np.allclose(whole.cluster_mean, blocks.cluster_mean) and np.allclose(whole.map_sum, blocks.map_sum)
    assert np.array_equal(whole.top_classes, blocks.top_classes)


def test_labels_sit_on_their_island_even_a_crescent_and_big_clusters_win():
    rng = np.random.default_rng(0)
    angle = rng.uniform(0.2, np.pi - 0.2, 300)             # a crescent: its mean lies off the island
    crescent = np.c_[10 * np.cos(angle), 10 * np.sin(angle)] + rng.normal(0, 0.3, (300, 2))
    blob = rng.normal((30, 0), 0.5, (100, 2))
    coords = np.concatenate([crescent, blob])
    ids = np.array([0] * 300 + [1] * 100)
    place = labels.place_labels(coords, ids)
    assert np.min(np.linalg.norm(crescent - place.xy[0], axis=1)) == 0  # on a member
    assert np.linalg.norm(place.xy[0]) > 8                 # not in the hole where the mean is
    assert place.priority[0] > place.priority[1]
    swapped = labels.place_labels(coords, 1 - ids)         # ids that do not go by size
    assert swapped.priority[1] > swapped.priority[0]


# ---------------------------------------------------------------- classifier.npz and the CSV files

def test_islands_without_a_classifier_are_unnamed_with_one_reason(tmp_path):
    coords, truth = island_map()
    found = islands.find_islands(coords, island_vectors(truth), tmp_path)
    assert found.names is None and found.top_classes(0) == []
    assert found.note == ("clusters unnamed: no classifier.npz in %s (made by an older stage 2 or a model "
                          "without one; run embeddings.py again on that folder to add it)" % tmp_path)
    assert [r.label for r in found.rows()] == [""] * 5

    clf = synthetic_classifier()
    classifier.save(tmp_path, clf.weight, clf.bias, clf.categories)
    found = islands.find_islands(coords, island_vectors(truth), tmp_path)
    assert found.note is None and found.rows()[0].label == "golden retriever · Labrador retriever"
    assert found.rows()[0].size == int(np.sum(found.ids == 0))
    md5s = ["%032x" % i for i in range(len(coords))]
    earlier = {m: int(c) + 10 if c >= 0 else -1 for m, c in zip(md5s, found.ids)}  # ids of an older map
    again = islands.find_islands(coords, island_vectors(truth), tmp_path, md5s=md5s, previous=earlier)
    assert [earlier[m] for m in md5s] == again.ids.tolist()
    assert [r.cluster for r in again.rows()] == [10, 11, 12, 13, 14]
    assert again.rows()[0].label == "golden retriever · Labrador retriever"
    tiny = islands.find_islands(coords[:3], island_vectors(truth)[:3], tmp_path)  # 3 photos: no islands
    assert tiny.rows() == [] and list(tiny.ids) == [-1] * 3 and len(tiny.top_classes(2)) == 3


def test_classifier_reader_gives_one_reason_never_a_traceback(tmp_path):
    clf = synthetic_classifier()
    classifier.save(tmp_path, clf.weight, clf.bias, clf.categories)
    loaded, reason = classifier.load(tmp_path, 8)
    assert reason is None and loaded.categories == CATEGORIES and np.array_equal(loaded.weight, clf.weight)
    path = tmp_path / classifier.NAME
    assert classifier.load(tmp_path, 512) == (None, "%s takes 8-d vectors, but the features are 512-d" % path)
    np.savez(path, weight=clf.weight, bias=clf.bias[:7], categories=np.array(CATEGORIES))
    assert classifier.load(tmp_path)[1] == ("%s has shapes that do not agree: weight (8, 8), bias (7,), "
                                            "categories (8,)" % path)
    np.savez(path, weight=clf.weight, categories=np.array(CATEGORIES))
    assert classifier.load(tmp_path)[1] == "%s lacks the array bias" % path
    np.savez(path, weight=clf.weight, bias=clf.bias, categories=np.array(CATEGORIES, dtype=object))
    assert classifier.load(tmp_path)[1].startswith("%s is unreadable (" % path)  # a pickle: refused
    path.write_bytes(path.read_bytes()[:200])
    assert classifier.load(tmp_path)[1].startswith("%s is unreadable (" % path)
    with pytest.raises(ValueError):
        classifier.save(tmp_path, clf.weight, clf.bias, CATEGORIES[:3])


def test_clusters_csv_round_trip_and_bad_rows(tmp_path):
    page = tmp_path / "map.html"
    path = clusters_csv.clusters_csv_path(page)
    assert path == str(tmp_path / "map.clusters.csv")
    rows = clusters_csv.rows_for(['dogs, "good" ones · cats', "", "unused"], [3, 2, 0],
                                 np.array([[0.5, -1.25], [3.0, 4.0], [0, 0]]))
    clusters_csv.write_clusters_csv(path, rows)
    text = open(path, encoding="utf-8").read()
    assert text.splitlines()[0] == "cluster,label,size,x,y" and len(text.splitlines()) == 3  # no empty id
    assert clusters_csv.read_clusters_csv(path) == (rows, 0)
    with open(path, "a", encoding="utf-8") as f:
        f.write("x,bad,1,2,3\n1,dup,1,2,3\n7,short\n-1,none,4,0,0\n")
    assert clusters_csv.read_clusters_csv(path) == (rows, 4)


def test_coords_columns_give_cluster_and_date_taken_but_never_gps():
    table = infolog.InfoTable({"a" * 32: PhotoInfo("2014-06-01T12:03:04", FROM_ORIGINAL, "X", "Y", 1.5, 2.5),
                               "b" * 32: PhotoInfo("2020-01-01T00:00:00+01:00", FROM_MTIME)})
    cols = clusters_csv.coords_columns(["a" * 32, "b" * 32, "c" * 32], [0, -1, 2], table)
    assert cols == {"cluster": [0, -1, 2], "taken": ["2014-06-01T12:03:04", "2020-01-01T00:00:00+01:00", ""],
                    "taken_source": [FROM_ORIGINAL, FROM_MTIME, ""]}
    assert clusters_csv.coords_columns(["a" * 32], None, None) == {"cluster": [-1], "taken": [""],
                                                                   "taken_source": [""]}


# ---------------------------------------------------------------- through stage 3 (visualize.py)

KINDS = ("seashore", "golden retriever", "document", "bicycle")


def named_inputs(root, n, show_info=True):
    """Map inputs of ``n`` photos in 4 folders (one island each) whose feature folder holds a
    classifier reading folder k's centre as class ``KINDS[k]``, and an .info sidecar: photo i taken
    in 2010 + i % 3, except every 7th (no date) and every 11th (dated by its file time)."""
    from photomap_tools.synthetic import fake_md5, write_map_inputs

    made = write_map_inputs(root, n, folders="abcd", spread=0.2)
    k = min(n, 4)
    vectors = np.stack([np.load(os.path.join(made.features, fake_md5(i) + ".jpg.npy")) for i in range(k)])
    # Photo i of folder i % 4: its vector lies near its folder's centre, so rows 0..3 stand for them.
    weight = 3 * vectors / np.linalg.norm(vectors, axis=1, keepdims=True) ** 2
    classifier.save(made.features, weight, np.zeros(k), KINDS[:k])
    if show_info:
        with infolog.InfoWriter(made.thumbs) as w:
            for i in range(n):
                taken = "" if i % 7 == 0 else "%d-05-01T10:00:00" % (2010 + i % 3)
                source = "" if not taken else FROM_MTIME if i % 11 == 0 else FROM_ORIGINAL
                w.add(fake_md5(i), PhotoInfo(taken, source, "Canon", "Canon EOS 5D", -33.865, 151.21))
    return made


def run_stage3(run_main, made, out, *extra):
    from photomap.commands import visualize

    status, stdout, err = run_main(visualize.main, "--meta", made.meta, "--thumbs", made.thumbs, "--features",
                                   made.features, "-o", out, "--seed", 0, *extra)
    assert status == 0 and stdout == "", err
    return err


def read_rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_stage3_names_each_island_by_its_own_class_and_writes_both_csvs(tmp_path, run_main):
    made = named_inputs(tmp_path / "in", 120)
    out = tmp_path / "map.html"
    err = run_stage3(run_main, made, out)
    rows = read_rows(tmp_path / "map.coords.csv")
    assert list(rows[0]) == ["md5", "x", "y", "path", "cluster", "taken", "taken_source"]  # no GPS
    named = read_rows(tmp_path / "map.clusters.csv")
    assert sorted(int(r["cluster"]) for r in named) == [0, 1, 2, 3]
    for r in named:  # each island holds one folder, and is named by that folder's class
        folders_in = {row["path"].split("/")[2] for row in rows if row["cluster"] == r["cluster"]}
        assert len(folders_in) == 1 and r["label"].split(" · ")[0] == KINDS["abcd".index(folders_in.pop())]
        assert int(r["size"]) == sum(row["cluster"] == r["cluster"] for row in rows)
    by_md5 = {row["md5"]: row for row in rows}
    from photomap_tools.synthetic import fake_md5
    assert by_md5[fake_md5(7)]["taken"] == "" and by_md5[fake_md5(7)]["taken_source"] == ""
    assert by_md5[fake_md5(1)]["taken"] == "2011-05-01T10:00:00"
    assert (by_md5[fake_md5(22)]["taken"], by_md5[fake_md5(22)]["taken_source"]) == ("2011-05-01T10:00:00",
                                                                                     FROM_MTIME)
    assert "labels come from weights not checked against the published ones" in "\n".join(err)
    html = out.read_text(encoding="utf-8")
    assert "-33.865" not in html and "151.21" not in html  # GPS is private by default
    err = run_stage3(run_main, made, out, "--show-gps")
    rows = read_rows(tmp_path / "map.coords.csv")
    assert rows[1]["lat"] == "-33.865000" and rows[1]["lon"] == "151.210000"


def test_a_growing_map_keeps_its_cluster_ids_and_labels(tmp_path, run_main):
    """Issue 14: add 10 % photos; the islands that are still the same keep their ids and names."""
    out = tmp_path / "map.html"
    run_stage3(run_main, named_inputs(tmp_path / "before", 120), out)
    before = {r["md5"]: r["cluster"] for r in read_rows(tmp_path / "map.coords.csv")}
    names_before = {r["cluster"]: r["label"] for r in read_rows(tmp_path / "map.clusters.csv")}
    # Rename the ids on file, as an earlier run's numbering would be: the next run must keep them.
    renumber = {"0": "7", "1": "3", "2": "9", "3": "4", "-1": "-1"}
    rows = read_rows(tmp_path / "map.coords.csv")
    with open(tmp_path / "map.coords.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, list(rows[0]), lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow(dict(r, cluster=renumber[r["cluster"]]))
    err = run_stage3(run_main, named_inputs(tmp_path / "after", 132), out)
    assert "kept 120 photos in place, placed 12 new" in "\n".join(err)
    after = {r["md5"]: r["cluster"] for r in read_rows(tmp_path / "map.coords.csv")}
    moved = [m for m in before if before[m] != "-1" and after[m] != renumber[before[m]]]
    assert len(moved) <= 2, moved
    names_after = {r["cluster"]: r["label"] for r in read_rows(tmp_path / "map.clusters.csv")}
    assert names_after == {renumber[c]: label for c, label in names_before.items()}
    assert sum(after[m] != "-1" for m in after if m not in before) >= 10  # the new photos joined islands


@pytest.mark.parametrize("n", [1, 2, 3])
def test_one_to_three_photos_give_no_clusters_and_no_error(tmp_path, run_main, n):
    made = named_inputs(tmp_path / "in", n)
    err = run_stage3(run_main, made, tmp_path / "map.html")
    assert [r["cluster"] for r in read_rows(tmp_path / "map.coords.csv")] == ["-1"] * n
    assert read_rows(tmp_path / "map.clusters.csv") == []
    assert not [line for line in err if "error" in line or "Traceback" in line]


def test_without_classifier_the_clusters_are_unnamed_and_one_line_says_why(tmp_path, run_main):
    made = named_inputs(tmp_path / "in", 120, show_info=False)
    os.remove(classifier.path_in(made.features))
    err = run_stage3(run_main, made, tmp_path / "map.html")
    why = [line for line in err if "clusters unnamed" in line]
    assert why == ["visualize: clusters unnamed: no classifier.npz in %s (made by an older stage 2 or a model "
                   "without one; run embeddings.py again on that folder to add it)" % made.features]
    assert not [line for line in err if "weights" in line]  # no labels, nothing to warn about
    named = read_rows(tmp_path / "map.clusters.csv")
    assert len(named) == 4 and {r["label"] for r in named} == {""}
    assert [line for line in err if "no photo info" in line and "--backfill-info" in line]
    assert {r["taken"] for r in read_rows(tmp_path / "map.coords.csv")} == {""}


@pytest.mark.parametrize("published, said", [(True, None), (False, "not the published ones")])
def test_weights_that_are_not_published_ones_are_said_in_one_line(tmp_path, published, said):
    from photomap import facts, features

    sidecar = dict(features.read_sidecar(named_inputs(tmp_path, 1, show_info=False).features),
                   weights="sha256:00ff", weights_published=published)
    features.write_sidecar(tmp_path / "features", sidecar)
    note = facts.weights_note(tmp_path / "features")
    assert note is None if said is None else said in note and "sha256:00ff" in note


def test_colour_schemes_cluster_folder_year_and_the_starting_one():
    from types import SimpleNamespace

    from photomap import colours

    photos = SimpleNamespace(first_paths=["/p/a/1.jpg", "/p/b/2.jpg", "/p/a/3.jpg", "/p/c/4.jpg"],
                             paths=[["/p/a/1.jpg"], ["/p/b/2.jpg"], ["/p/a/3.jpg"], ["/p/c/4.jpg"]])
    cluster = colours.by_cluster([3, -1, 3, 0], [None, None, None, "dogs"])
    assert cluster.groups == ["cluster 0", "dogs", "unclustered"] or cluster.groups == ["dogs", "cluster 0",
                                                                                        "unclustered"]
    assert [cluster.groups[c] for c in cluster.codes] == ["dogs", "unclustered", "dogs", "cluster 0"]
    assert cluster.colours[-1] == colours.GREY and cluster.sizes[cluster.groups.index("dogs")] == 2
    year = colours.by_year([2014, None, 2010, 2014], mtime_only=1)
    assert year.groups == ["2010", "2014", "unknown"] and year.sizes == [1, 2, 1]
    assert year.colours[-1] == colours.GREY and len(set(year.colours)) == 3 and "1 dated by file" in year.title
    folder = colours.by_folder(photos)
    assert folder.groups == ["a", "b", "c"] and folder.codes.tolist() == [0, 1, 0, 2]
    options = [cluster, folder, year, colours.one_colour(4)]
    assert colours.starting("auto", options) is cluster  # 2 islands
    one_island = colours.by_cluster([0, -1, 0, 0])
    assert colours.starting("auto", [one_island, folder, year, options[3]]) is folder
    assert colours.starting("year", options) is year
