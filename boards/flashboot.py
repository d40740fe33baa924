"""Boot from SPI flash: at power-up, read the ROM image behind the bitstream and LOAD it.

Why it is a LOAD: the iCEBreaker's weight streams live in SPRAM, which the
bitstream cannot initialise, so the device used to power up empty and wait
for ``board infer --rom``. :class:`FlashBoot` reads the image from the
configuration flash (where ``deepcomp board flash icebreaker --rom`` put it)
and feeds the bytes to the protocol controller, which comes out of reset in
the middle of a LOAD of the built image's length
(``DeviceController(boot_length=...)``). So the one loader there is -- the
CRC check, the parameter check, the SPRAM writes -- also checks the boot
image: a blank or corrupt flash leaves the device *not loaded* with STATUS
``BAD_CRC`` (or ``PARAM_MISMATCH`` for another model's image). The controller
counts the bytes; ``stop`` (the end of that LOAD) ends the read.

The flash side is the subset every SPI NOR flash speaks, mode 0 (clock idle
low, data sampled on the rising edge): release from deep power-down
(``0xAB``; a flash may sit powered down after configuration), a wait of
``wake_cycles`` (tRES1, 3 us on the iCEBreaker's W25Q128), then READ
(``0x03``, 24-bit address) and one continuous burst. SCK is the clock / 2;
``cipo`` is sampled as SCK rises, a cycle after the flash drove it on the
previous falling edge.

Latency: the first byte is offered after 2 x 8 + ``wake_cycles`` + 2 x 40
cycles; each further byte 16 cycles after the previous one was accepted.
"""

from __future__ import annotations

from amaranth import Array, Const, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

CMD_WAKE = 0xAB
CMD_READ = 0x03


class FlashBoot(wiring.Component):
    """Streams the SPI flash's bytes from ``offset`` out of ``o`` until ``stop``."""

    def __init__(self, offset: int, wake_cycles: int) -> None:
        if not 0 <= offset < 1 << 24:
            raise ValueError(f"flash offset {offset:#x} does not fit 24-bit addresses")
        self.offset, self.wake_cycles = offset, wake_cycles
        super().__init__({
            "o": Out(stream.Signature(8)),
            "stop": In(1),
            "cs": Out(1),  # active high: the board's pin buffer inverts it
            "sck": Out(1),
            "copi": Out(1),
            "cipo": In(1),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        read = bytes([CMD_READ]) + self.offset.to_bytes(3, "big")
        reads = Array(Const(b, 8) for b in read)

        shreg = Signal(8, init=CMD_WAKE)  # out: MSB first on copi; in: cipo shifts in at the LSB
        sample = Signal()  # cipo taken as SCK rises, shifted in as it falls
        phase = Signal()  # 0: SCK low half of a bit, 1: high half
        bit = Signal(range(8))
        idx = Signal(range(len(read) + 1))
        wait = Signal(range(self.wake_cycles + 1), init=self.wake_cycles)
        byte_done = Signal()
        m.d.comb += self.copi.eq(shreg[7])

        def shift() -> None:
            """One bit per two cycles; ``byte_done`` in the cycle that ends the eighth."""
            m.d.comb += [self.cs.eq(1), self.sck.eq(phase)]
            m.d.sync += phase.eq(~phase)
            with m.If(~phase):
                m.d.sync += sample.eq(self.cipo)
            with m.Else():
                m.d.sync += [shreg.eq(shreg << 1 | sample), bit.eq(bit + 1)]
                m.d.comb += byte_done.eq(bit == 7)

        with m.FSM():
            with m.State("WAKE"):
                shift()
                with m.If(byte_done):
                    m.next = "GAP"
            with m.State("GAP"):  # CS high (deselected) for tRES1
                m.d.sync += wait.eq(wait - 1)
                with m.If(wait == 0):
                    m.d.sync += [shreg.eq(CMD_READ), idx.eq(1)]
                    m.next = "READ"
            with m.State("READ"):
                shift()
                with m.If(byte_done):
                    m.d.sync += [shreg.eq(reads[idx]), idx.eq(idx + 1)]
                    with m.If(idx == len(read)):
                        m.next = "DATA"
            with m.State("DATA"):
                shift()
                with m.If(byte_done):
                    m.next = "BYTE"
                with m.If(self.stop):  # the controller has its bytes (it stops taking them first)
                    m.next = "DONE"
            with m.State("BYTE"):  # CS held, SCK stopped until the byte is taken
                m.d.comb += [self.cs.eq(1), self.o.valid.eq(1), self.o.payload.eq(shreg)]
                with m.If(self.o.ready):
                    m.next = "DATA"
                with m.If(self.stop):
                    m.next = "DONE"
            with m.State("DONE"):  # CS high: the flash is free
                pass
        return m
