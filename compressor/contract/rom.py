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
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .binfmt import Reader, atomic_write, read_file
from .errors import DeepcompError, FormatError
from .fixedpoint import IntLayer
from .huffman import CanonicalCode, decode_tables
from .sparse import relative_encode

MAGIC = b"DCRM"
VERSION = 1
HEADER = struct.Struct("<4sBBBBHHBBBBIIIf")  # 32 bytes
DESC = struct.Struct("<HHBBBBIIIIIIHH")  # 36 bytes
TABLE_ENTRY = struct.Struct("<II")  # limit, offset for one code length
MAX_PES = 64
MAX_L = 16
FLAG_SIGNED_INPUT = 1


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
    """Lay ``layers`` out for ``n_pes`` PEs; returns the image bytes (CRC32 last)."""
    if not 1 <= n_pes <= MAX_PES:
        raise DeepcompError(f"--pes {n_pes}: must be 1..{MAX_PES}")
    if not 1 <= max_len <= MAX_L:
        raise DeepcompError(f"code length bound {max_len}: must be 1..{MAX_L}")
    for a, b in zip(layers[:-1], layers[1:], strict=False):
        if a.rows != b.cols:
            raise DeepcompError(f"layer shapes do not chain ({a.rows} outputs feed {b.cols} inputs)")
    for li, layer in enumerate(layers):
        if layer.bias.shape != (layer.rows,) or layer.codebook.shape != (1 << layer.wbits,):
            raise DeepcompError(f"layer {li}: bias or codebook size does not match the layer")
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

    body = bytearray()
    base = HEADER.size + DESC.size * len(layers) + 8 * n_pes
    descs = []
    for layer, (code, ptr) in zip(layers, per_layer, strict=True):
        limit, offset, symbols = decode_tables(code, max_len)
        parts = {
            "codebooks": np.asarray(layer.codebook, dtype="<i2").tobytes() if cb_bits <= 16
            else np.asarray(layer.codebook, dtype="<i4").tobytes(),
            "tables": b"".join(TABLE_ENTRY.pack(int(a), int(b)) for a, b in zip(limit, offset, strict=True)),
            "symbols": np.asarray(symbols, dtype="<u2").tobytes(),
            "biases": np.asarray(layer.bias, dtype="<i4").tobytes(),
            "pointers": _pack_ptr(ptr, ptr_bytes),
        }
        offs = {}
        for key, raw in parts.items():
            offs[key] = base + len(body)
            body += raw
            body += b"\0" * (-len(body) % 4)
        descs.append(DESC.pack(layer.rows, layer.cols, layer.wbits, layer.zbits, int(layer.relu),
                               layer.shift, layer.mult, offs["codebooks"], offs["tables"],
                               offs["symbols"], offs["biases"], offs["pointers"],
                               symbols.size, 0))
    stream_offset = base + len(body)
    region_table = bytearray()
    off = 0
    for r in regions:
        region_table += struct.pack("<II", off, len(r))
        off += len(r)
    total = stream_offset + off + 4
    header = HEADER.pack(MAGIC, VERSION, n_pes, len(layers), max_len, layers[0].cols,
                         layers[-1].rows, ptr_bytes, acc_bits, cb_bits, flags,
                         HEADER.size, stream_offset, total, input_scale)
    image = header + b"".join(descs) + bytes(region_table) + bytes(body) + b"".join(regions)
    image += struct.pack("<I", _crc(image))
    return image


def _crc(data: bytes) -> int:
    import zlib

    return zlib.crc32(data)


def _pack_ptr(ptr: np.ndarray, nbytes: int) -> bytes:
    le = ptr.astype("<u8").reshape(-1, 1).view(np.uint8).reshape(-1, 8)
    return le[:, :nbytes].tobytes()


