"""A growing backup keeps its map: the coords CSV read back whatever made it, new photos placed among
their look-alikes with every old photo exactly where it was, removals that move nobody, and --refit
aligned to the previous map by Procrustes."""
import numpy as np
import pytest

from photomap import placement, projection, stable


def md5(i: int) -> str:
    return "%032x" % (0xF00D00 + i)


def write_text(path, text, newline=""):
    with open(path, "w", encoding="utf-8", newline=newline) as f:
        f.write(text)
    return path


# --- reading the previous map ------------------------------------------------------------------

def test_what_the_writer_writes_reads_back_exactly(tmp_path):
    xy = np.random.default_rng(0).normal(size=(5, 2)) * 1e3
    xy[0] = (0.1 + 0.2, -1e-300)  # values whose shortest decimal form is long or tiny
    path = tmp_path / "map.coords.csv"
    path.write_text(projection.coords_csv_text([md5(i) for i in range(5)], xy,
                                               ['a/"quoted", with, commas.jpg'] + ["b.jpg"] * 4), encoding="utf-8")
    back = projection.read_previous(path)
    assert back.problem == "" and back.bad_rows == 0
    assert [back.xy[md5(i)] for i in range(5)] == [tuple(p) for p in xy.tolist()]


def test_a_later_version_with_more_columns_in_another_order_is_read_by_name(tmp_path):
    path = write_text(tmp_path / "m.csv", "Cluster,MD5,taken,Y,X,path\n"
                      "3,%s,2024-01-01,2.5,-1.5,a.jpg\n7,%s,,0,4e2,\"b, c.jpg\"\n" % (md5(1), md5(2).upper()))
    back = projection.read_previous(path)
    assert back.xy == {md5(1): (-1.5, 2.5), md5(2): (400.0, 0.0)} and back.bad_rows == 0
    assert back.clusters == {md5(1): 3, md5(2): 7}  # the previous run's cluster ids, kept by the next


def test_cluster_ids_are_read_where_there_are_some(tmp_path):
    text = projection.coords_csv_text([md5(1), md5(2), md5(3)], [(0, 0), (1, 1), (2, 2)], ["a", "b", "c"],
                                      {"cluster": [4, -1, "x"], "taken": ["", "", ""]})
    assert text.splitlines()[0] == "md5,x,y,path,cluster,taken"
    back = projection.read_previous(write_text(tmp_path / "m.csv", text))
    assert back.clusters == {md5(1): 4, md5(2): -1} and len(back.xy) == 3  # a bad id loses the id only
    old = projection.read_previous(write_text(tmp_path / "old.csv", "md5,x,y,path\n%s,1,2,a.jpg\n" % md5(1)))
    assert old.xy == {md5(1): (1.0, 2.0)} and old.clusters == {}  # 4-column CSVs of earlier versions


def test_a_spreadsheet_export_is_read(tmp_path):
    # Byte-order mark, semicolons, decimal commas, CRLF line ends.
    path = write_text(tmp_path / "m.csv", "\ufeffmd5;x;y\r\n%s;1,25;-3,5\r\n%s; 2 ;0,0\r\n" % (md5(1), md5(2)))
    assert projection.read_previous(path).xy == {md5(1): (1.25, -3.5), md5(2): (2.0, 0.0)}


def test_a_file_without_header_is_read_as_md5_x_y(tmp_path):
    path = write_text(tmp_path / "m.csv", "%s,1,2\n%s,3,4,extra\n" % (md5(1), md5(2)))
    assert projection.read_previous(path).xy == {md5(1): (1.0, 2.0), md5(2): (3.0, 4.0)}


def test_bad_rows_are_counted_and_the_rest_kept(tmp_path):
    rows = ["md5,x,y,path",
            "%s,1.0,2.0,ok.jpg" % md5(1),
            "not-an-md5,1.0,2.0,x.jpg",
            "%s,one,2.0,x.jpg" % md5(2),            # not a number
            "%s,nan,2.0,x.jpg" % md5(3),            # not finite
            "%s,inf,2.0,x.jpg" % md5(4),
            "%s,1e300,2.0,x.jpg" % md5(8),          # finite, but its square is not
            "%s,1.0" % md5(5),                      # a column short
            "%s,9.0,9.0,again.jpg" % md5(1),        # the same photo twice: the first row wins
            '%s,3.0,4.0,"an open quote' % md5(6),   # a hand edit's stray quote costs its own row only
            "%s,3.0,\r4.0,x.jpg" % md5(9),          # a stray carriage return: the csv module refuses it
            "",
            "%s,5.0,6.0,fine.jpg" % md5(7)]
    back = projection.read_previous(write_text(tmp_path / "m.csv", "\n".join(rows) + "\n"))
    assert back.xy == {md5(1): (1.0, 2.0), md5(6): (3.0, 4.0), md5(7): (5.0, 6.0)}
    assert back.bad_rows == 8 and back.problem == ""


