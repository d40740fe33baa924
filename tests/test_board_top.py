"""The board core (UART + DeviceController + engine) under Verilator, spoken to with boards/protocol.py.

One build of a tiny ROM (sim.testnets.extreme_net, 64 inputs, N = 2) per
variant and one simulator run carrying every command; the replies are
checked here. Variants: ``bram`` (ULX3S: the image is baked into the
bitstream, the device powers up loaded) and ``spram`` (iCEBreaker: the weight
streams live in single-port RAM that only a LOAD fills, so the device powers
up *not loaded*, and the inferences after the LOAD prove the loader wrote
every stream word where the engine reads it).
"""

from __future__ import annotations

import struct

import numpy as np
import pytest

from boards.protocol import (
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
from sim.testnets import extreme_net

pytestmark = pytest.mark.rtl

DIVISOR = 8  # clock cycles per UART bit in the bench


@pytest.fixture(scope="module", params=["bram", "spram"])
def board_run(request, tmp_path_factory):
    from boards.device import BoardCore
    from hdl.params import fit
    from sim.runner import build_component, run_bench

    spram = request.param == "spram"

    rng = np.random.default_rng(1234)
    image = build(extreme_net(rng), 2)
    other = build(extreme_net(np.random.default_rng(7)), 2)  # a valid image of another model
    bad = bytearray(image)
    bad[40] ^= 1
    x = rng.integers(0, 256, (3, 64))
    n_classes = parse(image).n_classes
    ilen = reply_length(Op.INFER, n_classes)
    steps = [
        ("ping", cmd_ping(), reply_length(Op.PING, 0)),
        # power-up state: loaded (bram), not loaded (spram)
        ("infer0", cmd_infer(x[0]), reply_length(Op.INFER, 0) if spram else ilen),
        ("load_bad", b"\x00\x13" + cmd_load(bytes(bad)), 3),  # garbage before the command is skipped
        ("status_bad", cmd_status(), 3 + 1),
        ("infer_unloaded", cmd_infer(x[0]), reply_length(Op.INFER, 0)),
        ("load_other", cmd_load(other), 3),
        ("load_ok", cmd_load(image), 3),
        ("status_ok", cmd_status(), 3 + 1),
        ("ping_loaded", cmd_ping(), reply_length(Op.PING, 0)),
        ("infer1", cmd_infer(x[1]), ilen),
        ("infer2", cmd_infer(x[2]), ilen),
        ("unknown", bytes([0xA5, ord("Z")]), 3),
    ]
    params = fit(parse(image), loadable_streams=True) if spram else None
    b = build_component(BoardCore(image, DIVISOR, params), "board_core",
                        tmp_path_factory.mktemp("board") / "build")
    r = run_bench(b, "sim.bench_board", params={
        "divisor": DIVISOR, "steps": [{"send": s.hex(), "expect": n} for _, s, n in steps]})
    assert r.passed, f"bench failed, see {r.log}"
    replies = {name: bytes.fromhex(h) for (name, _, _), h in zip(steps, r.output["replies"], strict=True)}
    ref = infer(decode_rom(parse(image)), x)
    return replies, ref, image, spram


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


def test_ping_and_power_up_state(board_run):
    replies, ref, image, spram = board_run
    loaded = int(not spram)
    assert replies["ping"] == reply_header(Op.PING, Status.OK) + struct.pack(
        "<BBHB", PROTOCOL_VERSION, 2, 64, loaded)
    if spram:
        _check_not_loaded(replies["infer0"])
    else:
        _check_infer(replies["infer0"], ref, 0)


def test_load_semantics(board_run):
    replies, ref, image, _ = board_run
    assert replies["load_bad"] == reply_header(Op.LOAD, Status.BAD_CRC)
    assert replies["status_bad"] == reply_header(Op.STATUS, Status.BAD_CRC) + b"\x00"
    _check_not_loaded(replies["infer_unloaded"])
    assert replies["load_other"] == reply_header(Op.LOAD, Status.PARAM_MISMATCH)
    assert replies["load_ok"] == reply_header(Op.LOAD, Status.OK)
    assert replies["status_ok"] == reply_header(Op.STATUS, Status.OK) + b"\x01"
    assert replies["ping_loaded"][-1] == 1


def test_infer_matches_golden(board_run):
    replies, ref, _, _ = board_run
    _check_infer(replies["infer1"], ref, 1)
    _check_infer(replies["infer2"], ref, 2)


def test_unknown_command(board_run):
    replies, _, _, _ = board_run
    assert replies["unknown"] == reply_header(ord("Z"), Status.BAD_COMMAND)
