"""``deepcomp board sim``: a board's whole core in Verilator, served on a pseudo-terminal.

The core is exactly what the bitstream holds (``boards.<board>.core``: UART at
the real divisor of the board's clock and baud rate, receive FIFO, protocol
controller, loader, flash boot on the iCEBreaker, engine); only the PLL and the
pins are missing. ``boards/boardsim.cpp`` ticks it and plays the USB-UART
bridge on a pty, so ``deepcomp board infer --port <pty>`` talks to it through
pyserial as to a board. Builds are cached by the hash of the Verilog and the
harness, so a second ``board sim`` of the same ROM starts at once.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from compressor.contract.errors import DeepcompError

HARNESS = Path(__file__).with_name("boardsim.cpp")
TOP = "board_core"


@dataclass(frozen=True)
class SimBinary:
    """A built simulator and the link it models."""

    path: Path
    board: str
    clk_hz: float
    baud: int
    divisor: int
    boot: bool  # the core boots from (simulated) SPI flash


def build(board: str, image: bytes, freq_mhz: float | None, baud: int, build_root: Path | None = None) -> SimBinary:
    """Verilate ``board``'s core for ``image`` with the C++ harness (cached); the binary."""
    from amaranth.back import verilog

    from sim.runner import build_harness

    from . import icebreaker, ulx3s

    mod = {"icebreaker": icebreaker, "ulx3s": ulx3s}[board]
    core, clk_hz = mod.core(image, mod.DEFAULT_MHZ if freq_mhz is None else freq_mhz, baud)
    text = verilog.convert(core, name=TOP)  # once: it names the cache entry and is what gets built
    root = Path(build_root) if build_root else Path("build") / "board_sim"
    exe = build_harness(text, HARNESS, TOP, root, "boardsim", ["-DHAS_FLASH"] if core.boot else [],
                        what=f"the {board} board core", prefix=board)
    return SimBinary(exe, board, clk_hz, baud, core.divisor, core.boot is not None)


class Served:
    """A running simulator: ``port`` is the pty path; ``stop()`` ends it and returns its stats."""

    def __init__(self, binary: SimBinary, stats: Path | None = None, link: Path | None = None,
                 flash: bytes | None = None, flash_offset: int = 0, workdir: Path | None = None) -> None:
        args = [str(binary.path), "--clk-hz", repr(binary.clk_hz), "--baud", str(binary.baud),
                "--divisor", str(binary.divisor)]
        if stats:
            args += ["--stats", str(stats)]
        if link:
            args += ["--link", str(link)]
        if flash is not None:
            if not binary.boot:
                raise DeepcompError(f"{binary.board}: this board does not boot from flash")
            fpath = Path(workdir or binary.path.parent) / "flash.bin"
            fpath.write_bytes(flash)
            args += ["--flash", str(fpath), "--flash-offset", str(flash_offset)]
        self.stats = stats
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().strip()
        if not line:
            self.proc.wait()
            raise DeepcompError(f"{binary.board}: the board simulator exited before opening a pty "
                                f"(exit status {self.proc.returncode})")
        self.port = line

    def stop(self, timeout: float = 10) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> Served:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
