"""``deepcomp board build`` argument errors and ``board flash`` without a programmer (no hardware, no build)."""

from __future__ import annotations

import numpy as np
import pytest

from boards.icebreaker import ice40_pll
from boards.ulx3s import ecp5_pll
from boards.yowasp import parse_nextpnr_log
from compressor.contract.rom import build
from sim.testnets import extreme_net


@pytest.fixture
def rom_file(tmp_path):
    p = tmp_path / "tiny.rom"
    p.write_bytes(build(extreme_net(np.random.default_rng(1234)), 2))
    return p


def test_flash_without_programmer_is_one_clean_line(cli, tmp_path, monkeypatch):
    (tmp_path / "deepcomp.bit").write_bytes(b"\xff" * 16)
    monkeypatch.setenv("OPENFPGALOADER", "no-such-openFPGALoader")
    code, out, err = cli("board", "flash", "ulx3s", tmp_path)
    assert code == 2 and out == ""
    assert err.strip().count("\n") == 0
    assert "programmer 'no-such-openFPGALoader' not found" in err


def test_flash_without_bitstream(cli, tmp_path):
    code, _, err = cli("board", "flash", "ulx3s", tmp_path / "nothing")
    assert code == 2 and "no bitstream" in err and err.strip().count("\n") == 0


def test_flash_with_failing_programmer(cli, tmp_path, monkeypatch):
    (tmp_path / "deepcomp.bit").write_bytes(b"\xff" * 16)
    monkeypatch.setenv("OPENFPGALOADER", "false")  # a programmer that finds no board
    code, _, err = cli("board", "flash", "ulx3s", tmp_path)
    assert code == 2 and "ulx3s: false failed" in err and err.strip().count("\n") == 0


def test_icebreaker_flash_and_build_errors(cli, rom_file, tmp_path, monkeypatch):
    code, _, err = cli("board", "flash", "icebreaker", tmp_path)
    assert code == 2 and "deepcomp.bin: no bitstream" in err and err.strip().count("\n") == 0
    (tmp_path / "deepcomp.bin").write_bytes(b"\xff" * 16)
    monkeypatch.setenv("ICEPROG", "no-such-iceprog")
    code, out, err = cli("board", "flash", "icebreaker", tmp_path)
    assert code == 2 and out == "" and "programmer 'no-such-iceprog' not found" in err
    assert "set ICEPROG" in err and err.strip().count("\n") == 0
    monkeypatch.setenv("ICEPROG", "false")
    code, _, err = cli("board", "flash", "icebreaker", tmp_path, "--flash")
    assert code == 2 and "icebreaker: false failed" in err
    # 4 PEs need 8 SPRAM blocks (even/odd stream banks per PE); the UP5K has 4
    big = tmp_path / "n4.rom"
    big.write_bytes(build(extreme_net(np.random.default_rng(1234)), 4))
    code, _, err = cli("board", "build", "icebreaker", "--rom", big, "-o", tmp_path / "b")
    assert code == 2 and "4 PEs need 8 SPRAM blocks" in err and err.strip().count("\n") == 0
    code, _, err = cli("board", "build", "icebreaker", "--rom", rom_file, "--freq", "300", "-o", tmp_path)
    assert code == 2 and "--freq 300" in err


def test_flash_commands(tmp_path, monkeypatch):
    from boards.cli import flash_command

    monkeypatch.delenv("ICEPROG", raising=False)
    monkeypatch.delenv("OPENFPGALOADER", raising=False)
    for name in ("deepcomp.bin", "deepcomp.bit"):
        (tmp_path / name).write_bytes(b"\xff")
    binf, bitf = str(tmp_path / "deepcomp.bin"), str(tmp_path / "deepcomp.bit")
    assert flash_command("icebreaker", tmp_path) == ["iceprog", "-S", binf]  # SRAM
    assert flash_command("icebreaker", tmp_path, to_flash=True) == ["iceprog", binf]
    assert flash_command("ulx3s", tmp_path) == ["openFPGALoader", "-b", "ulx3s", "-m", bitf]
    assert flash_command("ulx3s", tmp_path, to_flash=True) == ["openFPGALoader", "-b", "ulx3s", "-f", bitf]


