"""Start-up cost of the console script: `deepcomp --help` and each command's `--help`.

    .venv/bin/python benchmarks/startup.py [--runs 15]

Runs every command line ``--runs`` times in a fresh interpreter (as a user's
shell would) and reports the median and minimum wall time, plus what
``python -X importtime`` says the imports cost and whether torch was loaded.
The peer is `python -c "import torch"` on the same machine in the same run:
the cost the hardware commands no longer pay. Target: <= 0.4 s for `--help`
and every non-torch command. Writes benchmarks/results/startup.json.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
LINES = [[], ["verilog"], ["sim"], ["board"], ["golden"], ["rom"], ["stats"], ["train"], ["compress"]]


def wall(cmd: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, capture_output=True, check=True)
        times.append(time.perf_counter() - t0)
    return times


def import_profile(argv: list[str]) -> tuple[float, bool]:
    """(total import seconds, torch loaded) for ``deepcomp <argv> --help`` from -X importtime."""
    code = ("import sys\nfrom compressor.cli import main\ntry:\n    main(sys.argv[1:])\n"
            "except SystemExit:\n    pass\nprint('TORCH', 'torch' in sys.modules)\n")
    r = subprocess.run([sys.executable, "-X", "importtime", "-c", code, *argv, "--help"], cwd=ROOT,
                       capture_output=True, text=True, check=True)
    top = [int(m.group(1)) for m in re.finditer(r"^import time:\s+\d+\s+\|\s+(\d+)\s+\|\s{1,2}\S", r.stderr, re.M)]
    return sum(top) / 1e6, "TORCH True" in r.stdout


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    exe = Path(sys.executable).parent / "deepcomp"
    rows = []
    for argv in LINES:
        t = wall([str(exe), *argv, "--help"], args.runs)
        imp, torch = import_profile(argv)
        rows.append({"command": " ".join(["deepcomp", *argv, "--help"]), "median_s": round(statistics.median(t), 3),
                     "min_s": round(min(t), 3), "imports_s": round(imp, 3), "torch_loaded": torch})
        print(f"{rows[-1]['command']:<32} median {rows[-1]['median_s']:.3f} s  min {rows[-1]['min_s']:.3f} s  "
              f"imports {imp:.3f} s  torch {'yes' if torch else 'no'}")
    torch_t = wall([sys.executable, "-c", "import torch"], max(3, args.runs // 3))
    peer = {"command": "python -c 'import torch'", "median_s": round(statistics.median(torch_t), 3)}
    print(f"{peer['command']:<32} median {peer['median_s']:.3f} s  (the peer: what a torch import costs)")
    out = {"runs": args.runs, "rows": rows, "peer": peer, "target_s": 0.4,
           "all_non_torch_under_target": all(r["median_s"] <= 0.4 for r in rows),
           "command": f"python benchmarks/startup.py --runs {args.runs}"}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "startup.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
