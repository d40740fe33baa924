"""Activation banks and the broadcaster (leading-non-zero detection over groups of N).

Activation ``j`` of a layer lives in bank ``j mod N`` at address ``j div N``
(where PE ``j mod N`` writes row ``j`` of the previous layer, so requantized
outputs never cross between PEs). The broadcaster reads one *group* -- one
word of every bank, i.e. activations ``g*N .. g*N + N-1`` -- per cycle and
issues the group's non-zeros, lowest column first, one per cycle, to all PEs
at once (a transfer needs every PE's FIFO to have room). Zero activations
are never issued: their columns cost the PEs nothing, which is EIE's point.

Timing (the cycle model's scan): ``start`` in cycle ``s`` reads group 0; from
``s + 2`` on, a group with no non-zero takes one cycle, a group with ``m``
non-zeros takes ``m`` issuing cycles (stalled while some FIFO is full) and the
next group is already waiting: the memory always reads the group after the
current one, so switching groups costs no cycle. ``done`` rises the cycle
after the last group is finished and stays up until the next ``start``.
``quiet``: ``done`` will be up next cycle (a ``start`` or ``clear`` of this
cycle aside) and nothing is issued this cycle -- the sequencer's registered
idle detection (hdl/engine.py).

With ``EngineParams.conv`` an fc layer's groups start at the descriptor's
``in_base``, and a convolution scans one output position's patch: its
columns (ky, kx, group of N channels) in order, group ``(ky, kx, g)`` at
word ``pos_word + ky * row_step + kx * gpp + g`` of the input map, masked
to zero when the pixel ``(pos_iy + ky, pos_ix + kx)`` is outside the map
(zero padding, never read). The words come from two look-ahead registers
(the groups after the current one) advanced by one counter step, so a
position's first scan slot is ``start + 3`` (one priming cycle more than an
fc layer's); from then on the timing is the fc scan's.
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .layouts import act_word_bits, issue_layout, layer_layout
from .params import EngineParams


class Broadcaster(wiring.Component):
    """N activation banks + group scan + issue stream (latency: see module docstring).

    ``wr_en[q]``/``wr_addr[q]``/``wr_data[q]`` write bank ``q`` (input loader, requantizers).
    """

    def __init__(self, p: EngineParams):
        self.p = p
        aw = act_word_bits(p)
        conv = {"cfg": In(layer_layout(p)), "pos_word": In(signed(aw + 2)), "pos_iy": In(signed(p.conv_dim + 2)),
                "pos_ix": In(signed(p.conv_dim + 2))} if p.conv else {}
        super().__init__({
            **conv,
            "start": In(1),
            "clear": In(1),
            "cols": In(16),
            "done": Out(1),
            "quiet": Out(1),
            "issue": Out(stream.Signature(issue_layout(p))),
            "wr_en": In(p.n_pes),
            "wr_addr": In(data.ArrayLayout(unsigned(aw), p.n_pes)),
            "wr_data": In(data.ArrayLayout(unsigned(8), p.n_pes)),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.p
        n = p.n_pes
        depth = max(2, p.act_depth)
        # the bank read address: `addr_a` normally, `addr_b` when `use_b` (the RUN state's
        # consume: the group after next). With p.bram_out_regs (the ECP5) every bank has a read
        # port for each and the data is picked after the read by `use_b` registered, so the
        # issue handshake (every PE's FIFO room) no longer reaches the banks' addresses
        dual = p.bram_out_regs
        addr_a, addr_b, use_b = Signal(range(depth + 2)), Signal(range(depth + 2)), Signal()
        bank = []  # the word read for each bank (address of the previous cycle)
        use_b_q = Signal()
        if dual:
            m.d.sync += use_b_q.eq(use_b)
        # every bank word carries its "non-zero" flag (bit 8), computed as it is written, so the
        # group's mask after the read is one AND per bank, not an 8-input OR behind the block
        # RAM's clock-to-out (the ULX3S N = 4 two-context limiter once the banks are block RAM)
        for q in range(n):
            mem = Memory(shape=9, depth=depth, init=[])
            m.submodules[f"bank{q}"] = mem
            wp = mem.write_port()
            m.d.comb += [wp.en.eq(self.wr_en[q]), wp.addr.eq(self.wr_addr[q]),
                         wp.data.eq(Cat(self.wr_data[q], self.wr_data[q] != 0))]
            ra = mem.read_port()
            if dual:
                rb = mem.read_port()
                m.d.comb += [ra.addr.eq(addr_a), rb.addr.eq(addr_b)]
                bank.append(Mux(use_b_q, rb.data, ra.data))
            else:
                m.d.comb += ra.addr.eq(Mux(use_b, addr_b, addr_a))
                bank.append(ra.data)

        cur_vals = Signal(data.ArrayLayout(unsigned(8), n))
        cur_mask = Signal(n)
        # the next group's word and the one after it, as registers: the bank
        # address is then one mux on ``consume`` (no adder behind it)
        fc_a = Signal(range(depth + 2))
        fc_b = Signal(range(depth + 2))
        gbase = Signal(17)  # column of bank 0 in the current group

        group_vals = Cat(*[b[:8] for b in bank])  # the group's activations as read

        def mask_of(base):
            return Cat(*[bank[q][8] & ((base + q) < self.cols) for q in range(n)])

        # lowest set bit of the mask (leading-non-zero detection)
        lowest = Signal(range(max(2, n)))
        for q in reversed(range(n)):
            with m.If(cur_mask[q]):
                m.d.comb += lowest.eq(q)
        last_bit = (cur_mask & (cur_mask - 1)) == 0
        m.d.comb += [self.issue.payload.col.eq(gbase + lowest),
                     self.issue.payload.act.eq(cur_vals[lowest])]

        conv = p.conv
        if conv:
            cfg = self.cfg
            aw = act_word_bits(p)
            d = p.conv_dim + 2
            look = data.StructLayout({"word": signed(aw + 2), "pix": signed(aw + 2), "row": signed(aw + 2),
                                      "g": unsigned(p.conv_dim), "kx": unsigned(3), "iy": signed(d),
                                      "ix": signed(d)})
            s1, s2, s0, stepped = Signal(look), Signal(look), Signal(look), Signal(look)
            step_in = Signal(look)
            ix_first = Signal(signed(d))  # the patch's first column: where a kernel row starts again
            m.d.comb += [s0.word.eq(self.pos_word), s0.pix.eq(self.pos_word), s0.row.eq(self.pos_word),
                         s0.iy.eq(self.pos_iy), s0.ix.eq(self.pos_ix)]
            m.d.comb += stepped.eq(step_in)
            with m.If(step_in.g + 1 < cfg.gpp):
                m.d.comb += [stepped.g.eq(step_in.g + 1), stepped.word.eq(step_in.word + 1)]
            with m.Elif(step_in.kx + 1 < cfg.kw):
                m.d.comb += [stepped.g.eq(0), stepped.kx.eq(step_in.kx + 1), stepped.ix.eq(step_in.ix + 1),
                             stepped.pix.eq(step_in.pix + cfg.gpp), stepped.word.eq(step_in.pix + cfg.gpp)]
            with m.Else():
                row_next = step_in.row + cfg.row_step
                m.d.comb += [stepped.g.eq(0), stepped.kx.eq(0), stepped.iy.eq(step_in.iy + 1),
                             stepped.ix.eq(ix_first), stepped.row.eq(row_next), stepped.pix.eq(row_next),
                             stepped.word.eq(row_next)]

            def inside(st):
                return (st.iy >= 0) & (st.iy < cfg.in_h) & (st.ix >= 0) & (st.ix < cfg.in_w)

            def mask_at(base, st):
                return mask_of(base) & Mux(~cfg.conv | inside(st), (1 << n) - 1, 0)

        base = cfg.in_base if conv else 0  # the fc layer's first group
        finishing = Signal()  # the last group is finished this cycle (`done` next)
        fire = self.issue.valid & self.issue.ready  # (valid only in RUN)
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += addr_a.eq(base)
                with m.If(self.start):
                    m.d.sync += self.done.eq(0)
                    if conv:
                        with m.If(cfg.conv):
                            m.d.sync += [s1.eq(s0), ix_first.eq(self.pos_ix)]
                            m.next = "CPRIME0"
                        with m.Else():
                            m.next = "PRIME"
                    else:
                        m.next = "PRIME"
            if conv:
                with m.State("CPRIME0"):  # group 0's word on the bus; s2 := group 1
                    m.d.comb += [addr_a.eq(s1.word[:aw]), step_in.eq(s1)]
                    m.d.sync += s2.eq(stepped)
                    m.next = "CPRIME1"
                    with m.If(self.clear):
                        m.next = "IDLE"
                with m.State("CPRIME1"):  # group 0 arrives; group 1's word on the bus
                    m.d.comb += [addr_a.eq(s2.word[:aw]), step_in.eq(s2)]
                    m.d.sync += [cur_vals.eq(group_vals), cur_mask.eq(mask_at(0, s1)),
                                 gbase.eq(0), s1.eq(s2), s2.eq(stepped)]
                    m.next = "RUN"
                    with m.If(self.clear):
                        m.next = "IDLE"
            with m.State("PRIME"):
                m.d.comb += addr_a.eq(base + 1)
                m.d.sync += [cur_vals.eq(group_vals), cur_mask.eq(mask_of(0)),
                             fc_a.eq(base + 1), fc_b.eq(base + 2), gbase.eq(0)]
                m.next = "RUN"
                with m.If(self.clear):
                    m.next = "IDLE"
            with m.State("RUN"):
                m.d.comb += self.issue.valid.eq(cur_mask != 0)
                consume = (cur_mask == 0) | (fire & last_bit)
                m.d.comb += use_b.eq(consume)
                if conv:
                    m.d.comb += [step_in.eq(s2), addr_b.eq(Mux(cfg.conv, s2.word[:aw], fc_b)),
                                 addr_a.eq(Mux(cfg.conv, s1.word[:aw], fc_a))]
                else:
                    m.d.comb += [addr_b.eq(fc_b), addr_a.eq(fc_a)]
                with m.If(fire):
                    m.d.sync += cur_mask.eq(cur_mask & ~(1 << lowest))
                with m.If(consume):
                    with m.If(gbase + n >= self.cols):
                        m.d.comb += finishing.eq(1)
                        m.d.sync += self.done.eq(1)
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += [cur_vals.eq(group_vals),
                                     cur_mask.eq(mask_at(gbase + n, s1) if conv else mask_of(gbase + n)),
                                     fc_a.eq(fc_b), fc_b.eq(fc_b + 1), gbase.eq(gbase + n)]
                        if conv:
                            m.d.sync += [s1.eq(s2), s2.eq(stepped)]
                with m.If(self.clear):
                    m.next = "IDLE"
        with m.If(self.clear):
            m.d.sync += self.done.eq(0)
        m.d.comb += self.quiet.eq((self.done | finishing) & ~fire)
        return m
