"""What two decode contexts per PE cost in cycles (EngineParams.contexts = 2), beside one.

    .venv/bin/python benchmarks/two_context.py [--images 200] [--pes 1,2,4,8,16]

The PE's decode loop (bit buffer -> limit comparators -> one-hot length ->
barrel shift -> bit buffer) cannot be pipelined for one column: each code's
length decides where the next starts. Two contexts C-slow it (a register in
the middle of the loop, two columns in flight decoded in alternate cycles,
docs/hardware.md "Two decode contexts"); this script measures what that costs
in cycles with the golden cycle model (``golden.infer`` with
``Timing.engine(..., contexts=2)``: issue k to context k mod 2, a context's
own cycle parity, 2 cycles per entry, issue latency 6), for FIFOs of the
engine's depth per context and of half of it (the same slots in all, as
the iCEBreaker build has them), LeNet-300-100 on the first MNIST test images.

Writes benchmarks/results/two_context.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from mnist_rom import MODELS, RESULTS, ROOT, make_rom

from compressor.contract.binfmt import atomic_write
from compressor.contract.data import load_dataset
from compressor.contract.golden import decode_rom, infer
from compressor.contract.rom import load
from compressor.contract.timing import Timing


def measure(rom_path: Path, x: np.ndarray, depth: int, registered: bool) -> dict:
    """Mean cycles per image with one context, two with ``depth`` FIFO entries each, two with half."""
    layers = decode_rom(load(rom_path), str(rom_path))
    runs = {"cycles_one_context": Timing.engine(depth, registered),
            "cycles_two_contexts": Timing.engine(depth, registered, contexts=2),
            "cycles_two_contexts_half_fifo": Timing.engine(depth // 2, registered, contexts=2)}
    out = {"pes": int(layers[0].entries.shape[1]), "fifo_depth": depth, "registered": registered}
    for key, timing in runs.items():
        out[key] = float(infer(layers, x, timing)["cycles"].mean())
    out["ratio"] = out["cycles_two_contexts"] / out["cycles_one_context"]
    out["ratio_half_fifo"] = out["cycles_two_contexts_half_fifo"] / out["cycles_one_context"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--pes", default="1,2,4,8,16")
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "mnist")
    args = ap.parse_args()
    data = load_dataset("mnist", args.data_dir)
    x = data.test.images.reshape(len(data.test), -1)[: args.images]
    runs = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(v) for v in args.pes.split(",")):
            rom = Path(tmp) / f"lenet300_n{n}.rom"
            make_rom(MODELS["lenet300"], n, rom, args.data_dir)
            # N = 1 is the iCEBreaker's engine (FIFO depth 4, no output registers), the rest the ULX3S's
            depth, registered = (4, False) if n == 1 else (8, True)
            r = measure(rom, x, depth, registered)
            runs.append(r)
            print(json.dumps(r), flush=True)
    doc = {"model": str(MODELS["lenet300"].relative_to(ROOT)), "images": int(len(x)),
           "command": ".venv/bin/python benchmarks/two_context.py " + " ".join(sys.argv[1:]),
           "runs": runs, "seconds": round(time.perf_counter() - t0, 1)}
    atomic_write(RESULTS / "two_context.json", (json.dumps(doc, indent=1) + "\n").encode())
    print("\n| N | one context | two contexts | ratio | two, half the FIFO each | ratio |\n|---|---|---|---|---|---|")
    for r in runs:
        print(f"| {r['pes']} | {r['cycles_one_context']:.1f} | {r['cycles_two_contexts']:.1f} | {r['ratio']:.3f} | "
              f"{r['cycles_two_contexts_half_fifo']:.1f} | {r['ratio_half_fifo']:.3f} |")


if __name__ == "__main__":
    main()
