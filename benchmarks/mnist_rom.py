"""The committed MNIST models laid out as ROM images, as a user would: one helper for the benchmarks.

Why through ``deepcomp rom`` and not the library: the benchmarks record the
command that made each ROM, so the numbers can be reproduced from the shell.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
BIN = Path(sys.executable).parent / "deepcomp"
MODELS = {"lenet300": RESULTS / "lenet300_mnist.dcz", "lenet5": RESULTS / "lenet5_mnist.dcz"}


def make_rom(model: Path, n: int, out: Path, data_dir: Path, max_len: int | None = None) -> str:
    """``deepcomp rom MODEL --pes N -o OUT`` calibrated on MNIST; the command as typed from the project root.

    One clear error line (the command's own) if it fails, no traceback.
    """
    extra = [] if max_len is None else ["--max-code-len", str(max_len)]
    cmd = [str(BIN), "rom", str(model), "--pes", str(n), "-o", str(out), "--dataset", "mnist",
           "--data-dir", str(data_dir), *extra]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if r.returncode != 0:
        raise SystemExit(f"deepcomp rom {model.name}: {r.stderr.strip()}")
    shown = [".venv/bin/deepcomp", "rom", str(model.resolve().relative_to(ROOT)), "--pes", str(n), "-o", out.name,
             "--dataset", "mnist", "--data-dir", str(data_dir), *extra]
    return " ".join(shlex.quote(c) for c in shown)
