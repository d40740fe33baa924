"""Canonical Huffman decoder: one symbol per clock from a stream of 16-bit words.

See :class:`HuffmanDecoder` for the interface and the reasoning behind the
pipeline, and ``docs/hdl-huffman.md`` for measured size and speed.
"""

from __future__ import annotations

from collections.abc import Sequence

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["HuffmanDecoder", "TableWriteSignature", "LengthWriteSignature", "build_tables",
           "reference_decode", "output_layout", "WORD_BITS", "OUT_DEPTH"]

WORD_BITS = 16  # input word width; bit 15 of a word is the first stream bit
OUT_DEPTH = 4  # output queue entries = decoded-but-not-taken symbols the decoder may hold


def TableWriteSignature(depth: int, width: int) -> wiring.Signature:
    """Write port of the symbol table, seen from the writer: ``addr``, ``data``, ``en``."""
    return wiring.Signature({"addr": Out(range(depth)), "data": Out(width), "en": Out(1)})


def LengthWriteSignature(max_len: int) -> wiring.Signature:
    """Write port of the per-length registers, seen from the writer.

    ``en`` writes ``limit`` and ``offset`` for code length ``l`` (1..max_len);
    other values of ``l`` are ignored.
    """
    return wiring.Signature({"l": Out(range(max_len + 1)), "limit": Out(max_len + 1),
                             "offset": Out(16), "en": Out(1)})


def output_layout(max_len: int, sym_width: int) -> data.StructLayout:
    """Output payload: ``symbol`` (bits 0..), then ``length`` (code length), then ``last``."""
    return data.StructLayout({"symbol": sym_width, "length": range(max_len + 1), "last": 1})


def build_tables(lengths: Sequence[int], max_len: int) -> tuple[list[int], list[int], list[int]]:
    """``limit[l-1]``, ``offset[l-1]`` (l = 1..max_len) and the symbol table for code ``lengths``.

    ``lengths[s]`` is symbol ``s``'s code length (0 = unused). This is the table
    contract of the ROM image (``compressor.contract.rom.decode_tables`` computes the same);
    it lives here too so the block and its tests need nothing but a length list.
    """
    lengths = [int(x) for x in lengths]
    if any(x < 0 or x > max_len for x in lengths):
        raise ValueError(f"code lengths must be within 0..{max_len}")
    order = sorted((ln, s) for s, ln in enumerate(lengths) if ln)
    count = [0] * (max_len + 2)
    for ln, _ in order:
        count[ln] += 1
    limit, offset = [], []
    first = base = 0
    for ln in range(1, max_len + 1):
        limit.append((first + count[ln]) << (max_len - ln))
        offset.append((base - first) % (1 << 16))
        base += count[ln]
        first = (first + count[ln]) << 1
    return limit, offset, [s for _, s in order]


def or_reduce(terms):
    """OR of a list of values (0 if empty)."""
    out = Const(0, 1)
    for t in terms:
        out = out | t
    return out


def encode_onehot(onehot):
    """Binary ``k + 1`` of the set bit of ``onehot`` (0 if none): an OR per output bit."""
    n = len(onehot)
    return Cat(*[or_reduce([onehot[k] for k in range(n) if (k + 1) >> b & 1])
                 for b in range(n.bit_length())])