def test_a_file_cut_inside_its_last_row_drops_that_row(tmp_path):
    full = "md5,x,y,path\n%s,1.0,2.0,a.jpg\n%s,3.0,4.123456789,b.jpg\n" % (md5(1), md5(2))
    cut = full[:full.index("4.123") + 3]  # the kill left "4.1": a wrong number, not a bad one
    back = projection.read_previous(write_text(tmp_path / "m.csv", cut))
    assert back.xy == {md5(1): (1.0, 2.0)} and back.bad_rows == 1
    # A hand-written file whose last line merely lacks its newline loses nothing.
    back = projection.read_previous(write_text(tmp_path / "n.csv", "md5,x,y\n%s,1,2\n%s,3,4" % (md5(1), md5(2))))
    assert back.xy == {md5(1): (1.0, 2.0), md5(2): (3.0, 4.0)}


@pytest.mark.parametrize("content, problem", [
    (b"", "it is empty"),
    (b"\n\n", "it is empty"),
    (b"name,lat,lon\nfoo,1,2\n", "it has no md5, x and y columns"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", "it has no md5, x and y columns"),
])
def test_an_unusable_file_says_why(tmp_path, content, problem):
    path = tmp_path / "m.csv"
    path.write_bytes(content)
    assert projection.read_previous(path).problem == problem
    assert projection.read_previous(tmp_path / "missing.csv") is None


# --- placing new photos ------------------------------------------------------------------------

def clustered(n_per, centres, rng, spread=0.25):
    """Features: ``n_per`` noisy copies around each of ``centres``; labels say which."""
    x = np.vstack([c + spread * rng.normal(size=(n_per, centres.shape[1])) for c in centres])
    return x.astype(np.float32), np.repeat(np.arange(len(centres)), n_per)


def test_new_photos_land_among_their_look_alikes_and_old_ones_do_not_move():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(6, 32)) * 2
    x, label = clustered(60, centres, rng)
    # The old map: each cluster a blob at its own known place.
    places = np.array([[0, 0], [10, 0], [0, 10], [10, 10], [20, 0], [20, 10]], dtype=float)
    fixed = rng.random(len(x)) > 0.15
    old = places[label] + rng.normal(size=(len(x), 2))
    start = np.where(fixed[:, None], old, np.nan)
    out = placement.place(x, start, fixed, seed=1)
    np.testing.assert_array_equal(out[fixed], old[fixed])  # bit for bit
    assert np.isfinite(out).all()
    new = np.flatnonzero(~fixed)
    nearest_blob = np.argmin(((out[new, None, :] - places[None]) ** 2).sum(-1), axis=1)
    assert np.mean(nearest_blob == label[new]) >= 0.95
    # Nobody sits exactly on anybody else (a hidden photo could not be hovered).
    assert len({tuple(p) for p in out.round(9)}) == len(out)


def test_a_group_the_old_map_never_had_stays_together_near_its_closest_kind():
    rng = np.random.default_rng(2)
    centres = rng.normal(size=(5, 32)) * 2
    centres[4] = centres[0] + 0.9 * rng.normal(size=32)  # the new trip resembles kind 0 most
    x, label = clustered(50, centres, rng, spread=0.2)
    places = np.array([[0, 0], [15, 0], [0, 15], [15, 15], [np.nan, np.nan]])
    fixed = label < 4
    old = places[label] + rng.normal(size=(len(x), 2))
    out = placement.place(x, np.where(fixed[:, None], old, 0.0), fixed, seed=3)
    trip = np.flatnonzero(label == 4)
    # Each of the trip's photos has mostly trip photos as its nearest map neighbours...
    d = ((out[trip, None, :] - out[None]) ** 2).sum(-1)
    d[np.arange(len(trip)), trip] = np.inf
    near = np.argsort(d, axis=1)[:, :5]
    assert np.mean(label[near] == 4) >= 0.8
    # ...and the group sits by the kind it resembles, and is spread out, not piled on one point.
    centre = out[trip].mean(axis=0)
    assert np.argmin(((places[:4] - centre) ** 2).sum(-1)) == 0
    assert np.median(np.linalg.norm(out[trip] - centre, axis=1)) > 0.05