def _unpack_ptr(raw: bytes, nbytes: int, shape: tuple[int, int]) -> np.ndarray:
    b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, nbytes).astype(np.int64)
    return (b << (8 * np.arange(nbytes))[None, :]).sum(axis=1).reshape(shape)


def parse(data: bytes, path: str | Path = "<bytes>") -> RomImage:
    """Read and validate an image; any inconsistency raises FormatError naming ``path``."""
    if len(data) < 4 or data[:4] != MAGIC:
        raise FormatError(f"{path}: not a deepcomp ROM image (bad magic {bytes(data[:4])!r})")
    if len(data) > 4 and data[4] != VERSION:
        raise FormatError(f"{path}: unsupported ROM version {data[4]} (this reads {VERSION})")
    r = Reader(data, path)
    (_, _, n_pes, n_layers, max_len, in_size, n_cls, ptr_bytes, acc_bits, cb_bits, flags,
     desc_off, stream_off, total, input_scale) = HEADER.unpack(r.take(HEADER.size))
    size = len(r.data)
    if total != len(data):
        r.fail(f"header says {total} bytes, file has {len(data)}")
    if not (1 <= n_pes <= MAX_PES and 1 <= max_len <= MAX_L and n_layers >= 1
            and 2 <= ptr_bytes <= 4 and cb_bits in (8, 16) and 8 <= acc_bits <= 48
            and flags <= FLAG_SIGNED_INPUT and np.isfinite(input_scale) and input_scale >= 0):
        r.fail("header fields out of range")
    if desc_off != HEADER.size or stream_off > size:
        r.fail("section offsets out of range")
    raw_descs = [DESC.unpack(r.take(DESC.size)) for _ in range(n_layers)]
    regions = [struct.unpack("<II", r.take(8)) for _ in range(n_pes)]
    streams = []
    for off, ln in regions:
        if stream_off + off + ln > size:
            r.fail("PE stream region runs past the end")
        streams.append(bytes(r.data[stream_off + off: stream_off + off + ln]))

    def section(off: int, n: int, what: str) -> bytes:
        if off < desc_off or off + n > stream_off:
            r.fail(f"{what} section out of range")
        return bytes(r.data[off: off + n])

    layers = []
    for li, (rows, cols, wbits, zbits, relu, shift, mult, cb_off, tab_off, sym_off, bias_off,
             ptr_off, n_sym, _) in enumerate(raw_descs):
        if not (1 <= wbits <= 8 and 1 <= zbits <= 8 and rows >= 1 and cols >= 1):
            r.fail(f"layer {li}: geometry out of range")
        if relu > 1 or shift > 62:
            r.fail(f"layer {li}: requantization fields out of range")
        alphabet = 1 << (wbits + zbits)
        if not 1 <= n_sym <= alphabet:
            r.fail(f"layer {li}: {n_sym} symbols for an alphabet of {alphabet}")
        cb_dt = "<i2" if cb_bits == 16 else "<i1"
        cb_raw = section(cb_off, (1 << wbits) * np.dtype(cb_dt).itemsize, f"layer {li} codebook")
        codebook = np.frombuffer(cb_raw, dtype=cb_dt).astype(np.int64)
        tab = np.frombuffer(section(tab_off, 8 * max_len, f"layer {li} table"), dtype="<u4")
        limit, offset = tab[0::2].astype(np.int64), tab[1::2].astype(np.int64)
        if np.any(np.diff(limit) < 0) or limit[-1] > 1 << max_len or np.any(offset >= 1 << 16):
            r.fail(f"layer {li}: malformed Huffman table")
        symbols = np.frombuffer(section(sym_off, 2 * n_sym, f"layer {li} symbols"), dtype="<u2").astype(np.int64)
        if symbols.max(initial=0) >= alphabet:
            r.fail(f"layer {li}: symbol outside the alphabet")
        bias = np.frombuffer(section(bias_off, 4 * rows, f"layer {li} biases"), dtype="<i4").astype(np.int64)
        ptr = _unpack_ptr(section(ptr_off, (cols + 1) * n_pes * ptr_bytes, f"layer {li} pointers"),
                          ptr_bytes, (cols + 1, n_pes))
        region_bits = np.array([8 * ln for _, ln in regions])
        if np.any(np.diff(ptr, axis=0) < 0) or np.any(ptr[-1] > region_bits):
            r.fail(f"layer {li}: column pointers not increasing or past the PE stream")
        if li and cols != layers[-1].rows:
            r.fail(f"layer {li}: {cols} inputs but the previous layer has {layers[-1].rows} outputs")
        layers.append(RomLayer(rows, cols, wbits, zbits, bool(relu), mult, shift, codebook,
                               limit, offset, symbols, bias, ptr))
    if layers[0].cols != in_size or layers[-1].rows != n_cls:
        r.fail("header geometry disagrees with the layer descriptors")
    return RomImage(n_pes, max_len, in_size, n_cls, cb_bits, acc_bits, flags, layers, streams,
                    ptr_bytes, total, input_scale, [stream_off + off for off, _ in regions])


