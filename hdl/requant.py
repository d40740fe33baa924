"""Requantizer: ReLU, multiply by M, round half up, shift right by S, saturate to 255.

``a = min(255, (max(acc, 0) * M + 2**(S-1)) >> S)`` (docs/arithmetic.md), one
accumulator per cycle, latency 2: an input accepted in cycle ``t`` leaves in
``t + 2`` (stage 1: ReLU and the 31 x 16-bit product, 47 bits; stage 2:
rounding, the variable shift and saturation). Two stages because the
product alone is the longest path of the tail; each PE has its own
requantizer so a hidden layer's tail takes ``ceil(R / N)`` cycles plus this
latency. The tag (the activation address) travels with the value.
"""

from __future__ import annotations

from amaranth import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out


class Requantizer(wiring.Component):
    def __init__(self, tag_bits: int):
        self.tag_bits = tag_bits
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({"acc": signed(32), "tag": unsigned(tag_bits)}),
                                     always_ready=True)),
            "o": Out(stream.Signature(data.StructLayout({"act": unsigned(8), "tag": unsigned(tag_bits)}),
                                      always_ready=True)),
            "mult": In(32),
            "shift": In(8),
        })

    def elaborate(self, platform):
        m = Module()
        v1, tag1 = Signal(), Signal(self.tag_bits)
        prod = Signal(unsigned(48))
        relu = Mux(self.i.payload.acc[31], 0, self.i.payload.acc[:31])
        m.d.sync += [v1.eq(self.i.valid), tag1.eq(self.i.payload.tag),
                     prod.eq(relu * self.mult[:16])]
        shift = Signal(6)
        m.d.comb += shift.eq(Mux(self.shift > 62, 62, self.shift))
        half = Signal(64)
        m.d.comb += half.eq((Const(1, 64) << shift) >> 1)  # 2**(S-1), 0 for S = 0
        y = Signal(64)
        m.d.comb += y.eq((prod + half) >> shift)
        m.d.sync += [self.o.valid.eq(v1), self.o.payload.tag.eq(tag1),
                     self.o.payload.act.eq(Mux(y > 255, 255, y[:8]))]
        return m
