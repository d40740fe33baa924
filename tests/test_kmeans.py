"""1-D k-means: uses its whole codebook, no worse than scikit-learn's Lloyd from the same start.

The data sets imitate what the compressor clusters: the surviving weights of
a magnitude-pruned layer (two lobes with a gap around zero, often heavy
tailed), and plain dense distributions.
"""

from __future__ import annotations

import numpy as np
import pytest

from compressor.kmeans import INITS, assign, init_centroids, kmeans_1d, sse


def pruned(rng: np.random.Generator, n: int, density: float, tails: str) -> np.ndarray:
    """Survivors of keeping the largest ``density`` of ``n / density`` dense weights."""
    dense = {"normal": rng.normal, "laplace": rng.laplace,
             "t3": lambda size: rng.standard_t(3, size=size)}[tails](size=int(n / density))
    w = (0.02 * dense).astype(np.float32)
    thr = np.quantile(np.abs(w), 1 - density)
    return w[np.abs(w) >= thr]


DATASETS = {
    "pruned-normal": lambda rng: pruned(rng, 20_000, 0.1, "normal"),
    "pruned-laplace": lambda rng: pruned(rng, 20_000, 0.3, "laplace"),
    "pruned-t3": lambda rng: pruned(rng, 20_000, 0.05, "t3"),
    "dense-t3": lambda rng: (0.02 * rng.standard_t(3, size=20_000)).astype(np.float32),
    "uniform": lambda rng: rng.uniform(-1, 1, 20_000),
    "clumped": lambda rng: np.concatenate([rng.normal(m, 0.01, int(n)) for m, n in
                                           zip(rng.normal(size=40), rng.integers(5, 500, 40), strict=True)]),
}


@pytest.mark.parametrize("name", sorted(DATASETS))
@pytest.mark.parametrize("k", [7, 31, 255])
@pytest.mark.parametrize("seed", [0, 1])
def test_sse_no_worse_than_sklearn_from_the_same_init(name, k, seed):
    from sklearn.cluster import KMeans

    x = DATASETS[name](np.random.default_rng(seed))
    c, labels = kmeans_1d(x, k, "linear", seed=seed)
    init = init_centroids(np.asarray(x, dtype=np.float64), k, "linear", np.random.default_rng(seed))
    km = KMeans(k, init=init.reshape(-1, 1), n_init=1, algorithm="lloyd", random_state=seed)
    km.fit(np.asarray(x, dtype=np.float64).reshape(-1, 1))
    ours = sse(x, c, labels)
    theirs = float(((np.asarray(x, np.float64) - km.cluster_centers_[km.labels_, 0]) ** 2).sum())
    assert ours <= theirs * (1 + 1e-9), (ours, theirs)
    assert np.unique(labels).size == k  # every codebook entry in use


@pytest.mark.parametrize("init", INITS)
@pytest.mark.parametrize("k", [2, 31, 255])
def test_no_empty_cluster_and_labels_are_nearest(init, k):
    rng = np.random.default_rng(k)
    x = pruned(rng, 30_000, 0.04, "t3")
    c, labels = kmeans_1d(x, k, init, seed=3)
    assert c.shape == (k,) and np.all(np.diff(c) > 0)
    assert np.bincount(labels, minlength=k).min() > 0
    # exactly the nearest centroid (ties would go to the lower one)
    d = np.abs(x.astype(np.float64)[:, None] - c[None, :])
    np.testing.assert_array_equal(labels, np.argmin(d, axis=1))


def test_fixed_point_centroids_are_their_members_means():
    x = np.random.default_rng(5).laplace(size=3000)
    c, labels = kmeans_1d(x, 16)
    for j in range(16):
        np.testing.assert_allclose(c[j], x[labels == j].mean(), rtol=1e-9)


def test_deterministic():
    x = pruned(np.random.default_rng(2), 50_000, 0.1, "laplace")
    for init in INITS:
        a = kmeans_1d(x, 31, init, seed=7)
        b = kmeans_1d(x.copy(), 31, init, seed=7)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])


def test_fewer_values_than_clusters():
    x = np.array([0.5, -0.25, 0.5, 2.0, -0.25])
    c, labels = kmeans_1d(x, 8)
    assert c.shape == (8,) and np.all(np.diff(c) >= 0)
    np.testing.assert_array_equal(c[labels], x)  # each distinct value is its own centroid
    assert sse(x, c, labels) == 0


def test_all_equal_values():
    x = np.full(1000, 0.125, dtype=np.float32)
    c, labels = kmeans_1d(x, 31)
    assert c.shape == (31,) and np.all(c == 0.125)
    assert np.all(labels == 0)


@pytest.mark.parametrize("x", [np.array([3.0]), np.array([1.0, 2.0]), np.zeros(0)])
def test_tiny_inputs(x):
    c, labels = kmeans_1d(x, 4)
    assert c.shape == (4,) and labels.shape == x.shape and np.all(np.diff(c) >= 0)
    if x.size:
        np.testing.assert_array_equal(c[labels], x)


def test_exactly_k_distinct_values_fill_every_cluster():
    x = np.repeat(np.linspace(-1, 1, 31) ** 3, 50)
    c, labels = kmeans_1d(x, 31)
    np.testing.assert_allclose(c, np.unique(x))
    assert np.unique(labels).size == 31


def test_float32_labels_match_float64_comparison():
    """``assign`` rounds midpoints down for float32 input; labels equal the exact comparison."""
    rng = np.random.default_rng(0)
    c = np.sort(rng.normal(size=31))
    mids = ((c[1:] + c[:-1]) / 2).astype(np.float32)
    x = np.concatenate([mids, np.nextafter(mids, np.inf), np.nextafter(mids, -np.inf),
                        rng.normal(size=10_000).astype(np.float32)])
    np.testing.assert_array_equal(assign(x, c), assign(x.astype(np.float64), c))
