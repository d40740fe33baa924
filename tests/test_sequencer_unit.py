"""Unit bench of the Sequencer (hdl/engine.py) alone, in Amaranth's simulator (no Verilator build).

Its neighbours are behavioural models written here, driven cycle by cycle:

* a fake broadcaster: its ``done`` drops after ``bc_start`` and rises ``scan``
  cycles after the first scan slot (``bc_start`` + 2, hdl/broadcast.py), seen one
  cycle ahead (``bc_quiet``);
* fake PEs: busy from per-layer windows, an optional sticky error (both dropped by
  ``clear``), seen one cycle ahead (``pe_busy_next``, ``pe_error_next``), and accumulators: at ``bc_start`` each layer adds
  the values its tail should read minus the bias, ``tail_sum`` is accumulator +
  bias (at ``cfg.bias_base + tail_addr``) one cycle after ``tail_rd`` and poison
  otherwise, ``tail_clear`` zeroes the accumulator after the read. A missing clear
  or a stale read shows up as a wrong value;
* the requantizers are observed: ``rq_en[q]``, ``rq_tag`` and the ``tail_sum`` they take.

Every cycle number below is derived from ``compressor.contract.golden.Timing`` and the block
latencies the docstrings state (docs/hardware.md), with the fake neighbours'
own timing, so the bench checks the sequencer's share of the cycle model exactly.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from hdl.layouts import ERR_PARAMS, ERR_STREAM
from hdl.params import Contents
from tests.sequencer_bench import (
    BC_PRIME,
    Bench,
    Inference,
    N,
    Plan,
    T,
    check_abort,
    check_load,
    check_ok,
    check_stream_rules,
    run_layers,
    segments,
    setup_image,
)

# --- scenarios ----------------------------------------------------------------------------


def plans_for(c: Contents, rng, logits: list[int]) -> list[Plan]:
    """Layer 0: all PEs idle for a while mid-scan, then a PE outlasts the scan; layer 1: the scan
    outlasts the PEs; layer 2: back-to-back windows of one PE, a short scan."""
    busy = [{0: [(1, 8)], 1: [(10, 20)], 2: [(9, 11)]},
            {2: [(1, 25)], 0: [(6, 7)]},
            {1: [(1, 6), (6, 9)], 2: [(2, 5)]}]  # a PE is busy from the cycle after an issue
    scan = [12, 30, 3]
    vals = [rng.integers(-2**30, 2**30, w.rows).tolist() for w in c.layers[:-1]] + [logits]
    return [Plan(s, b, v) for s, b, v in zip(scan, busy, vals, strict=True)]


LOGITS = {
    "tie": [7, -2, 100, 100, 3, 100, 0, 0, 99, 100],  # the maximum in PEs 2, 0, 2, 0: row 2 wins
    "row0_negative": [-5, -9, -5, -6, -100, -5, -7, -8, -9, -10],
    "last_row": [-3, 1, 2, 3, 4, 5, 6, 7, 8, 9],  # the final compare (after the last read)
    "int32_extremes": [-2**31, -2**31, 5, -1, 2**31 - 1, 0, 2**31 - 2, 2**31 - 1, -2**31, 1],
}


@pytest.fixture(scope="module")
def image():
    return setup_image()


@pytest.mark.parametrize("case", sorted(LOGITS))
def test_phases_cycles_and_result(image, case):
    """Setup / columns / tail of every layer at the documented cycles, input load, requantizer
    enables and tags, read-out, argmax with its tie rule, result stream; two inferences."""
    p, c = image
    rng = np.random.default_rng(len(case))
    infs = [Inference(rng.integers(0, 256, 64).tolist(), plans_for(c, rng, LOGITS[case]))
            for _ in range(2)]
    trace, out, acc_after = Bench(p, c).run(infs, valid=lambda t: t % 7 not in (2, 3))
    segs = segments(trace, out)
    assert len(segs) == 2
    lasts = [i for i, b in enumerate(out) if b[2]]
    for k, seg in enumerate(segs):
        beats = out[lasts[k - 1] + 1 if k else 0: lasts[k] + 1]
        check_ok(seg, beats, acc_after[k], infs[k], p, c)


def test_result_back_pressure_loses_no_beat(image):
    """o_res ready held low 0..5 cycles on every beat: status, count and logits all arrive, in
    order, and the stream's payload holds while it waits."""
    p, c = image
    rng = np.random.default_rng(3)
    infs = [Inference(rng.integers(0, 256, 64).tolist(), plans_for(c, rng, LOGITS[case]))
            for case in ("tie", "last_row")]
    stalls = [3, 5, 0, 1, 4, 2, 0, 0, 5, 1, 3, 2, 1]  # 13 entries: 12 beats per inference
    trace, out, acc_after = Bench(p, c).run(infs, stalls=stalls)
    check_stream_rules(trace)
    segs = segments(trace, out)
    lasts = [i for i, b in enumerate(out) if b[2]]
    assert lasts == [11, 23]
    stalled = sum(1 for r in trace if r.ovalid and not r.oready)
    assert stalled == sum(stalls[b % len(stalls)] for b in range(len(out)))
    for k, seg in enumerate(segs):
        check_ok(seg, out[12 * k: 12 * k + 12], acc_after[k], infs[k], p, c)


