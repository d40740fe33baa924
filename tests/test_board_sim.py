"""The real host path: ``deepcomp board infer`` (a subprocess, pyserial) against ``deepcomp board sim``.

Each board's core (UART at its real divisor for 3 Mbaud, receive FIFO,
controller, loader, flash boot, engine) runs in Verilator behind a
pseudo-terminal, started through the command line as a user would; the host
command then talks to it exactly as to a board. A tiny net (64 inputs, the
digits images, N = 1) keeps the builds short. Every class, logit and cycle
count is compared with ``deepcomp golden`` (with the board's FIFO depth).
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from compressor.contract.rom import build
from sim.testnets import extreme_net

pytestmark = pytest.mark.rtl

DEEPCOMP = str(Path(sys.executable).with_name("deepcomp"))
IMAGES = 40


def deepcomp(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([DEEPCOMP, *map(str, args)], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def roms(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("roms")
    image = build(extreme_net(np.random.default_rng(1234)), 1)
    bad = bytearray(image)
    bad[40] ^= 1
    paths = {"good": d / "tiny.rom", "bad": d / "bad.rom", "cache": d / "cache"}
    paths["good"].write_bytes(image)
    paths["bad"].write_bytes(bytes(bad))
    return paths


class Sim:
    """``deepcomp board sim`` as a subprocess; ``port`` is the pty it prints."""

    def __init__(self, board: str, roms: dict[str, Path], *extra: str) -> None:
        self.proc = subprocess.Popen(
            [DEEPCOMP, "board", "sim", board, "--rom", str(roms["good"]), "--build-dir", str(roms["cache"]),
             *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        assert "serving the board core on" in line, line + self.proc.stderr.read()
        self.port = line.split(" on ")[1].split()[0]

    def simulator_pid(self) -> int:
        """The verilated simulator (the CLI's child process), which owns the pty."""
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        assert len(children) == 1, children
        return int(children[0])

    def stop(self) -> str:
        self.proc.terminate()
        out, err = self.proc.communicate(timeout=20)
        return err


@pytest.fixture(scope="module", params=["icebreaker", "ulx3s"])
def sim(request, roms):
    s = Sim(request.param, roms)
    yield request.param, s
    assert s.stop() == ""  # a clean exit, no traceback


@functools.cache
def golden(rom: Path, board: str) -> dict:
    r = deepcomp("golden", rom, "--dataset", "digits", "--images", IMAGES, "--json", "--logits",
                 "--fifo-depth", 4 if board == "icebreaker" else 8, "--drain", 4 if board == "icebreaker" else 6)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def infer(port: str, *extra) -> subprocess.CompletedProcess:
    return deepcomp("board", "infer", "--port", port, "--dataset", "digits", "--images", IMAGES, *extra)


def test_load_and_infer_match_golden(sim, roms):
    board, s = sim
    if board == "icebreaker":  # blank flash: the device powers up empty and says so
        r = infer(s.port, "--json")
        assert r.returncode == 2 and r.stderr.count("\n") == 1
        assert f"{s.port}: the device has no ROM image" in r.stderr
        r = infer(s.port, "--rom", roms["bad"], "--json")  # a bit-flipped image is refused
        assert r.returncode == 2 and r.stderr.count("\n") == 1
        assert "device rejected the ROM image: ROM image CRC32 mismatch" in r.stderr
    r = infer(s.port, "--json", "--logits", *(["--rom", roms["good"]] if board == "icebreaker" else []))
    assert r.returncode == 0, r.stderr
    got, ref = json.loads(r.stdout), golden(roms["good"], board)
    assert got["images"] == IMAGES and got["pipeline_depth"] == 2
    assert got["predictions"] == ref["predictions"]
    assert got["logits"] == ref["logits"]
    assert got["cycles_each"] == ref["cycles_each"]
    assert got["error"] == ref["error"]


def test_resynchronises_after_garbage(sim, roms):
    """Junk, then half an INFER left by an interrupted host: the next command still works."""
    import serial

    board, s = sim
    with serial.Serial(s.port, 3_000_000, timeout=1) as port:
        port.write(bytes([0x00, 0x13, 0x77, 0xA5, ord("I")]) + bytes(20))
        port.flush()
    r = infer(s.port, "--json", *(["--rom", roms["good"]] if board == "icebreaker" else []))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["predictions"] == golden(roms["good"], board)["predictions"]


def test_silent_device_is_one_line_within_the_timeout(sim):
    _, s = sim
    pid = s.simulator_pid()
    os.kill(pid, signal.SIGSTOP)  # the device stops answering (its pty stays open)
    try:
        t = time.monotonic()
        r = infer(s.port, "--timeout", "1")
        took = time.monotonic() - t
    finally:
        os.kill(pid, signal.SIGCONT)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith(f"deepcomp: {s.port}: no answer from the device")
    assert took < 15  # connect: one short PING, the padding, one PING at --timeout; no hang


def test_icebreaker_boots_from_flash(roms):
    s = Sim("icebreaker", roms, "--flash")
    try:
        r = infer(s.port, "--json", "--logits")  # no --rom: the image came from the flash
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["logits"] == golden(roms["good"], "icebreaker")["logits"]
    finally:
        s.stop()


def test_no_port_and_bad_baud_are_one_line(tmp_path, roms):
    r = infer(str(tmp_path / "ttyNONE"))
    assert r.returncode == 2 and r.stderr == f"deepcomp: {tmp_path / 'ttyNONE'}: no such serial port\n"
    # 50 MHz / 4 Mbaud = 12.5: the divisor 12 makes 4.17 Mbaud, 4.2 % off
    r = deepcomp("board", "build", "ulx3s", "--rom", roms["good"], "--baud", "4000000", "-o", tmp_path / "b")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "(+4.2 %), more than 2 % off" in r.stderr, r.stderr
    assert not (tmp_path / "b").exists()


def test_stats_count_simulated_time(roms, tmp_path):
    stats = tmp_path / "stats.json"
    s = Sim("ulx3s", roms, "--stats", str(stats))
    r = infer(s.port, "--json")
    s.stop()
    assert r.returncode == 0, r.stderr
    st = json.loads(stats.read_text())
    assert st["divisor"] == 17 and st["frame_errors"] == 0
    per_image = 2 + 64  # INFER bytes sent per image
    assert st["bytes_in"] >= IMAGES * per_image
    # the link, not the engine, bounds it: simulated seconds >= bytes x 10 bits / baud
    assert (st["last_out_cycle"] - st["first_in_cycle"]) / st["clk_hz"] >= st["bytes_in"] * 10 / 3e6 * 0.98
