"""Relative (run-length) position coding with filler zeros, as in Deep Compression.

A sparse vector is stored as entries ``(z, w)``: skip ``z`` zeros, then a
weight with codebook index ``w``. ``z`` has ``zbits`` bits, so a gap longer
than ``2**zbits - 1`` is bridged with *filler* entries ``(2**zbits - 1, 0)``:
weight index 0 is the exact zero, so a filler advances the position by
``2**zbits`` and adds nothing. The same rule serves the ``.dcz`` (one group:
the whole flattened layer) and the ROM (one group per column per PE).
"""

from __future__ import annotations

import numpy as np


def relative_encode(
    positions: np.ndarray, windex: np.ndarray, group_start: np.ndarray, zbits: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Entries ``(z, w)`` for non-zeros at ``positions`` (ascending within each group).

    ``group_start[i]`` is True where entry ``i`` is the first of its group; the
    position counter restarts at -1 there. Returns ``z`` and ``w`` arrays that
    include filler entries, and ``run_start``: the output index where each
    input entry's run (its fillers, then itself) begins, which locates group
    boundaries in the output. Vectorised: no loop over entries.

    ``z`` is uint16 and ``w`` uint8 (both formats have ``zbits, wbits <= 8``;
    uint16 leaves room for the ROM's ``z << wbits | w``): a narrow width's
    streams of a large layer are many times its non-zeros (VGG-16's fc6 at
    one bit: 52M entries), 3 bytes an entry instead of 16.
    """
    if not 1 <= zbits <= 8:
        raise ValueError(f"zbits {zbits}: relative indices are 1..8 bits")
    positions = np.asarray(positions, dtype=np.int64)
    windex = np.asarray(windex)
    if positions.size == 0:
        return np.zeros(0, np.uint16), np.zeros(0, np.uint8), np.zeros(0, np.int64)
    if not windex.all():
        raise ValueError("weight index 0 is reserved for the zero/filler weight")
    if windex.min() < 0 or windex.max() > 255:
        raise ValueError("weight indices are 1..255")
    span = 1 << zbits
    gap = _gaps(positions, group_start)
    fillers = gap >> zbits  # gap // span
    if not fillers.any():  # common when zbits was chosen for the layer: no filler at all
        return gap.astype(np.uint16), windex.astype(np.uint8), np.arange(positions.size, dtype=np.int64)
    last = np.cumsum(fillers)
    last += np.arange(positions.size)  # index of each real entry in the output
    z = np.full(int(last[-1]) + 1, span - 1, dtype=np.uint16)
    w = np.zeros(z.size, dtype=np.uint8)
    z[last] = gap & (span - 1)
    w[last] = windex
    return z, w, last - fillers


def _gaps(positions: np.ndarray, group_start: np.ndarray) -> np.ndarray:
    """Zeros skipped before each entry (the position counter restarts at -1 at a group start)."""
    gap = np.empty_like(positions)
    gap[0] = positions[0]
    np.subtract(positions[1:], positions[:-1], out=gap[1:])
    gap[1:] -= 1
    starts = np.flatnonzero(group_start)
    gap[starts] = positions[starts]
    if gap.min() < 0:
        raise ValueError("positions must be strictly increasing within a group")
    return gap


def relative_histograms(
    positions: np.ndarray, windex: np.ndarray, group_start: np.ndarray, widths: range, wbits: int
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """For each ``zbits`` in ``widths``: the symbol counts of :func:`relative_encode`'s ``z`` and ``w``.

    ``np.bincount(z, minlength=2**zbits)`` and ``np.bincount(w, minlength=2**wbits)``
    exactly, without building the streams: a gap ``g`` contributes one ``z``
    symbol ``g mod 2**zbits`` and ``g >> zbits`` fillers (``z = 2**zbits - 1``,
    ``w = 0``). What choosing a width by its Huffman-coded size needs (the
    streams of narrow widths are many times the non-zeros), at two passes
    over the gaps per width.
    """
    positions = np.asarray(positions, dtype=np.int64)
    wfreq = np.bincount(np.asarray(windex).ravel(), minlength=1 << wbits)
    if positions.size == 0:
        return {z: (np.zeros(1 << z, dtype=np.int64), wfreq.copy()) for z in widths}
    if wfreq[0]:
        raise ValueError("weight index 0 is reserved for the zero/filler weight")
    gap = _gaps(positions, group_start)
    out = {}
    for z in widths:
        fillers = int((gap >> z).sum())
        zf = np.bincount(gap & ((1 << z) - 1), minlength=1 << z)
        zf[-1] += fillers
        wf = wfreq.copy()
        wf[0] += fillers
        out[z] = (zf, wf)
    return out


def relative_decode(
    z: np.ndarray, w: np.ndarray, group_start: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`relative_encode`: positions and indices of the real entries."""
    z = np.asarray(z, dtype=np.int64)
    w = np.asarray(w, dtype=np.int64)
    step = z + 1
    pos = np.cumsum(step) - 1
    if group_start is not None and z.size:
        # restart the running position at each group: subtract the group's base
        gs = np.asarray(group_start, dtype=bool)
        base = np.where(gs, pos - step + 1, 0)
        pos = pos - np.maximum.accumulate(np.where(gs, base, 0))
    keep = w != 0
    return pos[keep], w[keep]