class HuffmanDecoder(wiring.Component):
    """Canonical Huffman decoder, one symbol per cycle, table-driven, MSB-first.

    Parameters
    ----------
    max_len : int
        ``L``, the longest code (1..16). The comparators and the shifter scale with it.
    sym_depth, sym_width : int
        Symbol table size (entries, bits per entry <= 16).
    count_bits : int
        Width of ``count`` (symbols per stream).

    Ports
    -----
    ``i_word`` : ``In(stream.Signature(16))``
        The bitstream, 16-bit words, bit 15 first. Bubbles (``valid`` low) are fine.
    ``o_sym`` : ``Out(stream.Signature(output_layout(L, sym_width)))``
        Decoded symbols: ``symbol``, its code ``length``, ``last`` on the ``count``-th.
        Back-pressure (``ready`` low) is fine; no symbol is lost or repeated.
    ``start`` : ``In(1)``
        One-cycle strobe: drop the bit buffer, everything in flight and ``error``,
        and decode ``count`` symbols from the words that follow. While ``start``
        is high, ``i_word.ready`` and ``o_sym.valid`` are low.
    ``count`` : ``In(count_bits)``
        Sampled with ``start``: how many symbols this stream holds. ``count = 0``
        decodes nothing.
    ``sym_w`` : ``In(TableWriteSignature(sym_depth, sym_width))``
        ``en``: ``symbols[addr] = data``.
    ``len_w`` : ``In(LengthWriteSignature(L))``
        ``en``: ``limit[l] = limit; offset[l] = offset`` for ``l`` in 1..L.
    ``error`` : ``Out(1)``
        Sticky until ``start`` (or reset). Set when a requested symbol's window
        matches no code length, meets limits that decrease (``v < limit[l]`` but
        not ``v < limit[l+1]``; no canonical code has such a table), or gives a
        table index ``>= sym_depth``. The symbols before it still come out,
        nothing after it does, and ``done`` stays low.
    ``done`` : ``Out(1)``
        All ``count`` symbols have been taken from ``o_sym`` (also high after reset).

    Table-load protocol: write ``limit``/``offset`` for every l = 1..L through
    ``len_w`` and the symbols (canonical order) through ``sym_w``, one entry per
    cycle, any order; then pulse ``start`` with ``count``. The tables survive
    ``start``; write them only while the decoder is idle (``done``, or right
    before a ``start``) -- a table changing under a decode gives undefined
    symbols, never a hang. After reset every limit is 0 (any requested symbol
    is an error). :func:`build_tables` computes the three tables from code lengths.

    Decode contract (the ROM image's): ``v`` = next L stream bits; the code length
    is the smallest ``l`` with ``v < limit[l]``; the symbol is
    ``symbols[((v >> (L - l)) + offset[l]) mod 2**16]``. :func:`reference_decode`
    is the bit-exact model of this block.

    Latency: a word accepted in cycle ``t`` is decoded from in ``t + 1`` and its
    first symbol is valid on ``o_sym`` in cycle ``t + 4`` (4 cycles from the first
    word to the first symbol). Throughput: one symbol per cycle for as long as the
    input supplies the bits (a code of ``L <= 16`` bits needs at most one word per
    cycle) and ``o_sym.ready`` is high; ``N`` symbols take ``N + 4`` cycles from
    the first word. ``start`` to first word accepted: the next cycle.

    Stream end: the decoder only decodes symbols that were asked for (``count``),
    so the padding after the last code -- zeros or ones -- is never looked at.
    Words after the ones that hold the stream may be taken in (while buffer room
    lasts) and are discarded by the next ``start``; a producer starts feeding the
    next stream after that ``start``.

    Why it is built this way
    ------------------------
    The one loop that cannot be pipelined is: bit buffer -> code length -> shift
    the buffer by that length. Everything else is taken out of it:

    * **Decode stage (the loop).** The top L buffer bits ``v`` go to L parallel
      comparators ``v < limit[l]`` (registers, so no memory read in the loop).
      Limits never decrease with ``l``, so the results form a thermometer code
      and the code length is where it starts: ``lt[k] & ~lt[k-1]``, one LUT level,
      merged with "enough bits held" and "a symbol is wanted" into a one-hot
      select ``sel``. The shift is an AND-OR of the L + 1 shifted copies of the
      buffer (shifts are wiring) selected by ``sel`` directly: no priority
      encoder, no binary shift amount, no log shifter in the loop. That took the
      loop from ~9 LUT levels to ~4 after the comparators (UP5K: 22.8 -> ~30 MHz,
      for ~230 more LUTs); see ``docs/hdl-huffman.md``.
    * **Only the code's own bits matter.** A canonical ``limit[l]`` has zeros in
      its low ``L - l`` bits, so the length depends only on the code's bits: the
      decoder decodes as soon as ``length <= bits held``, never needs L valid
      bits, and a code ending in the last word decodes without padding. Bits
      below the valid ones are kept zero, so "no length matches" is final
      (every completion of the held bits is invalid too) and is flagged at once.
    * **Refill off the loop.** A word is merged at the position given by the
      *current* bit count (``cnt``, a register) before the shift, not after it
      at ``cnt - length`` -- so the placement shifter does not depend on this
      cycle's decode. ``i_word.ready`` is ``cnt <= B - 16`` (registers only).
      The bits merged this cycle are decodable next cycle. With a buffer of
      ``B = 2L + 15`` bits there are always >= L bits to decode when words come
      every cycle (if no word fits, more than ``B - 16`` bits are held, so at
      least ``B - 15 - L >= L`` remain after the decode).
    * **Back-pressure off the loop.** ``o_sym.ready`` never reaches the decode
      stage combinationally: a decode is allowed while fewer than ``OUT_DEPTH``
      symbols are decoded but not yet taken (a registered counter), and a small
      output queue holds them. Three are in flight at full rate, so a depth of 4
      keeps one symbol per cycle.
    * **Symbol lookup as pipeline stages.** In the decode cycle ``v >> (L-l)``
      and ``offset[l]`` are selected by the one-hot length (AND-OR trees beside
      the shift, not in the loop) and registered; the next cycle adds them, checks
      the range and addresses the symbol memory's synchronous read port (block
      RAM); the data goes into the output queue the cycle after that.
    """

    def __init__(self, max_len: int = 12, sym_depth: int = 512, sym_width: int = 16,
                 count_bits: int = 24):
        if not 1 <= max_len <= 16:
            raise ValueError(f"max_len must be within 1..16, not {max_len}")
        if not 1 <= sym_width <= 16:
            raise ValueError(f"sym_width must be within 1..16, not {sym_width}")
        if not 2 <= sym_depth <= 1 << 16:
            raise ValueError(f"sym_depth must be within 2..65536, not {sym_depth}")
        self.max_len = max_len
        self.sym_depth = sym_depth
        self.sym_width = sym_width
        self.count_bits = count_bits
        self.buf_bits = 2 * max_len + 15
        super().__init__({
            "i_word": In(stream.Signature(WORD_BITS)),
            "o_sym": Out(stream.Signature(output_layout(max_len, sym_width))),
            "start": In(1),
            "count": In(count_bits),
            "sym_w": In(TableWriteSignature(sym_depth, sym_width)),
            "len_w": In(LengthWriteSignature(max_len)),
            "error": Out(1),
            "done": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        L, B, W = self.max_len, self.buf_bits, WORD_BITS
        start = self.start

        # --- tables -------------------------------------------------------------------------
        limit = [Signal(L + 1, name=f"limit{ln}") for ln in range(1, L + 1)]
        offset = [Signal(16, name=f"offset{ln}") for ln in range(1, L + 1)]
        with m.If(self.len_w.en):
            for k in range(L):
                with m.If(self.len_w.l == k + 1):
                    m.d.sync += [limit[k].eq(self.len_w.limit), offset[k].eq(self.len_w.offset)]

        m.submodules.symbols = sym_mem = Memory(shape=self.sym_width, depth=self.sym_depth,
                                                init=[])
        sym_wr = sym_mem.write_port()
        sym_rd = sym_mem.read_port()
        m.d.comb += [sym_wr.addr.eq(self.sym_w.addr), sym_wr.data.eq(self.sym_w.data),
                     sym_wr.en.eq(self.sym_w.en)]

        # --- bookkeeping --------------------------------------------------------------------
        remaining = Signal(self.count_bits)  # symbols still to decode
        occ = Signal(range(OUT_DEPTH + 1))  # decoded, not yet taken from o_sym
        error = self.error

        # --- bit buffer and refill ----------------------------------------------------------
        buf = Signal(B)  # valid bits MSB-aligned in buf[B-cnt:B]; bits below are zero
        cnt = Signal(range(B + 1))
        take = Signal()
        m.d.comb += [self.i_word.ready.eq(~start & (cnt <= B - W)),
                     take.eq(self.i_word.valid & self.i_word.ready)]
        placed = Signal(B)  # the word at buf[B-16-cnt : B-cnt], right below the held bits
        m.d.comb += placed.eq(Mux(take, Cat(Const(0, B - W), self.i_word.payload) >> cnt, 0))

        # --- decode stage: the feedback loop ------------------------------------------------
        v = buf[B - L:]
        lt = Signal(L)  # lt[k]: v < limit[k+1]; a thermometer code (limits never decrease)
        m.d.comb += lt.eq(Cat(*[v < limit[k] for k in range(L)]))
        first = Signal(L)  # the code length, one-hot: the lowest set bit of the thermometer
        m.d.comb += first.eq(lt & ~(lt << 1)[:L])
        # a window that finds v < limit[l] but not v < limit[l+1]: a table whose limits
        # decrease (no canonical code has one) -- an error, not a guess
        nonmono = (lt & ~(lt >> 1))[: L - 1].any()
        held = Signal(L)  # held[k]: at least k + 1 bits in the buffer (registers only)
        m.d.comb += held.eq(Cat(*[cnt > k for k in range(L)]))
        want = Signal()  # a symbol is asked for and there is room for it downstream
        m.d.comb += want.eq((remaining != 0) & ~error & (occ < OUT_DEPTH))
        sel = Signal(L)  # sel[k]: decode now, consuming k + 1 bits (one LUT per bit)
        m.d.comb += sel.eq(first & held & want.replicate(L))
        dec = Signal()
        m.d.comb += dec.eq(sel.any())
        bad_code = want & (~lt[L - 1] | nonmono)
        length = Signal(range(L + 1))  # binary k + 1 of the one-hot bit: an OR encoder
        consumed = Signal(range(L + 1))
        m.d.comb += [length.eq(encode_onehot(first)), consumed.eq(encode_onehot(sel))]
        # the shift as an AND-OR over the L + 1 candidates (a shift is only wiring): the
        # one-hot `sel` drives the select lines directly, no binary shift amount in the loop
        merged = Signal(B)
        m.d.comb += merged.eq(buf | placed)
        shifted = [Mux(sel[k], (merged << (k + 1))[:B], 0) for k in range(L)]
        m.d.sync += [buf.eq(or_reduce(shifted) | Mux(dec, 0, merged)),
                     cnt.eq(cnt - consumed + Mux(take, W, 0))]
        with m.If(dec):
            m.d.sync += remaining.eq(remaining - 1)

        # --- selection for stage 1 (hangs off `first`, parallel to the shift) -------------
        # one-hot select of v >> (L - l) and offset[l]: AND-OR trees, no binary decode
        s1_valid = Signal()
        s1_top = Signal(L)
        s1_off = Signal(16)
        s1_len = Signal(range(L + 1))
        s1_last = Signal()
        m.d.sync += [s1_valid.eq(dec), s1_len.eq(length), s1_last.eq(remaining == 1),
                     s1_top.eq(or_reduce([Mux(first[k], v >> (L - 1 - k), 0) for k in range(L)])),
                     s1_off.eq(or_reduce([Mux(first[k], offset[k], 0) for k in range(L)]))]

        # --- stage 1: table index, range check, symbol memory address -----------------------
        idx = Signal(16)
        m.d.comb += [idx.eq(s1_top + s1_off), sym_rd.addr.eq(idx)]
        in_range = idx < self.sym_depth
        # a bad index is dropped, and so is everything decoded after it (error is set by then);
        # `occ` still counts them: it only gates decoding, which the error stops anyway
        bad_index = s1_valid & ~in_range

        # --- stage 2: symbol out of the memory into the output queue ------------------------
        s2_valid = Signal()
        s2_len = Signal(range(L + 1))
        s2_last = Signal()
        m.d.sync += [s2_valid.eq(s1_valid & in_range & ~error), s2_len.eq(s1_len),
                     s2_last.eq(s1_last)]

        layout = output_layout(L, self.sym_width)
        m.submodules.outq = outq = Memory(shape=layout, depth=OUT_DEPTH, init=[])
        q_wr = outq.write_port()
        q_rd = outq.read_port(domain="comb")
        assert OUT_DEPTH & (OUT_DEPTH - 1) == 0, "pointers with a wrap bit need a power of two"
        kq = (OUT_DEPTH - 1).bit_length()
        wptr = Signal(kq + 1)
        rptr = Signal(kq + 1)
        m.d.comb += [q_wr.addr.eq(wptr[:kq]), q_wr.en.eq(s2_valid),
                     q_wr.data.symbol.eq(sym_rd.data), q_wr.data.length.eq(s2_len),
                     q_wr.data.last.eq(s2_last)]
        with m.If(s2_valid):
            m.d.sync += wptr.eq(wptr + 1)
        pop = Signal()
        m.d.comb += [q_rd.addr.eq(rptr[:kq]),
                     self.o_sym.payload.eq(q_rd.data),
                     self.o_sym.valid.eq((wptr != rptr) & ~start),
                     pop.eq(self.o_sym.valid & self.o_sym.ready)]
        with m.If(pop):
            m.d.sync += rptr.eq(rptr + 1)
        m.d.sync += occ.eq(occ + dec - pop)
        m.d.comb += self.done.eq((remaining == 0) & (occ == 0))
        with m.If(bad_code | bad_index):
            m.d.sync += error.eq(1)

        # --- start: a new stream ------------------------------------------------------------
        with m.If(start):
            m.d.sync += [buf.eq(0), cnt.eq(0), remaining.eq(self.count), occ.eq(0), error.eq(0),
                         s1_valid.eq(0), s2_valid.eq(0), wptr.eq(0), rptr.eq(0)]
        return m


def reference_decode(words: Sequence[int], limit: Sequence[int], offset: Sequence[int],
                     symbols: Sequence[int], max_len: int, count: int,
                     sym_depth: int | None = None) -> tuple[list[int], list[int], bool]:
    """Bit-exact model of what :class:`HuffmanDecoder` emits for one stream.

    Returns ``(symbols, lengths, error)``: the symbols decoded before the first
    invalid window (or table index ``>= sym_depth``, or a window for which the
    limits decrease: ``v < limit[l]`` but not ``v < limit[l+1]``), their code lengths, and
    whether decoding stopped on such an error. A code that would need bits past
    the last word stops decoding without an error (the hardware waits for input).
    Table entries past ``len(symbols)`` read as 0 here; the hardware returns
    whatever its symbol memory holds there.
    """
    L = max_len
    depth = len(symbols) if sym_depth is None else sym_depth
    bits = 0
    for w in words:
        bits = (bits << 16) | (int(w) & 0xFFFF)
    nbits = 16 * len(words)
    pos = 0
    out, lens = [], []
    for _ in range(count):
        rest = nbits - pos
        v = (bits >> (rest - L) if rest >= L else bits << (L - rest)) & ((1 << L) - 1)
        lt = [v < limit[k] for k in range(L)]
        ln = next((k + 1 for k in range(L) if lt[k]), None)
        if ln is None or not all(lt[ln - 1:]):  # no length, or limits that decrease
            return out, lens, True
        if ln > rest:
            return out, lens, False
        idx = ((v >> (L - ln)) + offset[ln - 1]) & 0xFFFF
        if idx >= depth:
            return out, lens, True
        out.append(int(symbols[idx]) if idx < len(symbols) else 0)
        lens.append(ln)
        pos += ln
    return out, lens, False
