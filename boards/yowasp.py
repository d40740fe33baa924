"""Run an Amaranth board build with the YoWASP tools from pip, and read nextpnr's report.

Shared by the ULX3S and iCEBreaker builds: both need the same three things --
the YoWASP entry points found next to this interpreter (a venv need not be
activated; :func:`hdl.toolchain.find_tool`), Amaranth's build plan executed
locally (``Platform.build`` would insist on the board's programmer being
installed), and the utilisation and post-route Fmax parsed from nextpnr's log.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from compressor.contract.errors import DeepcompError
from hdl.toolchain import find_tool, patched_environ, tool_path

NAME = "deepcomp"

_UTIL = re.compile(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%", re.M)
_FMAX = re.compile(r"Max frequency for clock\s+'([^']+)': ([\d.]+) MHz \((PASS|FAIL) at ([\d.]+) MHz\)")


def parse_nextpnr_log(text: str) -> dict:
    """Utilisation (last report) and post-route Fmax (the last figure per clock) from nextpnr's log."""
    util = {}
    for name, used, avail in _UTIL.findall(text):
        util[name] = (int(used), int(avail))
    fmax = {}
    for clk, f, _, _ in _FMAX.findall(text):
        fmax[clk] = float(f)
    return {"util": util, "fmax": fmax}


def run_build(board: str, platform, top, out_dir: Path, tool_env: dict[str, str], **build_kwargs) -> dict:
    """Elaborate ``top`` for ``platform`` and run yosys / nextpnr / packer in ``out_dir``.

    ``tool_env`` maps Amaranth's tool variables to the YoWASP binaries (values
    already in the environment win). nextpnr runs with ``--timing-allow-fail``
    so a bitstream and a report exist even when Fmax < target (the report says
    so). Returns the parsed log (``util``, ``fmax``), ``seconds`` and ``log``.
    """
    for tool in tool_env.values():
        if tool.startswith("yowasp-"):
            find_tool(tool, board)  # one line naming the pip package if it is missing
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    env = {k: os.environ.get(k, v) for k, v in tool_env.items()}
    env["PATH"] = tool_path()
    opts = " ".join(filter(None, ["--timing-allow-fail", build_kwargs.pop("nextpnr_opts", "")]))
    t0 = time.perf_counter()
    with patched_environ(env):
        try:
            # Amaranth runs the build script in out_dir (YoWASP tools only see the cwd)
            plan = platform.build(top, name=NAME, do_build=False, nextpnr_opts=opts, **build_kwargs)
            plan.execute_local(str(out_dir))
        except Exception as e:  # noqa: BLE001  (yosys/nextpnr failures surface as CalledProcessError)
            log = out_dir / f"{NAME}.tim"
            why = _last_error(log) or str(e)
            raise DeepcompError(f"{board}: bitstream build failed ({why}); see {log}") from None
    log = out_dir / f"{NAME}.tim"
    rep = parse_nextpnr_log(log.read_text() if log.exists() else "")
    rep.update(seconds=round(time.perf_counter() - t0, 1), log=str(log))
    return rep


def _last_error(log: Path) -> str | None:
    """nextpnr's first ``ERROR:`` line (e.g. a design that does not fit the device)."""
    if not log.exists():
        return None
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("ERROR:"):
            return line[len("ERROR:"):].strip()
    return None


def used(util: dict, cell: str) -> tuple[int, int]:
    """(used, available) of a nextpnr cell type, (0, 0) if the log has no such line."""
    return util.get(cell, (0, 0))
