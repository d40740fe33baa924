"""Golden model of the accelerator: the specification the RTL is checked against.

``decode_rom`` reads the Huffman streams the way the hardware does — per PE,
per column segment, MSB-first, with the ``limit``/``offset`` tables — but
finds the code starts of all (column, PE) segments of a layer at once with
numpy (pointer doubling over the code length at every bit), so decoding
costs log2(codes of the longest segment) passes over the bits rather than a
Python step per symbol. Any inconsistency (invalid code, a code crossing a
column end, a row past the PE's rows) raises FormatError, and every loop is
bounded by the segment lengths, so corrupt input cannot hang it.

``infer`` runs the integer network (compressor.fixedpoint) in the storage
order the engine's activation banks hold (a version 2 image's matrices are
decoded in that order), and the cycle model of the RTL's schedule
(docs/arithmetic.md, "Cycle model"; convolutions:
compressor.contract.timing).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import FormatError
from .fixedpoint import IntLayer, run_int, storage_input
from .rom import RomImage, RomLayer
from .sparse import relative_decode
from .timing import (
    CYCLE_CHUNK,
    Timing,
    conv_layer_cycles,
    fc_tail,
    layer_cycles,
    scan_cycles,
    scan_cycles_batch,
)

__all__ = ["DecodedLayer", "Timing", "decode_layer", "decode_rom", "infer", "layer_cycles", "scan_cycles",
           "scan_cycles_batch"]


@dataclass
class DecodedLayer:
    int_layer: IntLayer
    entries: np.ndarray  # (cols, N) entries per column segment, fillers included


def _windows(bits: np.ndarray, max_len: int) -> np.ndarray:
    """For every bit position, the next ``max_len`` bits as an integer (zeros past the end)."""
    pad = np.concatenate([bits.astype(np.int64), np.zeros(max_len, dtype=np.int64)])
    win = np.zeros(bits.size + 1, dtype=np.int64)
    for k in range(max_len):
        win = (win << 1) | pad[k : k + bits.size + 1]
    return win


def stream_bits(rom: RomImage) -> tuple[np.ndarray, np.ndarray]:
    """All PE regions as one bit array (MSB-first) and each region's first bit in it."""
    regions = [np.unpackbits(np.frombuffer(s, dtype=np.uint8)) for s in rom.streams]
    base = np.cumsum([0] + [r.size for r in regions])[:-1]
    return (np.concatenate(regions) if regions else np.zeros(0, np.uint8)), base


