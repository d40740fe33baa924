"""The device side of the UART protocol (docs/protocol.md) in RTL: :class:`DeviceController`.

::

    UARTRx.o ──rx──► DeviceController ──act──► Accelerator.i_act
    UARTTx.i ◄─tx───        │        ◄──res─── Accelerator.o_res
                         CRC32 (LOAD)

The ROM lives in block RAM initialised from the image at build time (the
engine's memories), so LOAD does not write memory (except the weight streams
of an engine with ``loadable_streams``: the runtime loader below): it streams
the image bytes through a CRC-32 (:class:`ImageCRC`, ``amaranth.lib.crc``)
and compares, at the end,

* CRC residue wrong (a transmission error or a corrupt file) -> ``BAD_CRC``,
  device *not loaded*;
* CRC good, but the image's own CRC32 (its last four bytes) differs from the
  CRC32 of the image built into the bitstream -> ``PARAM_MISMATCH`` ("rebuild
  the bitstream for this ROM"), device *not loaded*;
* otherwise ``OK``, *loaded*.

Power-up state: *loaded* (the bitstream's image is valid), so ``board infer``
works without ``--rom``. INFER forwards ``input_size`` bytes into the engine
and answers with its result; when not loaded it still consumes the
``input_size`` bytes (the host always sends them) and answers ``NOT_LOADED``
with no logits. Engine error codes are the protocol's status numbers
(``ERR_PARAMS`` = ``PARAM_MISMATCH``, ``ERR_STREAM`` = ``CORRUPT_STREAM``).
STATUS returns the last LOAD result or INFER error. A byte other than 0xA5
where a command should start is skipped.

Latency: every command is answered after its last byte is received -- PING,
STATUS: the first reply byte is offered to ``tx`` 2 cycles after the opcode
byte is accepted; LOAD: 2 cycles after the last image byte (the CRC's
1-cycle latency plus the check); INFER: the reply header is offered the
cycle after the engine's status beat, the logits stream straight through
(one 32-bit beat per 4 bytes, with back-pressure on the engine), and the
cycle count is sent last. At UART speed all of this is invisible: a byte
costs ``10 * divisor`` cycles.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from amaranth import Cat, Const, Module, ResetInserter, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.crc.catalog import CRC32_ISO_HDLC
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out, connect

from hdl.layouts import RESULT_LAYOUT
from hdl.uart import UARTRx, UARTTx

from .protocol import CMD_SYNC, PROTOCOL_VERSION, REPLY_SYNC, Op, Status


def image_crc(image: bytes) -> int:
    """The CRC32 an image carries in its last four bytes (little endian)."""
    return struct.unpack("<I", image[-4:])[0]


class ImageCRC(wiring.Component):
    """zlib's CRC-32 of the LOAD bytes: ``amaranth.lib.crc`` (``CRC32_ISO_HDLC``, 8-bit words).

    One byte per ``valid`` cycle; ``clear`` restarts (and wins over ``valid``). Latency 1:
    ``crc`` (final XOR applied) and ``ok`` show the bytes up to the previous cycle. ``ok`` is
    the processor's residue check (``match_detected``): high when the bytes so far end with
    their own CRC32, little endian, as the ROM image does, so the device needs no comparison
    of the last four bytes. ``clear`` is a synchronous reset of the processor rather than its
    ``start`` input, which would put a multiplexer in front of every CRC bit's XOR tree
    (~60 LUTs more on iCE40; the UP5K build is ~95 % full).
    """

    def __init__(self):
        super().__init__({"data": In(8), "valid": In(1), "clear": In(1), "crc": Out(32), "ok": Out(1)})

    def elaborate(self, platform) -> Module:
        m = Module()
        proc = CRC32_ISO_HDLC(data_width=8).create()
        m.submodules.proc = ResetInserter(self.clear)(proc)
        m.d.comb += [proc.data.eq(self.data), proc.valid.eq(self.valid),
                     self.crc.eq(proc.crc), self.ok.eq(proc.match_detected)]
        return m


class DeviceController(wiring.Component):
    """UART byte streams <-> the engine's ``i_act`` / ``o_res`` streams.

    Parameters are the bitstream's: ``rom_crc`` (CRC32 of the built-in image),
    ``n_pes``, ``input_size``, ``n_classes``, and ``rx_buffer``, the bytes the
    receive FIFO in front of ``rx`` holds (PING reports it, so the host knows
    whether it may send the next INFER while this one computes). With
    ``boot_length`` the controller comes out of reset in the middle of a LOAD of
    that many bytes (``booting`` high; the boot loader feeds ``rx``) and does not
    send that LOAD's reply: a boot is a LOAD without its first six bytes and
    its answer, for the price of a reset value. ``loaded`` is high while the
    device holds a valid image; ``error`` while the last status was not OK.
    """

    def __init__(self, rom_crc: int, n_pes: int, input_size: int, n_classes: int,
                 regions: list[tuple[int, int]] | None = None, load_signature=None,
                 rx_buffer: int = 0, boot_length: int = 0) -> None:
        self.rom_crc, self.n_pes, self.rx_buffer = rom_crc, n_pes, rx_buffer
        self.boot_length = boot_length
        self.input_size, self.n_classes = input_size, n_classes
        self.regions = regions
        loader = {"load": Out(load_signature)} if regions is not None else {}
        super().__init__({
            **loader,
            "rx": In(stream.Signature(8)),
            "tx": Out(stream.Signature(8)),
            "act": Out(stream.Signature(8)),
            "res": In(stream.Signature(RESULT_LAYOUT)),
            "loaded": Out(1, init=int(regions is None)),
            "error": Out(1),
            "booting": Out(1, init=int(boot_length > 0)),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.crc = crc = ImageCRC()

        # byte serializer: up to 4 bytes of `word`, LSB first
        word = Signal(32)
        nout = Signal(range(5))
        idle = nout == 0
        m.d.comb += [self.tx.valid.eq(~idle), self.tx.payload.eq(word[:8])]
        with m.If(self.tx.valid & self.tx.ready):
            m.d.sync += [word.eq(word >> 8), nout.eq(nout - 1)]

        def send(*fields):  # fields: (value, width in bytes); call only when `idle`
            parts = []
            for v, w in fields:
                if isinstance(v, int):
                    parts.append(Const(v, 8 * w))
                else:
                    b = Signal(8 * w)
                    m.d.comb += b.eq(v)  # zero-extend (or truncate) to the field width
                    parts.append(b)
            m.d.sync += [word.eq(Cat(*parts)),
                         nout.eq(sum(w for _, w in fields))]

        last = Signal(8)  # last status (STATUS command)
        loaded = Signal(init=int(self.regions is None))  # runtime-loaded streams: empty at power-up
        m.d.comb += [self.loaded.eq(loaded), self.error.eq(last != Status.OK)]
        op = Signal(8)
        count = Signal(32, init=self.boot_length)  # LOAD: image bytes still to come
        match = Signal()  # LOAD: the CRC32 of the image body equals the built-in image's
        cycles = Signal(32)
        rx_ok = self.rx.valid & self.rx.ready
        ends = [start + length for start, length in self.regions or []]
        pos = Signal(max(16, max(ends, default=0).bit_length() + 1))  # LOAD: index of the byte on `rx`

        if self.regions is not None:
            m.d.sync += self.load.valid.eq(0)  # one word per valid cycle (set in _stream_writes)
        booting = Signal(init=int(self.boot_length > 0))
        m.d.comb += self.booting.eq(booting)
        with m.FSM(init="LOAD_DATA" if self.boot_length else "SYNC"):
            with m.State("SYNC"):
                m.d.comb += self.rx.ready.eq(1)
                with m.If(self.rx.valid & (self.rx.payload == CMD_SYNC)):
                    m.next = "OP"
            with m.State("OP"):
                m.d.comb += self.rx.ready.eq(1)
                with m.If(self.rx.valid):
                    m.d.sync += [op.eq(self.rx.payload), pos.eq(0)]
                    m.next = "DISPATCH"
            with m.State("DISPATCH"):
                with m.If(idle):
                    with m.Switch(op):
                        with m.Case(Op.PING):
                            send((REPLY_SYNC, 1), (Op.PING, 1), (Status.OK, 1), (PROTOCOL_VERSION, 1))
                            m.next = "PING2"
                        with m.Case(Op.STATUS):
                            send((REPLY_SYNC, 1), (Op.STATUS, 1), (last, 1), (loaded, 1))
                            m.next = "SYNC"
                        with m.Case(Op.LOAD):
                            m.d.comb += crc.clear.eq(1)
                            m.d.sync += match.eq(0)
                            m.next = "LOAD_LEN"
                        with m.Case(Op.INFER):
                            m.next = "INFER_IN" if self.input_size else "INFER_WAIT"
                            with m.If(~loaded):
                                m.next = "SKIP_IN" if self.input_size else "NOT_LOADED"
                        with m.Default():
                            send((REPLY_SYNC, 1), (op, 1), (Status.BAD_COMMAND, 1))
                            m.next = "SYNC"
            with m.State("PING2"):
                with m.If(idle):
                    send((self.n_pes, 1), (self.input_size, 2), (loaded, 1))
                    m.next = "PING3"
            with m.State("PING3"):
                with m.If(idle):
                    send((self.rx_buffer, 2))
                    m.next = "SYNC"

            # LOAD: u32 length, then the image through the CRC
            with m.State("LOAD_LEN"):
                m.d.comb += self.rx.ready.eq(1)
                with m.If(rx_ok):  # little endian: shift in from the top
                    m.d.sync += [count.eq(Cat(count[8:], self.rx.payload)), pos.eq(pos + 1)]
                    with m.If(pos == 3):
                        m.d.sync += pos.eq(0)
                        m.next = "LOAD_DATA"
            with m.State("LOAD_DATA"):
                m.d.sync += loaded.eq(0)
                m.d.comb += [self.rx.ready.eq(count != 0), crc.data.eq(self.rx.payload),
                             crc.valid.eq(rx_ok)]
                with m.If(count == 0):
                    m.next = "LOAD_CHECK"
                with m.Elif(rx_ok):
                    m.d.sync += count.eq(count - 1)
                    # the last four bytes are the image's own CRC32: as the first of them
                    # arrives, the CRC so far is that of the body (the CRC's latency is 1)
                    with m.If(count == 4):
                        m.d.sync += match.eq(crc.crc == self.rom_crc)
                    self._stream_writes(m, pos)
            with m.State("LOAD_CHECK"):
                with m.If(idle):
                    result = Signal(8)
                    with m.If(~crc.ok):
                        m.d.comb += result.eq(Status.BAD_CRC)
                    with m.Elif(~match):
                        m.d.comb += result.eq(Status.PARAM_MISMATCH)
                    with m.Else():
                        m.d.comb += result.eq(Status.OK)
                        m.d.sync += loaded.eq(1)
                    m.d.sync += [last.eq(result), booting.eq(0)]
                    with m.If(~booting):
                        send((REPLY_SYNC, 1), (Op.LOAD, 1), (result, 1))
                    m.next = "SYNC"

            # INFER
            with m.State("SKIP_IN"):
                m.d.comb += self.rx.ready.eq(1)
                with m.If(rx_ok):
                    m.d.sync += pos.eq(pos + 1)
                    with m.If(pos == self.input_size - 1):
                        m.next = "NOT_LOADED"
            with m.State("NOT_LOADED"):
                with m.If(idle):
                    m.d.sync += [last.eq(Status.NOT_LOADED), cycles.eq(0)]
                    send((REPLY_SYNC, 1), (Op.INFER, 1), (Status.NOT_LOADED, 1), (0, 1))
                    m.next = "INFER_N0"
            with m.State("INFER_IN"):
                m.d.comb += [self.act.valid.eq(self.rx.valid), self.act.payload.eq(self.rx.payload),
                             self.rx.ready.eq(self.act.ready)]
                with m.If(rx_ok):
                    m.d.sync += pos.eq(pos + 1)
                    with m.If(pos == self.input_size - 1):
                        m.next = "INFER_WAIT"
            with m.State("INFER_WAIT"):  # the engine's status beat
                m.d.comb += self.res.ready.eq(idle)
                with m.If(self.res.valid & idle):
                    err = self.res.payload.data[16:24]
                    with m.If(err != Status.OK):
                        m.d.sync += last.eq(err)
                    send((REPLY_SYNC, 1), (Op.INFER, 1), (err, 1), (self.res.payload.data[:8], 1))
                    m.next = "INFER_CYCLES"
            with m.State("INFER_CYCLES"):
                m.d.comb += self.res.ready.eq(idle)
                with m.If(self.res.valid & idle):
                    m.d.sync += cycles.eq(self.res.payload.data)
                    with m.If(self.res.payload.last):  # error: no logits
                        send((0, 2))
                        m.next = "INFER_TAIL"
                    with m.Else():
                        send((self.n_classes, 2))
                        m.next = "INFER_LOGITS"
            with m.State("INFER_N0"):
                with m.If(idle):
                    send((0, 2))
                    m.next = "INFER_TAIL"
            with m.State("INFER_LOGITS"):
                m.d.comb += self.res.ready.eq(idle)
                with m.If(self.res.valid & idle):
                    send((self.res.payload.data, 4))
                    with m.If(self.res.payload.last):
                        m.next = "INFER_TAIL"
            with m.State("INFER_TAIL"):
                with m.If(idle):
                    send((cycles, 4))
                    m.next = "SYNC"
        return m

    def _stream_writes(self, m: Module, pos: Signal) -> None:
        """Runtime loader: the image byte at ``pos`` is on ``rx``; write PE stream words.

        Region q's byte ``r`` (``r`` = ``pos`` - its offset) is byte ``r mod 2`` of
        16-bit word ``r >> 1`` (high byte first, as hdl.params.contents lays words
        out), which lives in bank ``(r >> 1) & 1`` at address ``r >> 2``. A word is
        written the cycle after its low byte arrives (``load.valid`` for one cycle: the
        engine's load stream is always ready); the high byte waits in ``hi``. Writes
        happen before the CRC is known; a bad image leaves the device *not loaded*, so
        its words are never used.
        """
        m.d.sync += pos.eq(pos + 1)
        if self.regions is None:
            return
        hi = Signal(8)
        m.d.sync += hi.eq(self.rx.payload)
        for q, (start, length) in enumerate(self.regions):
            rel = Signal(len(pos), name=f"rel{q}")
            m.d.comb += rel.eq(pos - start)
            with m.If((pos >= start) & (pos < start + length) & rel[0]):
                ld = self.load.payload
                m.d.sync += [self.load.valid.eq(1), ld.pe.eq(q), ld.odd.eq(rel[1]),
                             ld.addr.eq(rel >> 2), ld.data.eq(Cat(self.rx.payload, hi))]


class RxBuffer(wiring.Component):
    """The receive FIFO: ``depth`` (a power of two) bytes in block RAM between the UART and the controller.

    Why not ``amaranth.lib.fifo.SyncFIFOBuffered``: its two level counters cost
    78 LUT4 on iCE40 for 1 KB, this ring of two pointers 30-40, and the UP5K build
    is within a few per cent of full. Pointers carry one extra bit, so full and
    empty differ without a count. ``w.ready`` is low when full (the UART receiver
    then drops the byte and flags an overrun). Latency: a byte written in cycle t is
    offered on ``r`` in cycle t + 2 (memory write, then the registered read).
    """

    def __init__(self, depth: int) -> None:
        if depth < 2 or depth & (depth - 1):
            raise ValueError(f"receive buffer of {depth} bytes: must be a power of two >= 2")
        self.depth = depth
        super().__init__({"w": In(stream.Signature(8)), "r": Out(stream.Signature(8))})

    def elaborate(self, platform) -> Module:
        m = Module()
        k = self.depth.bit_length() - 1
        m.submodules.mem = mem = Memory(shape=8, depth=self.depth, init=[])
        wr = mem.write_port()
        rd = mem.read_port(transparent_for=())
        produce, consume = Signal(k + 1), Signal(k + 1)
        empty = produce == consume
        full = (produce[:k] == consume[:k]) & (produce[k] != consume[k])
        m.d.comb += [self.w.ready.eq(~full), wr.addr.eq(produce[:k]), wr.data.eq(self.w.payload),
                     wr.en.eq(self.w.valid & ~full), rd.addr.eq(consume[:k]), self.r.payload.eq(rd.data)]
        with m.If(self.w.valid & ~full):
            m.d.sync += produce.eq(produce + 1)
        fetch = ~empty & (~self.r.valid | self.r.ready)
        m.d.comb += rd.en.eq(fetch)
        with m.If(fetch):
            m.d.sync += [consume.eq(consume + 1), self.r.valid.eq(1)]
        with m.Elif(self.r.ready):
            m.d.sync += self.r.valid.eq(0)
        return m


def rx_buffer_depth(input_size: int) -> int:
    """Bytes of the receive FIFO: a whole INFER command (2 + ``input_size``) and some slack, as 2**k.

    Why a whole command: the host pipelines (docs/protocol.md), so the next image
    arrives while the engine computes this one; a power of two keeps the FIFO's
    pointers plain counters (784-byte MNIST: 1024 bytes, two iCE40 EBRs, one DP16KD).
    """
    return 1 << (input_size + 2 + RX_SLACK - 1).bit_length()


RX_SLACK = 16  # bytes beyond one INFER command: garbage or a PING queued behind it


@dataclass(frozen=True)
class Boot:
    """Boot from SPI flash (boards.flashboot): the image at ``offset``; ``wake_cycles`` is tRES1."""

    offset: int
    wake_cycles: int


class BoardCore(wiring.Component):
    """UART pins + receive FIFO + :class:`DeviceController` + the engine for ``image``: the board top minus clocking.

    ``divisor`` is clock cycles per UART bit. The board tops, the cocotb board
    bench (sim/bench_board.py) and ``deepcomp board sim`` use this same block.
    The receive FIFO (:func:`rx_buffer_depth` bytes) sits between the UART and the
    controller, so bytes that arrive while the engine computes wait instead of
    overrunning the receiver. With ``boot`` the core also has SPI flash pins
    (``flash_cs`` active high, ``flash_sck``, ``flash_copi``, ``flash_cipo``; ``booted``) and
    LOADs the image from flash at power-up (:class:`boards.flashboot.FlashBoot` feeds
    the controller, which starts inside that LOAD); bytes from the host wait in the
    FIFO until the boot is over.
    """

    def __init__(self, image: bytes, divisor: int, params=None, boot: Boot | None = None) -> None:
        from compressor.contract.rom import parse

        self.image, self.divisor, self.boot = image, divisor, boot
        self.rom = parse(image, "<rom>")
        self.engine_params = params
        self.rx_buffer = rx_buffer_depth(self.rom.input_size)
        flash = ({"flash_cs": Out(1), "flash_sck": Out(1), "flash_copi": Out(1), "flash_cipo": In(1),
                  "booted": Out(1)} if boot else {})
        # explicit signature: with `from __future__ import annotations` Amaranth cannot read
        # In/Out class annotations
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1), "loaded": Out(1),
                          "error": Out(1), "running": Out(1), **flash})

    def elaborate(self, platform) -> Module:
        from hdl.layouts import LoadSignature
        from hdl.top import Accelerator

        m = Module()
        rom = self.rom
        m.submodules.urx = urx = UARTRx(self.divisor)
        m.submodules.utx = utx = UARTTx(self.divisor)
        m.submodules.engine = eng = Accelerator(rom, self.engine_params)
        m.submodules.rx_fifo = fifo = RxBuffer(self.rx_buffer)
        loadable = eng.params.loadable_streams
        regions = ([(o, len(s)) for o, s in zip(rom.stream_offsets, rom.streams, strict=True)]
                   if loadable else None)
        m.submodules.ctrl = ctrl = DeviceController(
            image_crc(self.image), rom.n_pes, rom.input_size, rom.n_classes,
            regions=regions, load_signature=LoadSignature(eng.params) if loadable else None,
            rx_buffer=self.rx_buffer, boot_length=len(self.image) if self.boot else 0)
        if loadable:
            connect(m, ctrl.load, eng.load)
        m.d.comb += [urx.rx.eq(self.rx), self.tx.eq(utx.tx), self.loaded.eq(ctrl.loaded),
                     self.error.eq(ctrl.error), self.running.eq(eng.running)]
        connect(m, urx.o, fifo.w)
        connect(m, ctrl.tx, utx.i)
        if self.boot is None:
            connect(m, fifo.r, ctrl.rx)
        else:
            self._boot(m, fifo.r, ctrl)
        connect(m, ctrl.act, eng.i_act)
        connect(m, eng.o_res, ctrl.res)
        return m

    def _boot(self, m: Module, host: stream.Interface, ctrl: DeviceController) -> None:
        """The flash reader feeds the controller while it boots, then the host's FIFO does."""
        from .flashboot import FlashBoot

        m.submodules.boot = boot = FlashBoot(self.boot.offset, self.boot.wake_cycles)
        m.d.comb += [self.booted.eq(~ctrl.booting), boot.stop.eq(~ctrl.booting),
                     self.flash_cs.eq(boot.cs), self.flash_sck.eq(boot.sck),
                     self.flash_copi.eq(boot.copi), boot.cipo.eq(self.flash_cipo)]
        with m.If(ctrl.booting):
            m.d.comb += [ctrl.rx.valid.eq(boot.o.valid), ctrl.rx.payload.eq(boot.o.payload),
                         boot.o.ready.eq(ctrl.rx.ready)]
        with m.Else():
            m.d.comb += [ctrl.rx.valid.eq(host.valid), ctrl.rx.payload.eq(host.payload),
                         host.ready.eq(ctrl.rx.ready)]
