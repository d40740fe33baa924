"""``deepcomp sim``: run test images through the RTL (Verilator) and check it against the golden model."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from compressor.contract.cli import IMAGES, PES, Command, add_data_args, emit
from compressor.contract.errors import DeepcompError


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rom", type=Path, required=True, help="ROM image (bin, hex or mem)")
    p.add_argument("--pes", type=PES, required=True, help="number of PEs N (must match the image)")
    add_data_args(p, default="mnist")
    p.add_argument("--images", type=IMAGES, default=20, help="first K test images")
    p.add_argument("--waves", action="store_true", help="write a waveform (VCD) of the run")
    p.add_argument("--build-dir", type=Path, help="Verilator build directory (default build/sim_<rom>_n<N>)")
    p.add_argument("--contexts", type=int, choices=(1, 2), default=1, help="decode contexts per PE: 2 cuts the decode loop in two stages, two columns in flight (EngineParams.contexts)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def compare(golden: dict, results: list[dict]) -> list[int]:
    """Indices of inferences where the RTL differs from the golden model in anything."""
    bad = []
    for i, r in enumerate(results):
        if (r["error"] or r["logits"] != golden["logits"][i].tolist()
                or r["cls"] != int(golden["pred"][i]) or r["cycles"] != int(golden["cycles"][i])):
            bad.append(i)
    return bad


def run_sim(args: argparse.Namespace) -> int:
    from compressor.contract.data import load_dataset
    from compressor.contract.golden import decode_rom, infer
    from compressor.contract.rom import read_image
    from hdl.params import fit

    from . import engine_sim

    raw, rom = read_image(args.rom, args.pes)
    if rom.signed_input:
        raise DeepcompError(f"{args.rom}: signed-input image (conv net fc layers); the RTL takes uint8 pixels")
    data = load_dataset(args.dataset, args.data_dir)
    x = data.test.images[: args.images]
    y = data.test.labels[: len(x)]
    x = x.reshape(len(x), -1)
    if x.shape[1] != rom.input_size:
        raise DeepcompError(f"{args.rom}: expects {rom.input_size} inputs, {args.dataset} images have {x.shape[1]}")
    tag = "" if args.contexts == 1 else f"_ctx{args.contexts}"
    bdir = args.build_dir or Path("build") / f"sim_{Path(args.rom).stem}_n{rom.n_pes}{tag}"
    params = fit(rom, contexts=args.contexts)
    b = engine_sim.build(raw, bdir, params=params, waves=args.waves)
    res = engine_sim.run(b, x)
    g = infer(decode_rom(rom, str(args.rom)), x, params.timing())
    bad = compare(g, res)
    pred = np.array([r["cls"] for r in res])
    cyc = np.array([r["cycles"] for r in res], dtype=np.int64)
    out = {"rom": str(args.rom), "pes": rom.n_pes, "images": int(len(x)), "mismatches": len(bad),
           "error": float((pred != y).mean()) if len(x) else 0.0,
           "cycles": float(cyc.mean()) if len(x) else 0.0,
           "ideal_cycles": float(g["ideal"].mean()) if len(x) else 0.0,
           "utilisation": float(g["ideal"].sum() / max(int(cyc.sum()), 1)),
           "starved": int(any(r["starve"] for r in res)),
           "engine_errors": int(sum(1 for r in res if r["error"]))}
    if args.waves:
        waves = sorted(b.build_dir.glob("*.vcd")) + sorted(b.build_dir.glob("*.fst"))
        out["waves"] = str(waves[0]) if waves else None
    text = (f"{args.rom}: {out['images']} images on the RTL ({rom.n_pes} PEs): {out['mismatches']} mismatches "
            f"vs golden, error {100 * out['error']:.2f}%, {out['cycles']:.0f} cycles/inference "
            f"(ideal {out['ideal_cycles']:.0f}, utilisation {out['utilisation']:.3f})")
    if args.waves:
        text += f"\nwaves: {out['waves']}"
    emit(args, out, text)
    return 1 if bad else 0


SIM = Command("run test images through the accelerator RTL (Verilator) against the golden model", add_args, run_sim)
