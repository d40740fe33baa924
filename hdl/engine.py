"""Layer sequencer: input load, per-layer setup / columns / tail, argmax, result stream.

Schedule of one inference (cycle counts are what the cycle model in
docs/arithmetic.md and sim/golden.py describe; ``cycles`` counts from the
first setup cycle of layer 0 to the last argmax compare):

* **load** (not counted): ``input_size`` beats of ``i_act`` go to bank ``j mod N``,
  address ``j div N``. The header is checked here; the input is consumed even
  when the header does not fit, so the host never blocks.
* per layer, **setup** (4 cycles): read the descriptor (1), register it (2),
  check it against the RTL's parameters and start the broadcaster (3), the
  broadcaster loads group 0 (4).
* **columns**: the broadcaster scans and issues, the PEs decode and MAC. The
  sequencer leaves when the scan is done and no PE is busy, one cycle after
  it sees both (the PEs stay busy until their last accumulator write). It
  sees them through registers fed one cycle ahead (``bc_quiet``,
  ``pe_busy_next``, ``pe_error_next``): the same cycle, a shorter path.
* **tail**, hidden layer: all PEs read local row ``i`` (accumulator + bias)
  in lock-step, ``i = 0 .. ceil(R/N) - 1``, requantize (4 cycles, 5 with
  ``p.bram_out_regs``) and write the next layer's bank; the accumulators are
  cleared as they are read. ``ceil(R/N) + 3`` (``+ 4``) cycles in the tail
  states: the last bank writes land in the next layer's second setup cycle, before the broadcaster reads
  group 0 (setup cycles 3-4).
* **tail**, last layer: rows ``r = 0 .. R-1`` one per cycle (PE ``r mod N``,
  local row ``r div N``), running argmax two cycles after each read (the
  sum is registered, then compared: a strictly greater logit replaces the
  best, so the lowest index wins ties); ``R + 2`` cycles. With
  ``p.bram_out_regs`` every PE's sum is registered first, then the selected
  one: three cycles, ``R + 3``.
* **result** (not counted): ``o_res`` beats ``{data, last}``: status
  (``class | error << 16``), cycles, then the ``R`` logits (int32), reading
  the accumulators again and clearing them. After an error: status and
  cycles only (``last`` on the cycles beat).

Errors: a header or descriptor outside the parameters (``ERR_PARAMS``) or a
PE reporting a corrupt stream (``ERR_STREAM``) abort the inference: the PEs
and broadcaster are cleared, every accumulator is zeroed (``acc_depth``
cycles) and the error result is sent. Every state is left after a bounded
number of cycles, so the engine always answers.
"""

from __future__ import annotations

from dataclasses import asdict

from amaranth import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .layouts import (
    ERR_PARAMS,
    ERR_STREAM,
    RESULT_LAYOUT,
    act_word_bits,
    header_layout,
    layer_layout,
)
from .params import Contents, EngineParams


def descriptor_fields(w, p: EngineParams) -> dict:
    """A :class:`hdl.params.LayerWord` as the descriptor memory's value: its fields in ``layer_layout(p)``
    (an fc engine has none of the conv ones)."""
    fields = layer_layout(p).members
    return {k: v for k, v in asdict(w).items() if k in fields}


def _layer_init(c: Contents | None, p: EngineParams) -> list[dict]:
    if c is None:
        return []
    return [descriptor_fields(w, p) for w in c.layers[: p.max_layers]]


