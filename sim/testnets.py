"""Random sparse integer networks with extreme structure, for tests, benches and fuzzing.

They exercise what real models rarely do: empty columns, every non-zero in
one PE, gaps far beyond ``2**zbits``, rows with no weights.
"""

from __future__ import annotations

import numpy as np

from compressor.contract.fixedpoint import IntLayer


def int_layer(rng, rows, cols, density, wbits=5, zbits=4, relu=True):
    index = np.where(rng.random((rows, cols)) < density, rng.integers(1, 1 << wbits, (rows, cols)), 0)
    codebook = np.concatenate([[0], rng.integers(-2000, 2000, (1 << wbits) - 1)])
    return IntLayer(index.astype(np.int64), codebook, rng.integers(-5000, 5000, rows), relu,
                    mult=int(rng.integers(1 << 15, 1 << 16)), shift=24, wbits=wbits, zbits=zbits)


def extreme_net(rng):
    """Empty columns, one PE holding everything, gaps far beyond 2**zbits, an empty layer row."""
    a = int_layer(rng, 40, 64, 0.2)
    a.index[:, 5:9] = 0  # empty columns
    b = int_layer(rng, 33, 40, 0.0, zbits=2)
    b.index[np.arange(0, 33, 8), :] = 7  # rows 0, 8, 16, 24, 32: all in PE 0 for N = 8 / 4 / 2 / 1
    b.index[32, 3] = 0
    c = int_layer(rng, 10, 33, 0.0, relu=False)
    c.index[9, 32] = 3  # a single weight after a gap of 9 * 33 positions
    c.index[0, 0] = 1
    return [a, b, c]
