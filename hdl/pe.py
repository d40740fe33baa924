"""Processing element: activation FIFO, bit fetcher, canonical Huffman decoder, sparse MAC.

One PE owns the rows ``r = i * N + q`` of every layer (``q`` = its index,
``i`` = local row) and the stream region ``q`` of the ROM. Per broadcast
non-zero activation ``a[j]`` it decodes its entries of column ``j`` -- one
joint ``(z, w)`` symbol per cycle -- and accumulates ``codebook[w] * a[j]``
into row ``pos`` (``pos += z + 1``; ``w == 0`` is a filler: no MAC).

Pipeline (cycle numbers relative to the broadcaster's issue ``b`` of a column)::

    b      issue accepted (FIFO counter + 1), pointer rows j, j+1 read (even/odd banks)
    b+1    queue entry {act, start, end} written
    b+2    fetcher may issue the segment's first 32-bit read (words w, w+1: even/odd banks)
    b+3    the read lands in the bit buffer (only the segment's own bits [start, end))
    b+4    decoder may start the column: pop the FIFO entry (FIFO counter - 1)
    D      decode: top Lmax buffer bits vs. limit[] -> length l, symbol index; consume l bits
    D+1    symbol -> (z, w), pos, row check, codebook read
    D+2    product = codebook * act; accumulator read (transparent to the write below)
    D+3    accumulator write

So a column starts at ``max(b + 4, end of the previous column)`` and takes
``max(entries, 1)`` cycles; the accumulator of its last entry is written 3
cycles after its last decode cycle (the cycle model's ``issue_latency`` and
``drain``). Back-to-back hits on the same row (last entry of one column, first
of the next) are forwarded by the accumulator's transparent read port.

**Zero-bubble column switching.** The fetcher runs ahead of the decoder
through the queued columns (it peeks the FIFO beyond its head), appending
each segment's valid bits to the bit buffer right after the previous
segment's, so the next column's first code is already in the buffer when the
last code of the previous one is consumed. Canonical decoding only looks at
the code's own prefix (``limit[l]`` has zeros in its low ``Lmax - l`` bits), so
the next segment's bits behind the current code do not disturb it; segment
boundaries are tracked by counting the bits the decoder consumes
(``end - start``). A segment of ``n`` entries spans at most ``15 + 16 n`` bits,
i.e. at most ``n`` 32-bit fetches, so the fetcher never falls behind the
decoder once ahead. A fetch is issued only if the buffer can take 32 more
bits after this cycle's decode and the fetch landing now (using the decoded
length of this cycle, not the buffer count, matters: a fetch takes two cycles
to become usable, and the conservative check let the buffer run dry on
16-bit codes). With a 64-bit buffer: if the fetcher had to wait, at least 33
bits remained, i.e. two more cycles of decoding, which is the fetch latency.
If the buffer ever lacked the bits of the code to decode, the decoder would
stall and raise ``starve`` (a debug flag the benches assert is never set).

**Corrupt streams** set ``error`` (sticky until ``clear``): no code length
matches, a code crosses the column end, a symbol index past the layer's
symbols, a row past the PE's rows (for a real weight), or a column whose end
pointer is below its start. Every decode consumes at least one bit of a
finite segment, so a corrupt stream cannot make a column run forever.
"""

from __future__ import annotations

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .layouts import ACC_SHAPE, issue_layout, layer_layout, queue_layout, stream_load_layout
from .params import EngineParams, bits_for
from .spram import SinglePortRAM