class Sequencer(wiring.Component):
    """The engine's control (see the module docstring for its schedule)."""

    def __init__(self, p: EngineParams, init: Contents | None = None):
        self.p = p
        self._init = init
        n = p.n_pes
        self.aw = act_word_bits(p)
        d = p.conv_dim + 2
        conv = {"rq_row": Out(range(max(2, p.acc_depth))), "rq_first": Out(1), "rq_last": Out(1),
                "ld_zero": Out(n), "pos_word": Out(signed(self.aw + 2)), "pos_iy": Out(signed(d)),
                "pos_ix": Out(signed(d))} if p.conv else {}
        super().__init__({
            **conv,
            "i_act": In(stream.Signature(8)),
            "o_res": Out(stream.Signature(RESULT_LAYOUT)),
            "cfg": Out(layer_layout(p)),
            "clear": Out(1),
            "bc_start": Out(1),
            "bc_quiet": In(1),
            "pe_busy_next": In(n),
            "pe_error_next": In(n),
            "tail_rd": Out(1),
            "tail_addr": Out(range(max(2, p.acc_depth))),
            "tail_clear": Out(n),
            "tail_sum": In(data.ArrayLayout(signed(32), n)),
            "rq_en": Out(n),
            "rq_tag": Out(self.aw),
            "ld_en": Out(n),
            "ld_addr": Out(self.aw),
            "ld_data": Out(8),
            "cycles": Out(32),
            "running": Out(1),
        })

    def elaborate(self, platform):  # noqa: C901
        m = Module()
        p = self.p
        n = p.n_pes
        c = self._init
        m.submodules.hdr = hdr_mem = Memory(shape=header_layout(p), depth=1,
                                            init=[c.header] if c else [])
        m.submodules.desc = desc_mem = Memory(shape=layer_layout(p), depth=max(2, p.max_layers),
                                              init=_layer_init(c, p))
        hdr_rd = hdr_mem.read_port(domain="comb")
        desc_rd = desc_mem.read_port()
        hdr = hdr_rd.data
        m.d.comb += hdr_rd.addr.eq(0)

        hdr_ok = Signal()
        m.d.comb += hdr_ok.eq((hdr.n_pes == n) & (hdr.n_layers >= 1) & (hdr.n_layers <= p.max_layers)
                              & (hdr.max_len >= 1) & (hdr.max_len <= p.max_len) & (hdr.flags == 0)
                              & (hdr.input_size >= 1) & (hdr.input_size <= p.max_cols)
                              & (hdr.n_classes >= 1))
        layer = Signal(range(max(2, p.max_layers + 1)))
        cfg = self.cfg
        last_layer = layer == hdr.n_layers - 1
        cfg_ok = Signal()
        # a convolution's columns are its patch and its outputs a map: their sizes are checked against
        # the memories by hdl.params (act_words), not against the fc layer limits here
        is_conv = cfg.conv if p.conv else 0
        m.d.comb += cfg_ok.eq(
            (cfg.wbits >= 1) & (cfg.wbits <= p.wbits_max) & (cfg.zbits >= 1) & (cfg.zbits <= p.zbits_max)
            & (cfg.rows >= 1) & (cfg.rows <= p.max_rows) & (cfg.cols >= 1) & ((cfg.cols <= p.max_cols) | is_conv)
            & (cfg.relu == ~last_layer) & (~cfg.relu | (cfg.rows <= p.max_cols) | is_conv)
            & (~last_layer | (cfg.rows == hdr.n_classes)) & (~last_layer | ~is_conv)
            & ((layer != 0) | (cfg.cols == hdr.input_size) | is_conv)
            & (cfg.mult < (1 << 16)) & (cfg.shift <= 62) & (cfg.n_sym >= 1))

        err = Signal(8)
        cycles = self.cycles
        m.d.comb += self.o_res.payload.last.eq(0)

        # input load counters
        j = Signal(17)
        lq = Signal(range(max(2, n)))
        la = Signal(self.aw + 1)
        in_total = Mux(hdr.input_size == 0, 1, hdr.input_size)

        # tail / read-out counters
        ti = Signal(range(max(2, p.acc_depth) + 1))  # local row
        tq = Signal(range(max(2, n)))  # PE of the row being read out
        rbase = Signal(17)  # first row of local row ti: ti * N
        r = Signal(17)  # row index in read-out
        drain = Signal(2)
        ro_valid, ro_sel, ro_row = Signal(), Signal(range(max(2, n))), Signal(16)
        best, best_idx = Signal(signed(32)), Signal(16)
        logit = Signal(signed(32))
        # with p.bram_out_regs every PE's tail sum is registered where it leaves the PE, then
        # selected: block RAM clock-to-out, the bias adder and the N-way select across the chip
        # were the ULX3S N = 8 critical path (15.0 ns) when they met in one cycle
        sums, ro1_valid, ro1_sel, ro1_row = list(self.tail_sum), ro_valid, ro_sel, ro_row
        if p.bram_out_regs:
            sums = [Signal(signed(32), name=f"tail_sum_q{q}") for q in range(n)]
            m.d.sync += [sums[q].eq(self.tail_sum[q]) for q in range(n)]
            ro1_valid, ro1_sel, ro1_row = Signal(), Signal.like(ro_sel), Signal(16)
            m.d.sync += [ro1_valid.eq(ro_valid), ro1_sel.eq(ro_sel), ro1_row.eq(ro_row)]
        sel_sum = Signal(signed(32))
        with m.Switch(ro1_sel):
            for q in range(n):
                with m.Case(q):
                    m.d.comb += sel_sum.eq(sums[q])

        # running argmax, two cycles after the read (three with p.bram_out_regs): the selected
        # PE's sum is registered, then compared with the best
        ro2_valid, ro2_row, ro2_sum = Signal(), Signal(16), Signal(signed(32))
        m.d.sync += [ro_valid.eq(0), ro2_valid.eq(ro1_valid), ro2_row.eq(ro1_row), ro2_sum.eq(sel_sum)]
        with m.If(ro2_valid & ((ro2_row == 0) | (ro2_sum > best))):
            m.d.sync += [best.eq(ro2_sum), best_idx.eq(ro2_row)]

        def next_row():
            """Advance (tq, ti, rbase, r) to the next row in read-out order r = ti * N + tq."""
            m.d.sync += r.eq(r + 1)
            with m.If(tq == n - 1):
                m.d.sync += [tq.eq(0), ti.eq(ti + 1), rbase.eq(rbase + n)]
            with m.Else():
                m.d.sync += tq.eq(tq + 1)

        # `rows_left` = rbase < rows, kept in a register: the compare used to sit in front of the
        # tail's read enable and the PEs' bias address adder (the iCE40's critical path). The
        # tail address is ti in every state that reads or clears (wiring, no mux)
        rows_left = Signal()
        m.d.comb += self.tail_addr.eq(ti)

        def reset_rows():
            m.d.sync += [tq.eq(0), ti.eq(0), rbase.eq(0), r.eq(0), rows_left.eq(cfg.rows != 0)]

        conv = p.conv
        out_word = Signal(self.aw)  # conv engine: where the tail's rows go (word of local row 0)
        if conv:
            # output position (py, px) of the pooled map and (dy, dx) inside its 2 x 2 window; the
            # patch origin of (py, px, 0, 0) as a word and as input row / column (may be negative)
            dd = p.conv_dim + 2
            py, px = Signal(p.conv_dim), Signal(p.conv_dim)
            dy, dx = Signal(), Signal()
            rowbase, colbase = Signal(signed(self.aw + 2)), Signal(signed(self.aw + 2))
            iy_py, ix_px = Signal(signed(dd)), Signal(signed(dd))
            m.d.comb += [self.pos_word.eq(colbase + Mux(dy, cfg.y_step, 0) + Mux(dx, cfg.x_step, 0)),
                         self.pos_iy.eq(iy_py + Mux(dy, cfg.stride, 0)),
                         self.pos_ix.eq(ix_px + Mux(dx, cfg.stride, 0))]
            window_done = ~cfg.pool | (dy & dx)
            last_pos = window_done & (py + 1 >= cfg.hp) & (px + 1 >= cfg.wp)
            # input loader of a conv net's image, (C, H, W) order: channel ch in bank ch mod N, pixel
            # p at word p * gpp + ch div N; the padded channels beside the last one get zeros
            ch, pix = Signal(16), Signal(20)
            cgrp = Signal(self.aw)

        def first_position():
            m.d.sync += [py.eq(0), px.eq(0), dy.eq(0), dx.eq(0), rowbase.eq(cfg.base0), colbase.eq(cfg.base0),
                         iy_py.eq(cfg.iy0), ix_px.eq(cfg.ix0), out_word.eq(cfg.out_base)]

        def next_position():
            with m.If(~window_done):
                m.d.sync += [dx.eq(~dx), dy.eq(dy | dx)]
            with m.Else():
                m.d.sync += [dy.eq(0), dx.eq(0), out_word.eq(out_word + cfg.gpo)]
                with m.If(px + 1 < cfg.wp):
                    m.d.sync += [px.eq(px + 1), colbase.eq(colbase + Mux(cfg.pool, cfg.x_step << 1, cfg.x_step)),
                                 ix_px.eq(ix_px + cfg.pstride)]
                with m.Else():
                    row_next = rowbase + Mux(cfg.pool, cfg.y_step << 1, cfg.y_step)
                    m.d.sync += [px.eq(0), py.eq(py + 1), rowbase.eq(row_next), colbase.eq(row_next),
                                 iy_py.eq(iy_py + cfg.pstride), ix_px.eq(cfg.ix0)]

        # the column phase's exit conditions, registered: the PEs' and the broadcaster's
        # next-cycle flags ORed here, so the routes from N PEs across the chip end at these
        # flip-flops instead of running on into the state machine (ECP5 N = 8: 16.9 ns, 14.2
        # of it routing). pe_idle in cycle t is exactly "scan done and no PE busy" in t: a PE
        # is busy in t iff busy_next in t - 1 or an issue in t - 1 (then not quiet)
        pe_idle, pe_error = Signal(), Signal()
        m.d.sync += [pe_idle.eq(self.bc_quiet & ~self.bc_start & ~self.clear & ~self.pe_busy_next.any()),
                     pe_error.eq(self.pe_error_next.any() & ~self.clear)]
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += [self.clear.eq(1), self.i_act.ready.eq(1)]
                with m.If(self.i_act.valid):
                    m.d.comb += [self.ld_addr.eq(la), self.ld_data.eq(self.i_act.payload)]
                    for q in range(n):
                        m.d.comb += self.ld_en[q].eq(hdr_ok & (lq == q) & (la < p.act_depth))
                    m.d.sync += j.eq(j + 1)
                    if conv:
                        with m.If(hdr.conv0):  # (C, H, W) order into (H, W, C padded to cs)
                            last_ch = ch + 1 >= hdr.in_c
                            for q in range(n):
                                m.d.comb += [self.ld_en[q].eq(hdr_ok & ((lq == q) | (last_ch & (q > lq)))
                                                              & (la < p.act_depth)),
                                             self.ld_zero[q].eq(q != lq)]
                            with m.If(pix + 1 >= hdr.in_hw):
                                m.d.sync += [pix.eq(0), ch.eq(ch + 1)]
                                with m.If(lq == n - 1):
                                    m.d.sync += [lq.eq(0), cgrp.eq(cgrp + 1), la.eq(cgrp + 1)]
                                with m.Else():
                                    m.d.sync += [lq.eq(lq + 1), la.eq(cgrp)]
                            with m.Else():
                                m.d.sync += [pix.eq(pix + 1), la.eq(la + hdr.in_gpp)]
                        with m.Elif(lq == n - 1):
                            m.d.sync += [lq.eq(0), la.eq(la + 1)]
                        with m.Else():
                            m.d.sync += lq.eq(lq + 1)
                    else:
                        with m.If(lq == n - 1):
                            m.d.sync += [lq.eq(0), la.eq(la + 1)]
                        with m.Else():
                            m.d.sync += lq.eq(lq + 1)
                    with m.If(j + 1 >= in_total):
                        m.d.sync += [j.eq(0), lq.eq(0), la.eq(0), cycles.eq(0), layer.eq(0),
                                     err.eq(0)]
                        if conv:
                            m.d.sync += [ch.eq(0), pix.eq(0), cgrp.eq(0)]
                        with m.If(hdr_ok):
                            m.next = "SETUP0"
                        with m.Else():
                            m.d.sync += err.eq(ERR_PARAMS)
                            m.next = "ERR"
            with m.State("SETUP0"):
                m.d.comb += [desc_rd.addr.eq(layer), self.running.eq(1)]
                m.next = "SETUP1"
            with m.State("SETUP1"):
                m.d.comb += self.running.eq(1)
                m.d.sync += cfg.eq(desc_rd.data)
                m.next = "SETUP2"
            with m.State("SETUP2"):
                m.d.comb += self.running.eq(1)
                with m.If(cfg_ok):
                    if conv:  # a convolution's broadcaster starts next cycle, at its first position
                        first_position()
                        m.d.comb += self.bc_start.eq(~cfg.conv)
                    else:
                        m.d.comb += self.bc_start.eq(1)
                    m.next = "SETUP3"
                with m.Else():
                    m.d.sync += err.eq(ERR_PARAMS)
                    m.next = "ERR"
            with m.State("SETUP3"):
                m.d.comb += self.running.eq(1)
                if conv:
                    m.d.comb += self.bc_start.eq(cfg.conv)
                m.next = "COLS"
            if conv:
                with m.State("POS_START"):  # the next output position of a convolution
                    m.d.comb += [self.running.eq(1), self.bc_start.eq(1)]
                    m.next = "COLS"
            with m.State("COLS"):
                m.d.comb += self.running.eq(1)
                with m.If(pe_error):
                    m.d.sync += err.eq(ERR_STREAM)
                    m.next = "ERR"
                with m.Elif(pe_idle):
                    reset_rows()
                    with m.If(cfg.relu):
                        m.next = "TAIL_RQ"
                    with m.Else():
                        m.next = "TAIL_RO"
            with m.State("TAIL_RQ"):
                m.d.comb += self.running.eq(1)
                with m.If(rows_left):
                    m.d.comb += [self.tail_rd.eq(1), self.tail_clear.eq((1 << n) - 1)]
                    m.d.sync += [self.rq_en.eq(Cat(*[rbase + q < cfg.rows for q in range(n)])),
                                 self.rq_tag.eq(ti), ti.eq(ti + 1), rbase.eq(rbase + n),
                                 rows_left.eq(rbase + n < cfg.rows)]
                    if conv:  # a conv layer also writes its padded channels (zeros: no weights, no bias)
                        with m.If(cfg.conv):
                            m.d.sync += self.rq_en.eq((1 << n) - 1)
                        m.d.sync += [self.rq_tag.eq(out_word + ti), self.rq_row.eq(ti),
                                     self.rq_first.eq(~cfg.pool | ~(dy | dx)), self.rq_last.eq(window_done)]
                with m.Else():
                    m.d.sync += [self.rq_en.eq(0), drain.eq(0)]
                    m.next = "TAIL_RQ_DRAIN"
                    if conv:
                        with m.If(cfg.conv & ~last_pos):
                            next_position()
                            reset_rows()
                            m.next = "POS_START"
            with m.State("TAIL_RQ_DRAIN"):
                m.d.comb += self.running.eq(1)
                m.d.sync += drain.eq(drain + 1)
                with m.If(drain == (2 if p.bram_out_regs else 1)):  # the last requantizer write lands in SETUP1
                    m.d.sync += layer.eq(layer + 1)
                    m.next = "SETUP0"
            with m.State("TAIL_RO"):
                m.d.comb += [self.running.eq(1), self.tail_rd.eq(1)]
                m.d.sync += [ro_valid.eq(1), ro_sel.eq(tq), ro_row.eq(r)]
                next_row()
                with m.If(r + 1 >= cfg.rows):
                    m.next = "TAIL_RO_LAST"
            with m.State("TAIL_RO_LAST"):  # the last row's sum is registered (with p.bram_out_regs:
                m.d.comb += self.running.eq(1)  # in its PE's register, then selected, TAIL_RO_SEL)
                m.next = "TAIL_RO_SEL" if p.bram_out_regs else "TAIL_RO_CMP"
            if p.bram_out_regs:
                with m.State("TAIL_RO_SEL"):
                    m.d.comb += self.running.eq(1)
                    m.next = "TAIL_RO_CMP"
            with m.State("TAIL_RO_CMP"):  # ... and compared
                m.d.comb += self.running.eq(1)
                reset_rows()
                m.next = "OUT_STATUS"
            with m.State("ERR"):
                m.d.comb += self.clear.eq(1)
                reset_rows()
                m.next = "ERR_CLEAR"
            with m.State("ERR_CLEAR"):
                m.d.comb += self.tail_clear.eq((1 << n) - 1)
                m.d.sync += ti.eq(ti + 1)
                with m.If(ti == max(2, p.acc_depth) - 1):
                    reset_rows()
                    m.next = "OUT_STATUS"
            with m.State("OUT_STATUS"):
                m.d.comb += [self.o_res.valid.eq(1),
                             self.o_res.payload.data.eq(Mux(err != 0, 0, best_idx) | (err << 16))]
                with m.If(self.o_res.ready):
                    m.next = "OUT_CYCLES"
            with m.State("OUT_CYCLES"):
                m.d.comb += [self.o_res.valid.eq(1), self.o_res.payload.data.eq(cycles),
                             self.o_res.payload.last.eq(err != 0)]
                with m.If(self.o_res.ready):
                    with m.If(err != 0):
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "OUT_RD"
            with m.State("OUT_RD"):
                m.d.comb += self.tail_rd.eq(1)
                for q in range(n):
                    m.d.comb += self.tail_clear[q].eq(tq == q)
                m.d.sync += ro_sel.eq(tq)
                m.next = "OUT_REG" if p.bram_out_regs else "OUT_CAP"
            if p.bram_out_regs:
                with m.State("OUT_REG"):  # the PEs' sums registered (ro1_sel follows ro_sel)
                    m.next = "OUT_CAP"
            with m.State("OUT_CAP"):
                m.d.sync += logit.eq(sel_sum)
                m.next = "OUT_SEND"
            with m.State("OUT_SEND"):
                m.d.comb += [self.o_res.valid.eq(1), self.o_res.payload.data.eq(logit),
                             self.o_res.payload.last.eq(r + 1 >= cfg.rows)]
                with m.If(self.o_res.ready):
                    next_row()
                    with m.If(r + 1 >= cfg.rows):
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "OUT_RD"
        with m.If(self.running):
            m.d.sync += cycles.eq(cycles + 1)
        return m

