"""The accelerator top: sequencer + broadcaster/activation banks + N PEs + N requantizers.

::

    i_act ──► Sequencer ──ld──► Broadcaster (N activation banks, LNZD) ──issue──► PE 0 … PE N-1
                 │  cfg, clear, tail control                                       │ tail_sum
                 │◄──────────────────── busy, error ──────────────────────────────┤
                 │                                                                 ▼
                 │                       bank q ◄── Requantizer q ◄───────────── PE q (hidden tail)
                 └──► o_res (status, cycles, logits; argmax over PE tail_sums)

Ports: ``i_act`` (stream of uint8, ``input_size`` beats per inference),
``o_res`` (stream of ``{data: 32, last: 1}``: status = class | error << 16,
cycle count, then the int32 logits; ``last`` on the final beat) and two debug
outputs, ``starve`` (some PE's decoder ever lacked bits: never expected) and
``running``. The ROM contents are memory ``init`` values computed by
:func:`hdl.params.contents`, except, with ``params.loadable_streams``, the
weight streams: they live in single-port RAM (iCE40 SPRAM) written through
the ``load`` stream (:func:`hdl.layouts.LoadSignature`: ``{pe, odd, addr,
data}``, always ready, one 16-bit word per ``valid`` cycle, only while the
engine is idle) by the board's runtime loader.

Point-to-point links are ``wiring.connect``-ed. The rest is explicit fan-out
and fan-in: the broadcast ``issue`` (its ``ready`` is the AND of every PE's,
each PE sees ``valid`` only when all accept), the descriptor, ``clear`` and
the tail controls to every PE, the ``load`` stream to PE ``load.pe``, and the
PEs' ``status`` and tail results into the sequencer's per-PE vectors.
"""

from __future__ import annotations

from amaranth import Module, Mux
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out, connect

from compressor.contract.rom import RomImage

from .broadcast import Broadcaster
from .engine import Sequencer
from .layouts import RESULT_LAYOUT, LoadSignature
from .params import EngineParams, contents, fit
from .pe import PE
from .requant import Requantizer


class Accelerator(wiring.Component):
    """The whole engine for ``params`` (default: :func:`hdl.params.fit` of ``rom``)."""

    def __init__(self, rom: RomImage | None = None, params: EngineParams | None = None):
        if params is None:
            if rom is None:
                raise ValueError("need a ROM image or parameters")
            params = fit(rom)
        self.params = params
        self.contents = contents(rom, params) if rom is not None else None
        # an explicit signature: with `from __future__ import annotations` Amaranth cannot
        # read In/Out class annotations (they are strings)
        loader = {"load": In(LoadSignature(params))} if params.loadable_streams else {}
        super().__init__({
            **loader,
            "i_act": In(stream.Signature(8)),
            "o_res": Out(stream.Signature(RESULT_LAYOUT)),
            "starve": Out(1),
            "running": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        p, c = self.params, self.contents
        n = p.n_pes
        m.submodules.seq = seq = Sequencer(p, c)
        m.submodules.bc = bc = Broadcaster(p)
        pes, rqs = [], []
        for q in range(n):
            kw = {}
            if c is not None:
                kw = dict(ptr_even=c.ptr_even[q], ptr_odd=c.ptr_odd[q], ptr_flags=c.ptr_flags[q],
                          bias=c.bias[q], codebook=c.codebook, symbols=c.symbols)
                if not p.loadable_streams:
                    kw.update(stream_even=c.stream_even[q], stream_odd=c.stream_odd[q])
            pe = PE(p, q, **kw)
            if p.loadable_streams:  # the loader's word goes to PE `load.pe` only (always ready)
                m.d.comb += [pe.load.valid.eq(self.load.valid & (self.load.payload.pe == q)),
                             pe.load.payload.odd.eq(self.load.payload.odd),
                             pe.load.payload.addr.eq(self.load.payload.addr),
                             pe.load.payload.data.eq(self.load.payload.data)]
            rq = Requantizer(seq.aw, p.conv, p.acc_depth, split=p.bram_out_regs)
            m.submodules[f"pe{q}"] = pe
            m.submodules[f"rq{q}"] = rq
            pes.append(pe)
            rqs.append(rq)

        connect(m, wiring.flipped(self.i_act), seq.i_act)
        connect(m, seq.o_res, wiring.flipped(self.o_res))
        m.d.comb += [bc.start.eq(seq.bc_start), bc.clear.eq(seq.clear), bc.cols.eq(seq.cfg.cols),
                     seq.bc_quiet.eq(bc.quiet), self.running.eq(seq.running)]
        if p.conv:
            m.d.comb += [bc.cfg.eq(seq.cfg), bc.pos_word.eq(seq.pos_word), bc.pos_iy.eq(seq.pos_iy),
                         bc.pos_ix.eq(seq.pos_ix)]
        all_ready = 1
        for pe in pes:
            all_ready = all_ready & pe.issue.ready
        m.d.comb += bc.issue.ready.eq(all_ready)
        for q, (pe, rq) in enumerate(zip(pes, rqs, strict=True)):
            m.d.comb += [
                pe.issue.valid.eq(bc.issue.valid & all_ready),  # a broadcast transfers to all or none
                pe.issue.payload.eq(bc.issue.payload),
                pe.cfg.eq(seq.cfg), pe.clear.eq(seq.clear), pe.start.eq(seq.bc_start),
                pe.tail.rd.eq(seq.tail_rd), pe.tail.addr.eq(seq.tail_addr),
                pe.tail.clear.eq(seq.tail_clear[q]),
                seq.tail_sum[q].eq(pe.tail.sum),
                seq.pe_busy_next[q].eq(pe.status.busy_next), seq.pe_error_next[q].eq(pe.status.error_next),
                rq.i.valid.eq(seq.rq_en[q]), rq.i.payload.acc.eq(pe.tail.sum),
                rq.i.payload.tag.eq(seq.rq_tag), rq.mult.eq(seq.cfg.mult), rq.shift.eq(seq.cfg.shift),
                # bank q: input loader in IDLE, requantizer q in a hidden layer's tail
                bc.wr_en[q].eq(seq.ld_en[q] | rq.o.valid),
                bc.wr_addr[q].eq(Mux(rq.o.valid, rq.o.payload.tag, seq.ld_addr)),
                bc.wr_data[q].eq(Mux(rq.o.valid, rq.o.payload.act,
                                     Mux(seq.ld_zero[q], 0, seq.ld_data) if p.conv else seq.ld_data)),
            ]
            if p.conv:
                m.d.comb += [rq.i.payload.row.eq(seq.rq_row), rq.i.payload.first.eq(seq.rq_first),
                             rq.i.payload.last.eq(seq.rq_last), rq.signed.eq(seq.cfg.out_signed)]
        starve = 0
        for pe in pes:
            starve = starve | pe.status.starve
        m.d.comb += self.starve.eq(starve)
        return m
