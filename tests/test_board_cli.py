"""``deepcomp board build`` argument errors and ``board flash`` without a programmer (no hardware, no build)."""

from __future__ import annotations

import numpy as np
import pytest

from boards.ulx3s import ecp5_pll, parse_nextpnr_log
from compressor.rom import build
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


def test_icebreaker_reports_it_does_not_fit(cli, rom_file, tmp_path):
    code, _, err = cli("board", "build", "icebreaker", "--rom", rom_file, "-o", tmp_path)
    assert code == 2 and "does not fit the iCE40UP5K" in err and err.strip().count("\n") == 0
    code, _, err = cli("board", "flash", "icebreaker", tmp_path)
    assert code == 2 and "does not fit" in err


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
