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
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .layouts import issue_layout
from .params import EngineParams


class Broadcaster(wiring.Component):
    """N activation banks + group scan + issue stream (latency: see module docstring).

    ``wr_en[q]``/``wr_addr[q]``/``wr_data[q]`` write bank ``q`` (input loader, requantizers).
    """

    def __init__(self, p: EngineParams):
        self.p = p
        aw = max(1, (max(2, p.act_depth) - 1).bit_length())
        super().__init__({
            "start": In(1),
            "clear": In(1),
            "cols": In(16),
            "done": Out(1),
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
        rd = []
        for q in range(n):
            mem = Memory(shape=8, depth=depth, init=[])
            m.submodules[f"bank{q}"] = mem
            wp = mem.write_port()
            m.d.comb += [wp.en.eq(self.wr_en[q]), wp.addr.eq(self.wr_addr[q]),
                         wp.data.eq(self.wr_data[q])]
            rd.append(mem.read_port())

        cur_vals = Signal(data.ArrayLayout(unsigned(8), n))
        cur_mask = Signal(n)
        cur_g = Signal(range(depth + 2))
        gbase = Signal(17)  # column of bank 0 in the current group
        addr = Signal(range(depth + 2))
        for r in rd:
            m.d.comb += r.addr.eq(addr)

        def mask_of(base):
            return Cat(*[(rd[q].data != 0) & ((base + q) < self.cols) for q in range(n)])

        # lowest set bit of the mask (leading-non-zero detection)
        lowest = Signal(range(max(2, n)))
        for q in reversed(range(n)):
            with m.If(cur_mask[q]):
                m.d.comb += lowest.eq(q)
        last_bit = (cur_mask & (cur_mask - 1)) == 0
        m.d.comb += [self.issue.payload.col.eq(gbase + lowest),
                     self.issue.payload.act.eq(cur_vals[lowest])]

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += addr.eq(0)
                with m.If(self.start):
                    m.d.sync += self.done.eq(0)
                    m.next = "PRIME"
            with m.State("PRIME"):
                m.d.comb += addr.eq(1)
                m.d.sync += [cur_vals.eq(Cat(*[r.data for r in rd])), cur_mask.eq(mask_of(0)),
                             cur_g.eq(0), gbase.eq(0)]
                m.next = "RUN"
                with m.If(self.clear):
                    m.next = "IDLE"
            with m.State("RUN"):
                m.d.comb += self.issue.valid.eq(cur_mask != 0)
                fire = self.issue.valid & self.issue.ready
                consume = (cur_mask == 0) | (fire & last_bit)
                m.d.comb += addr.eq(Mux(consume, cur_g + 2, cur_g + 1))
                with m.If(fire):
                    m.d.sync += cur_mask.eq(cur_mask & ~(1 << lowest))
                with m.If(consume):
                    with m.If(gbase + n >= self.cols):
                        m.d.sync += self.done.eq(1)
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += [cur_vals.eq(Cat(*[r.data for r in rd])),
                                     cur_mask.eq(mask_of(gbase + n)),
                                     cur_g.eq(cur_g + 1), gbase.eq(gbase + n)]
                with m.If(self.clear):
                    m.next = "IDLE"
        with m.If(self.clear):
            m.d.sync += self.done.eq(0)
        return m