class PE(wiring.Component):
    """One processing element (see the module docstring for the pipeline).

    Ports:
      * ``issue`` (stream in): the broadcast ``{col, act}``; ``ready`` = FIFO room.
      * ``cfg``: the current layer's descriptor (registered by the sequencer).
      * ``clear``: drop all in-flight work and the sticky flags (abort / next inference).
      * ``busy``: FIFO, decoder or MAC pipeline not empty.
      * ``tail_rd``/``tail_addr``: read local row ``tail_addr``; one cycle later
        ``tail_sum`` = accumulator + bias of that row. ``tail_clear`` additionally
        writes 0 to that accumulator in the following cycle (read first, then clear).
    """

    def __init__(self, p: EngineParams, index: int, *, stream_even=None, stream_odd=None,
                 ptr_even=None, ptr_odd=None, bias=None, codebook=None, symbols=None):
        self.p = p
        self.index = index
        self._init = dict(stream_even=stream_even or [], stream_odd=stream_odd or [],
                          ptr_even=ptr_even or [], ptr_odd=ptr_odd or [], bias=bias or [],
                          codebook=codebook or [], symbols=symbols or [])
        loader = {"load": In(stream_load_layout(p))} if p.loadable_streams else {}
        super().__init__({
            **loader,
            "issue": In(stream.Signature(issue_layout(p))),
            "cfg": In(layer_layout(p)),
            "clear": In(1),
            "busy": Out(1),
            "error": Out(1),
            "starve": Out(1),
            "tail_rd": In(1),
            "tail_addr": In(range(max(2, p.acc_depth))),
            "tail_clear": In(1),
            "tail_sum": Out(ACC_SHAPE),
        })

    def elaborate(self, platform):  # noqa: C901 (one pipeline, kept in one place on purpose)
        m = Module()
        p, cfg = self.p, self.cfg
        L, B, D = p.max_len, p.buf_bits, p.fifo_depth
        assert D & (D - 1) == 0, "FIFO depth must be a power of two"
        kq = (D - 1).bit_length()
        init = self._init
        half_s = p.stream_half
        half_p = p.ptr_rows // 2 + p.ptr_rows % 2

        # --- memories -------------------------------------------------------------------
        se_addr, so_addr = Signal(range(max(2, half_s))), Signal(range(max(2, half_s)))
        if p.loadable_streams:  # single-port RAM: the loader's writes take the address (engine idle)
            ld = self.load
            m.submodules.s_even = s_even = SinglePortRAM(half_s)
            m.submodules.s_odd = s_odd = SinglePortRAM(half_s)
            for ram, addr, odd in ((s_even, se_addr, 0), (s_odd, so_addr, 1)):
                m.d.comb += [ram.addr.eq(Mux(ld.en, ld.addr, addr)), ram.wdata.eq(ld.data),
                             ram.we.eq(ld.en & (ld.odd == odd))]
            se_data, so_data = s_even.rdata, s_odd.rdata
        else:
            m.submodules.s_even = s_even = Memory(shape=16, depth=half_s, init=init["stream_even"])
            m.submodules.s_odd = s_odd = Memory(shape=16, depth=half_s, init=init["stream_odd"])
            se_rd, so_rd = s_even.read_port(), s_odd.read_port()
            m.d.comb += [se_rd.addr.eq(se_addr), so_rd.addr.eq(so_addr)]
            se_data, so_data = se_rd.data, so_rd.data
        m.submodules.p_even = p_even = Memory(shape=p.ptr_width, depth=half_p, init=init["ptr_even"])
        m.submodules.p_odd = p_odd = Memory(shape=p.ptr_width, depth=half_p, init=init["ptr_odd"])
        m.submodules.bias = bias_mem = Memory(shape=32, depth=p.bias_depth, init=init["bias"])
        m.submodules.cb = cb_mem = Memory(shape=16, depth=p.cb_depth, init=init["codebook"])
        m.submodules.sym = sym_mem = Memory(shape=p.sym_width, depth=p.sym_depth, init=init["symbols"])
        m.submodules.acc = acc_mem = Memory(shape=32, depth=max(2, p.acc_depth), init=[])
        m.submodules.queue = queue = Memory(shape=queue_layout(p), depth=D, init=[])

        pe_rd, po_rd = p_even.read_port(), p_odd.read_port()
        bias_rd, cb_rd, sym_rd = bias_mem.read_port(), cb_mem.read_port(), sym_mem.read_port()
        acc_wr = acc_mem.write_port()
        acc_rd = acc_mem.read_port(transparent_for=(acc_wr,))  # forwarding for same-row hits
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
                     pe_rd.addr.eq((g + 1) >> 1), po_rd.addr.eq(g >> 1)]
        ptr_valid, ptr_odd, ptr_act = Signal(), Signal(), Signal(8)
        m.d.sync += [ptr_valid.eq(issued), ptr_odd.eq(g[0]), ptr_act.eq(self.issue.payload.act)]
        m.d.comb += [q_wr.addr.eq(wptr[:kq]), q_wr.en.eq(ptr_valid),
                     q_wr.data.act.eq(ptr_act),
                     q_wr.data.start.eq(Mux(ptr_odd, po_rd.data, pe_rd.data)),
                     q_wr.data.end.eq(Mux(ptr_odd, pe_rd.data, po_rd.data))]
        with m.If(ptr_valid):
            m.d.sync += wptr.eq(wptr + 1)

        # --- bit buffer --------------------------------------------------------------------
        buf = Signal(B)  # valid bits MSB-aligned: buf[B-cnt : B]
        cnt = Signal(range(B + 1))
        inflight = Signal(range(33))  # bits of the fetch issued last cycle (land this cycle)
        land_skip = Signal(4)
        land_odd = Signal()

        # --- fetcher -----------------------------------------------------------------------
        seg_active = Signal()  # mid-segment: more fetches of (fc, fe) to go
        fc = Signal(p.ptr_width)
        fe = Signal(p.ptr_width)
        m.d.comb += qf.addr.eq(fidx[:kq])
        has_next = fidx != wptr
        cur = Signal(p.ptr_width)
        endp = Signal(p.ptr_width)
        m.d.comb += [cur.eq(Mux(seg_active, fc, qf.data.start)),
                     endp.eq(Mux(seg_active, fe, qf.data.end))]
        seg_empty = ~seg_active & (qf.data.end <= qf.data.start)
        skip = cur[:4]
        left = Signal(p.ptr_width)
        m.d.comb += left.eq(endp - cur)
        nb = Signal(range(33))
        m.d.comb += nb.eq(Mux(left < (32 - skip), left, 32 - skip))
        # room for one more 32-bit fetch once it lands (in 2 cycles): count what stays in the
        # buffer after this cycle's decode plus the fetch landing now
        room = Signal()
        do_fetch = Signal()
        do_pass = Signal()
        m.d.comb += [do_fetch.eq((seg_active | has_next) & ~seg_empty & room),
                     do_pass.eq(has_next & seg_empty)]
        word = cur >> 4
        m.d.comb += [se_addr.eq((word + 1) >> 1), so_addr.eq(word >> 1)]
        m.d.sync += [inflight.eq(Mux(do_fetch, nb, 0)), land_skip.eq(skip), land_odd.eq(word[0])]
        with m.If(do_fetch):
            m.d.sync += [fc.eq(cur + nb), fe.eq(endp), seg_active.eq((cur + nb) != endp)]
        with m.If((do_fetch & ~seg_active) | do_pass):
            m.d.sync += fidx.eq(fidx + 1)
        m.d.sync += landed.eq(fidx)  # a first fetch issued at t is usable at t + 2

        # landing: the 32-bit window (first word high), the segment's bits moved to the top
        first_w = Mux(land_odd, so_data, se_data)
        second_w = Mux(land_odd, se_data, so_data)
        win = Cat(second_w, first_w)
        aligned = Signal(32)
        m.d.comb += aligned.eq((win << land_skip)[:32] & ~(Const(0xFFFFFFFF, 32) >> inflight))

        # --- decoder -----------------------------------------------------------------------
        active = Signal()  # mid-column
        rem = Signal(p.ptr_width)  # bits of the column not yet decoded
        cur_act = Signal(8)
        m.d.comb += qh.addr.eq(head[:kq])
        head_avail = head != landed
        seglen = Signal(p.ptr_width)
        m.d.comb += seglen.eq(qh.data.end - qh.data.start)
        bad_seg = qh.data.end < qh.data.start
        start_col = Signal()
        m.d.comb += start_col.eq(~active & head_avail & ~self.error)
        dec_rem = Signal(p.ptr_width)
        m.d.comb += dec_rem.eq(Mux(active, rem, seglen))
        want = Signal()
        m.d.comb += want.eq((active & ~self.error) | (start_col & (seglen != 0) & ~bad_seg))
        enough = (cnt >= L) | (cnt >= dec_rem)
        stall = Signal()
        m.d.comb += stall.eq(want & ~enough)

        v = buf[B - L:]
        lt = Signal(L)
        m.d.comb += lt.eq(Cat(*[v < cfg.limit[k] for k in range(L)]))
        length = Signal(range(L + 2))
        m.d.comb += length.eq(L + 1)
        for k in reversed(range(L)):
            with m.If(lt[k]):
                m.d.comb += length.eq(k + 1)
        tops = Array([v[L - 1 - k:] for k in range(L)])  # top k+1 bits
        sel = Signal(range(L))
        m.d.comb += sel.eq(Mux(lt.any(), length - 1, 0))
        idx = Signal(16)
        m.d.comb += idx.eq(tops[sel] + cfg.offset[sel])
        dec_err = Signal()
        m.d.comb += dec_err.eq(want & ~stall & (~lt.any() | (length > dec_rem) | (idx >= cfg.n_sym)))
        dec_ok = Signal()
        m.d.comb += dec_ok.eq(want & ~stall & ~dec_err)
        pop = Signal()
        m.d.comb += pop.eq(start_col & ~stall)

        consumed = Signal(range(L + 1))
        m.d.comb += consumed.eq(Mux(dec_ok, length, 0))
        cnt_after = Signal(range(B + 1))
        m.d.comb += [cnt_after.eq(cnt - consumed), room.eq((cnt_after + inflight) <= (B - 32))]
        placed = (Cat(Const(0, B - 32), aligned) >> cnt_after)[:B]
        m.d.sync += [buf.eq(((buf << consumed)[:B]) | placed), cnt.eq(cnt_after + inflight)]

        with m.If(pop):
            m.d.sync += [head.eq(head + 1), cur_act.eq(qh.data.act)]
        m.d.sync += count.eq(count + issued - pop)
        with m.If(dec_ok):
            m.d.sync += [rem.eq(dec_rem - length), active.eq(dec_rem != length)]
        with m.If(stall):
            m.d.sync += self.starve.eq(1)
        m.d.comb += sym_rd.addr.eq(cfg.sym_base + idx)

        # --- stage 1: symbol -> (z, w), relative position, row check, codebook read ---------
        s1_valid, s1_first, s1_act = Signal(), Signal(), Signal(8)
        m.d.sync += [s1_valid.eq(dec_ok), s1_first.eq(start_col),
                     s1_act.eq(Mux(start_col, qh.data.act, cur_act))]
        pos_w = bits_for(p.acc_depth + (1 << p.zbits_max)) + 1
        pos = Signal(pos_w)
        beyond = Signal()
        sym = sym_rd.data
        z = Signal(p.sym_width)
        w = Signal(p.wbits_max)
        wmask = Signal(p.wbits_max)
        m.d.comb += [wmask.eq((Const(1, p.wbits_max + 1) << cfg.wbits) - 1),
                     z.eq(sym >> cfg.wbits), w.eq(sym & wmask)]
        pos_new = Signal(pos_w)
        m.d.comb += pos_new.eq(Mux(s1_first, z, pos + z + 1))
        past = (pos_new * p.n_pes + self.index) >= cfg.rows
        beyond_new = Signal()
        m.d.comb += beyond_new.eq(Mux(s1_first, 0, beyond) | past)
        with m.If(s1_valid):
            m.d.sync += [pos.eq(pos_new), beyond.eq(beyond_new)]
        row_err = s1_valid & (w != 0) & beyond_new
        mac1 = s1_valid & (w != 0) & ~beyond_new
        m.d.comb += cb_rd.addr.eq(cfg.cb_base + w)

        # --- stage 2: product; accumulator read --------------------------------------------
        s2_valid, s2_pos, s2_act = Signal(), Signal(range(max(2, p.acc_depth))), Signal(8)
        m.d.sync += [s2_valid.eq(mac1), s2_pos.eq(pos_new), s2_act.eq(s1_act)]
        product = Signal(signed(25))
        m.d.comb += product.eq(cb_rd.data.as_signed() * s2_act)
        m.d.comb += acc_rd.addr.eq(Mux(self.tail_rd, self.tail_addr, s2_pos))

        # --- stage 3: accumulate --------------------------------------------------------------
        s3_valid, s3_pos, s3_prod = Signal(), Signal.like(s2_pos), Signal(signed(25))
        m.d.sync += [s3_valid.eq(s2_valid), s3_pos.eq(s2_pos), s3_prod.eq(product)]
        clr_pending, clr_addr = Signal(), Signal.like(s2_pos)
        m.d.sync += [clr_pending.eq(self.tail_clear), clr_addr.eq(self.tail_addr)]
        with m.If(clr_pending):
            m.d.comb += [acc_wr.addr.eq(clr_addr), acc_wr.data.eq(0), acc_wr.en.eq(1)]
        with m.Else():
            m.d.comb += [acc_wr.addr.eq(s3_pos),
                         acc_wr.data.eq(acc_rd.data.as_signed() + s3_prod),
                         acc_wr.en.eq(s3_valid)]

        # --- tail: accumulator + bias ---------------------------------------------------------
        m.d.comb += [bias_rd.addr.eq(cfg.bias_base + self.tail_addr),
                     self.tail_sum.eq(acc_rd.data.as_signed() + bias_rd.data.as_signed())]

        # busy tokens: every popped column (empty ones too) and every decoded entry keeps the
        # PE busy until its slot has left the 3-stage MAC pipeline (the model's drain)
        t1, t2, t3 = Signal(), Signal(), Signal()
        m.d.sync += [t1.eq(dec_ok | pop), t2.eq(t1), t3.eq(t2)]
        m.d.comb += self.busy.eq((count != 0) | active | t1 | t2 | t3)
        with m.If(dec_err | row_err | (start_col & bad_seg)):
            m.d.sync += self.error.eq(1)

        with m.If(self.clear):
            m.d.sync += [wptr.eq(0), fidx.eq(0), landed.eq(0), head.eq(0), count.eq(0),
                         ptr_valid.eq(0), seg_active.eq(0), inflight.eq(0), cnt.eq(0), buf.eq(0),
                         active.eq(0), s1_valid.eq(0), s2_valid.eq(0), s3_valid.eq(0),
                         t1.eq(0), t2.eq(0), t3.eq(0),
                         self.error.eq(0), self.starve.eq(0)]
        return m