def decode_layer(rom: RomImage, li: int, path: str = "<rom>",
                 bits: tuple[np.ndarray, np.ndarray] | None = None) -> DecodedLayer:
    """Decode layer ``li``; ``bits`` is :func:`stream_bits` of ``rom`` when the caller has it."""
    layer: RomLayer = rom.layers[li]
    n, max_len = rom.n_pes, rom.max_len
    every, base = bits if bits is not None else stream_bits(rom)
    # only this layer's bits of each PE, each with the max_len bits the decoder reads after them
    # (zeros past the end), so a layer costs its own bits, not the whole image's
    lo, hi = layer.ptr[0] + base, layer.ptr[-1] + base
    parts = [np.pad(every[a:b + max_len], (0, b + max_len - min(b + max_len, every.size)))
             for a, b in zip(lo.tolist(), hi.tolist(), strict=True)]
    base = np.cumsum([0] + [x.size for x in parts])[:-1] - layer.ptr[0]  # bit p of PE q's region -> base[q] + p
    bits = np.concatenate(parts)
    win = _windows(bits, max_len)
    # length of the code that would start at each bit position (max_len + 1 = invalid)
    length = np.searchsorted(layer.limit, win, side="right") + 1
    valid = length <= max_len
    ln = np.minimum(length, max_len)
    idx = ((win >> (max_len - ln)) + layer.offset[ln - 1]) % (1 << 16)
    start = (layer.ptr[:-1] + base[None, :]).ravel()  # segment (col, pe) in col-major order
    end = (layer.ptr[1:] + base[None, :]).ravel()
    # The code starts of every segment at once, by pointer doubling: jump[b] is the bit where decoding
    # goes on after a code at bit b (the sink once its segment ends); each round doubles the codes
    # followed, so a segment costs log2(its codes) numpy passes, not one per code (corrupt input
    # can make a column millions of codes long).
    segs = np.flatnonzero(start < end)  # non-empty segments: they tile their PE's part of the layer
    segs = segs[np.argsort(start[segs], kind="stable")]
    sink = bits.size
    owner = segs[np.maximum(np.searchsorted(start[segs], np.arange(sink + 1), side="right") - 1, 0)] \
        if segs.size else np.zeros(sink + 1, dtype=np.int64)
    after = np.arange(sink + 1) + ln
    jump = np.where(after < end[owner], after, sink)
    jump[sink] = sink
    at = start[segs]
    while True:
        nxt = jump[at]
        nxt = nxt[nxt != sink]
        if not nxt.size:
            break
        at = np.concatenate([at, nxt])
        jump = jump[jump]
    seg = owner[at]
    if not valid[at].all():
        raise FormatError(f"{path}: layer {li}: invalid Huffman code in a PE stream")
    if np.any(idx[at] >= layer.symbols.size):
        raise FormatError(f"{path}: layer {li}: Huffman table index out of range")
    if np.any(after[at] > end[seg]):
        raise FormatError(f"{path}: layer {li}: a Huffman code crosses a column end")
    seg_entries = np.bincount(seg, minlength=start.size)
    order = np.lexsort((at, seg))  # entries of each segment in stream order
    seg, at = seg[order], at[order]
    sym = layer.symbols[idx[at]]
    z, w = sym >> layer.wbits, sym & ((1 << layer.wbits) - 1)
    first = np.ones(seg.size, dtype=bool)
    first[1:] = seg[1:] != seg[:-1]
    local, widx = relative_decode(z, w, first)
    real_seg = seg[w != 0]
    col, pe = real_seg // n, real_seg % n
    row = local * n + pe
    if np.any(row >= layer.rows):
        raise FormatError(f"{path}: layer {li}: a relative index runs past the layer's {layer.rows} rows")
    if np.any(widx >= layer.codebook.size):
        raise FormatError(f"{path}: layer {li}: weight index outside the codebook")
    index = np.zeros((layer.rows, layer.cols), dtype=np.int64)
    index[row, col] = widx
    il = IntLayer(index, layer.codebook, layer.bias, layer.relu, layer.mult, layer.shift,
                  layer.wbits, layer.zbits, layer.conv, layer.signed)  # storage order for rom.n_pes
    bound = il.acc_bound()
    if bound >= 1 << (rom.acc_bits - 1):  # the RTL's int32 accumulator would wrap
        raise FormatError(f"{path}: layer {li}: accumulator bound {bound} needs more than "
                          f"{rom.acc_bits} bits")
    return DecodedLayer(il, seg_entries.reshape(layer.cols, n))


def decode_rom(rom: RomImage, path: str = "<rom>") -> list[DecodedLayer]:
    bits = stream_bits(rom)  # unpacked once for all layers
    return [decode_layer(rom, li, path, bits) for li in range(len(rom.layers))]


def infer(layers: list[DecodedLayer], acts: np.ndarray, timing: Timing | None = None,
          cycle_images: int | None = None) -> dict:
    """Integer inference and cycle counts for a batch of input vectors.

    ``acts``: (n, input_size) layer-0 inputs as the host sends them (uint8 pixels; for a
    conv net the image in (C, H, W) order), mapped into the engine's storage order here.
    ``cycle_images``: run the cycle model on the first K images only (None: all); ``cycles``,
    ``ideal`` and ``layer_cycles`` / ``layer_ideal`` ((K, layers)) then have K rows.
    """
    timing = timing or Timing()
    n_pes = layers[0].entries.shape[1] if layers else 1
    ils = [d.int_layer for d in layers]
    acts = np.asarray(acts, dtype=np.int64).reshape(len(acts), -1)
    k = len(acts) if cycle_images is None else min(len(acts), cycle_images)
    logits, inputs = run_int(ils, storage_input(acts, ils[0], n_pes), n_pes, keep=k)
    per = np.zeros((k, len(layers)), dtype=np.int64)
    per_ideal = np.zeros((k, len(layers)), dtype=np.int64)
    for li, (d, il) in enumerate(zip(layers, ils, strict=True)):
        if il.conv is not None:
            gather = il.conv.gather(n_pes)  # positions in the engine's order
            step = max(1, CYCLE_CHUNK // max(gather.size, 1))  # images per batched scan
            for i in range(0, k, step):
                part = inputs[li][i:i + step]
                padded = np.concatenate([part, np.zeros((len(part), 1), dtype=np.int64)], axis=1)
                per[i:i + step, li], per_ideal[i:i + step, li] = conv_layer_cycles(
                    padded[:, gather], d.entries, il.rows, timing)
            continue
        done, ideal = scan_cycles_batch(inputs[li][:k], d.entries, timing, timing.setup)
        per[:, li], per_ideal[:, li] = done + fc_tail(il.rows, n_pes, il.relu, timing), ideal
    return {"logits": logits, "pred": logits.argmax(axis=1), "cycles": per.sum(axis=1),
            "ideal": per_ideal.sum(axis=1), "layer_cycles": per, "layer_ideal": per_ideal}
