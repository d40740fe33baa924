"""A layer record's two entry streams and their Huffman codes: what the ``.dcz`` stores of it.

The writer, ``deepcomp stats`` and ``--zbits auto`` all measure a layer by
these, so they are computed in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .huffman import CanonicalCode, code_lengths
from .sparse import relative_encode, relative_histograms


class LayerRecord(Protocol):
    """What of ``container.LayerRecord`` the streams need (a dataclass: ``replace`` works on it)."""

    wbits: int
    zbits: int

    @property
    def matrix_index(self) -> np.ndarray: ...


@dataclass
class LayerStreams:
    """A layer's entries and their Huffman coding: what the file stores and the stats report."""

    z: np.ndarray
    w: np.ndarray
    zcode: CanonicalCode
    wcode: CanonicalCode
    nonzeros: int

    @property
    def fillers(self) -> int:
        return int(self.z.size - self.nonzeros)

    @property
    def wbits_total(self) -> int:
        return self.wcode.encoded_bits(self.w)

    @property
    def zbits_total(self) -> int:
        return self.zcode.encoded_bits(self.z)


def layer_streams(rec: LayerRecord) -> LayerStreams:
    """Column-major relative coding of a layer's non-zero indices, with Huffman codes."""
    flat = rec.matrix_index.T.ravel()
    pos = np.flatnonzero(flat)
    first = np.zeros(pos.size, dtype=bool)
    first[:1] = True
    z, w, _ = relative_encode(pos, flat[pos], first, rec.zbits)
    return LayerStreams(
        z, w,
        CanonicalCode.from_symbols(z, 1 << rec.zbits),
        CanonicalCode.from_symbols(w, 1 << rec.wbits),
        int(pos.size),
    )


def best_zbits(rec: LayerRecord, widths: range = range(1, 9)) -> int:
    """The relative-index width that codes ``rec`` in the fewest bytes.

    Wider indices need fewer filler entries but a longer code table (one nibble
    per symbol); Huffman coding makes the trade-off layer-specific, so measure it:
    both streams' Huffman-coded bytes plus the table, exactly what
    :func:`layer_streams` would code to. Why from symbol counts
    (``sparse.relative_histograms``) and not by building each width's streams: the
    narrow widths' streams are many times the non-zeros (VGG-16's fc6 at 1 bit:
    52M entries), and the code lengths depend on the counts alone (6.6 s -> 0.8 s
    on VGG-16, benchmarks/scale.py).
    """
    flat = rec.matrix_index.T.ravel()
    pos = np.flatnonzero(flat)
    first = np.zeros(pos.size, dtype=bool)
    first[:1] = True
    hist = relative_histograms(pos, flat[pos], first, widths, rec.wbits)

    def nbytes(freqs: np.ndarray) -> int:
        return (int(code_lengths(freqs).astype(np.int64) @ freqs) + 7) // 8

    return min(widths, key=lambda z: nbytes(hist[z][1]) + nbytes(hist[z][0]) + (1 << z) // 2)
