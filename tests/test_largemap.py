"""Stage 3's large-map layout (photomap/largemap.py): when it is chosen, what it keeps, what it says."""
import numpy as np
import pytest

from photomap import largemap, projection


def clusters(n, dim, k=3, seed=1):
    """``n`` float32 rows in ``k`` tight clusters of ``dim`` values, cluster ``i % k`` for row ``i``."""
    rng = np.random.default_rng(seed)
    centres = np.abs(rng.normal(size=(k, dim))) * 3
    x = centres[np.arange(n) % k] + 0.1 * rng.normal(size=(n, dim))
    return x.astype(np.float32)


def test_the_large_path_starts_past_the_switch_point():
    # The switch is on the number of values, so wide vectors switch at fewer photos.
    assert largemap.plan(65536, 512, "cosine") is None
    big = largemap.plan(65537, 512, "cosine")
    assert big == largemap.Plan(dims=64, n_epochs=200, large_values=2 ** 25)
    assert largemap.plan(65537, 1024, "cosine") is not None and largemap.plan(100000, 256, "cosine") is None
    # A lower switch point (as the tests below use) moves it; sizes far past it get fewer epochs.
    assert largemap.plan(100, 128, "cosine", large_values=12800) is None
    assert largemap.plan(101, 128, "cosine", large_values=12800).dims == 64
    epochs = [largemap.plan(n, 512, "cosine").n_epochs for n in (100000, 300000, 1000000, 10 ** 7)]
    assert epochs == sorted(epochs, reverse=True) and epochs[0] < 200 and epochs[-1] == 100
    # PCA only where it keeps the metric and has something to cut.
    assert largemap.plan(10 ** 6, 512, "euclidean").dims == 64
    assert largemap.plan(10 ** 6, 512, "manhattan").dims is None
    assert largemap.plan(10 ** 6, 48, "cosine").dims is None


def test_pca_keeps_float32_and_the_distances_of_unit_rows():
    # Rows in a 10-dimensional subspace of 128: 16 axes keep every distance between the unit rows.
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(3000, 10)) @ rng.normal(size=(10, 128))).astype(np.float32)
    reduced, kept = largemap.reduce(x, 16, unit=True)
    assert reduced.dtype == np.float32 and reduced.shape == (3000, 16)
    assert kept == pytest.approx(1.0, abs=1e-5)
    unit = projection.unit_rows(x)
    pairs = rng.integers(0, 3000, size=(500, 2))
    want = np.linalg.norm(unit[pairs[:, 0]] - unit[pairs[:, 1]], axis=1)
    got = np.linalg.norm(reduced[pairs[:, 0]] - reduced[pairs[:, 1]], axis=1)
    np.testing.assert_allclose(got, want, atol=1e-4)
    # Cut to fewer axes than the data has: part of the variance, said as such.
    assert 0.2 < largemap.reduce(x, 3, unit=True)[1] < 0.99


def test_a_large_layout_is_repeatable_for_a_seed_and_keeps_clusters_apart(capfd):
    x = clusters(900, 128)
    lines = []
    a = projection.project(x, seed=5, say=lines.append, large_values=128 * 500)
    out, err = capfd.readouterr()
    b = projection.project(x, seed=5, large_values=128 * 500)
    assert a.shape == (900, 2) and a.dtype == np.float64
    np.testing.assert_array_equal(a, b)
    means = np.array([a[k::3].mean(axis=0) for k in range(3)])
    nearest = np.argmin(((a[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
    assert nearest.tolist() == [i % 3 for i in range(900)]
    # Each step said through say; the epochs' bar on stderr; nothing on stdout.
    assert any("128 values each cut to 64 by PCA" in line for line in lines)
    assert any("nearest neighbours found" in line for line in lines)
    epochs = largemap.plan(900, 128, "cosine", large_values=128 * 500).n_epochs
    assert any("900 photos laid out" in line and "%d epochs" % epochs in line for line in lines)
    assert out == "" and "layout epochs: 100%" in err
    assert capfd.readouterr() == ("", "")  # say=None: silent, no bar


@pytest.mark.filterwarnings("ignore:n_jobs value")
def test_a_small_map_is_laid_out_as_before():
    # Below the switch point project() is umap-learn's own call, unchanged: the same coordinates.
    import umap

    x = clusters(120, 32)
    want = umap.UMAP(n_components=2, n_neighbors=15, min_dist=0.1, metric="cosine", random_state=2).fit_transform(x)
    np.testing.assert_array_equal(projection.project(x, seed=2), want.astype(np.float64))
