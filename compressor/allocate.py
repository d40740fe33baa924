"""Per-layer densities for a target size, from sensitivity curves (numpy only).

Why a Lagrangian: minimising the summed accuracy loss of the layers subject
to a total size is separable once the constraint is priced: for a price
``lam`` (bytes per unit of error) each layer independently picks the density
minimising ``bytes(d) + lam * loss(d)`` on its own curve. Larger prices keep
more; a bisection on the price meets the size. A big layer whose curve is flat
is pruned hard, a small or sensitive one is left nearly alone, which is what
hand tuning arrives at (LeNet-300-100: 3% / 5% / 20%).

Why this size model: a kept weight costs its weight index (a few bits after
Huffman coding) plus its relative index, whose entropy for a density ``d``
of randomly placed non-zeros is about ``log2(e / d)`` bits (a geometric gap).
Only the ratios between layers matter for the allocation; the search measures
the real file afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WEIGHT_INDEX_BITS = 4.0  # a typical Huffman-coded weight index; a common factor of every layer
FINE = 256  # candidate densities per curve


@dataclass
class Curve:
    """A layer's validation error when pruned alone to each density (descending densities)."""

    name: str
    size: int  # weights in the layer
    density: np.ndarray
    error: np.ndarray

    def loss_at(self, d: np.ndarray) -> np.ndarray:
        """Error at densities ``d`` (log-linear between points, never lower at lower density)."""
        mono = np.maximum.accumulate(self.error)  # pruning more never helps: noise removed
        x = np.log(self.density[::-1])
        return np.interp(np.log(d), x, mono[::-1])


def layer_bytes(size: int, d: np.ndarray | float) -> np.ndarray | float:
    """Estimated coded bytes of a layer of ``size`` weights kept at density ``d``."""
    d = np.asarray(d, dtype=float)
    return size * d * (WEIGHT_INDEX_BITS + np.log2(np.e / np.minimum(d, 1.0))) / 8


def estimated_bytes(sizes: dict[str, int], density: dict[str, float]) -> float:
    return float(sum(layer_bytes(sizes[n], density[n]) for n in sizes))


def allocate(curves: list[Curve], target: float) -> dict[str, float]:
    """Densities whose estimated bytes are at most ``target`` with the least summed curve loss.

    No layer goes below the lowest density its curve measured (beyond it the
    curve is unusable anyway); if even that is above ``target``, those are returned.
    """
    grids = [np.geomspace(1.0, c.density[-1], FINE) if c.density[-1] < 1 else np.ones(1) for c in curves]
    costs = [(layer_bytes(c.size, g), c.loss_at(g)) for c, g in zip(curves, grids, strict=True)]

    def pick(lam: float) -> list[int]:
        return [int(np.argmin(b + lam * loss)) for b, loss in costs]

    def total(choice: list[int]) -> float:
        return float(sum(b[j] for (b, _), j in zip(costs, choice, strict=True)))

    lo, hi = -12.0, 15.0  # log10 of the price: from "bytes only" to "loss only"
    if total(pick(10.0 ** lo)) > target:
        return {c.name: float(g[pick(10.0 ** lo)[i]]) for i, (c, g) in enumerate(zip(curves, grids, strict=True))}
    for _ in range(60):
        mid = (lo + hi) / 2
        if total(pick(10.0 ** mid)) <= target:
            lo = mid
        else:
            hi = mid
    choice = pick(10.0 ** lo)
    return {c.name: float(g[j]) for c, g, j in zip(curves, grids, choice, strict=True)}
