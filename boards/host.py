"""Host side of the UART protocol: load a ROM image, classify images, read status.

The link works on any object with ``read(n)`` / ``write(b)`` (a pyserial port,
or :class:`boards.emulator.GoldenDevice` in tests), so the same code talks to
the board and to the emulator.
"""

from __future__ import annotations

import struct
import time
from typing import Protocol

import numpy as np

from compressor.contract.errors import DeepcompError

from .protocol import (
    PING_FORMAT,
    PROTOCOL_VERSION,
    REPLY_SYNC,
    STATUS_TEXT,
    DeviceInfo,
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
    except (serial.SerialException, OSError, ValueError) as e:
        reason = "no such serial port" if "No such file" in str(e) or "could not open" in str(e) else str(e)
        raise DeepcompError(f"{port}: {reason}") from None


MAX_JUNK = 4096  # bytes skipped while looking for a reply's sync before giving up
RESYNC_PAD = 4096  # zero bytes that finish a half-received INFER of up to 4,094 inputs


class DeviceLink:
    """Request/response over ``port``; every failure is a one-line DeepcompError naming ``name``.

    Replies are found by their sync byte and echoed opcode, so stray bytes before
    a reply (a device that was mid-command, line noise) are skipped, up to
    :data:`MAX_JUNK` of them. :meth:`connect` resynchronises a device that sits
    in the middle of a command left by an interrupted host.
    """

    def __init__(self, port: Port, name: str) -> None:
        self.port, self.name = port, name

    def _io_error(self, e: Exception) -> DeepcompError:
        return DeepcompError(f"{self.name}: the port failed ({e}); is the device still connected?")

    def _write(self, data: bytes) -> None:
        try:
            self.port.write(data)
        except (OSError, ValueError) as e:  # serial.SerialException is an OSError
            raise self._io_error(e) from None

    def _read(self, n: int) -> bytes:
        try:
            data = self.port.read(n)
        except (OSError, ValueError) as e:
            raise self._io_error(e) from None
        if len(data) != n:
            raise DeepcompError(f"{self.name}: no answer from the device (got {len(data)} of {n} bytes "
                                "before the timeout)")
        return data

    def _expect(self, op: Op) -> Status:
        skipped = 0
        while True:
            b = self._read(1)[0]
            if b == REPLY_SYNC:
                o = self._read(1)[0]
                if o == op:
                    break
                skipped += 1
            skipped += 1
            if skipped > MAX_JUNK:
                raise DeepcompError(f"{self.name}: no reply to command {chr(op)!r} in {skipped} bytes of "
                                    "garbage (wrong --baud, or not a deepcomp device?)")
        code = self._read(1)[0]
        try:
            return Status(code)
        except ValueError:
            raise DeepcompError(f"{self.name}: unknown status {code}") from None

    def ping(self) -> DeviceInfo:
        self._write(cmd_ping())
        self._expect(Op.PING)
        info = DeviceInfo(*struct.unpack(PING_FORMAT, self._read(struct.calcsize(PING_FORMAT))))
        info.loaded = bool(info.loaded)
        if info.version != PROTOCOL_VERSION:
            raise DeepcompError(f"{self.name}: the device speaks protocol version {info.version}, this host "
                                f"{PROTOCOL_VERSION}: rebuild the bitstream with this deepcomp")
        return info

    def connect(self, first_timeout: float = 1.0) -> DeviceInfo:
        """PING, after draining stale input; if that gets no answer, pad the line and retry.

        Why padding: a device left mid-INFER by an interrupted host is still counting
        image bytes, and takes our PING as two of them. :data:`RESYNC_PAD` zero bytes
        finish any INFER (the device answers it, and skips the rest: 0 is not a sync
        byte); then a second PING finds the reply after the junk.
        """
        reset = getattr(self.port, "reset_input_buffer", None)
        if reset:
            reset()
        timeout = getattr(self.port, "timeout", None)
        try:
            if timeout is not None:
                self.port.timeout = min(timeout, first_timeout)
            try:
                return self.ping()
            except DeepcompError:
                self._write(bytes(RESYNC_PAD))
        finally:
            if timeout is not None:
                self.port.timeout = timeout
        try:
            return self.ping()
        except DeepcompError as e:
            raise DeepcompError(f"{e} -- the device does not answer PING even after resynchronising "
                                "(wrong --baud? mid-LOAD: reset the board)") from None

    def load(self, image: bytes) -> None:
        self._write(cmd_load(image))
        status = self._expect(Op.LOAD)
        if status != Status.OK:
            raise DeepcompError(f"{self.name}: device rejected the ROM image: {STATUS_TEXT[status]}")

    def status(self) -> tuple[Status, bool]:
        self._write(cmd_status())
        status = self._expect(Op.STATUS)
        return status, bool(self._read(1)[0])

    def send_infer(self, activations: np.ndarray) -> None:
        self._write(cmd_infer(activations))

    def read_infer(self) -> InferReply:
        status = self._expect(Op.INFER)
        head = self._read(3)
        n = struct.unpack("<H", head[1:3])[0]
        rest = self._read(4 * n + 4)
        return decode_infer_reply(bytes([REPLY_SYNC, Op.INFER, status]) + head + rest)

    def infer(self, activations: np.ndarray) -> InferReply:
        self.send_infer(activations)
        return self.read_infer()


def classify(link: DeviceLink, images: np.ndarray, labels: np.ndarray, depth: int = 1,
             progress: bool = True) -> dict:
    """Classify every image, keeping ``depth`` INFERs in flight (2: the next image crosses the
    link while the device computes), and time it: images/s end to end, latency per image."""
    from collections import deque

    from tqdm import tqdm

    x = images.reshape(len(images), -1)
    preds, logits, cycles, wall = [], [], [], []
    sent: deque[float] = deque()
    t_start = time.perf_counter()
    with tqdm(total=len(x), desc="board", unit="img", disable=None if progress else True) as bar:
        for i in range(len(x) + depth - 1):
            if i < len(x):
                link.send_infer(x[i])
                sent.append(time.perf_counter())
            if len(sent) == depth or i >= len(x):
                r = link.read_infer()
                wall.append(time.perf_counter() - sent.popleft())
                if r.status != Status.OK:
                    raise DeepcompError(f"{link.name}: inference failed: {STATUS_TEXT[r.status]}")
                preds.append(r.klass)
                logits.append(r.logits.tolist())
                cycles.append(r.cycles)
                bar.update()
    seconds = time.perf_counter() - t_start
    preds_a = np.array(preds)
    n = len(preds)
    return {"images": n, "error": float((preds_a != labels[:n]).mean()) if n else 0.0,
            "cycles": float(np.mean(cycles)) if n else 0.0, "pipeline_depth": depth,
            "images_per_s": n / seconds if n and seconds > 0 else 0.0,
            "latency_ms": 1000 * float(np.mean(wall)) if n else 0.0, "predictions": preds_a.tolist(),
            "logits": logits, "cycles_each": cycles}
