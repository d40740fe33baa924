"""The ROM image: what the accelerator's memories hold, for N processing elements.

Rows of each layer are interleaved over the PEs (row r -> PE r mod N, local
row r div N, as EIE). Each PE's non-zeros are stored column by column as
entries (z, w): z = zeros skipped in the PE's local rows (filler rule of
:mod:`compressor.sparse`), w = codebook index. The pair is Huffman-coded as
one *joint* symbol ``z << wbits | w`` so one table lookup per cycle yields a
whole non-zero (two separate codes would need two decodes per non-zero).
Codes are canonical with length <= L; the table is stored in the form the
decoder uses (``limit``/``offset`` per length + symbols in canonical order).
To skip a zero activation's column without decoding it, a pointer table gives
each PE's bit offset of every column start (C + 1 rows x N pointers; column
j ends where j + 1 starts). Byte-by-byte layout: docs/format.md.

Version 1 holds fully connected layers only (ReLU hidden layers); version 2
(written whenever a layer is a convolution or has a signed int8 output) adds
a 20-byte block to every descriptor: the layer kind, its activation and a
convolution's geometry. The matrices of a version 2 image are in the storage
order for N PEs (:func:`compressor.contract.fixedpoint.to_storage`).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .binfmt import Reader, atomic_write, read_file
from .errors import DeepcompError, FormatError
from .fixedpoint import MULT_BITS, ConvGeom, IntLayer, chain_problem, cs, to_storage
from .huffman import CanonicalCode, decode_tables
from .romtext import from_readmemh, to_readmemh
from .sparse import relative_encode

MAGIC = b"DCRM"
VERSION = 1  # fully connected layers only
VERSION_CONV = 2  # descriptors with the conv block: convolutions, signed outputs
HEADER = struct.Struct("<4sBBBBHHBBBBIIIf")  # 32 bytes
DESC = struct.Struct("<HHBBBBIIIIIIHH")  # 36 bytes
# version 2: kind, act, kh, kw, in_h, in_w, in_c, cs_in, stride, pad_h, pad_w, pool, out_h, out_w
CONV_BLOCK = struct.Struct("<BBBBHHHHBBBBHH")  # 20 bytes after each descriptor
KIND_FC, KIND_CONV = 0, 1
ACT_LOGITS, ACT_RELU, ACT_SIGNED = 0, 1, 2
TABLE_ENTRY = struct.Struct("<II")  # limit, offset for one code length
MAX_PES = 64
MAX_L = 16
FLAG_SIGNED_INPUT = 1
# the engine's arithmetic (docs/arithmetic.md): what the reader accepts and the writer writes
CB_BITS = 16
ACC_BITS = 32
MAX_SHIFT = 62
# weights an image may declare: per byte of the image, plus a floor (bounds the golden model's memory)
WEIGHTS_PER_BYTE = 64
WEIGHTS_FLOOR = 1 << 20


@dataclass
class RomLayer:
    """A layer as the hardware sees it (tables, not code lengths)."""

    rows: int
    cols: int
    wbits: int
    zbits: int
    relu: bool
    mult: int
    shift: int
    codebook: np.ndarray  # int64 (2**wbits,)
    limit: np.ndarray  # int64 (L,), entry l-1 for code length l
    offset: np.ndarray  # int64 (L,)
    symbols: np.ndarray  # int64, canonical order
    bias: np.ndarray  # int64 (rows,)
    ptr: np.ndarray  # int64 (cols + 1, N): bit offset of each column start in each PE region
    conv: ConvGeom | None = None  # version 2: a convolution layer (columns in storage order)
    signed: bool = False  # version 2: hidden layer with int8 output (act 2)


@dataclass
class RomImage:
    n_pes: int
    max_len: int
    input_size: int
    n_classes: int
    cb_bits: int
    acc_bits: int
    flags: int
    layers: list[RomLayer]
    streams: list[bytes]  # one bit region per PE, all layers concatenated
    ptr_bytes: int = 4
    total_bytes: int = 0
    input_scale: float = 0.0  # real value of one input step; 0 = pixels (1/255)
    # absolute byte offset of each PE's stream region in the image (a runtime loader
    # picks the stream bytes out of the image as it streams past)
    stream_offsets: list[int] = field(default_factory=list)
    version: int = VERSION

    @property
    def signed_input(self) -> bool:
        return bool(self.flags & FLAG_SIGNED_INPUT)


def interleave(index: np.ndarray, n_pes: int, zbits: int, wbits: int) -> tuple:
    """Entries of every (PE, column) group, PE-major then column-major.

    Returns ``(pe, col, symbols)`` per entry (fillers included): ``pe`` and
    ``col`` say which group each entry belongs to.
    """
    rows, cols = np.nonzero(index.T)  # column-major: rows here are columns
    col, row = rows, cols
    pe, local = row % n_pes, row // n_pes
    order = np.lexsort((local, col, pe))
    pe, col, local = pe[order], col[order], local[order]
    w = index[row[order], col]
    start = np.ones(pe.size, dtype=bool)
    start[1:] = (pe[1:] != pe[:-1]) | (col[1:] != col[:-1])
    z, ww, run = relative_encode(local, w, start, zbits)
    # group of every output entry: the group of the real entry whose run contains it
    owner = np.repeat(np.arange(pe.size), np.diff(np.append(run, z.size)))
    return pe[owner], col[owner], (z << wbits) | ww


def build(layers: list[IntLayer], n_pes: int, max_len: int = 12, cb_bits: int = 16,
          acc_bits: int = 32, flags: int = 0, input_scale: float = 0.0) -> bytes:
    """Lay ``layers`` out for ``n_pes`` PEs; returns the image bytes (CRC32 last).

    Refuses (one-line DeepcompError) anything :func:`parse` would refuse, so
    no image is written that the reader, and so the hardware, does not take.
    The last layer's unused ``M``/``S`` are stored as 0.
    """
    if not 1 <= n_pes <= MAX_PES:
        raise DeepcompError(f"--pes {n_pes}: must be 1..{MAX_PES}")
    if not 1 <= max_len <= MAX_L:
        raise DeepcompError(f"code length bound {max_len}: must be 1..{MAX_L}")
    if cb_bits != CB_BITS or acc_bits != ACC_BITS:
        raise DeepcompError(f"the engine has {CB_BITS}-bit codebooks and a {ACC_BITS}-bit accumulator")
    if not layers or len(layers) > 255:
        raise DeepcompError(f"{len(layers)} layers: the ROM holds 1..255")
    why = chain_problem(layers)
    if why:
        raise DeepcompError(why)
    version = VERSION_CONV if any(ly.conv is not None or ly.signed for ly in layers) else VERSION
    if version == VERSION_CONV:  # the matrices in the storage order for N PEs
        if layers[0].in_size() >= 1 << 16:
            raise DeepcompError(f"{layers[0].in_size()} inputs: the ROM holds up to 65,535")
        for li, layer in enumerate(layers):
            if max(layer.in_size(n_pes), layer.out_size(n_pes)) >= 1 << 16:
                raise DeepcompError(f"layer {li}: an activation map of more than 65,535 elements for "
                                    f"{n_pes} PEs")
        layers = to_storage(layers, n_pes)
    for li, layer in enumerate(layers):
        last = li == len(layers) - 1
        if layer.bias.shape != (layer.rows,) or layer.codebook.shape != (1 << layer.wbits,):
            raise DeepcompError(f"layer {li}: bias or codebook size does not match the layer")
        if not (1 <= layer.wbits <= 8 and 1 <= layer.zbits <= 8 and layer.rows < 1 << 16 and layer.cols < 1 << 16):
            raise DeepcompError(f"layer {li}: {layer.rows}x{layer.cols}, wbits {layer.wbits}, zbits {layer.zbits} "
                                "out of the ROM's range")
        if bool(layer.relu) == last:
            raise DeepcompError(f"layer {li}: hidden layers have ReLU, the last layer has none")
        if not last and not (0 <= layer.mult < 1 << MULT_BITS and 0 <= layer.shift <= MAX_SHIFT):
            raise DeepcompError(f"layer {li}: requantization M={layer.mult} S={layer.shift} out of range")
        cb = np.asarray(layer.codebook)
        if cb[0] != 0 or np.abs(cb).max(initial=0) >= 1 << (CB_BITS - 1):
            raise DeepcompError(f"layer {li}: codebook entry 0 must be 0 and entries fit int{CB_BITS}")
        bound = layer.acc_bound()
        if bound >= 1 << (ACC_BITS - 1):
            raise DeepcompError(f"layer {li}: accumulator bound {bound} needs more than {ACC_BITS} bits")
    bits_per_pe = np.zeros(n_pes, dtype=np.int64)
    pe_bits: list[list] = [[] for _ in range(n_pes)]
    per_layer = []
    for li, layer in enumerate(layers):
        pe, col, sym = interleave(layer.index, n_pes, layer.zbits, layer.wbits)
        alphabet = 1 << (layer.zbits + layer.wbits)
        try:
            code = CanonicalCode.from_symbols(sym, alphabet, max_len)
        except ValueError as e:
            raise DeepcompError(f"layer {li}: {e}; raise the code length bound") from None
        if sym.size == 0:  # an all-zero layer still needs a valid (unused) table
            code = CanonicalCode(np.eye(1, alphabet, dtype=np.uint8)[0])
        bits = code.lengths[sym].astype(np.int64)
        colbits = np.zeros((layer.cols, n_pes), dtype=np.int64)
        np.add.at(colbits, (col, pe), bits)
        ptr = np.zeros((layer.cols + 1, n_pes), dtype=np.int64)
        ptr[1:] = np.cumsum(colbits, axis=0)
        ptr += bits_per_pe[None, :]
        bits_per_pe = ptr[-1].copy()
        for p in range(n_pes):
            pe_bits[p].append(code.encode(sym[pe == p]))
        per_layer.append((code, ptr))
    regions = []
    for p in range(n_pes):
        stream = sum(pe_bits[p][1:], pe_bits[p][0]) if pe_bits[p] else None
        raw = stream.tobytes() if stream is not None else b""
        regions.append(raw + b"\0" * (-len(raw) % 4))
    ptr_bytes = max(2, (int(bits_per_pe.max(initial=0)).bit_length() + 7) // 8)
    if ptr_bytes > 4:
        raise DeepcompError("a PE's stream exceeds 2**32 bits")

    tables = [decode_tables(code, max_len) for code, _ in per_layer]
    # the one canonical layout, which parse() requires: sections at _layout's offsets, zero gaps
    desc_size = _desc_size(version)
    layout, stream_offset = _layout([(ly.rows, ly.cols, ly.wbits, ly.zbits, t[2].size)
                                     for ly, t in zip(layers, tables, strict=True)], n_pes, max_len, ptr_bytes,
                                    desc_size)
    base = HEADER.size + desc_size * len(layers) + 8 * n_pes
    body = bytearray(stream_offset - base)
    descs = []
    for layer, (_, ptr), (limit, offset, symbols), offs in zip(layers, per_layer, tables, layout, strict=True):
        parts = {
            "codebooks": np.asarray(layer.codebook, dtype="<i2").tobytes(),
            "tables": b"".join(TABLE_ENTRY.pack(int(a), int(b)) for a, b in zip(limit, offset, strict=True)),
            "symbols": np.asarray(symbols, dtype="<u2").tobytes(),
            "biases": np.asarray(layer.bias, dtype="<i4").tobytes(),
            "pointers": _pack_ptr(ptr, ptr_bytes),
        }
        for key, raw in parts.items():
            off, n = offs[key]
            assert len(raw) == n, key
            body[off - base: off - base + n] = raw
        mult, shift = (layer.mult, layer.shift) if layer.relu else (0, 0)
        descs.append(DESC.pack(layer.rows, layer.cols, layer.wbits, layer.zbits, int(layer.relu),
                               shift, mult, *(offs[k][0] for k in ("codebooks", "tables", "symbols",
                                                                   "biases", "pointers")),
                               symbols.size, 0))
        if version == VERSION_CONV:
            descs.append(_conv_block(layer, n_pes))
    region_table = bytearray()
    off = 0
    for r in regions:
        region_table += struct.pack("<II", off, len(r))
        off += len(r)
    total = stream_offset + off + 4
    header = HEADER.pack(MAGIC, version, n_pes, len(layers), max_len, layers[0].in_size(),
                         layers[-1].rows, ptr_bytes, acc_bits, cb_bits, flags,
                         HEADER.size, stream_offset, total, input_scale)
    image = header + b"".join(descs) + bytes(region_table) + bytes(body) + b"".join(regions)
    image += struct.pack("<I", _crc(image))
    return image


def _desc_size(version: int) -> int:
    return DESC.size + (CONV_BLOCK.size if version == VERSION_CONV else 0)


def _conv_block(layer: IntLayer, n_pes: int) -> bytes:
    g = layer.conv
    if g is None:
        return CONV_BLOCK.pack(KIND_FC, layer.act, *(0,) * 12)
    return CONV_BLOCK.pack(KIND_CONV, layer.act, g.kh, g.kw, g.in_h, g.in_w, g.in_c, cs(g.in_c, n_pes),
                           g.stride, g.pad_h, g.pad_w, g.pool, g.out_h, g.out_w)


def _crc(data: bytes) -> int:
    import zlib

    return zlib.crc32(data)


def _pack_ptr(ptr: np.ndarray, nbytes: int) -> bytes:
    le = ptr.astype("<u8").reshape(-1, 1).view(np.uint8).reshape(-1, 8)
    return le[:, :nbytes].tobytes()


def _unpack_ptr(raw: bytes, nbytes: int, shape: tuple[int, int]) -> np.ndarray:
    b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, nbytes).astype(np.int64)
    return (b << (8 * np.arange(nbytes))[None, :]).sum(axis=1).reshape(shape)


def _canonical_counts(limit: np.ndarray, offset: np.ndarray, max_len: int) -> np.ndarray | None:
    """Codes per length (1..L) of the canonical code whose decoder tables these are, or None.

    The inverse of :func:`~compressor.contract.huffman.decode_tables`: each limit
    must be a whole first-code-of-the-next-length (low ``L - l`` bits zero), the
    counts non-negative, and each offset the one the counts imply.
    """
    counts = np.zeros(max_len, dtype=np.int64)
    first = base = 0
    for ln in range(1, max_len + 1):
        lim = int(limit[ln - 1])
        if lim % (1 << (max_len - ln)):
            return None
        counts[ln - 1] = (lim >> (max_len - ln)) - first
        if counts[ln - 1] < 0 or int(offset[ln - 1]) != (base - first) % (1 << 16):
            return None
        base += int(counts[ln - 1])
        first = (first + int(counts[ln - 1])) << 1
    return counts


def _layout(descs: list[tuple], n_pes: int, max_len: int, ptr_bytes: int,
            desc_size: int = DESC.size) -> tuple[list[dict], int]:
    """Canonical byte offsets of every layer's sections and the stream start (as :func:`build` lays them)."""
    off = HEADER.size + desc_size * len(descs) + 8 * n_pes
    out = []
    for rows, cols, wbits, _zbits, n_sym in descs:
        offs = {}
        for key, n in (("codebooks", 2 << wbits), ("tables", TABLE_ENTRY.size * max_len),
                       ("symbols", 2 * n_sym), ("biases", 4 * rows),
                       ("pointers", (cols + 1) * n_pes * ptr_bytes)):
            offs[key] = (off, n)
            off += n + (-n % 4)
        out.append(offs)
    return out, off


