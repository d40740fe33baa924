"""1-D k-means for weight sharing (numpy only, so the CLI can list ``INITS`` without torch).

The paper (section 3.1) compares three centroid initialisations; linear
spacing over [min, max] keeps the rare large weights represented, which is
why it is the default.

Why a special 1-D algorithm: in one dimension the clusters of any
nearest-centroid assignment are *contiguous runs of the sorted values*, cut
at the midpoints between neighbouring centroids. So after one sort
(O(n log n)) an iteration of Lloyd's algorithm needs only ``k - 1``
binary searches for the cuts and two prefix sums for every cluster's count,
sum and sum of squares: O(k log n) per iteration instead of O(n k) (or O(n)
for a pass over the data). Iterating to an exact fixed point is then cheap,
even for a layer of ten million weights.

Why re-seed empty clusters: on pruned layers the surviving weights form two
lobes with a gap around zero, and linear initialisation puts many centroids
in that gap; they receive no weights and plain Lloyd never moves them (the
layer then uses a handful of its 31 or 255 entries). An empty cluster is
re-seeded by splitting the cluster of largest squared error at its best cut,
so every entry of the codebook ends up in use when there are enough
distinct values.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

INITS = ("linear", "density", "random")

MOVE_TOL = 1e-8  # Lloyd's tolerance while trying moves; the result is then run to ``tol``
MOVE_CUTS = 64  # cuts per run tried when predicting a move's gain
SPLIT_CANDIDATES = 2048  # cut positions tried when splitting a cluster (evenly spaced in rank)


def init_centroids(x: np.ndarray, k: int, method: str, rng: np.random.Generator) -> np.ndarray:
    """Initial centroids: linear over [min, max], density (equal CDF steps) or Forgy."""
    if method == "linear":
        return np.linspace(x.min(), x.max(), k)
    if method == "density":
        return np.quantile(x, np.linspace(0.0, 1.0, k))
    if method == "random":
        return np.sort(rng.choice(x, size=k, replace=x.size < k))
    raise ValueError(f"unknown centroid initialisation {method!r} (choose from {', '.join(INITS)})")


class _Sorted:
    """Sorted values with prefix sums: any run's count, sum and squared error in O(1)."""

    def __init__(self, x: np.ndarray) -> None:
        # sort in the input's own precision (float32 sorts about twice as fast), sum in float64
        self.xs = np.sort(x).astype(np.float64, copy=False)
        self.n = self.xs.size
        self.cs = np.zeros(self.n + 1)
        np.cumsum(self.xs, out=self.cs[1:])
        self.cs2 = np.zeros(self.n + 1)
        np.cumsum(np.square(self.xs), out=self.cs2[1:])

    def cuts(self, c: np.ndarray) -> np.ndarray:
        """Run boundaries ``b`` (k + 1 of them) of the nearest-centroid assignment to sorted ``c``.

        A value equal to a midpoint goes to the lower cluster, as in
        :func:`assign`, so the runs and the final labels always agree.
        """
        b = np.empty(c.size + 1, dtype=np.int64)
        b[0], b[-1] = 0, self.n
        b[1:-1] = np.searchsorted(self.xs, (c[1:] + c[:-1]) / 2, side="right")
        return b

    def stats(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Count, sum and squared error about the mean of each run ``[lo, hi)``."""
        cnt = hi - lo
        s = self.cs[hi] - self.cs[lo]
        s2 = self.cs2[hi] - self.cs2[lo]
        sse = s2 - np.divide(s * s, cnt, out=np.zeros_like(s), where=cnt > 0)
        return cnt, s, np.maximum(sse, 0.0)

    def best_cut(self, lo: int, hi: int) -> int:
        """The cut of run ``[lo, hi)`` into two with the least total squared error (0: none).

        Tries up to ``SPLIT_CANDIDATES`` evenly spaced ranks, each moved to the
        start of its run of equal values: a cut never separates equal values,
        which would leave two centroids sharing a value.
        """
        cand = np.linspace(lo + 1, hi - 1, min(hi - lo - 1, SPLIT_CANDIDATES)).astype(np.int64)
        cand = np.searchsorted(self.xs, self.xs[cand], side="left")  # ascending, with repeats
        cand = cand[(cand > lo) & (cand < hi)]
        cand = cand[np.diff(cand, prepend=-1) > 0]
        if cand.size == 0:
            return 0
        lo_a, hi_a = np.full(cand.size, lo), np.full(cand.size, hi)
        _, _, left = self.stats(lo_a, cand)
        _, _, right = self.stats(cand, hi_a)
        return int(cand[np.argmin(left + right)])


def _reseed(data: _Sorted, c: np.ndarray, b: np.ndarray) -> np.ndarray | None:
    """Give every empty cluster a run split off the cluster of largest squared error.

    Deterministic: empty clusters in index order, each taking the right part
    of the current worst cluster's best cut. Returns the new (sorted)
    centroids, the means of the runs, or None if no cluster can be split
    (fewer distinct values than clusters).
    """
    lo, hi = b[:-1].copy(), b[1:].copy()
    changed = False
    for j in np.flatnonzero(lo == hi):
        _, _, sse = data.stats(lo, hi)
        i = int(np.argmax(sse))
        cut = data.best_cut(int(lo[i]), int(hi[i])) if sse[i] > 0 else 0
        if cut == 0:
            break
        lo[j], hi[j], hi[i] = cut, hi[i], cut
        changed = True
    if not changed:
        return None
    cnt, s, _ = data.stats(lo, hi)
    new = np.where(cnt > 0, s / np.maximum(cnt, 1), c)
    return np.sort(new)


def _best_cuts(data: _Sorted, lo: np.ndarray, hi: np.ndarray, cuts: int) -> tuple[np.ndarray, np.ndarray]:
    """For each run ``[lo, hi)``: the best of ``cuts - 1`` evenly spaced cuts and the error after it.

    The two parts' sums of squares add up to the run's, so a cut's error is
    that minus the parts' ``sum**2 / count``: one prefix-sum gather per cut.
    """
    cut = lo[:, None] + ((hi - lo)[:, None] * (np.arange(1, cuts) / cuts)).astype(np.int64)
    at = data.cs[cut]
    left = at - data.cs[lo][:, None]
    right = data.cs[hi][:, None] - at
    gain = left * left / np.maximum(cut - lo[:, None], 1) + right * right / np.maximum(hi[:, None] - cut, 1)
    where = np.argmax(gain, axis=1)
    rows = np.arange(lo.size)
    err = (data.cs2[hi] - data.cs2[lo]) - gain[rows, where]
    return cut[rows, where], np.maximum(err, 0.0)


class _CutMemo:
    """:func:`_best_cuts` of runs, remembered between moves.

    A move and the Lloyd run after it change only some runs; the others'
    best cuts are the same, so only changed runs are evaluated again.
    """

    def __init__(self, data: _Sorted, cuts: int) -> None:
        self.data, self.cuts = data, cuts
        self.lo = self.hi = self.cut = self.err = np.zeros(0, dtype=np.int64)

    def __call__(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.lo.size != lo.size:
            self.lo, self.hi = lo.copy(), hi.copy()
            self.cut, self.err = _best_cuts(self.data, lo, hi, self.cuts)
        else:
            stale = np.flatnonzero((lo != self.lo) | (hi != self.hi))
            if stale.size:
                self.cut[stale], self.err[stale] = _best_cuts(self.data, lo[stale], hi[stale], self.cuts)
                self.lo[stale], self.hi[stale] = lo[stale], hi[stale]
        return self.cut, self.err


def _moves(data: _Sorted, b: np.ndarray, pairs: _CutMemo, splits: _CutMemo, best: int = 4) -> Iterator[np.ndarray]:
    """Starting centroids for the local moves predicted to lower the error, most promising first.

    Lloyd stops at the first local optimum it meets. Two kinds of move get
    out of many of them, and prefix sums predict each one's gain in O(1) per
    cut tried (``MOVE_CUTS`` evenly spaced cuts per run, all runs at once,
    remembered in ``pairs`` and ``splits`` for the runs that did not change):

    - *split-merge*: one cluster gains more from being cut in two than a pair
      of neighbours loses by being merged, so move a centroid from the pair
      to the cut (the ``best`` largest gains against the ``best`` cheapest
      merges);
    - *re-cut*: two neighbouring clusters are better divided elsewhere
      (Lloyd moves a boundary only one step downhill at a time and stops
      short of a better division beyond a gap, e.g. between clumps).
    """
    lo, hi = b[:-1], b[1:]
    cnt, s, sse = data.stats(lo, hi)
    if cnt.size < 2:
        return iter(())
    means = s / np.maximum(cnt, 1)
    moves = []  # (predicted change, starting centroids)

    def start(drop: list[int], parts_lo: list[int], parts_hi: list[int]) -> np.ndarray:
        pcnt, psum, _ = data.stats(np.array(parts_lo), np.array(parts_hi))
        keep = np.ones(cnt.size, dtype=bool)
        keep[drop] = False
        return np.sort(np.concatenate([means[keep], psum / np.maximum(pcnt, 1)]))

    pair_cut, pair_err = pairs(lo[:-1], hi[1:])
    recut = pair_err - sse[:-1] - sse[1:]
    for i in np.argsort(recut, kind="stable")[:best]:
        if recut[i] < 0:
            moves.append((recut[i], [i, i + 1], [lo[i], pair_cut[i]], [pair_cut[i], hi[i + 1]]))
    if cnt.size >= 3:
        merged = data.stats(lo[:-1], hi[1:])[2]
        cost = merged - sse[:-1] - sse[1:]  # of merging clusters i and i + 1
        split_cut, split_err = splits(lo, hi)
        gain = sse - split_err
        for j in np.argsort(-gain, kind="stable")[:best]:
            for i in np.argsort(cost, kind="stable")[: best + 2]:
                if j not in (i, i + 1) and gain[j] > cost[i]:
                    moves.append((cost[i] - gain[j], [i, i + 1, j], [lo[j], split_cut[j], lo[i]],
                                  [split_cut[j], hi[j], hi[i + 1]]))
    moves.sort(key=lambda m: m[0])
    return (start(*m[1:]) for m in moves[: 2 * best * best])  # built only when tried


def assign(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Index of the nearest of the ascending centroids ``c`` (ties: the lower one).

    The label is the number of midpoints below ``x``. For float32 ``x`` the
    midpoints are rounded *down* to float32 first: for a float32 value,
    ``x > m`` exactly when ``x > round_down(m)``, so the labels are those of
    the float64 comparison, without a float64 copy of ``x`` (twice as fast).
    """
    mid = (c[1:] + c[:-1]) / 2
    if x.dtype == np.float32:
        m32 = mid.astype(np.float32)
        mid = np.where(m32 > mid, np.nextafter(m32, np.float32(-np.inf)), m32)
    return np.searchsorted(mid, x, side="left")


def _lloyd(data: _Sorted, c: np.ndarray, iters: int, tol: float) -> tuple[np.ndarray, float]:
    """Lloyd iterations from ``c`` (with re-seeding); the final centroids and their squared error.

    Stops at a fixed point, when an iteration lowers the error by at most
    ``tol`` times itself, or after ``iters`` iterations; the centroids
    returned are the ones the last assignment was made to.
    """
    total2 = data.cs2[-1]
    prev_b, prev_sse = None, np.inf
    for _ in range(iters):
        b = data.cuts(c)
        if np.any(b[1:] == b[:-1]):
            new = _reseed(data, c, b)
            if new is not None:
                c, prev_b, prev_sse = new, None, np.inf
                continue
        if prev_b is not None and np.array_equal(b, prev_b):
            break  # fixed point
        cnt = np.diff(b)
        s = data.cs[b[1:]] - data.cs[b[:-1]]
        nonempty = cnt > 0
        sse = total2 - float(np.sum(s[nonempty] ** 2 / cnt[nonempty]))
        if prev_sse - sse <= tol * max(sse, 0.0):
            break  # no longer improving: keep the centroids ``b`` was assigned to
        c = np.sort(np.where(nonempty, s / np.maximum(cnt, 1), c))
        prev_b, prev_sse = b, sse
    return c, _error(data, c)


def _error(data: _Sorted, c: np.ndarray) -> float:
    """Squared error of the nearest-centroid assignment to ``c``, from the prefix sums."""
    b = data.cuts(c)
    cnt, s, s2 = np.diff(b), np.diff(data.cs[b]), np.diff(data.cs2[b])
    return float(np.sum(s2 - 2 * c * s + cnt * c * c))


def kmeans_1d(
    x: np.ndarray, k: int, init: str = "linear", seed: int = 0, iters: int = 1000,
    tol: float = 1e-12, moves: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """k-means of 1-D ``x``: Lloyd on sorted values with prefix sums, then split-merge moves.

    Returns ``(centroids, labels)``: ``k`` centroids ascending (float64) and
    ``labels[i]``, the index of the centroid nearest ``x[i]`` (ties go to the
    lower index). Empty clusters are re-seeded (see :func:`_reseed`), so with
    at least ``k`` distinct values every cluster has members. Each Lloyd run
    stops at a fixed point (then every centroid is the mean of its members),
    when an iteration gains less than ``tol`` relative, or after ``iters``
    iterations. Then up to ``moves`` (default ``k``) split-merge moves
    (:func:`_moves`), each kept only if Lloyd from it ends lower.
    """
    x = np.asarray(x).ravel()
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    if x.size == 0:
        return np.zeros(k), np.zeros(0, dtype=np.int64)
    data = _Sorted(x)
    c = np.sort(init_centroids(data.xs if init != "random" else x, k, init,
                               np.random.default_rng(seed)).astype(np.float64))
    loose = max(tol, MOVE_TOL)
    c, err = _lloyd(data, c, iters, loose)
    pairs, splits = _CutMemo(data, MOVE_CUTS), _CutMemo(data, MOVE_CUTS)
    for _ in range(k if moves is None else moves):
        for start in _moves(data, data.cuts(c), pairs, splits):
            c2, err2 = _lloyd(data, start, iters, loose)
            if err2 < err * (1 - 1e-12):
                c, err = c2, err2
                break
        else:
            break  # no move lowers the error
    if tol < loose:
        c, _ = _lloyd(data, c, iters, tol)  # polish the result (from a better start, never worse)
    del data
    return c, assign(x, c)


def sse(x: np.ndarray, c: np.ndarray, labels: np.ndarray) -> float:
    """Within-cluster sum of squared errors (float64), for tests and benchmarks."""
    d = np.asarray(x, dtype=np.float64).ravel() - np.asarray(c, dtype=np.float64)[labels]
    return float(d @ d)
