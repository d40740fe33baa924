"""Real bitstream builds in CI: the small demo configuration (a 64-input net, N = 1) for both boards.

The issue asks for a board build in CI when it takes under 2 minutes; each
of these takes about 40 s on the 2-core machine (the LeNet-300-100 builds,
2 to 9 minutes, live in benchmarks/board_builds.py). They run the whole
YoWASP flow from pip — yosys, nextpnr, icepack / ecppack — through
``deepcomp board build`` and check the bitstream and the report.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from boards.cli import BITSTREAM
from compressor.contract.rom import build
from sim.testnets import extreme_net

pytestmark = pytest.mark.board
pytest.importorskip("amaranth_boards")

# board -> (target MHz, LUTs / block RAMs / DSPs on the device)
BOARDS = {
    "icebreaker": (24.0, (5280, 30, 8)),
    "ulx3s": (50.0, (83640, 208, 156)),
}


def looks_like_bitstream(board: str, data: bytes) -> bool:
    if board == "icebreaker":
        # 0xFF padding, then the iCE40 sync word; a UP5K image is ~104 kB
        return data.find(b"\x7e\xaa\x99\x7e") in range(16) and 100_000 < len(data) < 110_000
    # ecppack: a comment naming the part, the preamble, then the LFE5U-85F IDCODE 0x41113043
    return (data.startswith(b"\xff\x00Part: LFE5U-85F") and b"\xff\xff\xbd\xb3" in data[:64]
            and b"\x41\x11\x30\x43" in data[:64])


@pytest.mark.parametrize("board", sorted(BOARDS))
def test_bitstream_builds(board, cli, tmp_path):
    pytest.importorskip(f"yowasp_nextpnr_{'ice40' if board == 'icebreaker' else 'ecp5'}")
    name, (target, (luts, brams, dsps)) = BITSTREAM[board], BOARDS[board]
    rom = tmp_path / "tiny_n1.rom"
    rom.write_bytes(build(extreme_net(np.random.default_rng(1234)), 1))
    out = tmp_path / board
    code, stdout, err = cli("board", "build", board, "--rom", rom, "-o", out, "--json")
    assert code == 0, err
    assert err == "", f"the build printed to stderr: {err[:500]}"
    rep = json.loads(stdout)
    assert rep == json.loads((out / "report.json").read_text())
    assert rep["bitstream"] == str(out / name)
    assert looks_like_bitstream(board, (out / name).read_bytes())
    assert rep["board"] == board and rep["target_mhz"] == target
    assert rep["fmax_mhz"] is not None and rep["fmax_mhz"] > 10
    assert rep["timing_met"] == (rep["fmax_mhz"] >= rep["target_mhz"])
    assert 0 < rep["luts"] <= rep["luts_available"] == luts
    assert 0 < rep["bram"] <= rep["bram_available"] == brams
    assert 0 < rep["dsp"] <= rep["dsp_available"] == dsps
    if board == "icebreaker":
        assert rep["spram"] == 2 and rep["spram_available"] == 4  # the streams, even/odd banks
