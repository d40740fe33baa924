"""RTL simulation of LeNet-300-100 on MNIST against the golden model.

    .venv/bin/python benchmarks/rtl_sim.py --pes 1,2,4,8,16 --images 50      # sweep
    .venv/bin/python benchmarks/rtl_sim.py --pes 4 --images 10000            # full test set

For each N: build the ROM from benchmarks/results/lenet300_mnist.dcz, run the
first K test images through the Verilator model with `deepcomp sim`, and
record mismatches against the golden model (must be 0), error, cycles per
inference, ideal cycles, utilisation and simulation speed. Appends to
benchmarks/results/rtl_sim.json, keyed by (N, images).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
BIN = Path(sys.executable).parent / "deepcomp"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pes", default="1,2,4,8,16")
    ap.add_argument("--images", type=int, default=50)
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "mnist")
    args = ap.parse_args()
    out = RESULTS / "rtl_sim.json"
    runs = json.loads(out.read_text()) if out.is_file() else {}
    data = ["--dataset", "mnist", "--data-dir", str(args.data_dir)]
    for n in [int(v) for v in args.pes.split(",")]:
        with tempfile.TemporaryDirectory() as tmp:
            rom = Path(tmp) / "m.rom"
            subprocess.run([BIN, "rom", RESULTS / "lenet300_mnist.dcz", "--pes", str(n), "-o", rom, *data],
                           check=True, capture_output=True)
            t0 = time.time()
            res = subprocess.run([BIN, "sim", "--rom", rom, "--pes", str(n), "--images", str(args.images),
                                  "--build-dir", Path(tmp) / "build", "--json", *data],
                                 check=True, capture_output=True, text=True)
            wall = time.time() - t0
        r = json.loads(res.stdout)
        r.pop("predictions", None)
        r.pop("rom", None)
        r.update(pes=n, wall_seconds_incl_build=round(wall, 1), images_per_s_incl_build=round(r["images"] / wall, 2),
                 command=f".venv/bin/python benchmarks/rtl_sim.py --pes {n} --images {args.images}")
        runs[f"N={n},images={args.images}"] = r
        out.write_text(json.dumps(runs, indent=1))
        print(json.dumps(r))


if __name__ == "__main__":
    main()
