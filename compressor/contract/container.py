"""The ``.dcz`` container: a compressed model, every byte of which counts toward the ratio.

Layout (little endian, byte-by-byte in docs/format.md)::

    version 1: "DCMP" | 1 | arch text | n_layers varint | layer* | CRC32
    version 2: "DCMP" | 2 | arch text | n_layers varint | layer* | dense tensors | program | CRC32

Version 2 holds any PyTorch model: compressed layers of four kinds (linear,
conv with any stride, padding, dilation and groups, embedding, a recurrent
weight matrix) named by module, every other tensor dense by state-dict name
(``tensors.py``), and optionally the architecture as a program. The writer
writes version 1 whenever the model fits it (the built-in Linear/Conv2d
pipeline), so those files and their sizes are what they were and the ROM
tools and fuzzers see the format they know; both versions are read.

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
from .sparse import relative_decode
from .streams import LayerStreams, best_zbits, layer_streams  # noqa: F401 (importers use container's names)
from .tensors import read_dense, read_program, write_dense, write_program

MAGIC = b"DCMP"
VERSION = 2  # the newest this writes; it reads 1 and 2
VERSIONS = (1, 2)
KINDS = {0: "linear", 1: "conv", 2: "embedding", 3: "matrix"}
KIND_CODES = {v: k for k, v in KINDS.items()}
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
PADDING_SAME = 0x10  # bit of the padding byte: padding='same' (no padding values follow)
MAX_CONV = 1 << 16  # version 2: each stride, dilation and padding value
# Limits, checked while reading and before anything is allocated, so the memory and time a
# file can cost are bounded by its size (docs/format.md, "Limits"):
MAX_LAYERS = 1024
MAX_DIM = 1 << 20  # any one dimension of a weight shape
MAX_STRIDE = 64  # version 1: convolution stride and padding
# weights a file may declare: this many per byte of the file (a 256x ratio over float32,
# 2.6x beyond the best measured) plus a floor for tiny models
WEIGHTS_PER_BYTE = 64
WEIGHTS_FLOOR = 1 << 20


def pair(v: int | tuple[int, ...] | list[int] | str) -> tuple[int, int]:
    """A conv parameter as two values (torch accepts one int for both dimensions)."""
    t = tuple(v) if isinstance(v, (tuple, list)) else (v, v)
    return (int(t[0]), int(t[-1]))


@dataclass
class LayerRecord:
    """One compressed layer: ``weight = codebook[index]`` plus float16 bias."""

    name: str  # module name ("" for a root module)
    kind: str  # "linear" | "conv" | "embedding" | "matrix" (a recurrent weight, see ``param``)
    shape: tuple[int, ...]  # weight shape: (out, in) or (out, in / groups, kh, kw)
    codebook: np.ndarray  # float32 (2**wbits,), codebook[0] == 0
    index: np.ndarray  # int64, ``shape``
    bias: np.ndarray | None
    wbits: int
    zbits: int
    stride: int | tuple[int, int] = 1
    padding: int | tuple[int, int] | str = 0  # "same" (version 2)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    padding_mode: str = "zeros"
    param: str = "weight"  # the module's attribute holding the weight
    bias_dtype: str = "float16"  # "float16" | "float32" (version 2)

    @property
    def key(self) -> str:
        """The state-dict name of the weight."""
        return f"{self.name}.{self.param}" if self.name else self.param

    def fits_v1(self) -> bool:
        """Whether version 1 can hold this record (its Linear/Conv2d fields only)."""
        if self.param != "weight" or self.bias_dtype != "float16":
            return False
        if self.kind == "linear":
            return True
        return (self.kind == "conv" and self.groups == 1 and pair(self.dilation) == (1, 1)
                and self.padding_mode == "zeros" and not isinstance(self.padding, str)
                and len(set(pair(self.stride))) == 1 and len(set(pair(self.padding))) == 1
                and 1 <= pair(self.stride)[0] <= MAX_STRIDE and 0 <= pair(self.padding)[0] <= MAX_STRIDE)

    @property
    def matrix_index(self) -> np.ndarray:
        return self.index.reshape(self.shape[0], -1)

    def weight(self) -> np.ndarray:
        return self.codebook[self.index]


@dataclass
class CompressedModel:
    arch: str
    layers: list[LayerRecord]
    # version 2: every other tensor of the state dict, exactly, by name (BatchNorm, LayerNorm, ...)
    dense: dict[str, np.ndarray] = field(default_factory=dict)
    program: tuple[int, bytes] | None = None  # (kind, bytes): the embedded architecture
    version: int = 0  # the version read (0: not read from a file)
    streams: list[LayerStreams] = field(default_factory=list, repr=False)
    # per layer, bytes of the file by kind: weights, index, codebook, bias, overhead
    breakdown: list[dict[str, int]] = field(default_factory=list, repr=False)
    header_bytes: int = 0

    def params(self) -> int:
        n = 0
        for r in self.layers:
            n += int(np.prod(r.shape)) + (r.bias.size if r.bias is not None else 0)
        return n + sum(a.size for a in self.dense.values() if a.dtype.kind == "f")

    def fits_v1(self) -> bool:
        return bool(self.layers) and not self.dense and self.program is None and all(
            r.fits_v1() for r in self.layers)

    def dense_bytes(self) -> int:
        """Size of the same model as float32: the numerator of the compression ratio."""
        return 4 * self.params()


def encode(cm: CompressedModel) -> bytes:
    """Serialise ``cm`` (and fill ``cm.streams`` for stats) into ``.dcz`` bytes.

    Version 1 when the model fits it (the built-in pipeline's files are unchanged), else 2.
    """
    version = 1 if cm.fits_v1() else 2
    out = Writer()
    out.raw(MAGIC)
    out.u8(version)
    out.text(cm.arch)
    out.varint(len(cm.layers))
    cm.streams, cm.breakdown = [], []
    for rec in cm.layers:
        start = len(out.buf)
        st = layer_streams(rec)
        cm.streams.append(st)
        (_record_head_v1 if version == 1 else _record_head_v2)(out, rec)
        out.u8((rec.wbits << 4) | rec.zbits)
        out.varint(int(st.z.size))
        out.f16(rec.codebook[1:])
        bias_bytes = 0
        if rec.bias is not None:
            f32 = version == 2 and rec.bias_dtype == "float32"
            out.raw(np.asarray(rec.bias, dtype="<f4" if f32 else "<f2").tobytes())
            bias_bytes = (4 if f32 else 2) * rec.bias.size
        out.nibbles(st.wcode.lengths)
        out.nibbles(st.zcode.lengths)
        part = {"codebook": 2 * ((1 << rec.wbits) - 1), "bias": bias_bytes}
        for key, code, sym in (("weights", st.wcode, st.w), ("index", st.zcode, st.z)):
            raw = code.encode(sym).tobytes()
            out.varint(len(raw))
            out.raw(raw)
            part[key] = len(raw)
        part["overhead"] = len(out.buf) - start - sum(part.values())
        cm.breakdown.append(part)
    if version == 2:
        write_dense(out, cm.dense)
        write_program(out, cm.program)
    cm.header_bytes = len(out.buf) - sum(sum(p.values()) for p in cm.breakdown) + 4  # + CRC
    return out.with_crc()


def _record_head_v1(out: Writer, rec: LayerRecord) -> None:
    conv = rec.kind == "conv"
    out.text(rec.name)
    out.u8((1 if conv else 0) | (2 if rec.bias is not None else 0))
    for d in rec.shape:
        out.varint(d)
    if conv:
        out.varint(pair(rec.stride)[0])
        out.varint(pair(rec.padding)[0])


def _record_head_v2(out: Writer, rec: LayerRecord) -> None:
    out.text(rec.name)
    out.u8(KIND_CODES[rec.kind])
    out.u8(0 if rec.bias is None else 2 if rec.bias_dtype == "float32" else 1)
    if rec.kind == "matrix":
        out.text(rec.param)
    for d in rec.shape:
        out.varint(d)
    if rec.kind == "conv":
        for v in (*pair(rec.stride), *pair(rec.dilation), rec.groups):
            out.varint(v)
        same = rec.padding == "same"
        out.u8(PADDING_MODES.index(rec.padding_mode) | (PADDING_SAME if same else 0))
        if not same:
            for v in pair(rec.padding):  # type: ignore[arg-type]
                out.varint(v)


def _read_head_v1(r: Reader) -> dict:
    name = r.text()
    flags = r.u8()
    if flags > 3:
        r.fail(f"layer {name}: unknown flags {flags:#x}")
    conv = bool(flags & 1)
    head = {"name": name, "kind": KINDS[int(conv)], "bias": "float16" if flags & 2 else None,
            "shape": _read_shape(r, name, 4 if conv else 2)}
    if conv:
        head["stride"], head["padding"] = r.varint(MAX_STRIDE), r.varint(MAX_STRIDE)
        if head["stride"] == 0:
            r.fail(f"layer {name}: stride 0")
    return head


def _read_head_v2(r: Reader) -> dict:
    name = r.text()
    code, flags = r.u8(), r.u8()
    if code not in KINDS:
        r.fail(f"layer {name}: unknown kind {code}")
    kind = KINDS[code]
    if flags > 2 or (flags and kind not in ("linear", "conv")):
        r.fail(f"layer {name}: unknown flags {flags:#x} for a {kind} layer")
    head: dict = {"name": name, "kind": kind, "bias": {0: None, 1: "float16", 2: "float32"}[flags]}
    if kind == "matrix":
        head["param"] = r.text()
        if not head["param"].isidentifier():
            r.fail(f"layer {name}: parameter name {head['param']!r} is not an attribute name")
    head["shape"] = shape = _read_shape(r, name, 4 if kind == "conv" else 2)
    if kind == "conv":
        sh, sw, dh, dw = (r.varint(MAX_CONV) for _ in range(4))
        groups = r.varint(MAX_DIM)
        if 0 in (sh, sw, dh, dw) or groups == 0 or shape[0] % groups:
            r.fail(f"layer {name}: stride ({sh}, {sw}), dilation ({dh}, {dw}) or groups {groups} "
                   f"invalid for {shape[0]} output channels")
        mode = r.u8()
        if mode & ~(PADDING_SAME | 3):
            r.fail(f"layer {name}: unknown padding byte {mode:#x}")
        head.update(stride=(sh, sw), dilation=(dh, dw), groups=groups,
                    padding_mode=PADDING_MODES[mode & 3],
                    padding="same" if mode & PADDING_SAME else (r.varint(MAX_CONV), r.varint(MAX_CONV)))
    return head


def _read_shape(r: Reader, name: str, n: int) -> tuple[int, ...]:
    shape = tuple(r.varint(limit=MAX_DIM) for _ in range(n))
    if 0 in shape:
        r.fail(f"layer {name}: empty weight shape {shape}")
    return shape


def decode(data: bytes, path: str | Path = "<bytes>") -> CompressedModel:
    """Parse ``.dcz`` bytes (version 1 or 2); any inconsistency raises FormatError naming ``path``."""
    if data[:4] != MAGIC:
        raise DeepcompError(f"{path}: not a deepcomp .dcz file (bad magic {bytes(data[:4])!r})")
    if len(data) > 4 and data[4] not in VERSIONS:
        raise DeepcompError(f"{path}: unsupported .dcz version {data[4]} (this reads 1 and 2)")
    r = Reader(data, path)
    version = r.take(5)[4]
    arch = r.text()
    budget = WEIGHTS_FLOOR + WEIGHTS_PER_BYTE * len(data)  # weights this file may still declare
    layers = []
    n_layers = r.varint(limit=MAX_LAYERS)
    if n_layers == 0 and version == 1:
        r.fail("no layers")
    for _ in range(n_layers):
        head = (_read_head_v1 if version == 1 else _read_head_v2)(r)
        name, shape = head.pop("name"), head.pop("shape")
        size = int(np.prod(shape, dtype=np.float64))
        if size > budget:
            r.fail(f"layer {name}: weight shape {shape} is implausible for a {len(data)}-byte file "
                   f"(at most {WEIGHTS_PER_BYTE} weights per byte)")
        budget -= size
        wz = r.u8()
        wbits, zbits = wz >> 4, wz & 15
        if not (1 <= wbits <= 8 and 1 <= zbits <= 8):
            r.fail(f"layer {name}: widths wbits={wbits} zbits={zbits} out of range")
        # every entry is at least one bit in each stream, and the streams are in the file
        n_entries = r.varint(limit=8 * len(data))
        entries = r.f16((1 << wbits) - 1)
        bias_dtype = head.pop("bias")
        bias = None
        if bias_dtype == "float16":
            bias = r.f16(shape[0])
        elif bias_dtype == "float32":
            bias = np.frombuffer(r.take(4 * shape[0]), dtype="<f4").astype(np.float32)
        # checked before any further cast: a signalling NaN would make numpy warn on stderr
        if not (np.isfinite(entries).all() and (bias is None or np.isfinite(bias).all())):
            r.fail(f"layer {name}: codebook or bias is not finite")
        codebook = np.concatenate([[0.0], entries]).astype(np.float32)
        index = _read_streams(r, name, shape, size, wbits, zbits, n_entries)
        layers.append(LayerRecord(name, head.pop("kind"), shape, codebook, index, bias, wbits, zbits,
                                  bias_dtype=bias_dtype or "float16", **head))
    dense: dict[str, np.ndarray] = {}
    program = None
    if version == 2:
        dense = read_dense(r)
        program = read_program(r)
        if not layers and not dense:
            r.fail("stores no tensor")
        keys = [rec.key for rec in layers]
        clash = (set(keys) & set(dense)) | {k for k in keys if keys.count(k) > 1}
        if clash:
            r.fail(f"tensor {sorted(clash)[0]} stored twice")
    r.expect_end()
    return CompressedModel(arch, layers, dense, program, version)


def _read_streams(r: Reader, name: str, shape: tuple[int, ...], size: int,
                  wbits: int, zbits: int, n_entries: int) -> np.ndarray:
    """The two Huffman streams of a layer, decoded into its index array (uint8, ``shape``)."""
    wcode = CanonicalCode(r.nibbles(1 << wbits))
    zcode = CanonicalCode(r.nibbles(1 << zbits))
    streams = []
    for code in (wcode, zcode):
        raw = bytes(r.take(r.varint(limit=len(r.data))))
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
    return np.ascontiguousarray(index.T).reshape(shape)


def save(cm: CompressedModel, path: str | Path) -> int:
    """Write ``cm``; the bytes are read back first, so no file is written that :func:`load` refuses."""
    for rec in cm.layers:
        bias16 = rec.bias_dtype == "float16" or cm.fits_v1()
        for what, values, dt in (("codebook", rec.codebook, np.float16),
                                 ("bias", rec.bias, np.float16 if bias16 else np.float32)):
            if values is not None and not np.isfinite(np.asarray(values, dtype=dt)).all():
                raise DeepcompError(f"{path}: not written: layer {rec.name}'s {what} is not finite in "
                                    f"{np.dtype(dt).name} (NaN, or beyond its range)")
    data = encode(cm)
    try:
        decode(data, path)
    except DeepcompError as e:
        raise DeepcompError(f"{path}: not written, it would not read back: {str(e).split(': ', 1)[-1]}") from None
    atomic_write(path, data)
    return len(data)


def load(path: str | Path) -> CompressedModel:
    return decode(read_file(path), path)
