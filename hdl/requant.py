"""Requantizer: ReLU, multiply by M, round half up, shift right by S, saturate to 255.

``a = min(255, (max(acc, 0) * M + 2**(S-1)) >> S)`` (docs/arithmetic.md), one
accumulator per cycle, latency 4 (5 with ``split``): an input accepted in
cycle ``t`` leaves in ``t + 4``. Stage 0 registers the input (it is the PE's
accumulator + bias, straight out of two block RAMs and an adder); stage 1:
ReLU and the 31 x 16-bit product (47 bits, DSP); stage 2: ``q = prod >> (S -
1)``, keeping 10 bits and a flag for anything above them; stage 3: ``(q + 1)
>> 1`` (round half up: ``floor((p + 2**(S-1)) / 2**S) == (floor(p / 2**(S-1))
+ 1) >> 1``) and the saturation -- so no 48-bit rounding adder sits in front
of the shifter, and no stage holds more than one wide operation (the iCE40
runs this at its 24 MHz floor). ``S = 0`` passes the product through.

With ``split`` (the ECP5 build: ``EngineParams.bram_out_regs``) the product
takes two stages: the partial products ``acc[:16] * M`` and ``acc[16:] * M``
(one 16 x 16 multiplier each) registered as they leave the DSP blocks, then
their sum: multiplier -> routing -> adder in one cycle was the ULX3S N = 8
critical path (16.1 ns, two thirds of it routing to and from the DSPs).

Why the latency costs at most one cycle per hidden layer: the sequencer's
hidden-layer tail ends ``latency - 1`` cycles after its last accumulator read
and the next layer's setup reads the activation banks 2 cycles later
(hdl/engine.py), so the last bank write lands before the first read (the
cycle model's ``requant_latency`` and ``conv_drain``: 4, or 5 with
``split``); each PE has its own requantizer, so a hidden layer's tail takes
``ceil(R / N)`` cycles plus the cycle model's constant. The tag (the
activation address) travels with the value.

With ``conv`` (an engine that runs convolutions): ``signed`` requantizes
without the ReLU to int8, ``clamp((acc * M + 2**(S-1)) >> S, -128, 127)``
(an arithmetic shift, so ties round up for negative values too); and each
input carries its local ``row`` and the max-pool flags ``first``/``last``:
the value is kept as the running maximum of its row (a memory of one entry
per local row, read after the shift stage, written by the last stage), and only the window's
last position writes the bank, with the maximum of its 2 x 2 values (equal
to pooling the accumulators: requantization is monotone). Without pooling
``first`` and ``last`` are both set on every value.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out


class Requantizer(wiring.Component):
    def __init__(self, tag_bits: int, conv: bool = False, rows: int = 1, split: bool = False):
        self.tag_bits, self.conv, self.rows, self.split = tag_bits, conv, max(2, rows), split
        extra = {"row": unsigned(max(1, (self.rows - 1).bit_length())), "first": unsigned(1),
                 "last": unsigned(1)} if conv else {}
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({"acc": signed(32), "tag": unsigned(tag_bits), **extra}),
                                     always_ready=True)),
            "o": Out(stream.Signature(data.StructLayout({"act": unsigned(8), "tag": unsigned(tag_bits)}),
                                      always_ready=True)),
            "mult": In(32),
            "shift": In(8),
            **({"signed": In(1)} if conv else {}),
        })

    @property
    def latency(self) -> int:
        """Input accepted in cycle t -> output in t + latency (module docstring)."""
        return 5 if self.split else 4

    def _multiply(self, m: Module, x: Value, valid: Value, side: Value, prod: Signal) -> tuple[Value, Value]:
        """``prod = x * M`` registered, with ``valid`` and ``side`` delayed alike (returned): one
        stage, or with ``split`` two -- the partial products ``x[:16] * M`` and ``x[16:] * M``
        (signed for a signed ``x``), then their sum."""
        mult = self.mult[:16]
        v1, s1 = Signal(), Signal(side.shape())
        m.d.sync += [v1.eq(valid), s1.eq(side)]
        if not self.split:
            m.d.sync += prod.eq(x * mult)
            return v1, s1
        hi = x[16:].as_signed() if x.shape().signed else x[16:]
        p_lo, p_hi = Signal(32), Signal((hi * mult).shape())
        m.d.sync += [p_lo.eq(x[:16] * mult), p_hi.eq(hi * mult)]
        v2, s2 = Signal(), Signal(side.shape())
        m.d.sync += [v2.eq(v1), s2.eq(s1), prod.eq((p_hi << 16) + p_lo)]
        return v2, s2

    def elaborate(self, platform):
        if self.conv:
            return self._elaborate_conv()
        m = Module()
        # stage 0: register the input
        v0, tag0, acc0 = Signal(), Signal(self.tag_bits), Signal(signed(32))
        m.d.sync += [v0.eq(self.i.valid), tag0.eq(self.i.payload.tag), acc0.eq(self.i.payload.acc)]
        # stage 1 (and 1b with ``split``): ReLU, product
        prod = Signal(unsigned(47))
        relu = Signal(31)
        m.d.comb += relu.eq(Mux(acc0[31], 0, acc0[:31]))
        v1, tag1 = self._multiply(m, relu, v0, tag0, prod)
        # stage 2: q = prod >> (S - 1) (S = 0: the product itself, times 2 so stage 3 halves it)
        shift = Signal(6)
        m.d.comb += shift.eq(Mux(self.shift > 48, 48, self.shift))
        sm1 = Signal(6)
        m.d.comb += sm1.eq(shift - 1)
        q_full = Signal(48)
        m.d.comb += q_full.eq(Mux(shift == 0, prod << 1, prod >> sm1))
        v2, tag2, q, big = Signal(), Signal(self.tag_bits), Signal(10), Signal()
        m.d.sync += [v2.eq(v1), tag2.eq(tag1), q.eq(q_full[:10]), big.eq(q_full[10:].any())]
        # stage 3: round half up, saturate
        y = Signal(10)
        m.d.comb += y.eq((q + 1) >> 1)
        m.d.sync += [self.o.valid.eq(v2), self.o.payload.tag.eq(tag2),
                     self.o.payload.act.eq(Mux(big | (y > 255), 255, y[:8]))]
        return m

    def _elaborate_conv(self):
        """The same four stages with the int8 mode and the max-pool (class docstring)."""
        m = Module()
        i = self.i.payload
        side = data.StructLayout({"tag": unsigned(self.tag_bits), "row": unsigned(max(1, (self.rows - 1).bit_length())),
                                  "first": unsigned(1), "last": unsigned(1)})
        v0, sd0, acc0 = Signal(), Signal(side), Signal(signed(32))
        m.d.sync += [v0.eq(self.i.valid), sd0.tag.eq(i.tag), sd0.row.eq(i.row), sd0.first.eq(i.first),
                     sd0.last.eq(i.last), acc0.eq(i.acc)]
        # stage 1 (and 1b with ``split``): ReLU unless int8, product (48 bits signed)
        prod = Signal(signed(49))
        x = Signal(signed(32))
        m.d.comb += x.eq(Mux(self.signed | ~acc0[31], acc0, 0))
        v1, sd1 = self._multiply(m, x, v0, sd0, prod)
        # stage 2: q = prod >> (S - 1), 11 bits signed and flags above / below them; pool memory read
        shift = Signal(6)
        m.d.comb += shift.eq(Mux(self.shift > 48, 48, self.shift))
        q_full = Signal(signed(50))
        m.d.comb += q_full.eq(Mux(shift == 0, prod << 1, prod >> (shift - 1)[:6]))
        v2, sd2, q, hi, lo = Signal(), Signal(side), Signal(signed(11)), Signal(), Signal()
        m.d.sync += [v2.eq(v1), sd2.eq(sd1), q.eq(q_full[:11]), hi.eq(q_full >= 1 << 10),
                     lo.eq(q_full < -(1 << 10))]
        m.submodules.pmax = pmax = Memory(shape=8, depth=self.rows, init=[])
        pr, pw = pmax.read_port(domain="comb"), pmax.write_port()
        # stage 3: round half up, saturate (uint8, or int8 two's complement), running maximum
        y = Signal(signed(11))
        m.d.comb += y.eq((q + 1) >> 1)
        sat = Signal(8)
        with m.If(self.signed):
            m.d.comb += sat.eq(Mux(hi | (~lo & (y > 127)), 127, Mux(lo | (y < -128), -128, y)[:8]))
        with m.Else():
            m.d.comb += sat.eq(Mux(hi | (y > 255), 255, y[:8]))
        m.d.comb += pr.addr.eq(sd2.row)
        old = pr.data
        bigger = Mux(self.signed, sat.as_signed() > old.as_signed(), sat > old)
        val = Mux(sd2.first | bigger, sat, old)
        m.d.comb += [pw.addr.eq(sd2.row), pw.data.eq(val), pw.en.eq(v2)]
        m.d.sync += [self.o.valid.eq(v2 & sd2.last), self.o.payload.tag.eq(sd2.tag), self.o.payload.act.eq(val)]
        return m
