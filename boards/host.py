"""Host side of the UART protocol: load a ROM image, classify images, read status.

The link works on any object with ``read(n)`` / ``write(b)`` (a pyserial port,
or :class:`boards.emulator.GoldenDevice` in tests), so the same code talks to
the board and to the emulator.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from compressor.contract.errors import DeepcompError

from .protocol import (
    REPLY_SYNC,
    STATUS_TEXT,
    InferReply,
    Op,
    Status,
    cmd_infer,
    cmd_load,
    cmd_ping,
    cmd_status,
    decode_infer_reply,
)


class Port(Protocol):
    def read(self, n: int) -> bytes: ...
    def write(self, data: bytes) -> int | None: ...


def open_serial(port: str, baud: int, timeout: float = 5.0) -> Port:
    """Open a serial port, or fail with one line naming it."""
    import serial

    try:
        return serial.Serial(port, baud, timeout=timeout)
    except serial.SerialException as e:
        reason = "no such serial port" if "No such file" in str(e) or "could not open" in str(e) else str(e)
        raise DeepcompError(f"{port}: {reason}") from None


@dataclass
class DeviceInfo:
    version: int
    n_pes: int
    max_input: int
    loaded: bool


class DeviceLink:
    """Request/response over ``port``; every failure is a one-line DeepcompError naming ``name``."""

    def __init__(self, port: Port, name: str) -> None:
        self.port, self.name = port, name

    def _read(self, n: int) -> bytes:
        data = self.port.read(n)
        if len(data) != n:
            raise DeepcompError(f"{self.name}: no answer from the device (got {len(data)} of {n} bytes)")
        return data

    def _expect(self, op: Op) -> Status:
        head = self._read(3)
        if head[0] != REPLY_SYNC or head[1] != op:
            raise DeepcompError(f"{self.name}: garbled reply {head.hex()} to command {chr(op)!r}")
        try:
            return Status(head[2])
        except ValueError:
            raise DeepcompError(f"{self.name}: unknown status {head[2]}") from None

    def ping(self) -> DeviceInfo:
        self.port.write(cmd_ping())
        self._expect(Op.PING)
        version, n_pes, max_input, loaded = struct.unpack("<BBHB", self._read(5))
        return DeviceInfo(version, n_pes, max_input, bool(loaded))

    def load(self, image: bytes) -> None:
        self.port.write(cmd_load(image))
        status = self._expect(Op.LOAD)
        if status != Status.OK:
            raise DeepcompError(f"{self.name}: device rejected the ROM image: {STATUS_TEXT[status]}")

    def status(self) -> tuple[Status, bool]:
        self.port.write(cmd_status())
        status = self._expect(Op.STATUS)
        return status, bool(self._read(1)[0])

    def infer(self, activations: np.ndarray) -> InferReply:
        self.port.write(cmd_infer(activations))
        status = self._expect(Op.INFER)
        head = self._read(3)
        n = struct.unpack("<H", head[1:3])[0]
        rest = self._read(4 * n + 4)
        return decode_infer_reply(bytes([REPLY_SYNC, Op.INFER, status]) + head + rest)


def classify(link: DeviceLink, images: np.ndarray, labels: np.ndarray, progress: bool = True) -> dict:
    """Send every image, collect predictions, and time the round trips."""
    from tqdm import tqdm

    preds, cycles, wall = [], [], []
    for x in tqdm(images.reshape(len(images), -1), desc="board", unit="img", disable=None if progress else True):
        t0 = time.perf_counter()
        r = link.infer(x)
        wall.append(time.perf_counter() - t0)
        if r.status != Status.OK:
            raise DeepcompError(f"{link.name}: inference failed: {STATUS_TEXT[r.status]}")
        preds.append(r.klass)
        cycles.append(r.cycles)
    preds_a = np.array(preds)
    return {"images": len(preds), "error": float((preds_a != labels[: len(preds)]).mean()) if preds else 0.0,
            "cycles": float(np.mean(cycles)) if cycles else 0.0,
            "latency_ms": 1000 * float(np.mean(wall)) if wall else 0.0, "predictions": preds_a.tolist()}
