"""What a two-context PE would cost in cycles: the lean-PE issue's structural lever, on paper.

    .venv/bin/python benchmarks/two_context.py [--images 200] [--pes 1,2,4,8,16]

The PE's decode loop (bit buffer -> limit comparators -> one-hot length ->
barrel shift -> bit buffer) is the critical path of both boards once the
tail paths are registered (docs/boards.md, fifth round), and it cannot be
pipelined as it stands: each code's length decides where the next starts.
The known way around it is C-slowing: a register in the middle of the loop
and two columns in flight, decoded in alternate cycles, so the loop has two
cycles per code and the PE still yields one symbol per cycle while both
contexts have work. This script measures, with the golden cycle model's own
rules (``compressor.contract.timing``), what that costs in cycles: a PE's
kept columns go to its two contexts alternately (column i to context i mod
2, so the fetcher knows at fetch time whose bit buffer a column's bits go
to), a context takes 2 cycles per entry, and everything else -- the scan,
FIFO room, issue latency, drops, drain, tails -- is today's: both are
``timing.scan_cycles``, the golden model's reference, with ``contexts`` 1 and
2, so the difference is the two contexts' alone.

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
from compressor.contract.fixedpoint import run_int
from compressor.contract.golden import decode_rom, storage_input
from compressor.contract.rom import load
from compressor.contract.timing import Timing, fc_tail, scan_cycles


def measure(rom_path: Path, x: np.ndarray, timing: Timing) -> dict:
    """Mean cycles per image with one context (today's PE) and with two."""
    layers = decode_rom(load(rom_path), str(rom_path))
    ils = [d.int_layer for d in layers]
    n = layers[0].entries.shape[1]
    _, inputs = run_int(ils, storage_input(np.asarray(x, dtype=np.int64), ils[0], n), n, keep=len(x))
    one = np.zeros(len(x))
    two = np.zeros(len(x))
    for i in range(len(x)):
        for li, (d, il) in enumerate(zip(layers, ils, strict=True)):
            tail = fc_tail(il.rows, n, il.relu, timing)
            a = inputs[li][i]
            one[i] += scan_cycles(a, d.entries, timing, timing.setup)[0] + tail
            two[i] += scan_cycles(a, d.entries, timing, timing.setup, contexts=2)[0] + tail
    return {"pes": n, "fifo_depth": timing.fifo_depth, "registered": timing.drain == 6,
            "cycles_one_context": float(one.mean()), "cycles_two_contexts": float(two.mean()),
            "ratio": float(two.sum() / one.sum())}


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
            timing = Timing.engine(4, registered=False) if n == 1 else Timing.engine(8)
            r = measure(rom, x, timing)
            runs.append(r)
            print(json.dumps(r), flush=True)
    doc = {"model": str(MODELS["lenet300"].relative_to(ROOT)), "images": int(len(x)),
           "command": ".venv/bin/python benchmarks/two_context.py " + " ".join(sys.argv[1:]),
           "runs": runs, "seconds": round(time.perf_counter() - t0, 1)}
    atomic_write(RESULTS / "two_context.json", (json.dumps(doc, indent=1) + "\n").encode())
    print("\n| N | one context (today) | two contexts | ratio |\n|---|---|---|---|")
    for r in runs:
        print(f"| {r['pes']} | {r['cycles_one_context']:.1f} | {r['cycles_two_contexts']:.1f} | {r['ratio']:.3f} |")


if __name__ == "__main__":
    main()
