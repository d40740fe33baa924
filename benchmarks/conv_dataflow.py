"""Conv layers on the engine: dataflow (a) measured, dataflow (b) modelled, both against the multiplier bound.

    .venv/bin/python benchmarks/conv_dataflow.py [--images 200] [--pes 1,2,4,8,16]

For the committed LeNet-5 (benchmarks/results/lenet5_mnist.dcz) laid out for
each N (`deepcomp rom`), on the first K MNIST test images:

* **(a), built**: output channels interleaved over the PEs, one output
  position at a time, each non-zero patch activation's column decoded again
  for every position (hdl/, the golden cycle model, which the RTL meets
  cycle for cycle): cycles per conv layer from ``compressor.contract.golden.infer``.
* **multiplier bound**: effective MACs / N, where effective MACs counts only
  (non-zero patch activation) x (non-zero weight) pairs: no engine with N
  multipliers does better. Utilisation = bound / cycles.
* **(b), modelled on paper**: PEs own N output positions, a column is decoded
  once per group of N positions and its (row, weight) stream broadcast, one
  entry per cycle (fillers included, as the decoder spends them), for every
  column where any of the N positions has a non-zero activation; then each
  PE's R accumulators are read out (R cycles). Pipeline latencies are left
  out, so the model favours (b).
* **(c), modelled on paper**: PEs own output positions *and* decode for
  themselves: every PE holds the whole layer (all R rows) and runs its own
  positions as a one-PE fc layer over its patch, decoding only its own
  non-zero activations' columns (``entries`` cycles each, fillers
  included; a column it holds nothing of is dropped, as the built PE does),
  then reads out its R rows. Pool windows (4 consecutive positions
  in the engine's order) or, without a pool, positions go to PE ``w mod N``;
  the layer ends when the busiest PE does (``c_``) or, lock-step, each round
  of N windows when its slowest PE does (``c_lockstep_``: the round's N
  results are then one N-byte word for every PE's copy of the next map). Pipeline latencies are left out
  here too; the cost is memory: the layer's streams (``stream_bytes`` of
  the N = 1 layout) and its input map (``c_map_bytes`` for all N copies)
  once per PE.

Writes benchmarks/results/conv_dataflow.json.
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

MODEL = MODELS["lenet5"]


def layer_inputs(rom, x: np.ndarray, n: int):
    from compressor.contract.fixedpoint import run_int, storage_input
    from compressor.contract.golden import decode_rom

    layers = decode_rom(rom)
    ils = [d.int_layer for d in layers]
    _, inputs = run_int(ils, storage_input(x, ils[0], n), n)
    return layers, inputs


def dataflow_c(patches: np.ndarray, col_entries: np.ndarray, rows: int, window: int, n: int) -> np.ndarray:
    """Cycles of dataflow (c) per image: each PE decodes its own positions' non-zero columns (all rows).

    ``patches``: (images, positions, cols) non-zero masks in the engine's position order;
    positions are dealt to the PEs a pool window (``window`` consecutive positions) at a time,
    window ``r * N + q`` to PE q. Returns (free-running: the busiest PE's total; lock-step:
    every round of N windows waits for its slowest PE, which lets the N results of a round be
    written as one N-byte word into every PE's copy of the next map).
    """
    work = (patches * col_entries[None, None, :]).sum(axis=2) + rows  # (images, positions)
    k, pos = work.shape
    wins = -(-pos // window)
    work = np.pad(work, ((0, 0), (0, wins * window - pos))).reshape(k, wins, window).sum(axis=2)
    rounds = -(-wins // n)
    work = np.pad(work, ((0, 0), (0, rounds * n - wins))).reshape(k, rounds, n)  # window r * n + q -> PE q
    return work.sum(axis=1).max(axis=1), work.max(axis=2).sum(axis=1)


def stream_bytes(rom, li: int) -> int:
    """Bytes of layer ``li``'s weight streams over all PE regions (what (c) keeps once per PE)."""
    layer = rom.layers[li]
    return int(-(-int((layer.ptr[-1] - layer.ptr[0]).sum()) // 8))


def measure(n: int, x: np.ndarray, data_dir: Path, work: Path) -> dict:
    from compressor.contract.golden import Timing, infer
    from compressor.contract.rom import load

    rom_path = work / f"l5_n{n}.rom"
    make_rom(MODEL, n, rom_path, data_dir)
    rom = load(rom_path)
    layers, inputs = layer_inputs(rom, x, n)
    g = infer(layers, x, Timing())
    out = {"rom_bytes": rom_path.stat().st_size, "cycles": float(g["cycles"].mean()), "layers": {}}
    for li, d in enumerate(layers):
        il = d.int_layer
        if il.conv is None:
            continue
        gather = il.conv.gather(n)
        nnz_w = (il.index != 0).sum(axis=0)  # non-zero weights per storage column
        col_entries = d.entries.sum(axis=1)  # the column's entries over all PEs (fillers included)
        padded = np.concatenate([inputs[li], np.zeros((len(x), 1), dtype=np.int64)], axis=1)
        patches = padded[:, gather] != 0  # (images, positions, cols)
        eff = (patches * nnz_w[None, None, :]).sum(axis=(1, 2))
        pos = patches.shape[1]
        groups = -(-pos // n)
        pad = np.zeros((len(x), groups * n - pos, patches.shape[2]), dtype=bool)
        union = np.concatenate([patches, pad], axis=1).reshape(len(x), groups, n, -1).any(axis=2)
        b_cycles = (union * col_entries[None, None, :]).sum(axis=(1, 2)) + groups * il.rows
        c_cycles, c_lock = dataflow_c(patches, col_entries, il.rows, il.conv.pool ** 2, n)
        a_cycles = g["layer_cycles"][:, li]
        bound = eff / n
        out["layers"][f"conv{li + 1}"] = {
            "positions": int(pos), "rows": il.rows, "cols": il.cols,
            "a_cycles": float(a_cycles.mean()), "b_cycles_model": float(b_cycles.mean()),
            "multiplier_bound": float(bound.mean()), "effective_macs": float(eff.mean()),
            "a_utilisation": float(bound.sum() / a_cycles.sum()),
            "b_utilisation_model": float(bound.sum() / b_cycles.sum()),
            "c_cycles_model": float(c_cycles.mean()),
            "c_utilisation_model": float(bound.sum() / c_cycles.sum()),
            "c_lockstep_cycles_model": float(c_lock.mean()),
            "c_lockstep_utilisation_model": float(bound.sum() / c_lock.sum()),
            "stream_bytes": stream_bytes(rom, li),
            "c_map_bytes": n * int(il.conv.in_h * il.conv.in_w * il.conv.in_c),
            "golden_ideal": float(g["layer_ideal"][:, li].mean())}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--pes", default="1,2,4,8,16")
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "mnist")
    args = ap.parse_args()
    from compressor.contract.data import load_dataset

    x = load_dataset("mnist", args.data_dir).test.images[:args.images]
    x = x.reshape(len(x), -1)
    doc = {"model": str(MODEL.relative_to(ROOT)), "images": len(x),
           "command": f".venv/bin/python benchmarks/conv_dataflow.py --images {args.images} --pes {args.pes}",
           "runs": {}}
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        for n in [int(v) for v in args.pes.split(",")]:
            doc["runs"][f"N={n}"] = measure(n, x, args.data_dir.resolve(), Path(tmp))
            print(n, json.dumps(doc["runs"][f"N={n}"]["layers"]), flush=True)
    doc["seconds"] = round(time.time() - t0, 1)
    (RESULTS / "conv_dataflow.json").write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
