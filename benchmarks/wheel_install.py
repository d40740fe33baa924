"""The wheel and the sdist as a stranger gets them: build, install in a fresh venv, use.

    .venv/bin/python benchmarks/wheel_install.py [--keep DIR] [--sim]

1. ``python -m build`` makes the sdist and the wheel from this checkout;
2. a fresh venv (no system site-packages) installs the wheel with its
   ``torch`` and ``dev`` extras, from pip alone;
3. from an empty temporary folder, far from any checkout: ``deepcomp
   --version``, ``--help`` and the README's quick start on the offline digits
   (train, compress, eval, rom, golden, verilog; with ``--sim`` the Verilator
   run too), each command's exit status and time recorded;
4. the unpacked sdist collects its whole test suite (``pytest --collect-only``).

Takes 2-4 minutes (the install dominates), so it lives here and not in
`make test`; tests/test_wheel.py checks the built files' contents in CI.
Writes benchmarks/results/packaging.json.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
QUICK_START = [
    "deepcomp --version",
    "deepcomp --help",
    "deepcomp train --dataset digits --epochs 30 -o dense.pt",
    "deepcomp compress dense.pt -o model.dcz --density 0.3,0.3,0.6 --prune-epochs 5 --final-epochs 10 "
    "--finetune-epochs 10",
    "deepcomp eval model.dcz",
    "deepcomp rom model.dcz --pes 4 -o model.rom",
    "deepcomp golden model.rom --dataset digits",
    "deepcomp verilog --rom model.rom --pes 4 -o verilog/",
]
SIM = "deepcomp sim --rom model.rom --pes 4 --dataset digits --images 20"


def step(cmd: list[str], cwd: Path, env: dict | None = None) -> dict:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    out = {"command": shlex.join(cmd), "exit": r.returncode, "seconds": round(time.perf_counter() - t0, 1),
           "last_line": (r.stdout.strip().splitlines() or [""])[-1][:200]}
    if r.returncode:
        out["stderr"] = r.stderr[-2000:]
    print(f"[{out['exit']}] {out['seconds']:6.1f} s  {out['command']}", flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keep", type=Path, help="work here and keep it (default: a temporary folder)")
    ap.add_argument("--sim", action="store_true", help="also run the quick start's Verilator simulation")
    args = ap.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="deepcomp-pkg-"))
    work.mkdir(parents=True, exist_ok=True)
    dist, venv, empty = work / "dist", work / "venv", work / "empty"
    empty.mkdir(exist_ok=True)
    steps = [step([sys.executable, "-m", "build", "--outdir", str(dist), str(ROOT)], work)]
    wheel = next(dist.glob("*.whl"))
    sdist = next(dist.glob("*.tar.gz"))
    steps.append(step([sys.executable, "-m", "venv", str(venv)], work))
    steps.append(step([str(venv / "bin" / "pip"), "install", "-q", f"{wheel}[torch,dev]"], work))
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(work)}
    for line in QUICK_START + ([SIM] if args.sim else []):
        steps.append(step(shlex.split(line), empty, env))
    with tarfile.open(sdist) as tf:
        tf.extractall(work / "sdist", filter="data")
    src = next((work / "sdist").iterdir())
    collect = step([str(venv / "bin" / "python"), "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
                   src, env)
    steps.append(collect)
    out = {"wheel": wheel.name, "wheel_bytes": wheel.stat().st_size, "sdist": sdist.name,
           "sdist_bytes": sdist.stat().st_size, "steps": steps, "sdist_collect": collect["last_line"],
           "all_ok": all(s["exit"] == 0 for s in steps),
           "command": "python benchmarks/wheel_install.py" + (" --sim" if args.sim else "")}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "packaging.json").write_text(json.dumps(out, indent=1) + "\n")
    print(f"sdist: {out['sdist_collect']}; all ok: {out['all_ok']}")
    return 0 if out["all_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