def test_flash_rom_behind_the_bitstream(cli, tmp_path, monkeypatch):
    """`board flash icebreaker DIR --rom`: iceprog writes the image at 1 MiB, only the one DIR was built for."""
    from boards.cli import rom_flash_command

    monkeypatch.delenv("ICEPROG", raising=False)
    image = build(extreme_net(np.random.default_rng(1)), 1)
    other = build(extreme_net(np.random.default_rng(2)), 1)
    (tmp_path / "deepcomp.bin").write_bytes(b"\xff")
    (tmp_path / "rom.bin").write_bytes(image)
    (tmp_path / "m.rom").write_bytes(image)
    (tmp_path / "o.rom").write_bytes(other)
    assert rom_flash_command(tmp_path, tmp_path / "m.rom") == ["iceprog", "-o", "1024k", str(tmp_path / "rom.bin")]
    code, _, err = cli("board", "flash", "icebreaker", tmp_path, "--rom", tmp_path / "o.rom")
    assert code == 2 and "not the image" in err and err.count("\n") == 1
    code, _, err = cli("board", "flash", "ulx3s", tmp_path, "--rom", tmp_path / "m.rom")
    assert code == 2 and "the ulx3s bitstream carries its ROM" in err


def test_baud_divisor_check():
    from boards.link import uart_divisor
    from compressor.contract.errors import DeepcompError

    assert uart_divisor("icebreaker", 24e6, 3_000_000) == 8
    assert uart_divisor("ulx3s", 50e6, 3_000_000) == 17  # 2.94 Mbaud, -1.96 %: accepted
    assert uart_divisor("ulx3s", 50e6, 115_200) == 434
    with pytest.raises(DeepcompError, match=r"\(\+4.2 %\), more than 2 % off"):
        uart_divisor("ulx3s", 50e6, 4_000_000)
    with pytest.raises(DeepcompError, match="fewer than 8"):
        uart_divisor("icebreaker", 24e6, 6_000_000)


def test_ice40_pll_dividers():
    for f in (16, 24, 25, 30, 36, 48):
        c = ice40_pll(12.0, f)
        assert abs(c.f_out_mhz - f) < 0.4 and 533 <= c.f_vco_mhz <= 1066
        assert c.f_out_mhz == pytest.approx(12.0 / (c.divr + 1) * (c.divf + 1) / 2 ** c.divq)
    c = ice40_pll(12.0, 24)
    assert (c.divr, c.divf, c.divq, c.filter_range) == (0, 63, 5, 1)  # what `icepll -i 12 -o 24` prints


def test_build_argument_errors(cli, rom_file, tmp_path):
    code, _, err = cli("board", "build", "ulx3s", "--rom", rom_file, "--pes", "4", "-o", tmp_path)
    assert code == 2 and "laid out for 2 PEs, --pes 4" in err
    code, _, err = cli("board", "build", "ulx3s", "--rom", rom_file, "--freq", "1000", "-o", tmp_path)
    assert code == 2 and "--freq 1000" in err
    code, _, err = cli("board", "build", "ulx3s", "--rom", tmp_path / "missing.rom", "-o", tmp_path)
    assert code == 2 and "missing.rom" in err and err.strip().count("\n") == 0
    code, _, err = cli("board", "build", "de10", "--rom", rom_file)
    assert code == 2 and "invalid choice" in err
    code, _, err = cli("board", "build", "ulx3s")
    assert code == 2 and "--rom" in err


def test_pll_dividers():
    for f in (25, 40, 50, 62.5, 75, 100):
        c = ecp5_pll(25.0, f)
        assert abs(c.f_out_mhz - f) < 0.5 and 400 <= c.f_vco_mhz <= 800
        assert c.f_out_mhz == pytest.approx(25.0 / c.clki_div * c.clkfb_div)


def test_parse_nextpnr_log():
    log = """Info: Device utilisation:
Info: 	          TRELLIS_IO:     5/  365     1%
Info: 	              DP16KD:    12/  208     5%
Info: 	          MULT18X18D:     2/  156     1%
Info: 	        TRELLIS_COMB:  4321/83640     5%
Info: Max frequency for clock '$glbnet$pll_clk': 71.20 MHz (PASS at 50.00 MHz)
Info: Max frequency for clock '$glbnet$pll_clk': 66.05 MHz (PASS at 50.00 MHz)
"""
    r = parse_nextpnr_log(log)
    assert r["util"]["TRELLIS_COMB"] == (4321, 83640) and r["util"]["DP16KD"] == (12, 208)
    assert r["fmax"] == {"$glbnet$pll_clk": 66.05}
