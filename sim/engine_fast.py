"""The engine on Verilator without cocotb: a C++ loop streams inputs and collects results.

``build(rom_bytes, build_dir)`` verilates :class:`hdl.top.Accelerator` for
the image with ``sim/engine_fast.cpp`` (optimised C++; rebuilt only when the
Verilog or the harness changed) and ``run(build, inputs)`` returns the same
result dicts as :func:`sim.engine_sim.run`. Why both: the cocotb bench is the
one the tests use (a Python view of every signal when something fails);
this one is for long runs (10,000 LeNet-5 images, ``benchmarks/rtl_sim.py
--fast``), where Python callbacks per clock edge would take hours.
"""

from __future__ import annotations

import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from compressor.contract.errors import DeepcompError
from compressor.contract.rom import RomImage, parse

HARNESS = Path(__file__).with_name("engine_fast.cpp")
TOP = "deepcomp_top"


@dataclass(frozen=True)
class FastBuild:
    exe: Path
    rom: RomImage
    params: object


def build(rom_bytes: bytes, build_dir: Path | str, params=None) -> FastBuild:
    """Verilate the engine holding ``rom_bytes`` with the C++ harness (cached by content)."""
    from amaranth.back import verilog

    from hdl.top import Accelerator

    from .runner import build_harness

    rom = parse(rom_bytes, "<rom>")
    top = Accelerator(rom, params)
    exe = build_harness(verilog.convert(top, name=TOP), HARNESS, TOP, Path(build_dir), "engine_fast", ["-O2"],
                        ["-O3", "--x-assign", "0", "--x-initial", "0"], what="the engine")
    return FastBuild(exe, rom, top.params)


def run(b: FastBuild, inputs: np.ndarray, timeout_cycles: int = 2_000_000) -> list[dict]:
    """Stream each row of ``inputs`` (uint8) through the engine; result dicts as engine_sim.run's."""
    x = np.asarray(inputs, dtype=np.int64).reshape(len(inputs), -1)
    if x.size and (x.min() < 0 or x.max() > 255):
        raise DeepcompError("engine inputs are bytes (0..255)")
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.bin", Path(tmp) / "out.bin"
        src.write_bytes(x.astype(np.uint8).tobytes())
        r = subprocess.run([str(b.exe), str(src), str(dst), str(len(x)), str(x.shape[1]), str(timeout_cycles)],
                           capture_output=True, text=True)
        if r.returncode == 3:
            raise DeepcompError(f"engine simulation: an input was not answered within {timeout_cycles} cycles")
        if r.returncode != 0:
            raise DeepcompError(f"engine simulation failed: {(r.stderr.strip().splitlines() or ['?'])[-1]}")
        raw = dst.read_bytes()
    out, at = [], 0
    for _ in range(len(x)):
        (nb,) = struct.unpack_from("<I", raw, at)
        beats = struct.unpack_from(f"<{nb}I", raw, at + 4)
        starve = raw[at + 4 + 4 * nb]
        at += 5 + 4 * nb
        status = beats[0]
        out.append({"status": status, "cls": status & 0xFFFF, "error": status >> 16, "cycles": beats[1],
                    "logits": [v - (1 << 32) if v & (1 << 31) else v for v in beats[2:]], "starve": int(starve)})
    return out
