"""The ``.dcz`` container: a compressed model, every byte of which counts toward the ratio.

Layout (little endian, byte-by-byte in docs/format.md)::

    "DCMP" | version u8 | arch text | n_layers varint | layer* | CRC32

Each layer stores its shape, widths, float16 codebook (entry 0, the zero, is
implicit), float16 biases, the code lengths of two canonical Huffman codes
(weight indices, relative indices) as nibbles, and the two bitstreams. The
positions are relative indices over the layer's weight matrix flattened
column by column (one run across columns, so no column pointers are stored:
those belong to the ROM image, whose hardware must skip columns).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from bitarray import bitarray

from .binfmt import Reader, Writer, atomic_write, read_file
from .errors import DeepcompError
from .huffman import CanonicalCode
from .sparse import relative_decode, relative_encode

MAGIC = b"DCMP"
VERSION = 1
KINDS = {0: "linear", 1: "conv"}
# Limits, checked while reading and before anything is allocated, so the memory and time a
# file can cost are bounded by its size (docs/format.md, "Limits"):
MAX_LAYERS = 1024
MAX_DIM = 1 << 20  # any one dimension of a weight shape
MAX_STRIDE = 64  # convolution stride and padding
# weights a file may declare: this many per byte of the file (a 256x ratio over float32,
# 2.6x beyond the best measured) plus a floor for tiny models
WEIGHTS_PER_BYTE = 64
WEIGHTS_FLOOR = 1 << 20


@dataclass
class LayerRecord:
    """One compressed layer: ``weight = codebook[index]`` plus float16 bias."""

    name: str
    kind: str  # "linear" | "conv"
    shape: tuple[int, ...]  # weight shape: (out, in) or (out, in, kh, kw)
    codebook: np.ndarray  # float32 (2**wbits,), codebook[0] == 0
    index: np.ndarray  # int64, ``shape``
    bias: np.ndarray | None
    wbits: int
    zbits: int
    stride: int = 1
    padding: int = 0

    @property
    def matrix_index(self) -> np.ndarray:
        return self.index.reshape(self.shape[0], -1)

    def weight(self) -> np.ndarray:
        return self.codebook[self.index]


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
    from dataclasses import replace

    def cost(z: int) -> int:
        st = layer_streams(replace(rec, zbits=z))
        return (st.wbits_total + 7) // 8 + (st.zbits_total + 7) // 8 + (1 << z) // 2

    return min(widths, key=cost)


@dataclass
class CompressedModel:
    arch: str
    layers: list[LayerRecord]
    streams: list[LayerStreams] = field(default_factory=list, repr=False)
    # per layer, bytes of the file by kind: weights, index, codebook, bias, overhead
    breakdown: list[dict[str, int]] = field(default_factory=list, repr=False)
    header_bytes: int = 0

    def params(self) -> int:
        n = 0
        for r in self.layers:
            n += int(np.prod(r.shape)) + (r.bias.size if r.bias is not None else 0)
        return n

    def dense_bytes(self) -> int:
        """Size of the same model as float32: the numerator of the compression ratio."""
        return 4 * self.params()


def encode(cm: CompressedModel) -> bytes:
    """Serialise ``cm`` (and fill ``cm.streams`` for stats) into ``.dcz`` bytes."""
    out = Writer()
    out.raw(MAGIC)
    out.u8(VERSION)
    out.text(cm.arch)
    out.varint(len(cm.layers))
    cm.streams, cm.breakdown = [], []
    for rec in cm.layers:
        start = len(out.buf)
        st = layer_streams(rec)
        cm.streams.append(st)
        conv = rec.kind == "conv"
        out.text(rec.name)
        out.u8((1 if conv else 0) | (2 if rec.bias is not None else 0))
        for d in rec.shape:
            out.varint(d)
        if conv:
            out.varint(rec.stride)
            out.varint(rec.padding)
        out.u8((rec.wbits << 4) | rec.zbits)
        out.varint(int(st.z.size))
        out.f16(rec.codebook[1:])
        if rec.bias is not None:
            out.f16(rec.bias)
        out.nibbles(st.wcode.lengths)
        out.nibbles(st.zcode.lengths)
        part = {"codebook": 2 * ((1 << rec.wbits) - 1),
                "bias": 0 if rec.bias is None else 2 * rec.bias.size}
        for key, code, sym in (("weights", st.wcode, st.w), ("index", st.zcode, st.z)):
            raw = code.encode(sym).tobytes()
            out.varint(len(raw))
            out.raw(raw)
            part[key] = len(raw)
        part["overhead"] = len(out.buf) - start - sum(part.values())
        cm.breakdown.append(part)
    cm.header_bytes = len(out.buf) - sum(sum(p.values()) for p in cm.breakdown) + 4  # + CRC
    return out.with_crc()


def decode(data: bytes, path: str | Path = "<bytes>") -> CompressedModel:
    """Parse ``.dcz`` bytes; any inconsistency raises FormatError naming ``path``."""
    if data[:4] != MAGIC:
        raise DeepcompError(f"{path}: not a deepcomp .dcz file (bad magic {bytes(data[:4])!r})")
    if len(data) > 4 and data[4] != VERSION:
        raise DeepcompError(f"{path}: unsupported .dcz version {data[4]} (this reads {VERSION})")
    r = Reader(data, path)
    r.take(5)
    arch = r.text()
    budget = WEIGHTS_FLOOR + WEIGHTS_PER_BYTE * len(data)  # weights this file may still declare
    layers = []
    n_layers = r.varint(limit=MAX_LAYERS)
    if n_layers == 0:
        r.fail("no layers")
    for _ in range(n_layers):
        name = r.text()
        flags = r.u8()
        if flags > 3:
            r.fail(f"layer {name}: unknown flags {flags:#x}")
        conv = bool(flags & 1)
        shape = tuple(r.varint(limit=MAX_DIM) for _ in range(4 if conv else 2))
        size = int(np.prod(shape, dtype=np.float64))
        if 0 in shape:
            r.fail(f"layer {name}: empty weight shape {shape}")
        if size > budget:
            r.fail(f"layer {name}: weight shape {shape} is implausible for a {len(data)}-byte file "
                   f"(at most {WEIGHTS_PER_BYTE} weights per byte)")
        budget -= size
        stride, padding = (r.varint(MAX_STRIDE), r.varint(MAX_STRIDE)) if conv else (1, 0)
        if conv and stride == 0:
            r.fail(f"layer {name}: stride 0")
        wz = r.u8()
        wbits, zbits = wz >> 4, wz & 15
        if not (1 <= wbits <= 8 and 1 <= zbits <= 8):
            r.fail(f"layer {name}: widths wbits={wbits} zbits={zbits} out of range")
        # every entry is at least one bit in each stream, and the streams are in the file
        n_entries = r.varint(limit=8 * len(data))
        entries = r.f16((1 << wbits) - 1)
        bias = r.f16(shape[0]) if flags & 2 else None
        # checked before any further cast: a signalling NaN would make numpy warn on stderr
        if not (np.isfinite(entries).all() and (bias is None or np.isfinite(bias).all())):
            r.fail(f"layer {name}: codebook or bias is not finite")
        codebook = np.concatenate([[0.0], entries]).astype(np.float32)
        wcode = CanonicalCode(r.nibbles(1 << wbits))
        zcode = CanonicalCode(r.nibbles(1 << zbits))
        streams = []
        for code in (wcode, zcode):
            raw = bytes(r.take(r.varint(limit=len(data))))
            if n_entries > 8 * len(raw):
                r.fail(f"layer {name}: {n_entries} entries cannot fit a {len(raw)}-byte stream")
            bits = bitarray(endian="big")
            bits.frombytes(raw)
            try:
                symbols = code.decode(bits, n_entries)
            except ValueError as e:
                r.fail(f"layer {name}: {e}")
            used = code.encoded_bits(symbols)  # the stream is exactly its codes, zero-padded
            if (used + 7) // 8 != len(raw) or bits[used:].any():
                r.fail(f"layer {name}: stream of {len(raw)} bytes holds {used} bits of codes "
                       "(trailing bytes or non-zero padding)")
            streams.append(symbols)
        w, z = streams
        pos, idx = relative_decode(z, w)
        if pos.size and pos[-1] >= size:
            r.fail(f"layer {name}: positions run past the {size} weights")
        rows, cols = shape[0], size // shape[0]
        # one byte per weight (wbits <= 8), written column-major as stored
        index = np.zeros((cols, rows), dtype=np.uint8)
        index.reshape(-1)[pos] = idx
        index = np.ascontiguousarray(index.T).reshape(shape)
        layers.append(LayerRecord(name, KINDS[int(conv)], shape, codebook, index, bias,
                                  wbits, zbits, stride, padding))
    r.expect_end()
    return CompressedModel(arch, layers)


def save(cm: CompressedModel, path: str | Path) -> int:
    """Write ``cm``; the bytes are read back first, so no file is written that :func:`load` refuses."""
    for rec in cm.layers:
        for what, values in (("codebook", rec.codebook), ("bias", rec.bias)):
            if values is not None and not np.isfinite(np.asarray(values, dtype=np.float16)).all():
                raise DeepcompError(f"{path}: not written: layer {rec.name}'s {what} is not finite in float16 "
                                    "(NaN, or beyond +-65504)")
    data = encode(cm)
    try:
        decode(data, path)
    except DeepcompError as e:
        raise DeepcompError(f"{path}: not written, it would not read back: {str(e).split(': ', 1)[-1]}") from None
    atomic_write(path, data)
    return len(data)


def load(path: str | Path) -> CompressedModel:
    return decode(read_file(path), path)
