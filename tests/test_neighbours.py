"""Nearest neighbours in feature space: exact equals brute force, NN-descent's recall, the cache, the CSV."""
import os

import numpy as np
import pytest

from photomap import neighbours, similar
from photomap_tools.synthetic import cnn_features as synthetic, fake_md5


def brute_force(x, k):
    """Reference: the full cosine matrix in float64, sorted by similarity then row number, self left out."""
    unit = neighbours.unit_rows(x).astype(np.float64)
    s = unit @ unit.T
    np.fill_diagonal(s, -np.inf)
    order = np.array([np.lexsort((np.arange(len(x)), -row)) for row in s])[:, :min(k, len(x) - 1)]
    return order, np.take_along_axis(s, order, 1), s


def assert_same_neighbours(idx, sim, want_idx, want_sim, s, rows):
    """Each rank holds a photo exactly as similar as brute force's at that rank (photos whose cosines
    differ only in float32 rounding may swap), and the listed similarity is that cosine."""
    got = np.take_along_axis(s[rows], idx, 1)
    assert np.allclose(got, want_sim, atol=1e-6, rtol=0)
    assert np.allclose(sim, want_sim, atol=1e-5, rtol=0)
    assert (idx != rows[:, None]).all() and all(len(set(r)) == len(r) for r in idx.tolist())


@pytest.mark.parametrize("n", [2, 3, 13, 14, 257])
def test_exact_equals_brute_force_with_ties_and_any_block_size(n):
    rng = np.random.default_rng(n)
    x = rng.normal(size=(n, 24)).astype(np.float32)
    if n > 5:
        x[4] = x[2]  # identical features (two md5s, same thumbnail): an exact tie everywhere
        x[5] = x[2]
    want_idx, want_sim, s = brute_force(x, 12)
    unit = neighbours.unit_rows(x)
    everyone = np.arange(n)
    for block in (8, 4 * 7 * 7 * 2, 1 << 26):  # tiles of 1 row, of 7 rows (not dividing n), one tile
        idx, sim = neighbours.exact(unit, 12, block_bytes=block)
        assert_same_neighbours(idx, sim, want_idx, want_sim, s, everyone)
        rows = np.arange(0, n, 3)
        idx_r, sim_r = neighbours.exact(unit, 12, rows=rows, block_bytes=block)
        assert_same_neighbours(idx_r, sim_r, want_idx[rows], want_sim[rows], s, rows)
        if n > 5:  # tied photos come by row number, and the same whatever the blocks
            for row in idx.tolist() + idx_r.tolist():
                tied = [j for j in row if j in (2, 4, 5)]
                assert tied == sorted(tied)
    assert (neighbours.exact(unit, 12)[0] == neighbours.exact(unit, 12)[0]).all()


def test_compute_pads_small_maps_and_survives_zero_and_nan_vectors():
    x = np.array([[1, 0, 0], [0.9, 0.1, 0], [0, 0, 0], [np.nan, 1, 0]], dtype=np.float32)
    nb = neighbours.compute(x)
    assert nb.method == "exact" and nb.index.shape == (4, 12) and nb.k == 12
    assert nb.of(0)[0][0] == 1 and len(nb.of(0)) == 3
    assert (nb.index[:, 3:] == -1).all() and np.isnan(nb.similarity[:, 3:]).all()
    assert not np.isnan(nb.similarity[:, :3]).any(), "a zero or NaN vector is similarity 0, never NaN"
    assert neighbours.compute(x[:1]).of(0) == []


def test_approximate_recall_at_the_crossover_size():
    # NN-descent takes over above EXACT_LIMIT photos; its recall there, on CNN-like features, is
    # checked against brute force on the same 1000-photo sample a map run checks (and prints).
    n = neighbours.EXACT_LIMIT + 1
    feats = synthetic(n)
    nb = neighbours.compute(feats, method="auto")
    assert nb.method == "approximate"
    assert nb.recall >= 0.95
    x = neighbours.unit_rows(feats)
    rows = np.random.default_rng(7).choice(n, 200, replace=False)
    want, want_sim = neighbours.exact(x, 12, rows=rows)
    got = np.einsum("rd,rkd->rk", x[rows], x[nb.index[rows]])
    assert np.allclose(got, nb.similarity[rows], atol=1e-5), "listed similarities are exact cosines"
    independent = np.mean(np.minimum(12, (got >= want_sim[:, -1:] - 1e-6).sum(1)) / 12)
    assert abs(independent - nb.recall) < 0.03, "the sampled recall estimate agrees with another sample"


def test_sample_recall_counts_misses():
    x = neighbours.unit_rows(synthetic(3000, dim=64))
    idx, _ = neighbours.exact(x, 12)
    assert neighbours.sample_recall(x, idx) == 1.0
    damaged = idx.copy()
    damaged[:, 9:] = (damaged[:, 9:] + 1500) % 3000  # replace the last 3 of 12 with far photos
    assert neighbours.sample_recall(x, damaged) == pytest.approx(0.75, abs=0.02)