def parse(data: bytes, path: str | Path = "<bytes>") -> RomImage:
    """Read and validate an image; anything else raises FormatError naming ``path``.

    The golden model is the hardware's specification, so this accepts exactly
    the images the RTL computes correctly (docs/format.md, "Limits"): every
    field within the hardware's domain, the canonical layout :func:`build`
    writes (no stray bytes, zero padding), and no accumulator that can
    overflow 32 bits (re-checked from the stored values by the golden model).
    Nothing is allocated beyond a small multiple of the file's size.
    """
    if len(data) < 4 or data[:4] != MAGIC:
        raise FormatError(f"{path}: not a deepcomp ROM image (bad magic {bytes(data[:4])!r})")
    if len(data) > 4 and data[4] not in (VERSION, VERSION_CONV):
        raise FormatError(f"{path}: unsupported ROM version {data[4]} (this reads {VERSION} and {VERSION_CONV})")
    r = Reader(data, path)
    (_, version, n_pes, n_layers, max_len, in_size, n_cls, ptr_bytes, acc_bits, cb_bits, flags,
     desc_off, stream_off, total, input_scale) = HEADER.unpack(r.take(HEADER.size))
    size = len(r.data)
    if total != len(data):
        r.fail(f"header says {total} bytes, file has {len(data)}")
    if not (1 <= n_pes <= MAX_PES and 1 <= max_len <= MAX_L and n_layers >= 1 and 2 <= ptr_bytes <= 4):
        r.fail("header fields out of range")
    if cb_bits != CB_BITS or acc_bits != ACC_BITS:
        r.fail(f"cb_bits {cb_bits} / acc_bits {acc_bits}: the engine has {CB_BITS}-bit codebooks "
               f"and a {ACC_BITS}-bit accumulator")
    if flags > FLAG_SIGNED_INPUT or not (np.isfinite(input_scale) and input_scale >= 0) \
            or (input_scale > 0) != bool(flags & FLAG_SIGNED_INPUT):
        r.fail("header flags or input scale out of range")
    if desc_off != HEADER.size:
        r.fail("section offsets out of range")
    raw_descs, blocks = [], []
    for _ in range(n_layers):
        raw_descs.append(DESC.unpack(r.take(DESC.size)))
        blocks.append(CONV_BLOCK.unpack(r.take(CONV_BLOCK.size)) if version == VERSION_CONV else None)
    regions = [struct.unpack("<II", r.take(8)) for _ in range(n_pes)]
    convs, acts = _conv_fields(r, raw_descs, blocks, n_pes, in_size)
    geometry = []
    budget = WEIGHTS_FLOOR + WEIGHTS_PER_BYTE * len(data)  # weights the golden model will hold
    for li, (rows, cols, wbits, zbits, relu, shift, mult, *_, n_sym, reserved) in enumerate(raw_descs):
        last = li == n_layers - 1
        if not (1 <= wbits <= 8 and 1 <= zbits <= 8 and rows >= 1 and cols >= 1):
            r.fail(f"layer {li}: geometry out of range")
        if rows * cols > budget:
            r.fail(f"layer {li}: {rows}x{cols} weights are implausible for a {len(data)}-byte image")
        budget -= rows * cols
        if relu != (0 if last else 1) or reserved:
            r.fail(f"layer {li}: relu must be {0 if last else 1} ({'last' if last else 'hidden'} layer), "
                   "reserved 0")
        if (last and (mult or shift)) or mult >= 1 << MULT_BITS or shift > MAX_SHIFT:
            r.fail(f"layer {li}: requantization M={mult} S={shift} out of range")
        if not 1 <= n_sym <= 1 << (wbits + zbits):
            r.fail(f"layer {li}: {n_sym} symbols for an alphabet of {1 << (wbits + zbits)}")
        geometry.append((rows, cols, wbits, zbits, n_sym))
    if raw_descs[-1][0] != n_cls:
        r.fail("header geometry disagrees with the layer descriptors")
    desc_size = _desc_size(version)
    layout, canonical_stream_off = _layout(geometry, n_pes, max_len, ptr_bytes, desc_size)
    at = canonical_stream_off
    for off, ln in regions:
        if off != at - canonical_stream_off or ln % 4:
            r.fail("PE stream regions not contiguous and 4-byte sized")
        at += ln
    if stream_off != canonical_stream_off or at != size:
        r.fail("sections do not tile the image (stray or missing bytes before the CRC)")
    for li, d in enumerate(raw_descs):
        if tuple(d[7:12]) != tuple(layout[li][k][0] for k in ("codebooks", "tables", "symbols", "biases",
                                                               "pointers")):
            r.fail(f"layer {li}: section offsets are not the canonical layout")
    used = np.zeros(size, dtype=bool)  # every byte outside a section is zero padding
    used[:HEADER.size + desc_size * n_layers + 8 * n_pes] = True
    used[stream_off:] = True
    for offs in layout:
        for off, n in offs.values():
            used[off:off + n] = True
    if np.frombuffer(r.data, dtype=np.uint8)[~used].any():
        r.fail("non-zero padding between sections")
    streams = [bytes(r.data[stream_off + off: stream_off + off + ln]) for off, ln in regions]
    region_bits = np.array([8 * ln for _, ln in regions])

    layers = []
    for li, ((rows, cols, wbits, zbits, relu, shift, mult, *_), offs) in enumerate(zip(raw_descs, layout,
                                                                                    strict=True)):
        def section(key: str, offs: dict = offs) -> bytes:
            off, n = offs[key]
            return bytes(r.data[off: off + n])

        codebook = np.frombuffer(section("codebooks"), dtype="<i2").astype(np.int64)
        if codebook[0] != 0:
            r.fail(f"layer {li}: codebook entry 0 must be the zero weight")
        tab = np.frombuffer(section("tables"), dtype="<u4")
        limit, offset = tab[0::2].astype(np.int64), tab[1::2].astype(np.int64)
        if np.any(np.diff(limit) < 0) or limit[-1] > 1 << max_len or np.any(offset >= 1 << 16):
            r.fail(f"layer {li}: malformed Huffman table")
        symbols = np.frombuffer(section("symbols"), dtype="<u2").astype(np.int64)
        if symbols.max(initial=0) >= 1 << (wbits + zbits):
            r.fail(f"layer {li}: symbol outside the alphabet")
        counts = _canonical_counts(limit, offset, max_len)
        group = np.repeat(np.arange(max_len), counts) if counts is not None else None
        if group is None or group.size != symbols.size \
                or np.any(np.diff(symbols)[group[1:] == group[:-1]] <= 0):
            # a table `decode_tables` would not write: its limits could depend on bits past a
            # code (the RTL sees zeros past a column end, the golden model the next column)
            r.fail(f"layer {li}: Huffman table is not the canonical table of any code")
        bias = np.frombuffer(section("biases"), dtype="<i4").astype(np.int64)
        ptr = _unpack_ptr(section("pointers"), ptr_bytes, (cols + 1, n_pes))
        if np.any(np.diff(ptr, axis=0) < 0) or np.any(ptr[-1] > region_bits) \
                or (li and np.any(ptr[0] != layers[-1].ptr[-1])) or (not li and np.any(ptr[0])):
            r.fail(f"layer {li}: column pointers not increasing, not contiguous or past the PE stream")
        padded = _padded_columns(convs, raw_descs, li, n_pes, cols)
        if padded is not None and np.any(np.diff(ptr, axis=0)[padded]):
            r.fail(f"layer {li}: a padded channel's column holds entries")
        layers.append(RomLayer(rows, cols, wbits, zbits, bool(relu), mult, shift, codebook,
                               limit, offset, symbols, bias, ptr, convs[li], acts[li] == ACT_SIGNED))
    for p, (raw, end) in enumerate(zip(streams, layers[-1].ptr[-1].tolist(), strict=True)):
        # a region is its codes, zero-padded to 4 bytes: no unused bytes for the decoder to wade through
        if len(raw) != 4 * -(-end // 32) or np.unpackbits(np.frombuffer(raw[end // 8:], dtype=np.uint8))[end % 8:].any():
            r.fail(f"PE {p}: stream region of {len(raw)} bytes for {end} bits of codes "
                   "(must be the codes, zero-padded to a multiple of 4 bytes)")
    return RomImage(n_pes, max_len, in_size, n_cls, cb_bits, acc_bits, flags, layers, streams,
                    ptr_bytes, total, input_scale, [stream_off + off for off, _ in regions], version)


def _conv_fields(r: Reader, descs: list[tuple], blocks: list[tuple | None], n_pes: int,
                 in_size: int) -> tuple[list[ConvGeom | None], list[int]]:
    """Check the version 2 blocks and how the layers chain; each layer's geometry and act code.

    Layer i's input (in storage order for N PEs) must be exactly layer i-1's output: an fc
    layer's cols, a conv layer's ``in_h * in_w * cs_in``; a conv layer's rows * Hp * Wp,
    padded to ``cs(rows)`` channels. A convolution follows only a convolution (its map).
    """
    convs: list[ConvGeom | None] = []
    acts: list[int] = []
    for li, ((rows, cols, *_), block) in enumerate(zip(descs, blocks, strict=True)):
        last = li == len(descs) - 1
        if block is None:  # version 1
            convs.append(None)
            acts.append(ACT_LOGITS if last else ACT_RELU)
        else:
            kind, act, kh, kw, in_h, in_w, in_c, cs_in, stride, pad_h, pad_w, pool, out_h, out_w = block
            if kind not in (KIND_FC, KIND_CONV) or (act != ACT_LOGITS if last else act not in (ACT_RELU, ACT_SIGNED)):
                r.fail(f"layer {li}: kind {kind} / act {act} out of range (act 0 on the last layer only)")
            if kind == KIND_FC:
                if any(block[2:]):
                    r.fail(f"layer {li}: an fc layer's conv fields must be 0")
                convs.append(None)
            else:
                g = ConvGeom(in_c, in_h, in_w, kh, kw, stride, pad_h, pad_w, out_h, out_w, pool)
                why = "a convolution cannot be the last layer" if last else g.problem()
                if why:
                    r.fail(f"layer {li}: {why}")
                if cs_in != cs(in_c, n_pes) or cols != kh * kw * cs_in:
                    r.fail(f"layer {li}: cs_in {cs_in} / cols {cols}: must be cs({in_c}) = {cs(in_c, n_pes)} "
                           f"and kh * kw * cs_in for {n_pes} PEs")
                if g.out_hp * g.out_wp * cs(rows, n_pes) >= 1 << 16 or in_h * in_w * cs_in >= 1 << 16:
                    r.fail(f"layer {li}: an activation map of more than 65,535 elements")
                convs.append(g)
            acts.append(act)
        g = convs[li]
        if li == 0:
            if (g.in_size if g is not None else cols) != in_size:
                r.fail("header geometry disagrees with the layer descriptors")
            continue
        prev, p_rows = convs[li - 1], descs[li - 1][0]
        if g is not None and (prev is None or (p_rows, prev.out_hp, prev.out_wp) != (g.in_c, g.in_h, g.in_w)):
            r.fail(f"layer {li}: a convolution's input must be the previous convolution's output map")
        have = p_rows if prev is None else prev.out_hp * prev.out_wp * cs(p_rows, n_pes)
        want = cols if g is None else g.in_h * g.in_w * cs(g.in_c, n_pes)
        if have != want:
            r.fail(f"layer {li}: {want} inputs but the previous layer has {have} outputs")
    return convs, acts


def _padded_columns(convs: list[ConvGeom | None], descs: list[tuple], li: int, n_pes: int,
                    cols: int) -> np.ndarray | None:
    """Mask of the columns of layer ``li`` that read padded channels (they must be empty), or None."""
    g = convs[li]
    if g is not None:
        return np.arange(cols) % cs(g.in_c, n_pes) >= g.in_c
    if li and convs[li - 1] is not None:
        channels = descs[li - 1][0]
        return np.arange(cols) % cs(channels, n_pes) >= channels
    return None


def save(image: bytes, path: str | Path, fmt: str = "bin") -> None:
    """Write the image as raw bytes, or as hex text for ``$readmemh`` (bin/hex/mem)."""
    if fmt == "bin":
        atomic_write(path, image)
    elif fmt in ("hex", "mem"):
        atomic_write(path, to_readmemh(image, 1 if fmt == "hex" else 4))
    else:
        raise DeepcompError(f"--format {fmt}: choose bin, hex or mem")


def read_image(path: str | Path, pes: int | None = None) -> tuple[bytes, RomImage]:
    """Read a ROM file (bin, hex or mem): the raw image bytes and the parsed image.

    A missing or unreadable file, a malformed hex/mem text or a corrupt image is a
    one-line :class:`DeepcompError`; so is an image not laid out for ``pes`` PEs
    (the RTL's parameter) when ``pes`` is given.
    """
    data = read_file(path)
    if data[:2] == b"//":
        data = from_readmemh(data, path)
    rom = parse(data, path)
    if pes is not None and pes != rom.n_pes:
        raise DeepcompError(f"{path}: laid out for {rom.n_pes} PEs, --pes {pes}")
    return data, rom


def load(path: str | Path) -> RomImage:
    return read_image(path)[1]


def load_for_pes(path: str | Path, pes: int) -> RomImage:
    """Load an image that must be laid out for ``pes`` PEs (the RTL's parameter)."""
    return read_image(path, pes)[1]
