"""Engine parameters and the ROM-image -> memory-contents seam.

The RTL is parameterised by :class:`EngineParams` (number of PEs, code
length bound, memory depths, field widths). :func:`fit` derives the smallest
parameters that hold a given ROM image; larger parameters run the same image,
and one set of parameters runs any image that fits (checked at run time by
the sequencer, which raises a *parameter mismatch* error on the result stream).

:func:`contents` is the single place where a ROM image becomes the initial
contents of the engine's memories. Why a separate seam: today the contents
are baked into the bitstream as memory ``init`` at elaboration time; a later
runtime loader (ROM bytes over UART, CRC checked) must write exactly the same
words into the same memories through write ports, so the layout decisions
(even/odd banks, per-layer bases, rescaled Huffman limits) live here and
nowhere else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from compressor.contract.errors import DeepcompError
from compressor.contract.golden import Timing
from compressor.contract.rom import RomImage

FIFO_DEPTH = 8  # per-PE activation FIFO (EIE); the cycle model's fifo_depth
BUF_BASE = 64  # per-PE bit buffer without the decode slack: one 32-bit fetch + two 16-bit decodes


def bits_for(n: int) -> int:
    """Unsigned width that holds the values 0..n."""
    return max(1, int(n).bit_length())


@dataclass(frozen=True)
class EngineParams:
    """Everything the RTL is sized by. All depths are per PE unless noted."""

    n_pes: int
    max_len: int = 12  # Lmax: longest Huffman code the decoder handles
    max_layers: int = 4
    act_depth: int = 256  # activations per bank: columns <= n_pes * act_depth
    acc_depth: int = 128  # accumulators per PE: rows <= n_pes * acc_depth
    bias_depth: int = 256  # local rows of all layers together
    stream_words: int = 2048  # 16-bit words of one PE's stream region (even + odd banks)
    ptr_rows: int = 1024  # pointer rows of all layers together (sum of C + 1)
    cb_depth: int = 128  # codebook entries of all layers together
    sym_depth: int = 1024  # Huffman symbols of all layers together
    wbits_max: int = 5
    zbits_max: int = 4
    fifo_depth: int = FIFO_DEPTH
    # streams in single-port RAM written at run time (iCE40 SPRAM, hdl/spram.py) instead of
    # block RAM initialised from the image; the other memories keep their init
    loadable_streams: bool = False
    # convolution layers, int8 activations and 2x2 max-pooling (docs/hardware.md, "Convolutions");
    # off, the engine is the fc-only one, gate for gate (the fc boards do not pay for it)
    conv: bool = False
    conv_dim: int = 10  # bits of a feature map's height, width and words per pixel
    # the symbol and accumulator block RAMs' outputs registered before any logic (hdl/decode.py,
    # hdl/mac.py; two more cycles of drain), the requantizer's product summed in a stage of its own
    # (hdl/requant.py) and the PEs' read-out sums registered before their N-way select
    # (hdl/engine.py): for the ECP5, whose DP16KD clock-to-out is a third of its cycle and whose
    # DSPs sit far from the logic; the iCE40 build is smaller and as fast without them
    # (Timing.engine gives the cycle model's constants of both)
    bram_out_regs: bool = True
    # decode contexts per PE: 2 cuts the decode loop in two stages (a register after the
    # comparators, the landing window placed a stage earlier) and keeps two columns in flight,
    # decoded in alternate cycles, each context with a FIFO of fifo_depth entries (hdl/decode.py,
    # hdl/fetch.py; Timing.contexts)
    contexts: int = 1

    def __post_init__(self) -> None:
        if self.contexts not in (1, 2):
            raise DeepcompError(f"engine: {self.contexts} decode contexts per PE, must be 1 or 2")
        if not 1 <= self.n_pes <= 64:
            raise DeepcompError(f"engine: {self.n_pes} PEs, must be 1..64")
        if not 1 <= self.max_len <= 16:
            raise DeepcompError(f"engine: code length bound {self.max_len}, must be 1..16")

    def timing(self) -> Timing:
        """The golden cycle model's constants for this engine (its FIFO depth is a parameter)."""
        return Timing.engine(self.fifo_depth, registered=self.bram_out_regs, contexts=self.contexts)

    @property
    def drain(self) -> int:
        """Last decode -> its accumulator write (hdl/pe.py): index, symbol read, [symbol registered],
        codebook, product + accumulator read, [read registered], write."""
        return 6 if self.bram_out_regs else 4

    # derived widths -------------------------------------------------------------------
    @property
    def ptr_width(self) -> int:
        """A bit offset inside one PE's stream region."""
        return bits_for(16 * self.stream_words)

    @property
    def buf_bits(self) -> int:
        """PE bit buffer: room for a 32-bit fetch plus three cycles of Lmax-bit codes beyond one
        code (the fetch-to-decode latency, hdl/pe.py), and at least 64 + Lmax."""
        return max(BUF_BASE + self.max_len, 32 + 4 * self.max_len)

    @property
    def stream_half(self) -> int:
        """Words of one even/odd stream bank."""
        return self.stream_words // 2 + self.stream_words % 2

    @property
    def sym_width(self) -> int:
        return self.wbits_max + self.zbits_max

    @property
    def max_cols(self) -> int:
        return self.n_pes * self.act_depth

    @property
    def max_rows(self) -> int:
        return self.n_pes * self.acc_depth

    @property
    def dim_width(self) -> int:
        """Rows, columns, input size (the ROM stores them as u16)."""
        return 16