def test_cache_is_reused_and_a_damaged_or_foreign_one_is_replaced(tmp_path):
    feats = synthetic(300, dim=32)
    md5s = ["%032x" % i for i in range(300)]
    page = tmp_path / "map.html"
    cache, _ = neighbours.file_paths(page)
    said = []
    first, reused = neighbours.load_or_compute(md5s, feats, page, say=said.append)
    assert not reused and os.path.exists(cache) and said == []
    again, reused = neighbours.load_or_compute(md5s, feats, page, say=said.append)
    assert reused and again.index.tolist() == first.index.tolist()
    assert said == ["reused the neighbours in %s" % cache]

    damaged = [b"", b"not a zip at all", open(cache, "rb").read()[:500]]
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, index=np.zeros((300, 12), np.int32), similarity=np.zeros((300, 12), np.float32))
    damaged.append(foreign.read_bytes())
    np.savez(foreign, arr=np.array([{"a": 1}], dtype=object))  # a pickled object: never loaded
    damaged.append(foreign.read_bytes())
    for content in damaged:
        cache_path = str(cache)
        with open(cache_path, "wb") as f:
            f.write(content)
        said = []
        nb, reused = neighbours.load_or_compute(md5s, feats, page, say=said.append)
        assert not reused and nb.index.tolist() == first.index.tolist()
        assert len(said) == 1 and said[0].startswith("ignored %s (" % cache_path), said
        assert said[0].endswith("recomputing the neighbours")
        assert neighbours.load_or_compute(md5s, feats, page)[1], "the replaced cache is good again"

    feats2 = feats.copy()
    feats2[7] += 1.0
    said = []
    _, reused = neighbours.load_or_compute(md5s, feats2, page, say=said.append)
    assert not reused and "made from other photos" in said[0]


def test_csv_rows_round_trip_with_ranks_from_one(tmp_path):
    feats = synthetic(5, dim=16)
    md5s = ["%032x" % (i * 7) for i in range(5)]
    nb = neighbours.compute(feats)
    path = tmp_path / "map.neighbours.csv"
    neighbours.write_csv(path, md5s, nb)
    lines = path.read_text().splitlines()
    assert lines[0] == "md5,rank,neighbour_md5,similarity" and len(lines) == 1 + 5 * 4
    assert lines[1].startswith(md5s[0] + ",1,")
    back = neighbours.read_csv(path)
    want_idx, want_sim, _ = brute_force(feats, 12)
    for i, md5 in enumerate(md5s):
        assert [m for m, _ in back[md5]] == [md5s[j] for j in want_idx[i]]
        assert np.allclose([s for _, s in back[md5]], want_sim[i], atol=2e-6)


def test_neighbours_csv_is_written_up_to_the_limit_and_on_request(tmp_path, monkeypatch):
    feats = synthetic(40, dim=16)
    md5s = ["%032x" % i for i in range(40)]
    paths = [["/photos/%d.jpg" % i] for i in range(40)]
    page = tmp_path / "map.html"
    _, csv_path = neighbours.file_paths(page)
    similar.build(md5s, feats, paths, page)
    assert len(neighbours.read_csv(csv_path)) == 40
    monkeypatch.setattr(neighbours, "CSV_LIMIT", 39)
    said = []
    similar.build(md5s, feats, paths, page, say=said.append)
    assert not os.path.exists(csv_path), "a CSV of an earlier run is not left behind"
    assert "%s not written for 40 photos (480 rows): --neighbours-csv always writes it" % csv_path in said
    similar.build(md5s, feats, paths, page, neighbours_csv="always")
    assert len(neighbours.read_csv(csv_path)) == 40


def test_the_page_details_hold_each_photos_neighbours_group_and_gone_originals(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 16)).astype(np.float32)
    x[1] = x[0] + 0.001 * rng.normal(size=16)  # a near-duplicate of photo 0
    folder = tmp_path / "photos"
    folder.mkdir()
    paths = [[str(folder / ("%d.jpg" % i))] for i in range(30)]
    for (p,) in paths[1:]:
        open(p, "wb").close()  # photo 0's original is gone
    sim = similar.build([fake_md5(i) for i in range(30)], x, paths, tmp_path / "map.html", method="exact")
    cols = similar.detail_columns(sim, paths)
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    s = u @ u.T
    np.fill_diagonal(s, -np.inf)
    want = np.argsort(-s, axis=1, kind="stable")[:, :12]
    assert cols["neighbours"] == want.tolist()
    assert np.allclose(cols["neighbour_similarity"], np.take_along_axis(s, want, 1), atol=1e-3)
    assert cols["duplicates"][0] == [1] and cols["duplicates"][1] == [0]
    assert cols["dup_group"][0] == cols["dup_group"][1] == min(fake_md5(0), fake_md5(1))
    assert sum(d is not None for d in cols["duplicates"]) == 2
    assert cols["path_status"][0] == ["missing"] and cols["path_status"][1:] == [None] * 29
