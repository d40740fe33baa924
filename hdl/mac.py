"""PE back end: symbol -> (z, w), relative row, codebook, multiply, accumulate; the tail read-out.

:class:`MAC` takes the decoded joint symbols (``sym``, from :class:`hdl.decode.Decode`)
and accumulates ``codebook[w] * act`` into local row ``pos`` (``pos = z`` on a
column's first entry, else ``pos += z + 1``; ``w == 0`` is a filler: no MAC).

Pipeline (``S`` = cycle the symbol is on ``sym``: the decode cycle + 2, or + 3 with
``p.bram_out_regs``)::

    S      symbol -> (z, w), position, row check (-> ``sym.bad_row``), codebook read
    S+1    product = codebook * act; accumulator read (transparent to the write below)
    S+2    accumulator write;  with ``p.bram_out_regs``: the accumulator read registered
    S+3    (``p.bram_out_regs``) accumulator write

Latency: 2 cycles from ``sym`` to the accumulator write (decode D -> write
D+4), or 3 with ``p.bram_out_regs`` (D -> D+6: the symbol memory's output is
registered in the decoder too). Back-to-back hits on the same row (last entry
of one column, first of the next) are forwarded by the accumulator's
transparent read port; with the read registered, an entry right behind a write
to its row takes the sum being written instead (``fwd``).

The tail port (:func:`hdl.layouts.TailSignature`, driven by the sequencer):
``rd``/``addr`` at t -> ``sum`` = accumulator + bias in t + 1 (combinational
from the two memories' outputs; the sequencer registers it and compares it
with the running best); ``clear`` at t writes 0 to row
``addr`` in t + 1 (read first, then clear). A read-out takes the
accumulator's read port, so it runs only while no symbols arrive.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In

from .layouts import SymbolSignature, TailSignature, layer_layout
from .params import EngineParams, bits_for


class MAC(wiring.Component):
    """Relative index + codebook + multiply-accumulate + tail read-out (latencies: module docstring).

    ``index`` is the PE's number ``q``: its local row ``i`` is row ``i * N + q``.
    Ports: ``cfg`` (``rows``, ``cb_base``, ``bias_base``), ``clear``, ``sym`` (in),
    ``tail`` (in: the sequencer's read-out port).
    """

    def __init__(self, p: EngineParams, index: int, *, bias=(), codebook=()):
        self.p, self.index = p, index
        self._bias, self._codebook = list(bias), list(codebook)
        super().__init__({
            "cfg": In(layer_layout(p)),
            "clear": In(1),
            "sym": In(SymbolSignature(p)),
            "tail": In(TailSignature(p)),
        })

    def elaborate(self, platform):
        m = Module()
        p, cfg, sym, tail = self.p, self.cfg, self.sym, self.tail
        m.submodules.bias = bias_mem = Memory(shape=32, depth=p.bias_depth, init=self._bias)
        m.submodules.cb = cb_mem = Memory(shape=16, depth=p.cb_depth, init=self._codebook)
        m.submodules.acc = acc_mem = Memory(shape=32, depth=max(2, p.acc_depth), init=[])
        bias_rd, cb_rd = bias_mem.read_port(), cb_mem.read_port()
        acc_wr = acc_mem.write_port()
        acc_rd = acc_mem.read_port(transparent_for=(acc_wr,))  # forwarding for same-row hits

        # --- S: symbol -> (z, w), relative position, row check, codebook read ---------------
        pos_w = bits_for(p.acc_depth + (1 << p.zbits_max)) + 1
        # the column position and the past-the-rows flag, one pair per decode context
        ctx_pos = [Signal(pos_w, name=f"pos{c}") for c in range(p.contexts)]
        ctx_beyond = [Signal(name=f"beyond{c}") for c in range(p.contexts)]
        pos, beyond = ctx_pos[0], ctx_beyond[0]
        if p.contexts == 2:
            pos, beyond = Mux(sym.ctx, ctx_pos[1], ctx_pos[0]), Mux(sym.ctx, ctx_beyond[1], ctx_beyond[0])
        z = Signal(p.sym_width)
        w = Signal(p.wbits_max)
        m.d.comb += [z.eq(sym.sym[p.wbits_max:]), w.eq(sym.sym[:p.wbits_max])]  # params.contents
        pos_new = Signal(pos_w)
        m.d.comb += pos_new.eq(Mux(sym.first, z, pos + z + 1))
        past = (pos_new * p.n_pes + self.index) >= cfg.rows
        beyond_new = Signal()
        m.d.comb += beyond_new.eq(Mux(sym.first, 0, beyond) | past)
        for c in range(p.contexts):
            with m.If(sym.valid & ((sym.ctx == c) if p.contexts == 2 else 1)):
                m.d.sync += [ctx_pos[c].eq(pos_new), ctx_beyond[c].eq(beyond_new)]
        m.d.comb += sym.bad_row.eq(sym.valid & (w != 0) & beyond_new)
        mac = sym.valid & (w != 0) & ~beyond_new
        m.d.comb += cb_rd.addr.eq(cfg.cb_base + w)

        # --- S+1: product; accumulator read -------------------------------------------------
        s3_valid, s3_pos, s3_act = Signal(), Signal(range(max(2, p.acc_depth))), Signal(8)
        m.d.sync += [s3_valid.eq(mac), s3_pos.eq(pos_new), s3_act.eq(sym.act)]
        product = Signal(signed(25))
        # an int8 layer input (after a layer without ReLU, conv engines only) is sign-extended
        act = Mux(cfg.in_signed, s3_act.as_signed(), s3_act) if p.conv else s3_act
        m.d.comb += product.eq(cb_rd.data.as_signed() * act)
        m.d.comb += acc_rd.addr.eq(Mux(tail.rd, tail.addr, s3_pos))

        # --- S+2: accumulate, or (p.bram_out_regs) the accumulator's read registered, then
        # S+3: accumulate ------------------------------------------------------------------------
        s4_valid, s4_pos, s4_prod = Signal(), Signal.like(s3_pos), Signal(signed(25))
        m.d.sync += [s4_valid.eq(s3_valid), s4_pos.eq(s3_pos), s4_prod.eq(product)]
        acc_valid, acc_pos, acc_sum = s4_valid, s4_pos, Signal(signed(32))
        if p.bram_out_regs:
            # the read of an entry one behind a write to the same row (the last entry of a column
            # and the first of the next) missed that write: its base is the sum written then.
            # Entries two apart meet in the read port's transparency (read and write in one cycle)
            acc_q = Signal(signed(32))
            acc_valid, acc_pos, s5_prod = Signal(), Signal.like(s3_pos), Signal(signed(25))
            m.d.sync += [acc_q.eq(acc_rd.data), acc_valid.eq(s4_valid), acc_pos.eq(s4_pos), s5_prod.eq(s4_prod)]
            fwd, last_sum = Signal(), Signal(signed(32))
            m.d.sync += [fwd.eq(s4_valid & acc_valid & (s4_pos == acc_pos)), last_sum.eq(acc_sum)]
            m.d.comb += acc_sum.eq(Mux(fwd, last_sum, acc_q) + s5_prod)
        else:
            m.d.comb += acc_sum.eq(acc_rd.data.as_signed() + s4_prod)
        clr_pending, clr_addr = Signal(), Signal.like(s3_pos)
        m.d.sync += [clr_pending.eq(tail.clear), clr_addr.eq(tail.addr)]
        with m.If(clr_pending):
            m.d.comb += [acc_wr.addr.eq(clr_addr), acc_wr.data.eq(0), acc_wr.en.eq(1)]
        with m.Else():
            m.d.comb += [acc_wr.addr.eq(acc_pos), acc_wr.data.eq(acc_sum), acc_wr.en.eq(acc_valid)]

        # --- tail: accumulator + bias ---------------------------------------------------------
        m.d.comb += [bias_rd.addr.eq(cfg.bias_base + tail.addr),
                     tail.sum.eq(acc_rd.data.as_signed() + bias_rd.data.as_signed())]

        with m.If(self.clear):
            m.d.sync += [s3_valid.eq(0), s4_valid.eq(0)]
            if p.bram_out_regs:
                m.d.sync += acc_valid.eq(0)
        return m
