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


def conv_layer(rng, geom, out_c, density, wbits=4, zbits=3, signed=False):
    """A random hidden conv layer (model-order weights (out_c, in_c * kh * kw))."""
    from compressor.contract.fixedpoint import ConvGeom

    g = geom if isinstance(geom, ConvGeom) else ConvGeom.from_padding(**geom)
    layer = int_layer(rng, out_c, g.in_c * g.kh * g.kw, density, wbits=wbits, zbits=zbits)
    layer.conv, layer.signed = g, signed
    layer.shift = 20
    return layer


def conv_nets(rng) -> dict[str, list]:
    """Small conv nets with the geometry a conv engine must get right, by name.

    ``same``: 3x3 'same' padding with a 2x2 pool on an even map, int8 output,
    then a 3x3 stride-2 kernel that covers its whole 3x3 input (an fc layer in
    disguise). ``odd``: 1x1 kernels, a pool that drops an odd last row and
    column, a 2x2 stride-2 conv, a ReLU conv after an int8 one. ``onepe``:
    every weight in the output channels 0 and 16 (one PE for N = 1, 2, 4, 8, 16).
    ``all``: those in one chain of three convolutions and an fc layer.
    """
    from compressor.contract.fixedpoint import ConvGeom

    same1 = conv_layer(rng, dict(in_c=2, in_h=6, in_w=6, kh=3, kw=3, pad_h=1, pad_w=1, pool=2), 5, 0.6,
                       signed=True)
    same2 = conv_layer(rng, ConvGeom.from_padding(5, 3, 3, 3, 3, stride=2), 7, 0.5)
    odd1 = conv_layer(rng, ConvGeom.from_padding(3, 5, 5, 1, 1, pool=2), 4, 0.8, signed=True)
    odd2 = conv_layer(rng, ConvGeom.from_padding(4, 2, 2, 2, 2, stride=2), 6, 0.7, wbits=3, zbits=2)
    one = conv_layer(rng, ConvGeom.from_padding(1, 7, 7, 5, 5, pad_h=2, pad_w=2, pool=2), 17, 0.0)
    one.index[[0, 16], :] = rng.integers(1, 16, (2, 25))
    # everything in one chain: 'same' 5x5 with an odd pool and every weight in channels 0 and 16,
    # int8 -> a 1x1 ReLU conv -> a 3x3 stride-2 kernel covering its whole 3x3 input -> fc
    all1 = conv_layer(rng, ConvGeom.from_padding(1, 7, 7, 5, 5, pad_h=2, pad_w=2, pool=2), 17, 0.0, signed=True)
    all1.index[[0, 16], :] = rng.integers(1, 16, (2, 25))
    all2 = conv_layer(rng, ConvGeom.from_padding(17, 3, 3, 1, 1), 5, 0.5)
    all3 = conv_layer(rng, ConvGeom.from_padding(5, 3, 3, 3, 3, stride=2), 7, 0.6)
    return {
        "all": [all1, all2, all3, int_layer(rng, 10, 7, 0.8, relu=False)],
        "same": [same1, same2, int_layer(rng, 10, 7, 0.8, relu=False)],
        "odd": [odd1, odd2, int_layer(rng, 9, 6, 0.9, relu=False)],
        "onepe": [one, int_layer(rng, 10, 17 * 3 * 3, 0.3, relu=False)],
    }
