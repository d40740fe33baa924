"""PE decode loop: bit buffer, canonical Huffman decode (one code per cycle), symbol lookup.

:class:`Decode` takes the columns (``col``, the FIFO head) and the bits landing
in its bit buffer (``bits``) from :class:`hdl.fetch.Fetch`, decodes one joint
``(z, w)`` symbol per cycle and hands it to :class:`hdl.mac.MAC` (``sym``).

Pipeline (``D`` = decode cycle)::

    D      the loop: top Lmax buffer bits vs. limit[] -> one-hot length -> shift the buffer;
           column bookkeeping (bits left, column end); a column is popped here (its first code)
    D+1    symbol index = selected code bits + offset[length]; range check; symbol memory read
    D+2    the symbol on ``sym`` (valid, first, act, sym); with ``p.bram_out_regs`` it is
           registered here instead and on ``sym`` at D+3

Latency: 2 cycles from decode to ``sym`` (3 with ``p.bram_out_regs``). A column starts (``col.pop``) in
the cycle the decoder is idle and its first code is decodable, and takes
``entries`` cycles (empty columns never reach it: :mod:`hdl.fetch` drops them). A
corrupt code is registered at the end of D (no length, crosses the column
end), of D+1 (symbol index out of range) or of the MAC's first stage
(``sym.bad_row``) and sets ``status.error`` one cycle later; the error is sticky until
``clear`` and stops the decoder. ``status.busy``: columns queued (``col.pending``), mid-column, or a pop
/ decode of the last ``p.drain`` cycles still in the pipeline behind the loop
(D+1 .. D+drain: the cycle model's drain, 4, or 6 with ``p.bram_out_regs``): the PE's status;
``status.busy_next`` / ``error_next`` say the same one cycle ahead (this cycle's issue aside).

**The decode loop** (bit buffer -> code length -> shifted buffer) is the one
path that cannot be pipelined; everything else hangs off it into registers
(docs/hardware.md, "The decode loop"): Lmax comparators ``v < limit[l]``
against registered limits form a thermometer code whose edge is the one-hot
length; the next buffer is a barrel shifter over the binary digits of the
code length (the most significant digit is one thermometer bit), then ``go``
picks it or the held buffer, where ``go`` (a symbol is wanted and enough bits are held)
comes from registers and the FIFO head only. The
landing bits (``bits``) are ORed in before the shift at a position fixed by
the registered count, so the refill does not depend on this cycle's decode.
If the buffer ever lacked the bits of a code the decoder would wait and raise
``starve`` (a debug flag the benches assert is never set).

**Two decode contexts** (``p.contexts == 2``, docs/hardware.md): the loop is
cut after the comparators. S1 (cycle t) holds the context named by
``phase``: comparators, one-hot length, ``go``, the pop of that context's
FIFO head, all registered (``y_*``). S2 (t + 1) holds the same context: the
shift, the merge of the landing bits, the column bookkeeping and the
symbol-index stage's registers. Then the context is back in front of S1 at
t + 2. The other context goes through the stages a cycle behind, so each
context takes 2 cycles per code and the PE still yields up to one symbol per
cycle. Latency from S1: 3 cycles to ``sym``, 4 with ``p.bram_out_regs``
(``sym.ctx`` names the context); drain from a column's last S1 + 2.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .layouts import BitsSignature, ColumnSignature, StatusSignature, SymbolSignature, layer_layout
from .onehot import encode_onehot, or_reduce
from .params import EngineParams


class Decode(wiring.Component):
    """Bit buffer + decode loop + symbol-index stage + symbol memory (latencies: module docstring).

    Ports: ``cfg`` (``limit``, ``offset``, ``sym_base``, ``n_sym``), ``clear``, ``col`` and
    ``bits`` (in, from :class:`hdl.fetch.Fetch`), ``sym`` (out, to :class:`hdl.mac.MAC`),
    ``status`` (the PE's: ``busy``, ``error`` sticky, ``starve`` sticky, debug).
    """

    def __init__(self, p: EngineParams, *, symbols=()):
        self.p = p
        self._symbols = list(symbols)
        super().__init__({
            "cfg": In(layer_layout(p)),
            "clear": In(1),
            "col": In(ColumnSignature(p)),
            "bits": In(BitsSignature(p)),
            "sym": Out(SymbolSignature(p)),
            "status": Out(StatusSignature()),
            "phase": In(1),  # with p.contexts == 2: the context in S1 this cycle (hdl/pe.py)
        })

    def elaborate(self, platform):
        m = Module()
        p, cfg, error = self.p, self.cfg, self.status.error
        L, B = p.max_len, p.buf_bits
        m.submodules.sym = sym_mem = Memory(shape=p.sym_width, depth=p.sym_depth, init=self._symbols)
        sym_rd = sym_mem.read_port()

        # --- bit buffer --------------------------------------------------------------------
        # With p.contexts == 2 these registers (X) hold the context in the loop's first stage
        # (S1) and the Y registers below the other one, in its second (S2); each cycle they swap
        buf = Signal(B)  # valid bits MSB-aligned: buf[B-cnt : B]; bits below are zero
        cnt = Signal(range(B + 1))
        m.d.comb += self.bits.held.eq(cnt)
        two = p.contexts == 2

        def stage(value, name):
            """S1 -> S2: the same signal with one context, a register between the stages with two."""
            if not two:
                return value
            reg = Signal.like(value, name=f"y_{name}")
            m.d.sync += reg.eq(value)
            return reg

        # --- S1: column start, enough bits, the comparators --------------------------------
        active = Signal()  # mid-column
        rem = Signal(p.ptr_width)  # bits of the column not yet decoded
        rem_short = Signal()  # rem < 16, kept with rem
        cur_act = Signal(8)
        hd = self.col.payload
        start_col = Signal()
        m.d.comb += start_col.eq(~active & self.col.valid & ~error)
        want = Signal()
        m.d.comb += want.eq((active & ~error) | (start_col & ~hd.bad))

        v = buf[B - L:]
        lt = Signal(L)  # lt[k]: v < limit[k]; a thermometer code (limits never decrease)
        m.d.comb += lt.eq(Cat(*[v < cfg.limit[k] for k in range(L)]))
        first = Signal(L)  # the code length, one-hot
        m.d.comb += first.eq(lt & ~(lt << 1)[:L])
        nonmono = (lt & ~(lt >> 1))[: L - 1].any() if L > 1 else Const(0)
        # `go`: a symbol is wanted and enough bits are held for it (registers and the FIFO head
        # only): the decode loop is comparators -> one-hot length -> shift
        go = Signal()
        dec_rem = Signal(p.ptr_width)
        m.d.comb += dec_rem.eq(Mux(active, rem, hd.len))
        # `enough`: a full code's worth of bits (Lmax <= 16) or the whole rest of the column is
        # held, so a valid code decodes now (`stall` keeps the PE waiting: never seen, `starve`).
        # The rest-of-column test only matters below 16 bits: flags and a 4-bit compare
        dr_short = Mux(active, rem_short, hd.short)
        enough = (cnt >= L) | (dr_short & ((cnt >= 16) | (cnt[:4] >= dec_rem[:4])))
        stall = Signal()
        m.d.comb += [stall.eq(want & ~enough), go.eq(want & enough)]
        # the head is popped when the decoder is idle and its first code is decodable
        pop = self.col.pop
        m.d.comb += pop.eq(start_col & ~stall)
        act = Mux(start_col, hd.act, cur_act)

        # --- S2 (the same cycle with one context): shift, column bookkeeping ---------------
        y_buf, y_cnt, y_first, y_go = stage(buf, "buf"), stage(cnt, "cnt"), stage(first, "first"), stage(go, "go")
        y_lt_any, y_lt_last, y_nonmono = stage(lt.any(), "lt_any"), stage(lt[L - 1], "lt_last"), stage(nonmono, "nonmono")
        y_rem, y_start, y_pop, y_act = stage(dec_rem, "rem"), stage(start_col, "start"), stage(pop, "pop"), stage(act, "act")
        fault = Signal()  # a corrupt code, symbol or row seen last cycle (see the error flag below)
        bad_code = y_go & (~y_lt_last | y_nonmono)  # no length matches (bits below the held are 0)
        length = Signal(range(L + 1))
        consumed = Signal(range(L + 1))
        m.d.comb += [length.eq(encode_onehot(y_first)), consumed.eq(Mux(y_go, length, 0))]
        merged = Signal(B)
        m.d.comb += merged.eq(y_buf | self.bits.bits)
        # a barrel shifter over the binary digits of the code length, the most significant (from
        # one thermometer bit: the earliest) first, the least significant (the latest) last, then
        # `go` picks it or the unshifted buffer: as deep as one AND-OR over the L + 1 shifted
        # copies, and 200 (ECP5) to 300 (iCE40) LUTs fewer per PE; `go` (which follows the
        # held-bits compares) meets only the last level. A corrupt code (no length) holds the
        # buffer; the error stops the PE
        shifted = merged
        for b in reversed(range(len(length))):
            shifted = Mux(length[b], (shifted << (1 << b))[:B], shifted)
        m.d.sync += [buf.eq(Mux(y_go, shifted, merged)), cnt.eq(y_cnt - consumed + self.bits.nb)]

        # the code's length against the rest of the column without the `dec_rem - length`
        # borrow chain: dec_rem is known before the comparators settle, so test it against
        # each possible length k + 1 <= 16 (its low 5 bits, upper bits zero) in parallel and
        # let the one-hot length pick the answer
        lo5, hi_zero = y_rem[:5], y_rem[5:] == 0
        cross = y_go & hi_zero & or_reduce([y_first[k] & (lo5 <= k) for k in range(L)])  # past the end
        col_ends = hi_zero & ((~y_lt_any & (lo5 == 0)) |
                              or_reduce([y_first[k] & (lo5 == k + 1) for k in range(L)]))
        # rem - length < 16 <=> rem < 16 + length: also without the chain
        next_short = hi_zero & ((~y_lt_any & (lo5 < 16)) |
                                or_reduce([y_first[k] & (lo5 < k + 17) for k in range(L)]))
        rem_next = Signal(p.ptr_width)
        if p.ptr_width > 5:
            # rem - length with the borrow chain cut at bit 5 (length <= 16): the low bits
            # subtract, the upper bits are dec_rem's or, on a borrow, those minus one, computed
            # from registers and the FIFO head beside the comparators (the full-width chain after
            # the one-hot length was the iCE40's critical path)
            lo_diff, hi_m1 = Signal(6), Signal(p.ptr_width - 5)
            m.d.comb += [lo_diff.eq(y_rem[:5] - length), hi_m1.eq(y_rem[5:] - 1),
                         rem_next.eq(Cat(lo_diff[:5], Mux(lo_diff[5], hi_m1, y_rem[5:])))]
        else:
            m.d.comb += rem_next.eq(y_rem - length)
        if two:  # the context leaves S2 for S1 (X): its bookkeeping moves with it
            y_active, y_rem_short = stage(active, "active"), stage(rem_short, "rem_short")
            m.d.sync += [rem.eq(Mux(y_go, rem_next, y_rem)), cur_act.eq(y_act),
                         rem_short.eq(Mux(y_go, next_short, y_rem_short)),
                         active.eq(Mux(y_go, ~col_ends, y_active))]
        else:
            with m.If(pop):
                m.d.sync += cur_act.eq(hd.act)
            with m.If(go):
                m.d.sync += [rem.eq(rem_next), rem_short.eq(next_short), active.eq(~col_ends)]
        with m.If(stall & ~fault):  # (after a corrupt code the buffer is cleared: not a starve)
            m.d.sync += self.status.starve.eq(1)

        # --- stage 1: symbol index (selected code bits + offset), range check, symbol read --
        s1_valid, s1_first, s1_act, s1_ctx = Signal(), Signal(), Signal(8), Signal()
        s1_top, s1_off = Signal(L), Signal(16)
        y_v = y_buf[B - L:]
        m.d.sync += [s1_valid.eq(y_go & ~bad_code & ~cross), s1_first.eq(y_start), s1_act.eq(y_act),
                     s1_ctx.eq(~self.phase if two else 0),  # the context in S2 (hdl/pe.py: phase)
                     s1_top.eq(or_reduce([Mux(y_first[k], y_v >> (L - 1 - k), 0) for k in range(L)])),
                     s1_off.eq(or_reduce([Mux(y_first[k], cfg.offset[k], 0) for k in range(L)]))]
        idx = Signal(16)  # offsets are stored mod 2**16 (canonical offsets may be "negative")
        m.d.comb += [idx.eq(s1_top + s1_off), sym_rd.addr.eq(cfg.sym_base + idx)]
        idx_err = s1_valid & (idx >= cfg.n_sym)

        # --- stage 2: the symbol memory's output (to the MAC, or first registered: with
        # p.bram_out_regs, since its clock-to-out is a third of an ECP5 cycle) -----------------
        s2_valid, s2_first, s2_act, s2_ctx = Signal(), Signal(), Signal(8), Signal()
        m.d.sync += [s2_valid.eq(s1_valid & ~idx_err), s2_first.eq(s1_first), s2_act.eq(s1_act),
                     s2_ctx.eq(s1_ctx)]
        out_valid, out_first, out_act, out_sym, out_ctx = s2_valid, s2_first, s2_act, sym_rd.data, s2_ctx
        if p.bram_out_regs:
            out_valid, out_first, out_act, out_sym = Signal(), Signal(), Signal(8), Signal(p.sym_width)
            out_ctx = Signal()
            m.d.sync += [out_valid.eq(s2_valid), out_first.eq(s2_first), out_act.eq(s2_act),
                         out_sym.eq(sym_rd.data), out_ctx.eq(s2_ctx)]
        m.d.comb += [self.sym.valid.eq(out_valid), self.sym.first.eq(out_first),
                     self.sym.act.eq(out_act), self.sym.sym.eq(out_sym)]
        if two:
            m.d.comb += self.sym.ctx.eq(out_ctx)

        # busy tokens: every popped column (corrupt ones too) and every decoded entry keeps the
        # PE busy until its slot has left the pipeline behind the loop, up to the accumulator
        # write (the drain: p.drain)
        tok = Signal(p.drain)
        m.d.sync += tok.eq(Cat(y_go | y_pop, tok[:-1]))
        # a corrupt code, symbol index or row is registered first and makes the error sticky a
        # cycle later: the error flag's enable sat at the end of the decode loop (iCE40) and of
        # the MAC's row check (ECP5). The PE stays busy meanwhile, so the sequencer sees the
        # error before it can leave the column phase; whatever is decoded in between is
        # discarded with the abort
        m.d.sync += fault.eq(bad_code | cross | idx_err | self.sym.bad_row | (start_col & hd.bad))
        busy = self.col.pending | active | tok.any() | fault
        if two:  # the context in S2: mid-column, or starting its column now
            busy = busy | y_active | y_go | y_pop
        m.d.comb += self.status.busy.eq(busy)
        # busy next cycle, this cycle's issue aside, from registers and the FIFO head only (the
        # cycle model is unchanged: the sequencer registers the OR of these, docs/hardware.md).
        # Exact: a decode (`go`) is mid-column or pops (`pop`), a pop or an S2 decode enters the
        # tokens, an S1 context's `active` moves to S2 (two contexts) or stays unless it decodes,
        # and a corrupt code, index or row is seen while its token is still in `tok[:-1]`
        busy_next = self.col.pending_next | active | pop | tok[:-1].any()
        if two:
            busy_next = busy_next | y_active | y_go | y_pop
        m.d.comb += [self.status.busy_next.eq(busy_next), self.status.error_next.eq(error | fault)]
        with m.If(fault):
            m.d.sync += error.eq(1)

        with m.If(self.clear):
            m.d.sync += [cnt.eq(0), buf.eq(0), active.eq(0), s1_valid.eq(0), s2_valid.eq(0), out_valid.eq(0),
                         tok.eq(0), fault.eq(0), error.eq(0),
                         self.status.starve.eq(0)]
            if two:
                m.d.sync += [y_cnt.eq(0), y_buf.eq(0), y_active.eq(0), y_go.eq(0), y_pop.eq(0)]
        return m
