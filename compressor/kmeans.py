"""1-D k-means for weight sharing (numpy only, so the CLI can list ``INITS`` without torch).

The paper (section 3.1) compares three centroid initialisations; linear
spacing over [min, max] keeps the rare large weights represented, which is
why it is the default.
"""

from __future__ import annotations

import numpy as np

INITS = ("linear", "density", "random")


def init_centroids(x: np.ndarray, k: int, method: str, rng: np.random.Generator) -> np.ndarray:
    """Initial centroids: linear over [min, max], density (equal CDF steps) or Forgy."""
    if method == "linear":
        return np.linspace(x.min(), x.max(), k)
    if method == "density":
        return np.quantile(x, np.linspace(0.0, 1.0, k))
    if method == "random":
        return np.sort(rng.choice(x, size=k, replace=x.size < k))
    raise ValueError(f"unknown centroid initialisation {method!r} (choose from {', '.join(INITS)})")


def kmeans_1d(
    x: np.ndarray, k: int, init: str = "linear", seed: int = 0, iters: int = 100
) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's algorithm in 1-D: assignment is a ``searchsorted`` on centroid midpoints.

    Returns ``(centroids, labels)`` with centroids ascending. Empty clusters keep
    their previous centroid (they then simply receive no weights).
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    c = np.sort(init_centroids(x, k, init, np.random.default_rng(seed)).astype(np.float64))
    labels = np.zeros(x.size, dtype=np.int64)
    for _ in range(iters):
        labels = np.searchsorted((c[1:] + c[:-1]) / 2, x)
        sums = np.bincount(labels, weights=x, minlength=k)
        cnt = np.bincount(labels, minlength=k)
        new = np.where(cnt > 0, sums / np.maximum(cnt, 1), c)
        order = np.argsort(new, kind="stable")
        new = new[order]
        if np.allclose(new, c, rtol=0, atol=1e-12):
            c = new
            break
        c = new
    labels = np.searchsorted((c[1:] + c[:-1]) / 2, x)
    return c, labels
