"""Host side of the board protocol, against the golden-model device emulator."""

import json

import numpy as np
import pytest

from boards.emulator import GoldenDevice
from boards.host import DeviceLink
from boards.protocol import Status
from compressor.contract.errors import DeepcompError
from compressor.contract.rom import build
from tests.test_rom_golden import extreme_net


@pytest.fixture
def image(rng):
    return build(extreme_net(rng), 2)


def test_load_infer_matches_golden(image, rng):
    from compressor.contract.golden import decode_rom, infer
    from compressor.contract.rom import parse

    dev = GoldenDevice(n_pes=2)
    link = DeviceLink(dev, "emu")
    assert not link.ping().loaded
    link.load(image)
    assert link.ping().loaded and link.status() == (Status.OK, True)
    x = rng.integers(0, 256, (5, 64))
    ref = infer(decode_rom(parse(image)), x)
    for i in range(5):
        r = link.infer(x[i])
        assert r.status == Status.OK and r.klass == ref["pred"][i] and r.cycles == ref["cycles"][i]
        np.testing.assert_array_equal(r.logits, ref["logits"][i])


def test_bad_crc_and_wrong_pes_are_rejected(image):
    link = DeviceLink(GoldenDevice(n_pes=2), "emu")
    bad = bytearray(image)
    bad[40] ^= 1
    with pytest.raises(DeepcompError, match="emu: device rejected the ROM image: ROM image CRC32 mismatch"):
        link.load(bytes(bad))
    assert link.status() == (Status.BAD_CRC, False)
    with pytest.raises(DeepcompError, match="does not fit"):
        DeviceLink(GoldenDevice(n_pes=4), "emu").load(image)


def test_silent_device_is_a_clear_error():
    class Mute:
        def write(self, b):
            return len(b)

        def read(self, n):
            return b""

    with pytest.raises(DeepcompError, match="ttyX: no answer from the device"):
        DeviceLink(Mute(), "ttyX").ping()


def test_board_infer_command(cli, monkeypatch, tmp_path, rng):

    dev = GoldenDevice(n_pes=2)
    monkeypatch.setattr("boards.host.open_serial", lambda port, baud, timeout: dev)
    net = extreme_net(rng)
    rom = tmp_path / "m.rom"
    rom.write_bytes(build(net, 2))
    code, out, err = cli("board", "infer", "--port", "emu", "--rom", rom, "--dataset", "digits",
                         "--images", "7", "--json")
    assert code == 0, err
    res = json.loads(out)
    assert res["images"] == 7 and len(res["predictions"]) == 7 and res["cycles"] > 0


def test_board_infer_absent_port(cli, tmp_path):
    code, out, err = cli("board", "infer", "--port", tmp_path / "ttyNOPE", "--dataset", "digits")
    assert code == 2 and "ttyNOPE: no such serial port" in err and err.count("\n") == 1
