"""PE front end: pointer read, activation FIFO, run-ahead bit fetcher, landing into the bit buffer.

:class:`Fetch` takes the broadcast ``issue`` stream, looks up the column's bit
segment ``[start, end)`` in the pointer memories, queues ``{act, segment}`` in
an 8-entry FIFO and fetches the segment's bits from the stream memories
*ahead* of the decoder, so that the next column's first code is already in the
decoder's bit buffer when the current column ends (zero-bubble column
switching, docs/hardware.md). It hands the decoder two things:

* ``col`` (:func:`hdl.layouts.ColumnSignature`): the FIFO head, valid once its
  first fetch has landed; the decoder pops it (``pop``);
* ``bits`` (:func:`hdl.layouts.BitsSignature`): the window landing this cycle,
  already placed right behind the decoder's ``held`` bits.

Pipeline (``b`` = cycle the issue is accepted)::

    b      FIFO counter + 1, pointer rows j, j+1 read (even/odd banks) and the column's flags
    b+1    the pointer rows and flags registered (off the block RAMs' clock-to-out)
    b+2    queue entry written: {act, first window's bank addresses, skip, length, flags},
           or the column dropped (the PE holds nothing of it: flags say empty);
           when the fetcher has caught up, the first 32-bit read goes out now (bypass)
    t      a fetch: words w, w+1 read from the even/odd stream banks
    t+1    stage A: the window aligned (skip dropped, bits past the segment cleared), registered
    t+2    stage B: placed behind the held bits on ``bits`` (the decoder merges it this cycle)
    b+5    ``col.valid`` for the entry (``landed`` = the fetcher's FIFO index delayed two cycles)

Latency: issue -> ``col.valid`` 5 cycles (when the fetcher has caught up);
fetch -> ``bits`` 2 cycles, decodable the cycle after. ``issue.ready`` is
``count < 8`` where ``count`` rises on an issue and falls on a pop, so a slot
freed in cycle s is usable in s + 1.

**Refill on registers only.** A fetch is issued when the held bits plus both
fetches in flight leave room for 32 more (``held + a_nb + b_nb <= B - 32``):
registers only, so neither the fetch decision nor the memory address depends
on this cycle's decode. Landing bits are placed at the *registered* held count
before the decoder's shift. No overflow: held + in flight + 32 <= B. A segment
of n >= 1 entries spans at most ``15 + 16 n`` bits, i.e. at most n fetches, and
the fetcher moves to the next segment in the cycle it issues the last fetch of
the current one, so it needs at most ``n`` cycles per column, what the
decoder spends; a corrupt segment is passed in one cycle (no read).

**Empty columns are dropped** at b+2 (the pointer flags say the PE holds no
entry of the column): no queue entry, no fetch, no decode; ``count`` falls in
that cycle, so the slot is usable at b+3 and ``col.pending`` is clear from
b+3 (the cycle model's ``drop_free``). At N = 8 a PE holds nothing of 9 %
of LeNet-300-100's first-layer columns and of a third of its second's.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .layouts import (
    BitsSignature,
    ColumnSignature,
    PELoadSignature,
    issue_layout,
    layer_layout,
    queue_layout,
)
from .params import EngineParams
from .spram import SinglePortRAM


class Fetch(wiring.Component):
    """Pointer read + FIFO + run-ahead fetcher + landing stages (latencies: module docstring).

    Ports: ``issue`` (in), ``cfg`` (the layer descriptor; ``ptr_base``), ``clear``,
    ``load`` (in, with ``p.loadable_streams``: the runtime loader's stream words),
    ``col`` and ``bits`` (out, to the decoder; ``col.pending``: issued columns not yet popped).
    """

    def __init__(self, p: EngineParams, *, stream_even=(), stream_odd=(), ptr_even=(), ptr_odd=(),
                 ptr_flags=()):
        self.p = p
        self._init = dict(stream_even=list(stream_even), stream_odd=list(stream_odd),
                          ptr_even=list(ptr_even), ptr_odd=list(ptr_odd), ptr_flags=list(ptr_flags))
        loader = {"load": In(PELoadSignature(p))} if p.loadable_streams else {}
        super().__init__({
            **loader,
            "issue": In(stream.Signature(issue_layout(p))),
            "cfg": In(layer_layout(p)),
            "clear": In(1),
            "col": Out(ColumnSignature(p)),
            "bits": Out(BitsSignature(p)),
        })

    def elaborate(self, platform):
        m = Module()
        p, cfg, init = self.p, self.cfg, self._init
        B, D = p.buf_bits, p.fifo_depth
        assert D & (D - 1) == 0, "FIFO depth must be a power of two"
        kq = (D - 1).bit_length()
        half_s = p.stream_half
        half_p = p.ptr_rows // 2 + p.ptr_rows % 2
        held = self.bits.held

        # --- memories -------------------------------------------------------------------
        se_addr, so_addr = Signal(range(max(2, half_s))), Signal(range(max(2, half_s)))
        if p.loadable_streams:  # single-port RAM: the loader's writes take the address (engine idle)
            ld = self.load
            m.submodules.s_even = s_even = SinglePortRAM(half_s)
            m.submodules.s_odd = s_odd = SinglePortRAM(half_s)
            for ram, addr, odd in ((s_even, se_addr, 0), (s_odd, so_addr, 1)):
                m.d.comb += [ram.addr.eq(Mux(ld.valid, ld.payload.addr, addr)), ram.wdata.eq(ld.payload.data),
                             ram.we.eq(ld.valid & (ld.payload.odd == odd))]
            se_data, so_data = s_even.rdata, s_odd.rdata
        else:
            m.submodules.s_even = s_even = Memory(shape=16, depth=half_s, init=init["stream_even"])
            m.submodules.s_odd = s_odd = Memory(shape=16, depth=half_s, init=init["stream_odd"])
            se_rd, so_rd = s_even.read_port(), s_odd.read_port()
            m.d.comb += [se_rd.addr.eq(se_addr), so_rd.addr.eq(so_addr)]
            se_data, so_data = se_rd.data, so_rd.data
        m.submodules.p_even = p_even = Memory(shape=p.ptr_width, depth=half_p, init=init["ptr_even"])
        m.submodules.p_odd = p_odd = Memory(shape=p.ptr_width, depth=half_p, init=init["ptr_odd"])
        # bad << 1 | empty per pointer row (params.contents): no comparators after the pointer
        # reads, which sat on the iCE40 critical path (pointer RAM -> digest -> fetch enable)
        m.submodules.p_flags = p_flags = Memory(shape=2, depth=max(2, p.ptr_rows), init=init["ptr_flags"])
        m.submodules.queue = queue = Memory(shape=queue_layout(p), depth=D, init=[])
        pe_rd, po_rd, pf_rd = p_even.read_port(), p_odd.read_port(), p_flags.read_port()
        q_wr = queue.write_port()
        qf = queue.read_port(domain="comb")  # fetcher's peek beyond the head
        qh = queue.read_port(domain="comb")  # decoder's head

        # --- FIFO bookkeeping: pointers with a wrap bit -----------------------------------
        wptr = Signal(kq + 1)  # entries written
        fidx = Signal(kq + 1)  # next entry whose first fetch is not yet issued
        landed = Signal(kq + 1)  # entries whose first fetch is in the bit buffer
        head = Signal(kq + 1)  # next entry the decoder pops
        count = Signal(range(D + 1))  # issued and not yet popped (what the broadcaster sees)
        m.d.comb += self.issue.ready.eq(count < D)
        issued = Signal()
        m.d.comb += issued.eq(self.issue.valid & self.issue.ready)

        # issue stage: read pointer rows g = ptr_base + col and g + 1 from the even/odd banks
        g = Signal(range(2 * p.ptr_rows + 2))
        m.d.comb += [g.eq(cfg.ptr_base + self.issue.payload.col),
                     pe_rd.addr.eq((g + 1) >> 1), po_rd.addr.eq(g >> 1), pf_rd.addr.eq(g)]
        rd_valid, rd_odd, rd_act = Signal(), Signal(), Signal(8)
        m.d.sync += [rd_valid.eq(issued), rd_odd.eq(g[0]), rd_act.eq(self.issue.payload.act)]
        # b+1: the pointer rows registered as they leave the memories, so the digest below does
        # not hang off the block RAMs' clock-to-out (it was the iCE40's critical path)
        ptr_valid, ptr_odd, ptr_act = Signal(), Signal(), Signal(8)
        ptr_e, ptr_o, ptr_f = Signal(p.ptr_width), Signal(p.ptr_width), Signal(2)
        m.d.sync += [ptr_valid.eq(rd_valid), ptr_odd.eq(rd_odd), ptr_act.eq(rd_act),
                     ptr_e.eq(pe_rd.data), ptr_o.eq(po_rd.data), ptr_f.eq(pf_rd.data)]
        # b+2: digest the segment for the fetcher and the decoder (off their paths)
        seg_start, seg_end = Signal(p.ptr_width), Signal(p.ptr_width)
        m.d.comb += [seg_start.eq(Mux(ptr_odd, ptr_o, ptr_e)),
                     seg_end.eq(Mux(ptr_odd, ptr_e, ptr_o))]
        word0 = seg_start >> 4
        # window ends: bit (word0 + 2) * 16 ends the first 32-bit window, (word0 + 4) * 16 the
        # second; comparisons with `end` run in parallel with `end - start` (no chained carries)
        w2, w4 = Signal(p.ptr_width + 1), Signal(p.ptr_width + 1)
        m.d.comb += [w2.eq(Cat(Const(0, 4), word0 + 2)), w4.eq(Cat(Const(0, 4), word0 + 4))]
        seg_len, rest0 = Signal(p.ptr_width), Signal(p.ptr_width)
        m.d.comb += [seg_len.eq(seg_end - seg_start), rest0.eq(seg_end - w2)]
        more0 = seg_end > w2  # the segment goes on after its first window
        nb0 = Signal(6)
        m.d.comb += nb0.eq(Mux(more0, 32 - seg_start[:4], seg_len))
        nb1 = Mux(seg_end < w4, rest0, 32)  # bits of its second window
        # a column this PE holds nothing of (flags: empty) is dropped here: never queued, never
        # decoded; its FIFO slot is free again next cycle (the cycle model's drop_free = 2)
        drop, keep = Signal(), Signal()
        m.d.comb += [drop.eq(ptr_valid & ptr_f[0]), keep.eq(ptr_valid & ~ptr_f[0])]
        dg = q_wr.data  # the digest, written to the FIFO and (bypass) seen by the fetcher now
        m.d.comb += [q_wr.addr.eq(wptr[:kq]), q_wr.en.eq(keep),
                     dg.act.eq(ptr_act), dg.ea.eq((word0 + 1) >> 1), dg.oa.eq(word0 >> 1),
                     dg.odd.eq(word0[0]), dg.skip.eq(seg_start[:4]), dg.len.eq(seg_len),
                     dg.nb0.eq(nb0), dg.short.eq(seg_len < 16), dg.bad.eq(ptr_f[1])]
        with m.If(keep):
            m.d.sync += wptr.eq(wptr + 1)

        # the landing pipeline: a fetch issued at t reads the stream banks (data at t + 1, stage
        # A: the window is aligned -- skip dropped, bits past the segment cleared -- and
        # registered), then is placed behind the held bits at t + 2 (stage B); decodable at t + 3
        a_nb, a_odd, a_skip = Signal(6), Signal(), Signal(4)  # fetch in the memories
        b_nb, b_bits = Signal(6), Signal(32)  # aligned window being placed

        # --- fetcher (registers and the FIFO peek, or the digest being written: bypass) -----
        seg_active = Signal()  # mid-segment: more fetches of the current segment to go
        f_ea, f_oa, f_odd = Signal.like(dg.ea), Signal.like(dg.oa), Signal()
        f_left = Signal(p.ptr_width)  # bits of the segment after the next fetch's
        f_nb = Signal(6)  # bits the next fetch of the segment brings: min(left, 32)
        m.d.comb += qf.addr.eq(fidx[:kq])
        # the fetcher has caught up with the FIFO: take the entry being written this cycle
        # directly, so a column's first fetch goes out at b + 2 (usable at b + 5)
        bypass = keep & (fidx == wptr)
        has_next = (fidx != wptr) | keep
        nx = Signal(queue_layout(p))
        m.d.comb += nx.eq(Mux(bypass, dg.as_value(), qf.data.as_value()))
        ea, oa, odd = Signal.like(f_ea), Signal.like(f_oa), Signal()
        skip, nb = Signal(4), Signal(6)
        m.d.comb += [ea.eq(Mux(seg_active, f_ea, nx.ea)), oa.eq(Mux(seg_active, f_oa, nx.oa)),
                     odd.eq(Mux(seg_active, f_odd, nx.odd)),
                     skip.eq(Mux(seg_active, 0, nx.skip)),
                     nb.eq(Mux(seg_active, f_nb, nx.nb0))]
        seg_skip = ~seg_active & nx.bad  # corrupt: nothing to fetch, pass it
        room = Signal()  # both fetches in flight counted: registers only
        m.d.comb += room.eq((held + a_nb + b_nb) <= (B - 32))
        do_fetch, do_pass = Signal(), Signal()
        m.d.comb += [do_fetch.eq((seg_active | has_next) & ~seg_skip & room),
                     do_pass.eq(has_next & seg_skip)]
        m.d.comb += [se_addr.eq(ea), so_addr.eq(oa)]
        m.d.sync += [a_nb.eq(Mux(do_fetch, nb, 0)), a_odd.eq(odd), a_skip.eq(skip)]
        # after this fetch: from registers (mid-segment, FIFO), or precomputed from the pointers
        # (bypass: no subtraction after the pointer memories' outputs)
        rest = Signal(p.ptr_width)
        m.d.comb += rest.eq(Mux(seg_active, f_left, qf.data.len) - Mux(seg_active, f_nb, qf.data.nb0))
        first_bypass = ~seg_active & bypass
        with m.If(do_fetch):
            m.d.sync += [f_ea.eq(ea + 1), f_oa.eq(oa + 1), f_odd.eq(odd),
                         f_left.eq(Mux(first_bypass, rest0, rest)),
                         f_nb.eq(Mux(first_bypass, nb1, Mux(rest < 32, rest, 32))),
                         seg_active.eq(Mux(first_bypass, more0, rest != 0))]
        with m.If((do_fetch & ~seg_active) | do_pass):
            m.d.sync += fidx.eq(fidx + 1)
        landed1 = Signal.like(landed)
        m.d.sync += [landed1.eq(fidx), landed.eq(landed1)]  # first fetch issued at t: usable t + 3

        # stage A: the 32-bit window (first word high), skip bits dropped, a_nb bits kept
        first_w = Mux(a_odd, so_data, se_data)
        second_w = Mux(a_odd, se_data, so_data)
        aligned = (Cat(second_w, first_w) << a_skip)[:32] & ~(Const(0xFFFFFFFF, 32) >> a_nb)
        m.d.sync += [b_bits.eq(aligned), b_nb.eq(a_nb)]
        # stage B: behind the held bits (held <= B - 32 whenever b_nb > 0, by the room rule)
        sh = held[: max(1, (B - 32).bit_length())]
        m.d.comb += [self.bits.bits.eq(Cat(Const(0, B - 32), b_bits) >> sh), self.bits.nb.eq(b_nb)]

        # --- the FIFO head, offered to the decoder once its first fetch has landed ---------
        hd, col = qh.data, self.col
        m.d.comb += [qh.addr.eq(head[:kq]), col.valid.eq(head != landed),
                     col.payload.act.eq(hd.act), col.payload.len.eq(hd.len),
                     col.payload.short.eq(hd.short), col.payload.bad.eq(hd.bad)]
        with m.If(col.pop):
            m.d.sync += head.eq(head + 1)
        m.d.sync += count.eq(count + issued - col.pop - drop)
        m.d.comb += col.pending.eq(count != 0)

        with m.If(self.clear):
            m.d.sync += [wptr.eq(0), fidx.eq(0), landed.eq(0), head.eq(0), count.eq(0),
                         rd_valid.eq(0), ptr_valid.eq(0), seg_active.eq(0), a_nb.eq(0), b_nb.eq(0), b_bits.eq(0),
                         landed1.eq(0)]
        return m
