"""A layer record's two entry streams and their Huffman codes: what the ``.dcz`` stores of it.

The writer, ``deepcomp stats`` and ``--zbits auto`` all measure a layer by
these, so they are computed in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

from .huffman import CanonicalCode
from .sparse import relative_encode


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
    per symbol); Huffman coding makes the trade-off layer-specific, so measure it.
    """
    def cost(z: int) -> int:
        st = layer_streams(replace(rec, zbits=z))
        return (st.wbits_total + 7) // 8 + (st.zbits_total + 7) // 8 + (1 << z) // 2

    return min(widths, key=cost)
