"""Processing element: activation FIFO, bit fetcher, canonical Huffman decoder, sparse MAC.

One PE owns the rows ``r = i * N + q`` of every layer (``q`` = its index,
``i`` = local row) and the stream region ``q`` of the ROM. Per broadcast
non-zero activation ``a[j]`` it decodes its entries of column ``j`` -- one
joint ``(z, w)`` symbol per cycle -- and accumulates ``codebook[w] * a[j]``
into row ``pos`` (``pos += z + 1``; ``w == 0`` is a filler: no MAC).

Pipeline (cycle numbers relative to the broadcaster's issue ``b`` of a column)::

    b      issue accepted (FIFO counter + 1), pointer rows j, j+1 read (even/odd banks)
    b+1    queue entry written: {act, first window's bank addresses, skip, length, flags}
    b+2    fetcher may issue the segment's first 32-bit read (words w, w+1: even/odd banks)
    b+3    the read lands in the bit buffer (only the segment's own bits [start, end))
    b+4    decoder may start the column: pop the FIFO entry (FIFO counter - 1)
    D      decode: top Lmax buffer bits vs. limit[] -> one-hot length; consume it
    D+1    symbol index = selected code bits + offset; range check; symbol memory read
    D+2    symbol -> (z, w), pos, row check, codebook read
    D+3    product = codebook * act; accumulator read (transparent to the write below)
    D+4    accumulator write

So a column starts at ``max(b + 4, end of the previous column)`` and takes
``max(entries, 1)`` cycles; the accumulator of its last entry is written 4
cycles after its last decode cycle (the cycle model's ``issue_latency`` 4 and
``drain`` 4). Back-to-back hits on the same row (last entry of one column,
first of the next) are forwarded by the accumulator's transparent read port.

**The decode loop** (bit buffer -> code length -> shift the buffer) is the
one path that cannot be pipelined; it is built like the standalone decoder's
(:mod:`hdl.huffman`, "Why it is built this way"): Lmax comparators against
registered limits give a thermometer code, its edge is the one-hot length,
ANDed with "that many bits held" (from the registered count) and "a symbol
is wanted" (registers and the FIFO head's pre-computed flags), and the
one-hot select drives an AND-OR of the shifted copies of the buffer: no
priority encoder, no binary shift amount, no error check in the loop. The
code-crossing-the-column-end check, the symbol index and its range check
hang off the loop into registers.

**Zero-bubble column switching.** The fetcher runs ahead of the decoder
through the queued columns (it peeks the FIFO beyond its head), appending
each segment's valid bits to the bit buffer right after the previous
segment's, so the next column's first code is already in the buffer when the
last code of the previous one is consumed. Canonical decoding only looks at
the code's own prefix (``limit[l]`` has zeros in its low ``Lmax - l`` bits), so
the next segment's bits behind the current code do not disturb it; segment
boundaries are tracked by counting the bits the decoder consumes. A segment
of ``n`` entries spans at most ``15 + 16 n`` bits, i.e. at most ``n`` 32-bit
fetches, so the fetcher never falls behind the decoder once ahead.

**Refill on registers only.** A fetch is issued when ``held + in flight <=
B - 32`` with the buffer ``B = 64 + Lmax`` bits: registers only, so neither
the fetch decision nor the memory address depends on this cycle's decode.
Landing bits are placed at the *registered* position computed when the fetch
was issued (``held`` after that cycle's decode, ``+ 16 - skip``), merged into
the buffer before the shift. No overflow: what is held after the landing
cycle's merge is at most ``held + in flight + 32 <= B``. No starvation: the
rule fetches whenever the former one did (``held - decoded + in flight <=
32``, proven sufficient with a 64-bit buffer: when it had to wait, at least
33 bits remained, two cycles of 16-bit codes, the fetch latency). If the
buffer ever lacked the bits of the code to decode, the decoder would wait
and raise ``starve`` (a debug flag the benches assert is never set).

**Corrupt streams** set ``error`` (sticky until ``clear``): no code length
matches, a code crosses the column end, a symbol index past the layer's
symbols, a row past the PE's rows (for a real weight), or a column whose end
pointer is below its start. Every decode consumes at least one bit of a
finite segment, so a corrupt stream cannot make a column run forever.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .huffman import encode_onehot, or_reduce
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
      * ``tail_best``/``tail_gt``: ``tail_gt`` = ``tail_sum > tail_best`` (the sequencer's
        running argmax), one carry chain from the two memories' outputs instead of an adder
        and a comparator (exact: accumulator + bias never overflows int32, docs/arithmetic.md).
    """

    def __init__(self, p: EngineParams, index: int, *, stream_even=None, stream_odd=None,
                 ptr_even=None, ptr_odd=None, ptr_flags=None, bias=None, codebook=None, symbols=None):
        self.p = p
        self.index = index
        self._init = dict(stream_even=stream_even or [], stream_odd=stream_odd or [],
                          ptr_even=ptr_even or [], ptr_odd=ptr_odd or [], bias=bias or [],
                          ptr_flags=ptr_flags or [], codebook=codebook or [],
                          symbols=symbols or [])
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
            "tail_best": In(ACC_SHAPE),
            "tail_gt": Out(1),
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
        # bad << 1 | empty per pointer row (params.contents): no comparators after the pointer
        # reads, which sat on the iCE40 critical path (pointer RAM -> digest -> fetch enable)
        m.submodules.p_flags = p_flags = Memory(shape=2, depth=max(2, p.ptr_rows), init=init["ptr_flags"])
        m.submodules.bias = bias_mem = Memory(shape=32, depth=p.bias_depth, init=init["bias"])
        m.submodules.cb = cb_mem = Memory(shape=16, depth=p.cb_depth, init=init["codebook"])
        m.submodules.sym = sym_mem = Memory(shape=p.sym_width, depth=p.sym_depth, init=init["symbols"])
        m.submodules.acc = acc_mem = Memory(shape=32, depth=max(2, p.acc_depth), init=[])
        m.submodules.queue = queue = Memory(shape=queue_layout(p), depth=D, init=[])

        pe_rd, po_rd, pf_rd = p_even.read_port(), p_odd.read_port(), p_flags.read_port()
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
                     pe_rd.addr.eq((g + 1) >> 1), po_rd.addr.eq(g >> 1), pf_rd.addr.eq(g)]
        ptr_valid, ptr_odd, ptr_act = Signal(), Signal(), Signal(8)
        m.d.sync += [ptr_valid.eq(issued), ptr_odd.eq(g[0]), ptr_act.eq(self.issue.payload.act)]
        # b+1: digest the segment for the fetcher and the decoder (off their paths)
        seg_start, seg_end = Signal(p.ptr_width), Signal(p.ptr_width)
        m.d.comb += [seg_start.eq(Mux(ptr_odd, po_rd.data, pe_rd.data)),
                     seg_end.eq(Mux(ptr_odd, pe_rd.data, po_rd.data))]
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
        dg = q_wr.data  # the digest, written to the FIFO and (bypass) seen by the fetcher now
        m.d.comb += [q_wr.addr.eq(wptr[:kq]), q_wr.en.eq(ptr_valid),
                     dg.act.eq(ptr_act), dg.ea.eq((word0 + 1) >> 1), dg.oa.eq(word0 >> 1),
                     dg.odd.eq(word0[0]), dg.skip.eq(seg_start[:4]), dg.len.eq(seg_len),
                     dg.nb0.eq(nb0), dg.short.eq(seg_len < 16),
                     dg.empty.eq(pf_rd.data[0]), dg.bad.eq(pf_rd.data[1])]
        with m.If(ptr_valid):
            m.d.sync += wptr.eq(wptr + 1)

        # --- bit buffer --------------------------------------------------------------------
        buf = Signal(B)  # valid bits MSB-aligned: buf[B-cnt : B]; bits below are zero
        cnt = Signal(range(B + 1))
        # the landing pipeline: a fetch issued at t reads the stream banks (data at t + 1, stage
        # A: the window is aligned -- skip dropped, bits past the segment cleared -- and
        # registered), then is merged behind the held bits at t + 2 (stage B: one shift by the
        # held count, a register); decodable at t + 3
        a_nb, a_odd, a_skip = Signal(6), Signal(), Signal(4)  # fetch in the memories
        b_nb, b_bits = Signal(6), Signal(32)  # aligned window being merged

        # --- fetcher (registers and the FIFO peek, or the digest being written: bypass) -----
        seg_active = Signal()  # mid-segment: more fetches of the current segment to go
        f_ea, f_oa, f_odd = Signal.like(dg.ea), Signal.like(dg.oa), Signal()
        f_left = Signal(p.ptr_width)  # bits of the segment after the next fetch's
        f_nb = Signal(6)  # bits the next fetch of the segment brings: min(left, 32)
        m.d.comb += qf.addr.eq(fidx[:kq])
        # the fetcher has caught up with the FIFO: take the entry being written this cycle
        # directly, so a column's first fetch goes out at b + 1 (usable at b + 4)
        bypass = ptr_valid & (fidx == wptr)
        has_next = (fidx != wptr) | ptr_valid
        nx = Signal(queue_layout(p))
        m.d.comb += nx.eq(Mux(bypass, dg.as_value(), qf.data.as_value()))
        ea, oa, odd = Signal.like(f_ea), Signal.like(f_oa), Signal()
        skip, nb = Signal(4), Signal(6)
        m.d.comb += [ea.eq(Mux(seg_active, f_ea, nx.ea)), oa.eq(Mux(seg_active, f_oa, nx.oa)),
                     odd.eq(Mux(seg_active, f_odd, nx.odd)),
                     skip.eq(Mux(seg_active, 0, nx.skip)),
                     nb.eq(Mux(seg_active, f_nb, nx.nb0))]
        seg_skip = ~seg_active & (nx.empty | nx.bad)  # nothing to fetch: pass it
        room = Signal()  # both fetches in flight counted: registers only
        m.d.comb += room.eq((cnt + a_nb + b_nb) <= (B - 32))
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
        # stage B: behind the held bits (cnt <= B - 32 whenever b_nb > 0, by the room rule)
        sh = cnt[: max(1, (B - 32).bit_length())]
        placed = Signal(B)
        m.d.comb += placed.eq(Cat(Const(0, B - 32), b_bits) >> sh)

        # --- decoder: the loop -------------------------------------------------------------
        active = Signal()  # mid-column
        rem = Signal(p.ptr_width)  # bits of the column not yet decoded
        cur_act = Signal(8)
        hd = qh.data
        m.d.comb += qh.addr.eq(head[:kq])
        head_avail = head != landed
        start_col = Signal()
        m.d.comb += start_col.eq(~active & head_avail & ~self.error)
        want = Signal()
        m.d.comb += want.eq((active & ~self.error) | (start_col & ~hd.empty & ~hd.bad))

        v = buf[B - L:]
        lt = Signal(L)  # lt[k]: v < limit[k]; a thermometer code (limits never decrease)
        m.d.comb += lt.eq(Cat(*[v < cfg.limit[k] for k in range(L)]))
        first = Signal(L)  # the code length, one-hot
        m.d.comb += first.eq(lt & ~(lt << 1)[:L])
        # `go`: a symbol is wanted and enough bits are held for it (registers and the FIFO head
        # only, defined below): the decode loop is comparators -> one-hot length -> shift
        go = Signal()
        nonmono = (lt & ~(lt >> 1))[: L - 1].any() if L > 1 else Const(0)
        bad_code = go & (~lt[L - 1] | nonmono)  # no length matches (bits below the held are 0)
        length = Signal(range(L + 1))
        consumed = Signal(range(L + 1))
        m.d.comb += [length.eq(encode_onehot(first)), consumed.eq(Mux(go, length, 0))]
        merged = Signal(B)
        m.d.comb += merged.eq(buf | placed)
        # one AND-OR over the L + 1 shifted copies (0 .. L bits), selected one-hot by `~go` and
        # `go & first[k]` (one LUT each): no separate "shift or hold" mux level. A corrupt code
        # (no length) clears the buffer: `error` stops the PE anyway
        shift_sel = Signal(L + 1)
        m.d.comb += shift_sel.eq(Cat(~go, first & go.replicate(L)))
        m.d.sync += [buf.eq(or_reduce([Mux(shift_sel[k], (merged << k)[:B], 0) for k in range(L + 1)])),
                     cnt.eq(cnt - consumed + b_nb)]

        # column bookkeeping (off the loop: into registers)
        dec_rem = Signal(p.ptr_width)
        m.d.comb += dec_rem.eq(Mux(active, rem, hd.len))
        # `enough`: a full code's worth of bits (Lmax <= 16) or the whole rest of the column is
        # held, so a valid code decodes now (`stall` keeps the PE waiting: never seen, `starve`).
        # The rest-of-column test only matters below 16 bits: flags and a 4-bit compare
        rem_short = Signal()  # rem < 16, kept with rem
        dr_short = Mux(active, rem_short, hd.short)
        enough = (cnt >= L) | (dr_short & ((cnt >= 16) | (cnt[:4] >= dec_rem[:4])))
        stall = Signal()
        m.d.comb += [stall.eq(want & ~enough), go.eq(want & enough)]
        # the code's length against the rest of the column without the `dec_rem - length`
        # borrow chain: dec_rem is known before the comparators settle, so test it against
        # each possible length k + 1 <= 16 (its low 5 bits, upper bits zero) in parallel and
        # let the one-hot length pick the answer
        lo5, hi_zero = dec_rem[:5], dec_rem[5:] == 0
        cross = go & hi_zero & or_reduce([first[k] & (lo5 <= k) for k in range(L)])  # past the end
        col_ends = hi_zero & ((~lt.any() & (lo5 == 0)) |
                              or_reduce([first[k] & (lo5 == k + 1) for k in range(L)]))
        # rem - length < 16 <=> rem < 16 + length: also without the chain
        next_short = hi_zero & ((~lt.any() & (lo5 < 16)) |
                                or_reduce([first[k] & (lo5 < k + 17) for k in range(L)]))
        pop = Signal()
        m.d.comb += pop.eq(start_col & ~stall)
        with m.If(pop):
            m.d.sync += [head.eq(head + 1), cur_act.eq(hd.act)]
        m.d.sync += count.eq(count + issued - pop)
        rem_next = Signal(p.ptr_width)
        m.d.comb += rem_next.eq(dec_rem - length)
        with m.If(go):
            m.d.sync += [rem.eq(rem_next), rem_short.eq(next_short), active.eq(~col_ends)]
        with m.If(stall):
            m.d.sync += self.starve.eq(1)

        # --- stage 1: symbol index (selected code bits + offset), range check, symbol read --
        s1_valid, s1_first, s1_act = Signal(), Signal(), Signal(8)
        s1_top, s1_off = Signal(L), Signal(16)
        m.d.sync += [s1_valid.eq(go & ~bad_code & ~cross), s1_first.eq(start_col),
                     s1_act.eq(Mux(start_col, hd.act, cur_act)),
                     s1_top.eq(or_reduce([Mux(first[k], v >> (L - 1 - k), 0) for k in range(L)])),
                     s1_off.eq(or_reduce([Mux(first[k], cfg.offset[k], 0) for k in range(L)]))]
        idx = Signal(16)  # offsets are stored mod 2**16 (canonical offsets may be "negative")
        m.d.comb += [idx.eq(s1_top + s1_off), sym_rd.addr.eq(cfg.sym_base + idx)]
        idx_err = s1_valid & (idx >= cfg.n_sym)

        # --- stage 2: symbol -> (z, w), relative position, row check, codebook read ---------
        s2_valid, s2_first, s2_act = Signal(), Signal(), Signal(8)
        m.d.sync += [s2_valid.eq(s1_valid & ~idx_err), s2_first.eq(s1_first), s2_act.eq(s1_act)]
        pos_w = bits_for(p.acc_depth + (1 << p.zbits_max)) + 1
        pos = Signal(pos_w)
        beyond = Signal()
        sym = sym_rd.data
        z = Signal(p.sym_width)
        w = Signal(p.wbits_max)
        m.d.comb += [z.eq(sym[p.wbits_max:]), w.eq(sym[:p.wbits_max])]  # fields: params.contents
        pos_new = Signal(pos_w)
        m.d.comb += pos_new.eq(Mux(s2_first, z, pos + z + 1))
        past = (pos_new * p.n_pes + self.index) >= cfg.rows
        beyond_new = Signal()
        m.d.comb += beyond_new.eq(Mux(s2_first, 0, beyond) | past)
        with m.If(s2_valid):
            m.d.sync += [pos.eq(pos_new), beyond.eq(beyond_new)]
        row_err = s2_valid & (w != 0) & beyond_new
        mac2 = s2_valid & (w != 0) & ~beyond_new
        m.d.comb += cb_rd.addr.eq(cfg.cb_base + w)

        # --- stage 3: product; accumulator read --------------------------------------------
        s3_valid, s3_pos, s3_act = Signal(), Signal(range(max(2, p.acc_depth))), Signal(8)
        m.d.sync += [s3_valid.eq(mac2), s3_pos.eq(pos_new), s3_act.eq(s2_act)]
        product = Signal(signed(25))
        m.d.comb += product.eq(cb_rd.data.as_signed() * s3_act)
        m.d.comb += acc_rd.addr.eq(Mux(self.tail_rd, self.tail_addr, s3_pos))

        # --- stage 4: accumulate --------------------------------------------------------------
        s4_valid, s4_pos, s4_prod = Signal(), Signal.like(s3_pos), Signal(signed(25))
        m.d.sync += [s4_valid.eq(s3_valid), s4_pos.eq(s3_pos), s4_prod.eq(product)]
        clr_pending, clr_addr = Signal(), Signal.like(s3_pos)
        m.d.sync += [clr_pending.eq(self.tail_clear), clr_addr.eq(self.tail_addr)]
        with m.If(clr_pending):
            m.d.comb += [acc_wr.addr.eq(clr_addr), acc_wr.data.eq(0), acc_wr.en.eq(1)]
        with m.Else():
            m.d.comb += [acc_wr.addr.eq(s4_pos),
                         acc_wr.data.eq(acc_rd.data.as_signed() + s4_prod),
                         acc_wr.en.eq(s4_valid)]

        # --- tail: accumulator + bias ---------------------------------------------------------
        m.d.comb += [bias_rd.addr.eq(cfg.bias_base + self.tail_addr),
                     self.tail_sum.eq(acc_rd.data.as_signed() + bias_rd.data.as_signed())]
        # acc + bias > best  <=>  acc + bias + ~best >= 0 (34 bits): carry-save, then one adder
        ta, tb, tc = Signal(signed(34)), Signal(signed(34)), Signal(signed(34))
        m.d.comb += [ta.eq(acc_rd.data.as_signed()), tb.eq(bias_rd.data.as_signed()),
                     tc.eq(~self.tail_best)]
        t_sum = ta.as_unsigned() ^ tb.as_unsigned() ^ tc.as_unsigned()
        t_carry = Cat(Const(0, 1), ((ta & tb) | (ta & tc) | (tb & tc)).as_unsigned()[:33])
        t_tot = Signal(34)
        m.d.comb += [t_tot.eq(t_sum + t_carry), self.tail_gt.eq(~t_tot[33])]

        # busy tokens: every popped column (empty ones too) and every decoded entry keeps the
        # PE busy until its slot has left the 4-stage MAC pipeline (the model's drain)
        t1, t2, t3, t4 = Signal(), Signal(), Signal(), Signal()
        m.d.sync += [t1.eq(go | pop), t2.eq(t1), t3.eq(t2), t4.eq(t3)]
        m.d.comb += self.busy.eq((count != 0) | active | t1 | t2 | t3 | t4)
        with m.If(bad_code | cross | idx_err | row_err | (start_col & hd.bad)):
            m.d.sync += self.error.eq(1)

        with m.If(self.clear):
            m.d.sync += [wptr.eq(0), fidx.eq(0), landed.eq(0), head.eq(0), count.eq(0),
                         ptr_valid.eq(0), seg_active.eq(0), a_nb.eq(0), b_nb.eq(0), b_bits.eq(0),
                         landed1.eq(0), cnt.eq(0), buf.eq(0),
                         active.eq(0), s1_valid.eq(0), s2_valid.eq(0), s3_valid.eq(0), s4_valid.eq(0),
                         t1.eq(0), t2.eq(0), t3.eq(0), t4.eq(0),
                         self.error.eq(0), self.starve.eq(0)]
        return m