def section_sizes(rom: RomImage) -> dict[str, int]:
    """Bytes of each kind of content (alignment padding reported separately)."""
    ls = rom.layers
    sizes = {
        "header+descriptors": HEADER.size + DESC.size * len(ls) + 8 * rom.n_pes,
        "codebooks": sum(2 * ly.codebook.size for ly in ls),
        "huffman_tables": sum(8 * rom.max_len + 2 * ly.symbols.size for ly in ls),
        "biases": sum(4 * ly.rows for ly in ls),
        "pointers": sum(ly.ptr.size * rom.ptr_bytes for ly in ls),
        "streams": sum(len(s) for s in rom.streams),
        "crc": 4,
    }
    sizes["padding"] = rom.total_bytes - sum(sizes.values())
    return sizes


def column_length_bytes(rom: RomImage) -> int:
    """What per-column bit *lengths* (the alternative to pointers) would cost, fixed width per layer."""
    total = 0
    for ly in rom.layers:
        seg = np.diff(ly.ptr, axis=0)
        total += seg.size * int(seg.max(initial=0)).bit_length()
    return (total + 7) // 8


def save(image: bytes, path: str | Path, fmt: str = "bin") -> None:
    """Write the image as raw bytes, or as hex text for ``$readmemh`` (bin/hex/mem)."""
    if fmt == "bin":
        atomic_write(path, image)
    elif fmt in ("hex", "mem"):
        atomic_write(path, to_readmemh(image, 1 if fmt == "hex" else 4))
    else:
        raise DeepcompError(f"--format {fmt}: choose bin, hex or mem")


def to_readmemh(image: bytes, width: int) -> bytes:
    """One ``width``-byte little-endian word per line: bytes (hex) or 32-bit words (mem)."""
    pad = image + b"\0" * (-len(image) % width)
    words = np.frombuffer(pad, dtype=np.uint8).reshape(-1, width)[:, ::-1]
    lines = ["".join(f"{b:02x}" for b in w) for w in words]
    header = f"// deepcomp ROM image, {len(image)} bytes, {width}-byte little-endian words\n"
    return (header + "\n".join(lines) + "\n").encode()


def from_readmemh(text: bytes, path: str | Path = "<text>") -> bytes:
    """Inverse of :func:`to_readmemh` (the header comment gives the exact length)."""
    lines = text.decode("ascii", errors="replace").splitlines()
    if not lines or not lines[0].startswith("// deepcomp ROM image, "):
        raise FormatError(f"{path}: not a deepcomp hex/mem image")
    try:
        n = int(lines[0].split(",")[1].split()[0])
        words = [bytes.fromhex(x)[::-1] for x in lines[1:] if x.strip()]
    except (ValueError, IndexError):
        raise FormatError(f"{path}: malformed hex line") from None
    return b"".join(words)[:n]


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
