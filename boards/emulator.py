"""A protocol-level stand-in for the board, computing with the golden model.

It speaks docs/protocol.md byte for byte (CRC check on LOAD, parameter check,
INFER replies with logits and the golden cycle count), so the host code and
the protocol are tested without hardware; the RTL board top is tested
against the same framing in the cocotb board bench.
"""

from __future__ import annotations

import struct

import numpy as np

from compressor.contract.errors import FormatError
from compressor.contract.golden import decode_rom, infer
from compressor.contract.rom import parse

from .protocol import (
    CMD_SYNC,
    PROTOCOL_VERSION,
    DeviceInfo,
    InferReply,
    Op,
    Status,
    encode_infer_reply,
    encode_ping_reply,
    reply_header,
)


class GoldenDevice:
    """File-like device: ``write`` commands, ``read`` replies."""

    def __init__(self, n_pes: int, max_rom: int = 1 << 17, max_input: int = 1024, rx_buffer: int = 2048) -> None:
        self.n_pes, self.max_rom, self.max_input, self.rx_buffer = n_pes, max_rom, max_input, rx_buffer
        self.inbox = bytearray()
        self.outbox = bytearray()
        self.layers = None
        self.input_size = 0
        self.last = Status.OK

    def write(self, data: bytes) -> int:
        self.inbox += data
        self._process()
        return len(data)

    def read(self, n: int) -> bytes:
        out, self.outbox = bytes(self.outbox[:n]), self.outbox[n:]
        return out

    def _process(self) -> None:
        while len(self.inbox) >= 2:
            if self.inbox[0] != CMD_SYNC:
                del self.inbox[0]  # resynchronise
                continue
            op = self.inbox[1]
            need = {Op.PING: 2, Op.STATUS: 2, Op.LOAD: 6, Op.INFER: 2 + self.input_size}.get(op)
            if need is None:
                self.outbox += reply_header(op, Status.BAD_COMMAND)
                del self.inbox[:2]
                continue
            if op == Op.LOAD and len(self.inbox) >= 6:
                need += struct.unpack("<I", self.inbox[2:6])[0]
            if len(self.inbox) < need:
                return
            body, self.inbox = bytes(self.inbox[2:need]), self.inbox[need:]
            self._handle(Op(op), body)

    def _handle(self, op: Op, body: bytes) -> None:
        if op == Op.PING:
            self.outbox += encode_ping_reply(DeviceInfo(
                PROTOCOL_VERSION, self.n_pes, self.input_size if self.layers else self.max_input,
                self.layers is not None, self.rx_buffer))
        elif op == Op.STATUS:
            self.outbox += reply_header(op, self.last) + bytes([self.layers is not None])
        elif op == Op.LOAD:
            self.last = self._load(body[4:])
            self.outbox += reply_header(op, self.last)
        elif op == Op.INFER:
            if self.layers is None:
                self.last = Status.NOT_LOADED
                self.outbox += encode_infer_reply(InferReply(self.last, 0, np.zeros(0), 0))
                return
            res = infer(self.layers, np.frombuffer(body, dtype=np.uint8)[None, :])
            self.outbox += encode_infer_reply(InferReply(
                Status.OK, int(res["pred"][0]), res["logits"][0], int(res["cycles"][0])))

    def _load(self, image: bytes) -> Status:
        self.layers = None
        if len(image) > self.max_rom:
            return Status.TOO_LARGE
        try:
            rom = parse(image, "uart")
        except FormatError as e:
            return Status.BAD_CRC if "CRC" in str(e) else Status.PARAM_MISMATCH
        if rom.n_pes != self.n_pes or rom.signed_input or rom.input_size > self.max_input:
            return Status.PARAM_MISMATCH
        try:
            self.layers = decode_rom(rom, "uart")
        except FormatError:
            return Status.CORRUPT_STREAM
        self.input_size = rom.input_size
        return Status.OK