@pytest.mark.parametrize("layer", [0, 2])
def test_pe_error_aborts_then_next_inference_runs(image, layer):
    """A PE error in the column phase: ERR_STREAM, PEs and broadcaster cleared, every accumulator
    zeroed, status + count only; the next inference is exact (nothing left from the aborted one)."""
    p, c = image
    rng = np.random.default_rng(11 + layer)
    bad = Inference(rng.integers(0, 256, 64).tolist(), plans_for(c, rng, LOGITS["tie"]))
    at = 7  # PE 1 raises its error 7 cycles into the scan, while PEs are still busy
    bad.plans[layer] = replace(bad.plans[layer], error=(1, at),
                               busy={**bad.plans[layer].busy, 1: [(1, 40)]})
    good = Inference(rng.integers(0, 256, 64).tolist(), plans_for(c, rng, LOGITS["int32_extremes"]))
    trace, out, acc_after = Bench(p, c).run([bad, good])
    seg0, seg1 = segments(trace, out)
    s0 = check_load(seg0, bad.x, True)
    s = run_layers(seg0, bad, p, c, s0, upto=layer)
    e = s + T.setup + at  # the sequencer sees the error in this column-phase cycle
    check_abort(seg0, out[:2], acc_after[0], e, ERR_STREAM, e + 1 - s0, p)
    check_ok(seg1, out[2:], acc_after[1], good, p, c)


HEADERS = {
    "signed_input": dict(flags=1),
    "n_pes": dict(n_pes=N + 1),
    "max_len": dict(max_len=11),
    "n_layers": dict(n_layers=4),
    "input_size": dict(input_size=N * 22 + 1),  # one more than the banks hold
}


@pytest.mark.parametrize("case", sorted(HEADERS))
def test_bad_header_consumes_input_and_reports(image, case):
    """A header the parameters cannot run: the input (input_size beats by the header) is still
    consumed, nothing is written to the banks, nothing runs, ERR_PARAMS with count 0; the engine
    answers the next inference the same way."""
    p, c = image
    assert p.max_len == 10 and p.max_layers == 3 and p.act_depth == 22  # what HEADERS go beyond
    hc = replace(c, header={**c.header, **HEADERS[case]})
    size = hc.header["input_size"]
    rng = np.random.default_rng(5)
    infs = [Inference(rng.integers(0, 256, size).tolist()) for _ in range(2)]
    trace, out, acc_after = Bench(p, hc).run(infs, valid=lambda t: t % 5 != 1)
    assert len(out) == 4
    for k, seg in enumerate(segments(trace, out)):
        e = check_load(seg, infs[k].x, False) - 1
        check_abort(seg, out[2 * k: 2 * k + 2], acc_after[k], e, ERR_PARAMS, 0, p)


DESCRIPTORS = {  # layer, change
    "layer0_cols_not_input_size": (0, dict(cols=63)),
    "wbits_beyond_params": (1, dict(wbits=6)),
    "hidden_without_relu": (1, dict(relu=0)),
    "relu_on_last_layer": (2, dict(relu=1)),
    "last_rows_not_classes": (2, dict(rows=9)),
}


@pytest.mark.parametrize("case", sorted(DESCRIPTORS))
def test_bad_descriptor_stops_in_its_setup(image, case):
    """A descriptor outside the parameters: the layers before it run normally, the check in its
    third setup cycle (where the broadcaster would start) ends the run with ERR_PARAMS."""
    p, c = image
    layer, change = DESCRIPTORS[case]
    assert p.wbits_max == 5
    layers = list(c.layers)
    layers[layer] = replace(layers[layer], **change)
    bc = replace(c, layers=layers)
    rng = np.random.default_rng(9)
    inf = Inference(rng.integers(0, 256, 64).tolist(), plans_for(c, rng, LOGITS["tie"]))
    trace, out, acc_after = Bench(p, bc).run([inf])
    (seg,) = segments(trace, out)
    s0 = check_load(seg, inf.x, True)
    s = run_layers(seg, inf, p, bc, s0, upto=layer)
    e = s + T.setup - BC_PRIME  # the check: the cycle the broadcaster would have started in
    check_abort(seg, out, acc_after[0], e, ERR_PARAMS, e + 1 - s0, p)
