"""Compress to an accuracy budget on MNIST: ``deepcomp compress --max-loss`` and nothing else.

    .venv/bin/python benchmarks/compress_budget.py --arch lenet300 [--max-loss 0.7] [--data-dir D]
    .venv/bin/python benchmarks/compress_budget.py --arch lenet5 [--max-loss 0.3]

Run it with ``OMP_NUM_THREADS=1`` on a loaded machine: two torch threads
competing with other jobs on 2 cores ran LeNet-300-100 12x slower here (the
JSON records the setting). The dense model is trained as for the hand-tuned results (benchmarks/compress_mnist.py:
same epochs, learning rate and shift augmentation) by ``deepcomp train``, with
``--val-fraction 0.1`` so the search's validation images stay unseen; it is
kept in out/budget/ (not a result, not committed). The search itself is one
``deepcomp compress`` command, timed; the test error is measured after it, by
``deepcomp eval``. Writes benchmarks/results/<arch>_budget.dcz (+ .meta.json)
and <arch>_budget.json: bytes, ratio, test error, validation loss, search time,
the per-layer settings and the commands.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DEEPCOMP = str(Path(sys.executable).with_name("deepcomp"))
DENSE = {"lenet300": ["--epochs", "40", "--lr", "0.05", "--augment", "2"],  # as compress_mnist.SETTINGS
         "lenet5": ["--epochs", "15", "--lr", "0.05", "--augment", "2"]}
MAX_LOSS = {"lenet300": 0.7, "lenet5": 0.3}  # the user's choice (the committed results were made with these)


def run(cmd: list[str]) -> subprocess.CompletedProcess:
    print("$", shlex.join(cmd), flush=True)
    return subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", choices=sorted(DENSE), required=True)
    ap.add_argument("--max-loss", type=float, help="percentage points (default per arch: see MAX_LOSS)")
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "mnist")
    args = ap.parse_args()
    data = ["--dataset", "mnist", "--data-dir", str(args.data_dir)]
    dense = ROOT / "out" / "budget" / f"{args.arch}_dense.pt"
    dense.parent.mkdir(parents=True, exist_ok=True)
    train_cmd = [DEEPCOMP, "train", *data, "--arch", args.arch, *DENSE[args.arch], "--val-fraction", "0.1",
                 "-o", str(dense)]
    if not dense.is_file():
        run(train_cmd)
    max_loss = args.max_loss if args.max_loss is not None else MAX_LOSS[args.arch]
    dcz = RESULTS / f"{args.arch}_budget.dcz"
    cmd = [DEEPCOMP, "compress", str(dense), "--max-loss", f"{max_loss:g}", *data, "-o", str(dcz)]
    t0 = time.time()
    out = run(cmd).stdout
    seconds = time.time() - t0
    print(out)
    ev = json.loads(run([DEEPCOMP, "eval", str(dcz), *data, "--json"]).stdout)
    dense_ev = json.loads(run([DEEPCOMP, "eval", str(dense), *data, "--json"]).stdout)
    meta = json.loads((dcz.parent / (dcz.name + ".meta.json")).read_text())
    b = meta["budget"]
    result = {
        "arch": args.arch, "max_loss_pp": max_loss, "dcz_bytes": ev["bytes"], "ratio": ev["ratio"],
        "test_error": ev["error"], "dense_test_error": dense_ev["error"],
        "val_images": b["val_images"], "dense_val_error": b["dense_val_error"],
        "final_val_error": b["final_val_error"], "val_loss_pp": b["val_loss_pp"],
        "within_budget": b["within_budget"], "search_seconds": round(seconds, 1),
        "phase_seconds": b["seconds"], "settings": b["settings"], "steps": b["steps"],
        "bits_tried": b["bits_scan"].get("tried"),
        "command": shlex.join(["deepcomp", *cmd[1:]]).replace(str(ROOT) + "/", ""),
        "dense_command": shlex.join(["deepcomp", *train_cmd[1:]]).replace(str(ROOT) + "/", ""),
        "benchmark": f".venv/bin/python benchmarks/compress_budget.py --arch {args.arch}",
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "load_average_at_end": os.getloadavg(),
    }
    (RESULTS / f"{args.arch}_budget.json").write_text(json.dumps(result, indent=1))
    print(json.dumps({k: result[k] for k in ("arch", "dcz_bytes", "ratio", "test_error", "val_loss_pp",
                                             "search_seconds")}))


if __name__ == "__main__":
    main()