def test_placement_is_reproducible_with_a_seed():
    rng = np.random.default_rng(4)
    x, label = clustered(40, rng.normal(size=(3, 16)) * 2, rng)
    fixed = np.arange(len(x)) % 4 != 0
    old = np.where(fixed[:, None], label[:, None] * 10.0 + rng.normal(size=(len(x), 2)), 0.0)
    a = placement.place(x, old, fixed, seed=7)
    np.testing.assert_array_equal(a, placement.place(x, old, fixed, seed=7))
    assert not np.array_equal(a, placement.place(x, old, fixed, seed=8))


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "manhattan"])
def test_exact_neighbours_match_scikit_learn(metric):
    from sklearn.neighbors import NearestNeighbors

    rng = np.random.default_rng(5)
    x = rng.normal(size=(500, 24)).astype(np.float32)
    fixed = rng.random(500) > 0.2
    rows = np.flatnonzero(~fixed)
    idx, dist, old_idx, old_dist = placement._neighbours(x, rows, fixed, 15, 15, metric)
    d, i = NearestNeighbors(n_neighbors=15, metric=metric).fit(x).kneighbors(x[rows])
    assert (idx == i).all() and (idx[:, 0] == rows).all()
    np.testing.assert_allclose(dist, d, atol=1e-5)
    old = np.flatnonzero(fixed)
    d, i = NearestNeighbors(n_neighbors=15, metric=metric).fit(x[old]).kneighbors(x[rows])
    assert (old_idx == old[i]).all()
    np.testing.assert_allclose(old_dist, d, atol=1e-5)


# --- what a run does with its previous map ----------------------------------------------------

class Embed:
    """A stand-in for the fresh layout that counts its calls and returns ``result(features)``."""

    def __init__(self, result=None):
        self.calls = 0
        self.result = result

    def __call__(self, features):
        self.calls += 1
        if self.result is not None:
            return self.result(features)
        return np.random.default_rng(0).normal(size=(len(features), 2))


def previous_map(md5s, xy, bad_rows=0):
    return projection.PreviousMap(xy={m: tuple(p) for m, p in zip(md5s, xy)}, bad_rows=bad_rows)


