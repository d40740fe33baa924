"""The engine bench: :class:`hdl.top.Accelerator` for a ROM image on Verilator, inputs in, results out.

A thin engine-specific layer on :mod:`sim.runner`: ``build(rom_bytes,
build_dir)`` elaborates the engine for the image and verilates it once with
the engine's build flags (:data:`BUILD_ARGS`); ``run(build, inputs)`` runs the
cocotb module :mod:`sim.bench_engine` through :func:`sim.runner.run_bench`,
which streams the input vectors in and collects the result beats. One
compiled model serves any number of runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from compressor.contract.errors import DeepcompError
from compressor.contract.rom import RomImage, parse

from .runner import SimBuild, build_component, run_bench

TOPLEVEL = "deepcomp_top"
# -O1: Verilator's own optimisations; X assignments and uninitialised state are 0 (deterministic).
# The C++ is compiled at -O0 unless optimize=True: the benches are short and the builds
# dominate (N = 16: 55 s at -Os, 37 s at -O0).
BUILD_ARGS = ("-O1", "--x-assign", "0", "--x-initial", "0")
WAVE_ARGS = ("--trace-structs",)


@dataclass(frozen=True)
class Build(SimBuild):
    """A verilated engine: :class:`sim.runner.SimBuild` plus the image and the engine parameters."""

    rom: RomImage | None = None
    params: object = None


def build(rom_bytes: bytes, build_dir: Path, params=None, waves: bool = False,
          always: bool = False, optimize: bool = False) -> Build:
    """Elaborate and verilate the engine holding ``rom_bytes`` (rebuilt only if the design changed)."""
    from hdl.top import Accelerator

    rom = parse(rom_bytes, "<rom>")
    top = Accelerator(rom, params)
    b = build_component(top, TOPLEVEL, build_dir, waves=waves, cxx="full" if optimize else "O0", always=always,
                        build_args=[*BUILD_ARGS, *(WAVE_ARGS if waves else ())])
    return Build(b.toplevel, b.build_dir, b.verilog, b.waves, rom=rom, params=top.params)


def run(b: Build, inputs: np.ndarray, timeout_cycles: int = 2_000_000, tag: str = "run") -> list[dict]:
    """Stream each row of ``inputs`` through the engine; one result dict per row.

    A result holds ``status`` (class | error << 16), ``error``, ``cls``, ``cycles``,
    ``logits`` (empty after an error) and ``starve`` (decoder ever stalled).
    Raises DeepcompError if the engine did not answer every input within
    ``timeout_cycles`` per input.
    """
    inputs = np.asarray(inputs, dtype=np.int64).reshape(len(inputs), -1)
    r = run_bench(b, "sim.bench_engine", tag=tag,
                  params={"inputs": inputs.tolist(), "timeout": timeout_cycles})
    if r.output is None:
        raise DeepcompError(f"engine simulation produced no results (see {r.log})")
    if not r.passed:
        raise DeepcompError(f"engine simulation answered {len(r.output['results'])} of "
                            f"{len(inputs)} inputs (hang?); see {r.log}")
    return r.output["results"]