def fit(rom: RomImage, n_pes: int | None = None, **overrides) -> EngineParams:
    """Smallest parameters that hold ``rom``; ``overrides`` replace single fields (e.g. a board's depths)."""
    n = rom.n_pes if n_pes is None else n_pes
    ls = rom.layers
    cols = [ly.cols for ly in ls]
    rows = [ly.rows for ly in ls]
    p = EngineParams(
        n_pes=n,
        max_len=rom.max_len,
        max_layers=len(ls),
        act_depth=max(1, math.ceil(max(cols + rows) / n)),
        acc_depth=max(1, math.ceil(max(rows) / n)),
        bias_depth=max(1, sum(math.ceil(r / n) for r in rows)),
        stream_words=max(2, max((len(s) + 1) // 2 for s in rom.streams)),
        ptr_rows=max(2, sum(c + 1 for c in cols)),
        cb_depth=max(1, sum(1 << ly.wbits for ly in ls)),
        sym_depth=max(1, sum(ly.symbols.size for ly in ls)),
        wbits_max=max(ly.wbits for ly in ls),
        zbits_max=max(ly.zbits for ly in ls),
        conv=needs_conv(rom),
    )
    if p.conv:
        p = replace(p, act_depth=max(1, act_words(rom, n)))
    return replace(p, **{k: v for k, v in overrides.items() if v is not None})


def needs_conv(rom: RomImage) -> bool:
    """The image has a convolution or an int8 (signed) hidden layer: the engine's ``conv`` option."""
    return any(ly.conv is not None or ly.signed for ly in rom.layers)


def in_words(ly, n: int) -> int:
    """Bank words of a layer's input: an fc layer's ``ceil(cols / N)``, a conv layer's ``H * W * cs / N``."""
    g = ly.conv
    return math.ceil(ly.cols / n) if g is None else g.in_h * g.in_w * (ly.cols // (g.kh * g.kw)) // n


def out_words(ly, n: int) -> int:
    """Bank words of a layer's output: ``ceil(R / N)`` per output pixel (a conv layer's pooled map)."""
    g = ly.conv
    pixels = 1 if g is None else (g.out_h // g.pool) * (g.out_w // g.pool)
    return math.ceil(ly.rows / n) * pixels


def act_bases(rom: RomImage, n: int) -> list[tuple[int, int]]:
    """Per layer, the bank word where its input starts and where its output goes.

    Why two regions: an fc layer writes its output over its input (its tail
    runs after its scan), but a convolution reads its input map while it
    writes its output map, so its output goes right behind its input, or to
    word 0 when the input is not at word 0 (the regions alternate).
    """
    bases, ib = [], 0
    for ly in rom.layers:
        ob = ib if ly.conv is None else (0 if ib else in_words(ly, n))
        bases.append((ib, ob))
        ib = ob
    return bases


def act_words(rom: RomImage, n: int) -> int:
    """Words per activation bank that every layer's input and output regions need."""
    return max(max(ib + in_words(ly, n), ob + out_words(ly, n))
               for (ib, ob), ly in zip(act_bases(rom, n), rom.layers, strict=True))


@dataclass
class LayerWord:
    """One layer descriptor as the sequencer's descriptor memory holds it."""

    rows: int
    cols: int
    wbits: int
    zbits: int
    relu: int
    shift: int
    mult: int
    n_sym: int
    sym_base: int
    cb_base: int
    bias_base: int
    ptr_base: int
    limit: list[int]  # Lmax entries, rescaled to Lmax bits (see contents())
    offset: list[int]
    # activation regions (bank words) and, with ``EngineParams.conv``, a convolution's geometry as the
    # sequencer and broadcaster count it: incremental steps instead of multipliers (conv_fields())
    in_base: int = 0
    out_base: int = 0
    conv: int = 0
    in_signed: int = 0
    out_signed: int = 0
    pool: int = 0
    kw: int = 0
    gpp: int = 0  # bank words (groups of N channels) per input pixel
    in_h: int = 0
    in_w: int = 0
    hp: int = 0  # output map after pooling
    wp: int = 0
    row_step: int = 0  # words from one kernel row to the next: in_w * gpp
    base0: int = 0  # word of position (0, 0)'s patch origin (may be negative: padding)
    iy0: int = 0  # -pad_h, -pad_w
    ix0: int = 0
    stride: int = 0
    pstride: int = 0  # input rows / columns per output pixel after pooling: pool * stride
    x_step: int = 0  # words per output column: stride * gpp
    y_step: int = 0  # words per output row: stride * in_w * gpp
    gpo: int = 0  # bank words per output pixel: ceil(rows / N)


@dataclass
class Contents:
    """Initial contents of every engine memory (what a runtime loader would write)."""

    header: dict  # n_pes, n_layers, max_len, input_size, n_classes, flags
    layers: list[LayerWord]
    stream_even: list[list[int]]  # per PE, 16-bit words 0, 2, 4, ...
    stream_odd: list[list[int]]  # per PE, words 1, 3, 5, ...
    ptr_even: list[list[int]]  # per PE, pointer rows 0, 2, 4, ... (all layers, base per layer)
    ptr_odd: list[list[int]]
    # per PE and pointer row g: bad << 1 | empty of the column starting there (ptr[g + 1] < / ==
    # ptr[g]); stored beside the pointers so the PE need not compare after its pointer reads
    ptr_flags: list[list[int]]
    bias: list[list[int]]  # per PE, local rows of all layers
    codebook: list[int]  # shared contents, one physical copy per PE
    symbols: list[int]
    notes: list[str] = field(default_factory=list)  # what did not fit (flagged at run time)


def _clip(values: list[int], depth: int, what: str, notes: list[str]) -> list[int]:
    if len(values) > depth:
        notes.append(f"{what}: {len(values)} entries, memory holds {depth}")
        return values[:depth]
    return values + [0] * (depth - len(values))


def contents(rom: RomImage, p: EngineParams) -> Contents:
    """Lay ``rom`` out in the engine's memories.

    * Stream regions: 16-bit words (word k = bytes 2k high, 2k + 1 low, so the
      stream stays MSB-first), split into even and odd banks so any two
      consecutive words -- a 32-bit window at a 16-bit boundary -- read in one cycle.
    * Pointers: rows of all layers concatenated per PE (layer base ``ptr_base``),
      even/odd banks so the start (row j) and end (row j + 1) of a column read together.
    * Symbols: each layer's canonical symbol order, the joint symbol ``(z, w)`` stored as
      ``z << wbits_max | w`` (fixed fields, whatever the layer's wbits).
    * Huffman limits are rescaled from the image's L to the decoder's Lmax bits
      (``limit << (Lmax - L)``; lengths above L repeat ``limit[L]``, so they never match):
      the decoder then always compares the top Lmax bits of its buffer.
    * Biases: local row i of PE q in layer l at ``bias_base[l] + i`` (row i*N + q).

    Anything that does not fit is dropped and recorded in ``notes``; the header
    and descriptors are stored as they are, so the run-time parameter check
    reports the mismatch instead of the engine computing garbage.
    """
    n = p.n_pes
    notes: list[str] = []
    lmax = p.max_len
    header = dict(n_pes=rom.n_pes, n_layers=len(rom.layers), max_len=rom.max_len,
                  input_size=rom.input_size, n_classes=rom.n_classes, flags=rom.flags)
    g0 = rom.layers[0].conv
    if p.conv:  # the input loader's geometry: a conv net's image arrives in (C, H, W) order
        header.update(conv0=int(g0 is not None), in_c=g0.in_c if g0 else 0, in_hw=g0.in_h * g0.in_w if g0 else 0,
                      in_gpp=rom.layers[0].cols // (g0.kh * g0.kw) // n if g0 else 0)
    layers: list[LayerWord] = []
    sym_all: list[int] = []
    cb_all: list[int] = []
    bias_pe: list[list[int]] = [[] for _ in range(n)]
    ptr_pe: list[list[int]] = [[] for _ in range(n)]
    bias_base = ptr_base = 0
    for ly in rom.layers:
        limit = [int(v) for v in ly.limit]
        if rom.max_len <= lmax:
            sh = lmax - rom.max_len
            limit = [v << sh for v in limit] + [limit[-1] << sh] * (lmax - rom.max_len)
            offset = [int(v) for v in ly.offset] + [0] * (lmax - rom.max_len)
        else:  # does not fit: the header check rejects it at run time
            limit, offset = [0] * lmax, [0] * lmax
        local_rows = math.ceil(ly.rows / n)
        layers.append(LayerWord(ly.rows, ly.cols, ly.wbits, ly.zbits, int(ly.relu), ly.shift,
                                ly.mult, int(ly.symbols.size), len(sym_all), len(cb_all),
                                bias_base, ptr_base, limit, offset,
                                **(conv_fields(rom, len(layers), n) if p.conv else {})))
        # (z, w) in fixed fields, w in the low wbits_max bits: the PE splits the symbol
        # memory's output without a shift by the layer's wbits
        wm = (1 << ly.wbits) - 1
        sym_all += [((int(s) >> ly.wbits) << p.wbits_max) | (int(s) & wm) for s in ly.symbols]
        cb_all += [int(c) & 0xFFFF for c in ly.codebook]
        for q in range(n):
            b = [int(ly.bias[i * n + q]) if i * n + q < ly.rows else 0 for i in range(local_rows)]
            bias_pe[q] += [v & 0xFFFFFFFF for v in b]
            if q < ly.ptr.shape[1]:
                ptr_pe[q] += [int(v) for v in ly.ptr[:, q]]
            else:
                ptr_pe[q] += [0] * (ly.cols + 1)
        bias_base += local_rows
        ptr_base += ly.cols + 1
    s_even, s_odd, p_even, p_odd, p_flags = [], [], [], [], []
    half_s = p.stream_words // 2 + p.stream_words % 2
    half_p = p.ptr_rows // 2 + p.ptr_rows % 2
    for q in range(n):
        raw = rom.streams[q] if q < len(rom.streams) else b""
        raw = raw + b"\0" * (len(raw) % 2)
        words = np.frombuffer(raw, dtype=">u2").astype(int).tolist()
        s_even.append(_clip(words[0::2], half_s, f"PE {q} stream (even words)", notes))
        s_odd.append(_clip(words[1::2], half_s, f"PE {q} stream (odd words)", notes))
        mask = (1 << p.ptr_width) - 1
        if any(v > mask for v in ptr_pe[q]):
            notes.append(f"PE {q}: a pointer exceeds {p.ptr_width} bits")
        rows_q = [v & mask for v in ptr_pe[q]]
        p_even.append(_clip(rows_q[0::2], half_p, f"PE {q} pointers", notes))
        p_odd.append(_clip(rows_q[1::2], half_p, f"PE {q} pointers", notes))
        r = np.array(rows_q, dtype=np.int64)
        flags = ((r[1:] < r[:-1]).astype(int) << 1 | (r[1:] == r[:-1])).tolist()
        p_flags.append((flags + [0] * p.ptr_rows)[: p.ptr_rows])  # clipping noted above
        bias_pe[q] = _clip(bias_pe[q], p.bias_depth, f"PE {q} biases", notes)
    return Contents(header, layers, s_even, s_odd, p_even, p_odd, p_flags, bias_pe,
                    _clip(cb_all, p.cb_depth, "codebooks", notes),
                    _clip(sym_all, p.sym_depth, "symbols", notes), notes)


def conv_fields(rom: RomImage, li: int, n: int) -> dict:
    """Layer ``li``'s regions, int8 flags and conv geometry as :class:`LayerWord` fields."""
    ly = rom.layers[li]
    ib, ob = act_bases(rom, n)[li]
    f = dict(in_base=ib, out_base=ob, in_signed=int(li > 0 and rom.layers[li - 1].signed),
             out_signed=int(ly.signed), gpo=math.ceil(ly.rows / n))
    g = ly.conv
    if g is None:
        return f
    gpp = ly.cols // (g.kh * g.kw) // n
    return {**f, "conv": 1, "pool": int(g.pool == 2), "kw": g.kw, "gpp": gpp, "in_h": g.in_h, "in_w": g.in_w,
            "hp": g.out_h // g.pool, "wp": g.out_w // g.pool, "row_step": g.in_w * gpp,
            "base0": ib - (g.pad_h * g.in_w + g.pad_w) * gpp, "iy0": -g.pad_h, "ix0": -g.pad_w,
            "stride": g.stride, "pstride": g.pool * g.stride, "x_step": g.stride * gpp,
            "y_step": g.stride * g.in_w * gpp}


def check_fits(rom: RomImage, p: EngineParams) -> list[str]:
    """Reasons ``rom`` cannot run on an engine with parameters ``p`` (empty: it fits)."""
    why = []
    if rom.n_pes != p.n_pes:
        why.append(f"the image is laid out for {rom.n_pes} PEs, the engine has {p.n_pes}")
    if rom.signed_input:
        why.append("the image takes signed int8 input (a conv net's fc layers); the engine takes uint8")
    if rom.max_len > p.max_len:
        why.append(f"codes up to {rom.max_len} bits, the decoder handles {p.max_len}")
    if len(rom.layers) > p.max_layers:
        why.append(f"{len(rom.layers)} layers, the engine holds {p.max_layers}")
    why += contents(rom, p).notes
    return why
