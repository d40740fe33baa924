"""A single-port 16-bit RAM: the iCE40UP5K's SPRAM (``SB_SPRAM256KA``) or a behavioural model.

Why a component of its own: on the iCEBreaker the weight streams live in
SPRAM (128 KB of it, four 16 K x 16-bit blocks, next to only 15 KB of block
RAM), which has no bitstream initialisation and one address port shared by
reads and writes. The PE therefore sees a RAM that is written by the runtime
loader while the engine is idle and read by the bit fetcher while it runs,
through one address. On an iCE40 platform this component instantiates the
hard block; anywhere else (Verilator, the Amaranth simulator, ECP5) it is an
``amaranth.lib.memory.Memory`` with a write port and a synchronous read port on
the same address, which behaves the same way: ``rdata`` is the word at the
``addr`` of the previous cycle (latency 1), and a write cycle's ``rdata`` is
not used.
"""

from amaranth import ClockSignal, Module, Signal
from amaranth.hdl import Instance
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

SPRAM_DEPTH = 16384  # words of one SB_SPRAM256KA


class SinglePortRAM(wiring.Component):
    """``depth`` x 16-bit words, one address for reads and writes; read latency 1."""

    def __init__(self, depth: int):
        if not 1 <= depth <= SPRAM_DEPTH:
            raise ValueError(f"single-port RAM of {depth} words: one SPRAM holds 1..{SPRAM_DEPTH}")
        self.depth = depth
        super().__init__({
            "addr": In(range(max(2, depth))),
            "wdata": In(16),
            "we": In(1),
            "rdata": Out(16),
        })

    def elaborate(self, platform):
        m = Module()
        if str(getattr(platform, "family", "")).lower() == "ice40":
            addr = Signal(14)
            m.d.comb += addr.eq(self.addr)
            m.submodules.spram = Instance(
                "SB_SPRAM256KA",
                i_ADDRESS=addr, i_DATAIN=self.wdata, i_MASKWREN=0b1111, i_WREN=self.we,
                i_CHIPSELECT=1, i_CLOCK=ClockSignal("sync"), i_STANDBY=0, i_SLEEP=0, i_POWEROFF=1,
                o_DATAOUT=self.rdata)
            return m
        m.submodules.mem = mem = Memory(shape=16, depth=max(2, self.depth), init=[])
        wr = mem.write_port()
        rd = mem.read_port()
        m.d.comb += [wr.addr.eq(self.addr), wr.data.eq(self.wdata), wr.en.eq(self.we),
                     rd.addr.eq(self.addr)]
        m.d.comb += self.rdata.eq(rd.data)
        return m

