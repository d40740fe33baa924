"""Board bitstreams for the committed LeNet-300-100 and the throughput they imply.

    .venv/bin/python benchmarks/board_builds.py                       # both boards, default configs
    .venv/bin/python benchmarks/board_builds.py --only ulx3s:8:50     # one board:N:MHz

For each configuration (board, N PEs, PLL clock): lay
benchmarks/results/lenet300_mnist.dcz out for N PEs (`deepcomp rom`), build
the bitstream with `deepcomp board build ... --json` (YoWASP Yosys + nextpnr
from pip), and take the cycles per inference of all 10,000 MNIST test images
from the golden cycle model (the RTL matches it cycle for cycle:
benchmarks/rtl_sim.py). Images/s on the board = clock / mean cycles, at the
PLL clock the bitstream runs (target, when timing is met) and at nextpnr's
Fmax; the engine alone, without the UART (784 input bytes at 115200 baud
take 68 ms, so over the UART a board classifies ~14 images/s whatever the
engine). Written beside the CPU baseline (benchmarks/results/cpu_baseline.json,
PyTorch dense at batch 1 on this machine) to
benchmarks/results/board_builds.json, one record per configuration, kept
across runs.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mnist_rom import BIN, MODELS, RESULTS, ROOT, make_rom

from compressor.contract.binfmt import atomic_write

MODEL = MODELS["lenet300"]
DEFAULT = ["icebreaker:1:24", "ulx3s:8:50", "ulx3s:4:50"]


def golden_cycles(rom_path: Path, data_dir: Path, fifo_depth: int, drain: int, contexts: int = 1) -> dict:
    from compressor.contract.data import load_dataset
    from compressor.contract.golden import Timing, decode_rom, infer
    from compressor.contract.rom import load

    data = load_dataset("mnist", data_dir)
    x = data.test.images.reshape(len(data.test), -1)
    g = infer(decode_rom(load(rom_path), str(rom_path)), x, Timing.engine(fifo_depth, registered=drain == 6,
                                                                                contexts=contexts))
    return {"images": int(len(x)), "cycles_mean": float(g["cycles"].mean()),
            "cycles_max": int(g["cycles"].max()), "error": float((g["pred"] != data.test.labels).mean())}


def rtl_version() -> str:
    """The commit the bitstream's RTL comes from (``-dirty``: hdl/ or boards/ had uncommitted changes),
    so a record stays tied to the design it measured after the RTL moves on."""
    git = ["git", "-C", str(ROOT)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run([*git, "diff", "--quiet", "HEAD", "--", "hdl", "boards"]).returncode != 0
    return (head or "?") + ("-dirty" if dirty else "")


def run(board: str, n: int, mhz: float, out: Path, data_dir: Path, seed: int = 1, max_len: int = 12,
        model: Path = MODEL, contexts: int = 1) -> dict:
    rom = out / f"{model.stem}_n{n}_l{max_len}.rom"
    make_rom(model, n, rom, data_dir, max_len)
    cmd = [BIN, "board", "build", board, "--rom", rom, "--pes", str(n), "-o", out / f"{board}_n{n}",
           "--freq", f"{mhz:g}", "--seed", str(seed), "--contexts", str(contexts), "--json"]
    t0 = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        return {"board": board, "n_pes": n, "target_mhz": mhz, "built": False,
                "error": (r.stderr.strip().splitlines() or ["?"])[-1], "seconds": round(time.time() - t0, 1)}
    rep = json.loads(r.stdout)
    cyc = golden_cycles(rom, data_dir, rep["fifo_depth"], rep["drain"], rep["contexts"])
    clock = rep["target_mhz"] if rep["timing_met"] else rep["fmax_mhz"]
    rep.update(built=True, rtl=rtl_version(), n_pes=n, max_code_len=max_len, model=str(model.relative_to(ROOT)), rom_bytes=rom.stat().st_size, cycles=cyc,
               engine_images_per_s=round(clock * 1e6 / cyc["cycles_mean"]),
               engine_images_per_s_at_fmax=round(rep["fmax_mhz"] * 1e6 / cyc["cycles_mean"]),
               engine_us_per_image=round(cyc["cycles_mean"] / clock, 2))
    for k in ("log", "rom", "bitstream"):
        rep.pop(k, None)
    return rep


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", action="append", help=f"board:N:MHz (repeatable; default: {' '.join(DEFAULT)})")
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "mnist")
    ap.add_argument("--arch", choices=sorted(MODELS), default="lenet300",
                    help="the committed model to build (records of lenet5 are keyed lenet5/board:N:MHz...)")
    ap.add_argument("--max-code-len", type=int, action="append",
                    help="Huffman code length bound L of the ROM (repeatable: one build per L; default 12; "
                         "records of L != 12 are keyed board:N:MHz[:seed]:L<L>)")
    ap.add_argument("--keep", type=Path, help="keep ROMs and build directories here")
    ap.add_argument("--contexts", type=int, choices=(1, 2), default=1,
                    help="decode contexts per PE (records of 2 are keyed board:N:MHz[:seed]:ctx2)")
    args = ap.parse_args()
    out_json = RESULTS / "board_builds.json"
    doc = json.loads(out_json.read_text()) if out_json.is_file() else {}
    cpu = RESULTS / "cpu_baseline.json"
    if cpu.is_file():
        doc["cpu_baseline"] = json.loads(cpu.read_text())
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for spec in args.only or DEFAULT:
            for max_len in args.max_code_len or [12]:
                board, n, mhz, *seed = spec.split(":")  # board:N:MHz[:seed]
                rec = run(board, int(n), float(mhz), work, args.data_dir.resolve(), int(seed[0]) if seed else 1,
                          max_len, MODELS[args.arch], args.contexts)
                lopt = ("" if max_len == 12 else f" --max-code-len {max_len}") + \
                    ("" if args.arch == "lenet300" else f" --arch {args.arch}") + \
                    ("" if args.contexts == 1 else f" --contexts {args.contexts}")
                rec["command"] = f".venv/bin/python benchmarks/board_builds.py --only {shlex.quote(spec)}{lopt}"
                key = (spec if max_len == 12 else f"{spec}:L{max_len}") + \
                    ("" if args.contexts == 1 else f":ctx{args.contexts}")
                # read again before writing: another run (a build takes up to 40 minutes) may have
                # added its records meanwhile
                doc = json.loads(out_json.read_text()) if out_json.is_file() else doc
                doc.setdefault("builds", {})[key if args.arch == "lenet300" else f"{args.arch}/{key}"] = rec
                atomic_write(out_json, (json.dumps(doc, indent=1) + "\n").encode())
                print(json.dumps({k: rec.get(k) for k in ("board", "n_pes", "built", "luts", "luts_available",
                                                          "fmax_mhz", "target_mhz", "timing_met", "max_code_len",
                                                          "rom_bytes", "engine_images_per_s", "seconds", "error")}),
                      flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
