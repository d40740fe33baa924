"""CRC32 (zlib / IEEE 802.3, reflected) over a byte stream, one byte per cycle.

The device checks a ROM image as it arrives: ``ok`` is high when the CRC of
every byte seen so far, *including* the image's own trailing CRC bytes,
equals zlib's residue for a correct message (0x2144DF1C), so no separate
comparison of the last four bytes is needed.
"""

import zlib

from amaranth import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

POLY = 0xEDB88320
RESIDUE = 0x2144DF1C  # zlib.crc32(m + crc32(m).to_bytes(4, "little")) for any m


class CRC32(wiring.Component):
    """Updates on each ``en`` cycle with ``data``; ``clear`` restarts. Latency: 1 cycle.

    ``crc`` is the zlib CRC32 of the bytes so far (final XOR applied).
    """

    data: In(8)
    en: In(1)
    clear: In(1)
    crc: Out(32)
    ok: Out(1)

    def elaborate(self, platform) -> Module:
        m = Module()
        state = Signal(32, init=0xFFFFFFFF)
        nxt = Signal(32)
        m.d.comb += nxt.eq(state ^ self.data)
        for i in range(8):  # eight unrolled shift/XOR steps: one byte per cycle
            step = Signal(32, name=f"step{i}")
            m.d.comb += step.eq((nxt >> 1) ^ (nxt[0].replicate(32) & POLY))
            nxt = step
        with m.If(self.clear):
            m.d.sync += state.eq(0xFFFFFFFF)
        with m.Elif(self.en):
            m.d.sync += state.eq(nxt)
        m.d.comb += [self.crc.eq(~state), self.ok.eq(~state == RESIDUE)]
        return m


assert zlib.crc32(b"deepcomp" + zlib.crc32(b"deepcomp").to_bytes(4, "little")) == RESIDUE