def dataset(n, seed=0):
    rng = np.random.default_rng(seed)
    x, label = clustered(n // 4, rng.normal(size=(4, 16)) * 2, rng)
    old = label[:, None] * np.array([10.0, 0.0]) + rng.normal(size=(len(x), 2))
    return [md5(i) for i in range(len(x))], x, old


def test_removed_photos_disappear_and_nobody_moves(monkeypatch):
    ids, x, old = dataset(80)
    monkeypatch.setattr(placement, "place", lambda *a, **k: pytest.fail("nothing is new: nothing to place"))
    keep = np.arange(80) % 5 != 0
    embed = Embed()
    out = stable.update([m for m, k in zip(ids, keep) if k], x[keep], previous_map(ids, old), embed, "m.csv")
    np.testing.assert_array_equal(out.coords, old[keep])
    assert embed.calls == 0 and not out.laid_out
    assert out.lines == ["kept 64 photos in place, placed 0 new, removed 16"]


def test_added_photos_are_placed_and_said_in_one_line():
    ids, x, old = dataset(200)
    old_rows = np.arange(200) >= 20
    embed = Embed()
    out = stable.update(ids, x, previous_map([m for m, o in zip(ids, old_rows) if o], old[old_rows]),
                        embed, "m.csv", seed=0)
    np.testing.assert_array_equal(out.coords[old_rows], old[old_rows])
    assert embed.calls == 0 and out.laid_out
    assert out.lines == ["kept 180 photos in place, placed 20 new, removed 0"]


def test_rows_that_could_not_be_read_are_placed_as_new():
    ids, x, old = dataset(40)
    prev = previous_map(ids[3:], old[3:], bad_rows=3)
    out = stable.update(ids, x, prev, Embed(), "m.coords.csv", seed=0)
    np.testing.assert_array_equal(out.coords[3:], old[3:])
    assert out.lines == ["kept 37 photos in place, placed 3 new, removed 0; ignored 3 "
                         "unreadable rows of m.coords.csv (their photos placed as new)"]


def test_many_new_photos_suggest_a_refit():
    ids, x, old = dataset(40)
    out = stable.update(ids, x, previous_map(ids[:20], old[:20]), Embed(), "m.csv", seed=0)
    assert out.lines[0] == "kept 20 photos in place, placed 20 new, removed 0"
    assert out.lines[1].startswith("50% of the map is new: --refit lays every photo out afresh")


def test_a_map_of_other_photos_or_an_unusable_file_means_a_fresh_layout():
    ids, x, old = dataset(40)
    embed = Embed()
    foreign = previous_map(["%032x" % (0xBEEF + i) for i in range(40)], old)
    out = stable.update(ids, x, foreign, embed, "m.csv")
    assert embed.calls == 1 and out.lines == [
        "the previous map m.csv shares no photo with these (made from another feature "
        "folder?): laid out 40 photos afresh"]
    out = stable.update(ids, x, previous_map(ids[:2], old[:2]), embed, "m.csv")
    assert embed.calls == 2 and "shares only 2 photos with these" in out.lines[0]
    out = stable.update(ids, x, projection.PreviousMap(problem="it is empty"), embed, "m.csv")
    assert embed.calls == 3 and out.lines == [
        "could not use the previous map m.csv (it is empty): laid out 40 photos afresh"]
    out = stable.update(ids, x, None, embed, "m.csv")
    assert embed.calls == 4 and out.lines == []  # the first map of a backup: nothing to say
    out = stable.update(ids, x, None, embed, "m.csv", refit=True)
    assert embed.calls == 5 and out.lines == [
        "refit: no previous map m.csv to align to: laid out 40 photos afresh"]


@pytest.mark.parametrize("reflect", [False, True])
def test_refit_is_turned_back_onto_the_previous_map(reflect):
    ids, x, old = dataset(100)
    angle = 1.1
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    if reflect:
        rot = rot @ np.diag([1.0, -1.0])
    fresh = 0.37 * old @ rot + np.array([5.0, -2.0])  # the same picture, turned, scaled and moved
    embed = Embed(lambda f: fresh)
    # The previous map knew the last 90 photos; the first 10 are new.
    out = stable.update(ids, x, previous_map(ids[10:], old[10:]), embed, "m.csv", refit=True)
    assert embed.calls == 1
    np.testing.assert_allclose(out.coords, old, atol=1e-9)  # new photos included
    assert out.lines == ["refit 100 photos and aligned them to the previous map on 90 shared "
                         "photos (rotation, reflection, scale): median move 0.0% of the map's extent, "
                         "Procrustes residual 0.00; 10 new, removed 0"]
    # A refit that differs: the figures say by how much.
    noisy = fresh + np.random.default_rng(1).normal(size=fresh.shape) * 0.37 * 2.0
    out = stable.update(ids, x, previous_map(ids[10:], old[10:]), Embed(lambda f: noisy), "m.csv",
                        refit=True)
    moved = float(out.lines[0].split("median move ")[1].split("%")[0])
    residual = float(out.lines[0].split("residual ")[1].split(";")[0])
    extent = np.ptp(old[10:], axis=0).max()
    assert 100 * 1.0 / extent < moved < 100 * 4.0 / extent  # noise of 2 map units, after alignment
    assert 0.05 < residual < 0.5


def test_procrustes_recovers_a_known_similarity():
    rng = np.random.default_rng(3)
    src = rng.normal(size=(50, 2))
    rot = np.array([[0.0, 1.0], [1.0, 0.0]])  # a reflection
    dst = 2.5 * src @ rot + np.array([1.0, 2.0])
    scale, rotation, shift = stable.procrustes(src, dst)
    assert scale == pytest.approx(2.5)
    np.testing.assert_allclose(rotation, rot, atol=1e-12)
    np.testing.assert_allclose(shift, [1.0, 2.0], atol=1e-12)
    aligned, moved, residual = stable.align(src, np.ones(50, bool), dst)
    np.testing.assert_allclose(aligned, dst, atol=1e-12)
    assert moved == pytest.approx(0.0, abs=1e-12) and residual == pytest.approx(0.0, abs=1e-12)
