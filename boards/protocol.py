"""UART host protocol between ``deepcomp board`` and the board top (docs/protocol.md).

Every command is ``0xA5, opcode, arguments``; every reply is ``0x5A, opcode,
status, payload``. The fixed sync bytes let either side resynchronise after
garbage, and the echoed opcode pairs each reply with its command. Integers
are little endian. This module is the single definition of the framing: the
host, the protocol emulator and the cocotb board test all use it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

CMD_SYNC = 0xA5
REPLY_SYNC = 0x5A
PROTOCOL_VERSION = 2  # 2: PING reports the device's receive buffer (pipelined INFER)


class Op(IntEnum):
    PING = ord("P")  # -> version u8, n_pes u8, max_input u16, loaded u8, rx_buffer u16
    LOAD = ord("L")  # u32 length, image bytes -> status
    INFER = ord("I")  # input_size bytes -> status, class u8, n u16, n x i32 logits, cycles u32
    STATUS = ord("S")  # -> status (last error), loaded u8


class Status(IntEnum):
    OK = 0
    BAD_CRC = 1  # image CRC32 mismatch: the image is not used
    PARAM_MISMATCH = 2  # header does not fit the RTL's parameters
    TOO_LARGE = 3  # image larger than the device's ROM memory
    NOT_LOADED = 4  # INFER before a good LOAD
    CORRUPT_STREAM = 5  # invalid Huffman code / index during inference
    BAD_COMMAND = 6


STATUS_TEXT = {
    Status.OK: "ok",
    Status.BAD_CRC: "ROM image CRC32 mismatch (image rejected)",
    Status.PARAM_MISMATCH: "ROM image does not fit the bitstream's parameters",
    Status.TOO_LARGE: "ROM image larger than the device memory",
    Status.NOT_LOADED: "no ROM image loaded",
    Status.CORRUPT_STREAM: "corrupt weight stream detected during inference",
    Status.BAD_COMMAND: "device did not understand the command",
}


def cmd_ping() -> bytes:
    return bytes([CMD_SYNC, Op.PING])


def cmd_status() -> bytes:
    return bytes([CMD_SYNC, Op.STATUS])


def cmd_load(image: bytes) -> bytes:
    return bytes([CMD_SYNC, Op.LOAD]) + struct.pack("<I", len(image)) + image


def cmd_infer(activations: np.ndarray) -> bytes:
    return bytes([CMD_SYNC, Op.INFER]) + np.asarray(activations, dtype=np.uint8).tobytes()


@dataclass
class InferReply:
    status: Status
    klass: int
    logits: np.ndarray
    cycles: int


PING_FORMAT = "<BBHBH"  # the PING reply's payload: version, n_pes, max_input, loaded, rx_buffer


@dataclass
class DeviceInfo:
    """What PING says: ``rx_buffer`` is how many bytes the device takes while it computes."""

    version: int
    n_pes: int
    max_input: int
    loaded: bool
    rx_buffer: int

    def pipeline_depth(self, command_bytes: int) -> int:
        """Commands the host may keep in flight: 2 when the device buffers a whole one, else 1.

        Why at most 2: the device consumes a command's bytes before it computes, so
        while it works on command k only k+1's bytes wait in its buffer, as long as the
        host sends k+2 after k's reply.
        """
        return 2 if self.rx_buffer >= command_bytes else 1


def encode_ping_reply(info: DeviceInfo) -> bytes:
    return reply_header(Op.PING, Status.OK) + struct.pack(
        PING_FORMAT, info.version, info.n_pes, info.max_input, info.loaded, info.rx_buffer)


def reply_header(op: Op, status: Status) -> bytes:
    return bytes([REPLY_SYNC, op, status])


def encode_infer_reply(r: InferReply) -> bytes:
    logits = np.asarray(r.logits, dtype="<i4")
    return (reply_header(Op.INFER, r.status) + struct.pack("<BH", r.klass, logits.size)
            + logits.tobytes() + struct.pack("<I", r.cycles))


def reply_length(op: Op, n_classes: int) -> int:
    """Bytes of the whole reply to ``op`` (sync, op and status included)."""
    return 3 + {Op.PING: 7, Op.LOAD: 0, Op.STATUS: 1, Op.INFER: 3 + 4 * n_classes + 4}[op]


def decode_infer_reply(raw: bytes) -> InferReply:
    status = Status(raw[2])
    klass, n = struct.unpack("<BH", raw[3:6])
    logits = np.frombuffer(raw[6 : 6 + 4 * n], dtype="<i4").astype(np.int64)
    (cycles,) = struct.unpack("<I", raw[6 + 4 * n : 10 + 4 * n])
    return InferReply(status, klass, logits, cycles)
