"""8N1 UART transmitter and receiver with stream interfaces.

The board top talks to the host through these (docs/protocol.md). ``divisor``
is clock cycles per bit (e.g. 24 MHz / 115200 baud = 208); both ends of a
link must agree to within ~2 % so the mid-bit sample stays inside the bit.
"""


from amaranth import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out


class UARTTx(wiring.Component):
    """Sends each byte of ``i``: start bit, 8 data bits LSB first, stop bit.

    Latency: the start bit appears on ``tx`` the cycle after ``i`` is accepted;
    a byte occupies ``10 * divisor`` cycles, after which the next is accepted.
    """

    i: In(stream.Signature(8))
    tx: Out(1, init=1)

    def __init__(self, divisor: int) -> None:
        if divisor < 2:
            raise ValueError("UART divisor must be at least 2")
        self.divisor = divisor
        super().__init__()

    def elaborate(self, platform) -> Module:
        m = Module()
        timer = Signal(range(self.divisor))
        shreg = Signal(10, init=0x3FF)
        bits = Signal(range(11))
        m.d.comb += self.i.ready.eq(bits == 0)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [shreg.eq(Cat(0, self.i.payload, 1)), bits.eq(10), timer.eq(self.divisor - 1)]
        with m.Elif(bits != 0):
            with m.If(timer == 0):
                m.d.sync += [shreg.eq(Cat(shreg[1:], 1)), bits.eq(bits - 1), timer.eq(self.divisor - 1)]
            with m.Else():
                m.d.sync += timer.eq(timer - 1)
        m.d.comb += self.tx.eq(shreg[0] | (bits == 0))
        return m


class UARTRx(wiring.Component):
    """Receives bytes into stream ``o``; flags framing errors and overruns.

    ``rx`` is synchronised with two flip-flops, a start bit is recognised on a
    falling edge, and each bit is sampled in its middle. A byte whose stop bit
    is 0 is dropped and sets ``frame_error`` for one cycle; a byte that arrives
    while ``o`` still holds an unaccepted one is dropped and pulses ``overrun``.
    Latency: ``o.valid`` rises about half a bit after the stop bit's middle.
    """

    rx: In(1, init=1)
    o: Out(stream.Signature(8))
    frame_error: Out(1)
    overrun: Out(1)

    def __init__(self, divisor: int) -> None:
        if divisor < 4:
            raise ValueError("UART divisor must be at least 4")
        self.divisor = divisor
        super().__init__()

    def elaborate(self, platform) -> Module:
        m = Module()
        rx = Signal(init=1)
        m.submodules.sync = FFSynchronizer(self.rx, rx, init=1)
        timer = Signal(range(self.divisor))
        shreg = Signal(9)
        bits = Signal(range(10))
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        m.d.sync += [self.frame_error.eq(0), self.overrun.eq(0)]
        with m.FSM():
            with m.State("IDLE"):
                with m.If(~rx):
                    m.d.sync += [timer.eq(self.divisor // 2 - 1), bits.eq(10)]
                    m.next = "BIT"
            with m.State("BIT"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    m.d.sync += [timer.eq(self.divisor - 1), bits.eq(bits - 1)]
                    with m.If(bits == 10):  # middle of the start bit
                        with m.If(rx):
                            m.next = "IDLE"  # glitch, not a start bit
                    with m.Else():
                        m.d.sync += shreg.eq(Cat(shreg[1:], rx))
                        with m.If(bits == 1):  # middle of the stop bit
                            m.next = "IDLE"
                            with m.If(~rx):
                                m.d.sync += self.frame_error.eq(1)
                            with m.Elif(self.o.valid & ~self.o.ready):
                                m.d.sync += self.overrun.eq(1)
                            with m.Else():
                                m.d.sync += [self.o.payload.eq(shreg[1:]), self.o.valid.eq(1)]
        return m
