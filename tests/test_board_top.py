"""The board core (UART + DeviceController + engine) under Verilator, spoken to with boards/protocol.py.

One build of a tiny ROM (sim.testnets.extreme_net, 64 inputs, N = 2) per
variant and one simulator run carrying every command; the replies are
checked here. Variants: ``bram`` (ULX3S: the image is baked into the
bitstream, the device powers up loaded) and ``spram`` (iCEBreaker: the weight
streams live in single-port RAM that only a LOAD fills, and the core boots
from SPI flash: with a corrupt image in the bench's flash model the device
powers up *not loaded*, STATUS says BAD_CRC, and the inferences after a LOAD
over the UART prove the loader wrote every stream word where the engine reads
it; a second run of the same build with the good image in flash powers up
loaded and infers as the golden model). ``conv`` (tests/test_board_conv.py):
the ``bram`` core holding a conv net (sim.testnets.conv_nets "odd": 1x1
convolutions, an odd pool, int8 layers) on the conv engine, the same commands. Every run also sends two INFERs back
to back (the host's pipelining): the second image arrives while the engine
computes the first and waits in the receive FIFO.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest

from boards.protocol import (
    PING_FORMAT,
    PROTOCOL_VERSION,
    Op,
    Status,
    cmd_infer,
    cmd_load,
    cmd_ping,
    cmd_status,
    decode_infer_reply,
    reply_header,
    reply_length,
)
from compressor.contract.golden import decode_rom, infer
from compressor.contract.rom import build, parse
from sim.testnets import conv_nets, extreme_net

pytestmark = pytest.mark.rtl

DIVISOR = 8  # clock cycles per UART bit in the bench


FLASH_OFFSET = 0x1000
WAKE_CYCLES = 20


def _net(variant: str, seed: int) -> list:
    rng = np.random.default_rng(seed)
    return conv_nets(rng)["odd"] if variant == "conv" else extreme_net(rng)


@pytest.fixture(scope="module", params=["bram", "spram"])
def board_run(request, tmp_path_factory):
    return run_board(request.param, tmp_path_factory)


def run_board(variant: str, tmp_path_factory) -> tuple:
    """Build the board core for ``variant`` (bram, spram, conv), run every command; replies and references.

    (tests/test_board_conv.py runs the conv variant: a file of its own, so the test
    workers can build it beside these.)"""
    from boards.device import BoardCore, Boot
    from hdl.params import fit
    from sim.runner import build_component, run_bench

    spram = variant == "spram"

    rng = np.random.default_rng(1234)
    image = build(_net(variant, 1234), 2)
    other = build(_net(variant, 7), 2)  # a valid image of another model
    bad = bytearray(image)
    bad[40] ^= 1
    x = rng.integers(0, 256, (5, parse(image).input_size))
    n_classes = parse(image).n_classes
    ilen = reply_length(Op.INFER, n_classes)
    steps = [
        ("ping", cmd_ping(), reply_length(Op.PING, 0)),
        ("status0", cmd_status(), 3 + 1),
        # power-up state: loaded (bram), not loaded (spram: corrupt flash)
        ("infer0", cmd_infer(x[0]), reply_length(Op.INFER, 0) if spram else ilen),
        ("load_bad", b"\x00\x13" + cmd_load(bytes(bad)), 3),  # garbage before the command is skipped
        ("status_bad", cmd_status(), 3 + 1),
        ("infer_unloaded", cmd_infer(x[0]), reply_length(Op.INFER, 0)),
        ("load_other", cmd_load(other), 3),
        ("load_ok", cmd_load(image), 3),
        ("status_ok", cmd_status(), 3 + 1),
        ("ping_loaded", cmd_ping(), reply_length(Op.PING, 0)),
        ("infer1", cmd_infer(x[1]), ilen),
        ("pipelined", cmd_infer(x[2]) + cmd_infer(x[3]), 2 * ilen),
        ("unknown", bytes([0xA5, ord("Z")]), 3),
    ]
    boot = Boot(FLASH_OFFSET, WAKE_CYCLES) if spram else None
    params = fit(parse(image), loadable_streams=True) if spram else None
    # "light" C++: the UART bench runs ~700k cycles, 10x faster than at -O0 for +10 s of build
    b = build_component(BoardCore(image, DIVISOR, params, boot), "board_core",
                        tmp_path_factory.mktemp("board") / "build", cxx="light")

    def run(steps, flash: bytes | None, tag: str) -> dict:
        extra = {"flash": flash.hex(), "flash_offset": FLASH_OFFSET} if flash is not None else {}
        r = run_bench(b, "sim.bench_board", tag=tag, params={
            "divisor": DIVISOR, "steps": [{"send": s.hex(), "expect": n} for _, s, n in steps], **extra})
        assert r.passed, f"bench failed, see {r.log}"
        out = {name: bytes.fromhex(h) for (name, _, _), h in zip(steps, r.output["replies"], strict=True)}
        out["flash_reads"] = r.output["flash_reads"]
        return out

    replies = run(steps, bytes(bad) if spram else None, "run")
    if spram:  # the same core with the good image in flash: boots loaded
        boot_steps = [("ping", cmd_ping(), reply_length(Op.PING, 0)), ("status", cmd_status(), 3 + 1),
                      ("infer", cmd_infer(x[4]), ilen)]
        replies["booted"] = run(boot_steps, image, "boot")
    ref = infer(decode_rom(parse(image)), x, (params or fit(parse(image))).timing())
    if variant == "conv":
        assert b.verilog.read_text().count("pmax") > 0  # the conv engine (pool memories) was built
    return replies, ref, image, spram


def _split(raw: bytes, n: int) -> list[bytes]:
    size = len(raw) // n
    return [raw[i * size:(i + 1) * size] for i in range(n)]


def _check_infer(raw: bytes, ref: dict, i: int) -> None:
    r = decode_infer_reply(raw)
    assert r.status == Status.OK
    assert r.klass == ref["pred"][i]
    assert r.cycles == ref["cycles"][i]
    np.testing.assert_array_equal(r.logits, ref["logits"][i])


def _check_not_loaded(raw: bytes) -> None:
    r = decode_infer_reply(raw)
    assert (r.status, r.klass, r.logits.size, r.cycles) == (Status.NOT_LOADED, 0, 0, 0)
    assert len(raw) == reply_length(Op.INFER, 0)


def _ping(loaded: int, image: bytes) -> bytes:
    from boards.device import rx_buffer_depth

    size = parse(image).input_size
    return reply_header(Op.PING, Status.OK) + struct.pack(
        PING_FORMAT, PROTOCOL_VERSION, 2, size, loaded, rx_buffer_depth(size))


def test_ping_and_power_up_state(board_run):
    replies, ref, image, spram = board_run
    assert replies["ping"] == _ping(int(not spram), image)
    if spram:  # the boot loader read the (corrupt) flash image and the CRC refused it
        assert replies["flash_reads"] == 1
        assert replies["status0"] == reply_header(Op.STATUS, Status.BAD_CRC) + b"\x00"
        _check_not_loaded(replies["infer0"])
    else:
        assert replies["status0"] == reply_header(Op.STATUS, Status.OK) + b"\x01"
        _check_infer(replies["infer0"], ref, 0)


@pytest.mark.parametrize("board_run", ["spram"], indirect=True)  # bram: the image is in the bitstream
def test_boot_from_flash(board_run):
    replies, ref, image, _ = board_run
    booted = replies["booted"]
    assert booted["flash_reads"] == 1
    assert booted["ping"] == _ping(1, image)
    assert booted["status"] == reply_header(Op.STATUS, Status.OK) + b"\x01"
    _check_infer(booted["infer"], ref, 4)


def test_load_semantics(board_run):
    replies, ref, image, _ = board_run
    assert replies["load_bad"] == reply_header(Op.LOAD, Status.BAD_CRC)
    assert replies["status_bad"] == reply_header(Op.STATUS, Status.BAD_CRC) + b"\x00"
    _check_not_loaded(replies["infer_unloaded"])
    assert replies["load_other"] == reply_header(Op.LOAD, Status.PARAM_MISMATCH)
    assert replies["load_ok"] == reply_header(Op.LOAD, Status.OK)
    assert replies["status_ok"] == reply_header(Op.STATUS, Status.OK) + b"\x01"
    assert replies["ping_loaded"] == _ping(1, image)


def test_infer_matches_golden(board_run):
    replies, ref, _, _ = board_run
    _check_infer(replies["infer1"], ref, 1)


def test_pipelined_infers(board_run):
    replies, ref, _, _ = board_run
    first, second = _split(replies["pipelined"], 2)
    _check_infer(first, ref, 2)
    _check_infer(second, ref, 3)


def test_unknown_command(board_run):
    replies, _, _, _ = board_run
    assert replies["unknown"] == reply_header(ord("Z"), Status.BAD_COMMAND)
