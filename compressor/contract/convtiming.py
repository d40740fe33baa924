"""Cycle model of a convolution layer on the engine (docs/arithmetic.md, "Cycle model: convolutions").

Dataflow (a) of the conv issue: rows = output channels interleaved over the
PEs, one output position at a time. For each position the broadcaster scans
the position's patch (the layer's columns, ``kh * kw * cs_in`` storage
elements in (ky, kx, channel) order, groups of N) exactly as it scans an fc
layer's input, the PEs decode each non-zero activation's column from the same
Huffman streams, and the tail reads the position's ``ceil(R / N)`` local rows
into the requantizers (which keep the max-pool). numpy only: part of the
golden model.

Schedule (hdl/engine.py, hdl/broadcast.py), cycles from the layer's first
setup cycle: the descriptor is read as for an fc layer and the first
position starts at ``setup - 1`` (the sequencer's fourth setup cycle); a
position started at ``S`` has its first scan slot at ``S + pos_start`` (one
priming cycle more than an fc scan: the patch's word look-ahead); its
column phase ends at ``d`` (:func:`golden.scan_cycles`, the fc rules: FIFO
room, issue latency, one entry per cycle, drain); the sequencer sees it at
``d + 1`` and reads ``ceil(R / N)`` rows; the next position starts
``pos_gap`` cycles after the last read cycle's start... i.e. at
``d + ceil(R / N) + pos_gap``; after the last position the next layer's
setup begins at ``d + ceil(R / N) + conv_drain``.
"""

from __future__ import annotations

import numpy as np

from .golden import Timing, scan_cycles_batch


def conv_layer_cycles(patches: np.ndarray, entries: np.ndarray, rows: int,
                      timing: Timing) -> tuple[np.ndarray, np.ndarray]:
    """(cycles, ideal cycles) of one conv layer for each image of a batch.

    ``patches``: (images, positions, cols) storage-order patch vectors in the
    order the engine visits the positions (out-of-bounds elements 0), or
    (positions, cols) for one image (then the results are scalars);
    ``entries``: (cols, N) entries per column segment, as
    :class:`golden.DecodedLayer` has them. The ideal is the fc layer's per
    position: for every non-zero patch activation, the most entries any PE
    holds in its column. All positions of all images are one batched scan
    (:func:`golden.scan_cycles_batch`).
    """
    one = patches.ndim == 2
    patches = patches[None] if one else patches
    k, positions, cols = patches.shape
    done, ideal = scan_cycles_batch(patches.reshape(k * positions, cols), entries, timing, timing.pos_start)
    tail = -(-rows // entries.shape[1])
    total = (timing.setup - 1 + (done.reshape(k, positions) + tail).sum(axis=1)
             + (positions - 1) * timing.pos_gap + timing.conv_drain)
    ideal = ideal.reshape(k, positions).sum(axis=1)
    return (int(total[0]), int(ideal[0])) if one else (total, ideal)
