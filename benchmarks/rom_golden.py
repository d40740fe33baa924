"""ROM size per N and the golden model on the full MNIST test set.

    .venv/bin/python benchmarks/rom_golden.py [--data-dir ../shared/data/mnist]

For the committed LeNet-300-100 .dcz and N = 1, 2, 4, 8, 16: ROM bytes by
section (what interleaving and pointers cost, and what per-column lengths
would cost instead), integer error vs the float quantized model, the
accumulator bound, and golden cycles / ideal / utilisation per inference.
Writes benchmarks/results/rom_golden.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from compressor.contract.container import load
from compressor.contract.data import load_dataset
from compressor.contract.golden import decode_rom, infer
from compressor.contract.rom import DESC, HEADER, RomImage, build, parse
from compressor.models import to_module
from compressor.rom_cli import int_layers_for
from compressor.train import error_rate

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def section_sizes(rom: RomImage) -> dict[str, int]:
    """Bytes of each kind of content (alignment padding reported separately)."""
    ls = rom.layers
    sizes = {
        "header+descriptors": HEADER.size + DESC.size * len(ls) + 8 * rom.n_pes,
        "codebooks": sum(2 * ly.codebook.size for ly in ls),
        "huffman_tables": sum(8 * rom.max_len + 2 * ly.symbols.size for ly in ls),
        "biases": sum(4 * ly.rows for ly in ls),
        "pointers": sum(ly.ptr.size * rom.ptr_bytes for ly in ls),
        "streams": sum(len(s) for s in rom.streams),
        "crc": 4,
    }
    sizes["padding"] = rom.total_bytes - sum(sizes.values())
    return sizes


def column_length_bytes(rom: RomImage) -> int:
    """What per-column bit *lengths* (the alternative to pointers) would cost, fixed width per layer."""
    total = 0
    for ly in rom.layers:
        seg = np.diff(ly.ptr, axis=0)
        total += seg.size * int(seg.max(initial=0)).bit_length()
    return (total + 7) // 8


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "mnist")
    ap.add_argument("--model", type=Path, default=RESULTS / "lenet300_mnist.dcz")
    ap.add_argument("--pes", default="1,2,4,8,16")
    args = ap.parse_args()
    cm = load(args.model)
    data = load_dataset("mnist", args.data_dir)
    x = data.test.images.reshape(len(data.test), -1)
    float_err = error_rate(to_module(cm), data.test)
    layers, _ = int_layers_for(cm, "mnist", args.data_dir, 5000, 99.99)
    bound = max(layer.acc_bound() for layer in layers)
    rows = []
    for n in [int(v) for v in args.pes.split(",")]:
        image = build(layers, n)
        rom = parse(image, f"N={n}")
        t0 = time.time()
        res = infer(decode_rom(rom), x)
        rows.append({
            "pes": n, "rom_bytes": len(image), "dcz_bytes": args.model.stat().st_size,
            "sections": section_sizes(rom), "column_lengths_instead_of_pointers": column_length_bytes(rom),
            "int_error": float((res["pred"] != data.test.labels).mean()),
            "cycles": float(res["cycles"].mean()), "ideal_cycles": float(res["ideal"].mean()),
            "utilisation": float(res["ideal"].sum() / res["cycles"].sum()),
            "golden_seconds": round(time.time() - t0, 1),
        })
        print(json.dumps(rows[-1]))
    out = {"model": str(args.model.relative_to(ROOT)), "float_error": float_err,
           "acc_bound": bound, "acc_bound_bits": bound.bit_length() + 1, "rows": rows,
           "command": ".venv/bin/python benchmarks/rom_golden.py"}
    (RESULTS / "rom_golden.json").write_text(json.dumps(out, indent=1))
    print(f"\nfloat error {100 * float_err:.2f}%, accumulator bound {bound} "
          f"({bound.bit_length() + 1} bits signed)\n")
    print("| N | ROM bytes | streams | pointers | (lengths instead) | tables+codebooks+biases | "
          "int error | cycles | ideal | utilisation |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        s = r["sections"]
        print(f"| {r['pes']} | {r['rom_bytes']} | {s['streams']} | {s['pointers']} | "
              f"{r['column_lengths_instead_of_pointers']} | "
              f"{s['huffman_tables'] + s['codebooks'] + s['biases']} | {100 * r['int_error']:.2f}% | "
              f"{r['cycles']:.0f} | {r['ideal_cycles']:.0f} | {r['utilisation']:.3f} |")


if __name__ == "__main__":
    main()
