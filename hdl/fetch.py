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
with two decode contexts (``p.contexts == 2``) 6 or 7, the first cycle from
b + 6 in which the column's context is in the decoder's S1 (see below);
fetch -> ``bits`` 2 cycles, decodable the cycle after. ``issue.ready`` is
``count < 8`` where ``count`` rises on an issue and falls on a pop, so a slot
freed in cycle s is usable in s + 1 (``ready`` is a flip-flop: ``count < 8``
computed from the count's next value).

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

**Two decode contexts** (``p.contexts == 2``): issue k of a scan goes to
context k mod 2 (``ictx``; ``start`` resets it), each context has its own
FIFO (``fifo_depth`` entries, own pointers and count; ``issue.ready`` is the
room of ``ictx``'s), and the decoder sees the head of the context in its S1
(``phase``). The fetcher serves that same context each cycle. Its segment
state rotates (``cur`` / ``other``), and the other context's FIFO peek is
registered a cycle ahead. A fetch at t is aligned at t + 1, placed at the
context's held count at t + 2 (stage P, registered), merged in the decoder's
S2 at t + 3 and decodable at t + 4. The room rule counts that context's fetch
in stage B only, since stage A holds the other context's.
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
from .onehot import or_reduce
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
            # with p.contexts == 2 (hdl/pe.py): the context in the decoder's S1 this cycle, and
            # the broadcaster's start of a scan (the next issue goes to context 0)
            "phase": In(1),
            "start": In(1),
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
        # On the ECP5 (p.bram_out_regs) a block RAM: left to itself Yosys builds this 2-bit ROM
        # from LUTs, ~200 LUT4 per PE and a mux tree behind the pointer address adder (the
        # ULX3S N = 8 two-context limiter at 970f3f0, 13.7 ns)
        flag_attrs = {"ram_style": "block"} if p.bram_out_regs else None
        m.submodules.p_flags = p_flags = Memory(shape=2, depth=max(2, p.ptr_rows), init=init["ptr_flags"],
                                                attrs=flag_attrs)
        C = p.contexts
        two = C == 2
        ph = self.phase  # with two contexts: the one the fetcher serves (the decoder's S1) this cycle

        def sel(values, by=ph):
            """The current context's copy of a per-context value (the only one with one context)."""
            return values[0] if not two else Mux(by, values[1], values[0])

        def mine(c, by=ph):
            """This cycle is context ``c``'s (always, with one context)."""
            return (by == c) if two else Const(1)

        qwr, qf, qh = [], [], []  # per context: the queue's write port, fetcher peek, decoder head
        for c in range(C):
            queue = Memory(shape=queue_layout(p), depth=D, init=[])
            m.submodules[f"queue{c}" if two else "queue"] = queue
            qwr.append(queue.write_port())
            qf.append(queue.read_port(domain="comb"))  # fetcher's peek beyond the head
            qh.append(queue.read_port(domain="comb"))  # decoder's head
        pe_rd, po_rd, pf_rd = p_even.read_port(), p_odd.read_port(), p_flags.read_port()

        # --- FIFO bookkeeping, per context: pointers with a wrap bit ----------------------
        def per(make):
            return [make(c) for c in range(C)]
        wptr = per(lambda c: Signal(kq + 1, name=f"wptr{c}"))  # entries written
        fidx = per(lambda c: Signal(kq + 1, name=f"fidx{c}"))  # next entry whose first fetch is not yet issued
        landed = per(lambda c: Signal(kq + 1, name=f"landed{c}"))  # entries whose first fetch is in the bit buffer
        head = per(lambda c: Signal(kq + 1, name=f"head{c}"))  # next entry the decoder pops
        count = per(lambda c: Signal(range(D + 1), name=f"count{c}"))  # issued, not yet popped or dropped
        # with two contexts issue k of a scan goes to context k mod 2 (`ictx`, the same in every PE)
        ictx = Signal()
        # the FIFO room, registered from the counts' next values (exact: `count < D` this
        # cycle): the N-way AND of every PE's `ready` into the broadcaster then starts at a
        # flip-flop, and the counts no longer get pulled across the die towards it (ECP5 N = 8:
        # FIFO head -> pop -> count ran through the broadcaster's corner, 15.1 ns)
        room_q = per(lambda c: Signal(init=1, name=f"room{c}"))
        m.d.comb += self.issue.ready.eq(sel(room_q, ictx))
        issued = Signal()
        m.d.comb += issued.eq(self.issue.valid & self.issue.ready)
        if two:
            with m.If(issued):
                m.d.sync += ictx.eq(~ictx)
            with m.If(self.start):
                m.d.sync += ictx.eq(0)

        # issue stage: read pointer rows g = ptr_base + col and g + 1 from the even/odd banks
        g = Signal(range(2 * p.ptr_rows + 2))
        m.d.comb += [g.eq(cfg.ptr_base + self.issue.payload.col),
                     pe_rd.addr.eq((g + 1) >> 1), po_rd.addr.eq(g >> 1), pf_rd.addr.eq(g)]
        rd_valid, rd_odd, rd_act, rd_ctx = Signal(), Signal(), Signal(8), Signal()
        m.d.sync += [rd_valid.eq(issued), rd_odd.eq(g[0]), rd_act.eq(self.issue.payload.act)]
        # b+1: the pointer rows registered as they leave the memories, so the digest below does
        # not hang off the block RAMs' clock-to-out (it was the iCE40's critical path)
        ptr_valid, ptr_odd, ptr_act, ptr_ctx = Signal(), Signal(), Signal(8), Signal()
        ptr_e, ptr_o, ptr_f = Signal(p.ptr_width), Signal(p.ptr_width), Signal(2)
        m.d.sync += [ptr_valid.eq(rd_valid), ptr_odd.eq(rd_odd), ptr_act.eq(rd_act),
                     ptr_e.eq(pe_rd.data), ptr_o.eq(po_rd.data), ptr_f.eq(pf_rd.data)]
        if two:
            m.d.sync += [rd_ctx.eq(ictx), ptr_ctx.eq(rd_ctx)]
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
        dg = Signal(queue_layout(p))  # the digest, written to the FIFO and (bypass) seen by the fetcher now
        m.d.comb += [dg.act.eq(ptr_act), dg.ea.eq((word0 + 1) >> 1), dg.oa.eq(word0 >> 1),
                     dg.odd.eq(word0[0]), dg.skip.eq(seg_start[:4]), dg.len.eq(seg_len),
                     dg.nb0.eq(nb0), dg.short.eq(seg_len < 16), dg.bad.eq(ptr_f[1])]
        for c in range(C):
            m.d.comb += [qwr[c].addr.eq(wptr[c][:kq]), qwr[c].data.eq(dg), qwr[c].en.eq(keep & mine(c, ptr_ctx))]
            with m.If(keep & mine(c, ptr_ctx)):
                m.d.sync += wptr[c].eq(wptr[c] + 1)

        # the landing pipeline: a fetch issued at t reads the stream banks (data at t + 1, stage
        # A: the window is aligned -- skip dropped, bits past the segment cleared -- and
        # registered), then is placed behind the held bits at t + 2 (stage B); decodable at t + 3.
        # With two contexts the placed window is registered (stage P) and merged at t + 3, into
        # the context in the decoder's S2 then, which is the one the fetch was for
        a_nb, a_odd, a_skip = Signal(6), Signal(), Signal(4)  # fetch in the memories
        b_nb, b_bits = Signal(6), Signal(32)  # aligned window being placed

        # --- fetcher (registers and the FIFO peek, or the digest being written: bypass) -----
        # the served context's segment state: with two contexts it rotates (`cur` is the served
        # context's, `other` the other's; each cycle they swap), so no mux picks it
        def seg_state(tag):
            return {"active": Signal(name=f"seg_active{tag}"),  # more fetches of the segment to go
                    "ea": Signal.like(dg.ea, name=f"f_ea{tag}"), "oa": Signal.like(dg.oa, name=f"f_oa{tag}"),
                    "odd": Signal(name=f"f_odd{tag}"),
                    "left": Signal(p.ptr_width, name=f"f_left{tag}"),  # bits of the segment after the next fetch's
                    "nb": Signal(6, name=f"f_nb{tag}")}  # bits the next fetch of the segment brings: min(left, 32)
        cur = seg_state("")
        other = seg_state("_other") if two else None
        sa = cur["active"]
        for c in range(C):
            m.d.comb += qf[c].addr.eq(fidx[c][:kq])
        # the fetcher has caught up with the FIFO: take the entry being written this cycle
        # directly, so a column's first fetch goes out at b + 2 (usable at b + 5)
        qfd = Signal(queue_layout(p))  # the served context's entry after its last first-fetched one
        behind = Signal()  # the served context has entries written but not yet first-fetched
        if two:
            # next cycle's context is the other one, whose FIFO pointers this cycle does not move:
            # its peek (or the digest written into that slot now) and its pointers' compare are
            # registered a cycle ahead, off the fetch path
            nxt = ~ph
            written = keep & (ptr_ctx == nxt)
            caught_up = sel(fidx, nxt) == sel(wptr, nxt)
            m.d.sync += [qfd.eq(Mux(written & caught_up, dg.as_value(), sel([q.data.as_value() for q in qf], nxt))),
                         behind.eq(~caught_up | written)]
            keep_x = keep & (ptr_ctx == ph)
        else:
            m.d.comb += [qfd.eq(qf[0].data), behind.eq(fidx[0] != wptr[0])]
            keep_x = keep
        bypass = keep_x & ~behind
        has_next = behind | keep_x
        nx = Signal(queue_layout(p))
        m.d.comb += nx.eq(Mux(bypass, dg.as_value(), qfd.as_value()))
        ea, oa, odd = Signal.like(dg.ea), Signal.like(dg.oa), Signal()
        skip, nb = Signal(4), Signal(6)
        m.d.comb += [ea.eq(Mux(sa, cur["ea"], nx.ea)), oa.eq(Mux(sa, cur["oa"], nx.oa)),
                     odd.eq(Mux(sa, cur["odd"], nx.odd)),
                     skip.eq(Mux(sa, 0, nx.skip)),
                     nb.eq(Mux(sa, cur["nb"], nx.nb0))]
        seg_skip = ~sa & nx.bad  # corrupt: nothing to fetch, pass it
        # room for 32 more bits: every fetch of this context still in flight counted (with two
        # contexts the one in stage B; stage A holds the other context's): registers only
        room = Signal()
        m.d.comb += room.eq(((held + b_nb) if two else (held + a_nb + b_nb)) <= (B - 32))
        do_fetch, do_pass = Signal(), Signal()
        m.d.comb += [do_fetch.eq((sa | has_next) & ~seg_skip & room),
                     do_pass.eq(has_next & seg_skip)]
        m.d.comb += [se_addr.eq(ea), so_addr.eq(oa)]
        m.d.sync += [a_nb.eq(Mux(do_fetch, nb, 0)), a_odd.eq(odd), a_skip.eq(skip)]
        # after this fetch: from registers (mid-segment, FIFO), or precomputed from the pointers
        # (bypass: no subtraction after the pointer memories' outputs)
        rest = Signal(p.ptr_width)
        m.d.comb += rest.eq(Mux(sa, cur["left"], qfd.len) - Mux(sa, cur["nb"], qfd.nb0))
        first_bypass = ~sa & bypass
        after = {"ea": ea + 1, "oa": oa + 1, "odd": odd, "left": Mux(first_bypass, rest0, rest),
                 "nb": Mux(first_bypass, nb1, Mux(rest < 32, rest, 32)),
                 "active": Mux(first_bypass, more0, rest != 0)}
        if two:
            m.d.sync += [cur[k].eq(other[k]) for k in cur]
            m.d.sync += [other[k].eq(Mux(do_fetch, after[k], cur[k])) for k in cur]
        else:
            with m.If(do_fetch):
                m.d.sync += [cur[k].eq(after[k]) for k in cur]
        for c in range(C):
            with m.If(((do_fetch & ~sa) | do_pass) & mine(c)):
                m.d.sync += fidx[c].eq(fidx[c] + 1)
        landed1 = per(lambda c: Signal.like(landed[c], name=f"landed1_{c}"))
        for c in range(C):  # first fetch issued at t: usable t + 3 (two contexts: its S1 at t + 4)
            m.d.sync += [landed1[c].eq(fidx[c]), landed[c].eq(landed1[c])]

        # stage A: the 32-bit window (first word high), skip bits dropped, a_nb bits kept
        first_w = Mux(a_odd, so_data, se_data)
        second_w = Mux(a_odd, se_data, so_data)
        shifted_w = (Cat(second_w, first_w) << a_skip)[:32]
        keep_mask = ~(Const(0xFFFFFFFF, 32) >> a_nb)
        window = b_bits
        if two:
            # the bits past the segment are cleared in stage B instead, by a mask registered
            # beside the window: stage A hangs off the stream block RAMs' clock-to-out (5.6 ns on
            # the ECP5, its worst path at N = 4), stage B (P registered) off registers only
            b_mask = Signal(32)
            m.d.sync += [b_bits.eq(shifted_w), b_mask.eq(keep_mask)]
            window = b_bits & b_mask
        else:  # stage B is part of the decode loop here (placement -> merge -> shift)
            m.d.sync += b_bits.eq(shifted_w & keep_mask)
        m.d.sync += b_nb.eq(a_nb)
        # stage B: behind the held bits (held <= B - 32 whenever b_nb > 0, by the room rule)
        sh = held[: max(1, (B - 32).bit_length())]
        placed = Cat(Const(0, B - 32), window) >> sh
        if two:  # stage P: registered, merged next cycle (the context is then in S2)
            land, land_nb = Signal(B), Signal(6)
            m.d.sync += [land.eq(placed), land_nb.eq(b_nb)]
            m.d.comb += [self.bits.bits.eq(land), self.bits.nb.eq(land_nb)]
        else:
            m.d.comb += [self.bits.bits.eq(placed), self.bits.nb.eq(b_nb)]

        # --- the FIFO head, offered to the decoder once its first fetch has landed ---------
        hd, col = Signal(queue_layout(p)), self.col
        for c in range(C):
            m.d.comb += qh[c].addr.eq(head[c][:kq])
        if two:
            # registered a cycle ahead for the context in S1 next cycle (~phase): its head does
            # not move this cycle (only the S1 context pops) and `landed` takes `landed1`'s value,
            # so this is exact; a slot written this cycle is past `landed`, not valid yet. The
            # decoder's start (head -> held-bits compares -> pop) then begins at a flip-flop
            # instead of the queue's LUTRAM read (ULX3S N = 4: 12.8 ns, its worst path)
            m.d.sync += [hd.eq(sel([q.data.as_value() for q in qh], ~ph)),
                         col.valid.eq(sel([h != ld for h, ld in zip(head, landed1, strict=True)], ~ph))]
        else:
            m.d.comb += [hd.eq(qh[0].data.as_value()), col.valid.eq(head[0] != landed[0])]
        m.d.comb += [col.payload.act.eq(hd.act), col.payload.len.eq(hd.len),
                     col.payload.short.eq(hd.short), col.payload.bad.eq(hd.bad)]
        for c in range(C):
            with m.If(col.pop & mine(c)):
                m.d.sync += head[c].eq(head[c] + 1)
        kept = []  # per context: its count after this cycle's drop (issue and pop aside)
        for c in range(C):
            inc, dec = issued & mine(c, ictx), col.pop & mine(c)
            kept.append(count[c] - (drop & mine(c, ptr_ctx)))
            # room next cycle, with the pop (the decoder's start: FIFO head -> held-bits compares)
            # entering last: a pop always frees a slot (count + issue - drop <= D)
            m.d.sync += [count[c].eq(kept[c] + inc - dec),
                         room_q[c].eq(dec | Mux(inc, kept[c] < D - 1, kept[c] < D))]
        m.d.comb += col.pending.eq(or_reduce([k != 0 for k in count]))
        # without an issue or a pop this cycle a count changes only by a drop (from registers)
        m.d.comb += col.pending_next.eq(or_reduce([k != 0 for k in kept]))

        with m.If(self.clear):
            m.d.sync += [rd_valid.eq(0), ptr_valid.eq(0), a_nb.eq(0), b_nb.eq(0), b_bits.eq(0), ictx.eq(0)]
            for c in range(C):
                m.d.sync += [wptr[c].eq(0), fidx[c].eq(0), landed[c].eq(0), head[c].eq(0), count[c].eq(0), room_q[c].eq(1),
                             landed1[c].eq(0)]
            m.d.sync += cur["active"].eq(0)
            if two:
                m.d.sync += [land_nb.eq(0), other["active"].eq(0), behind.eq(0), col.valid.eq(0)]
        return m
