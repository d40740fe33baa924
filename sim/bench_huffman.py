"""cocotb bench for :class:`hdl.huffman.HuffmanDecoder` (run through :mod:`sim.runner`).

The parameters (from :func:`sim.runner.bench_params`) are a dict::

    {"sym_width": 16, "len_bits": 4,        # output payload field widths
     "cases": [{"name", "limit", "offset", "symbols", "words", "count",
                "p_in", "p_out", "seed", "abort_after"?, "max_cycles"?}, ...]}

Every case loads its tables through the write ports, pulses ``start`` with
``count``, then one coroutine feeds ``words`` (a bubble in a cycle with
probability ``1 - p_in``) while another takes symbols (``ready`` with
probability ``p_out``). The bench records what came out -- symbols, lengths,
``last`` flags, ``error``, ``done``, the cycle of the first accepted word and
of every taken symbol -- and hands it back with :func:`sim.runner.bench_output`;
the pytest side compares. ``abort_after = k`` stops after k symbols and aborts
the stream with the next case's ``start`` (restart mid-stream).
"""

from __future__ import annotations

import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge
from cocotb.utils import get_sim_time

from sim.runner import bench_output, bench_params

PERIOD_NS = 10
TAIL_CYCLES = 12  # after the last expected symbol: watch for extra symbols / late error


def _cycle() -> int:
    return int(get_sim_time(unit="ns")) // PERIOD_NS


async def _load_tables(dut, case: dict) -> None:
    dut.len_w__en.value = 1
    for k, (lim, off) in enumerate(zip(case["limit"], case["offset"], strict=True)):
        dut.len_w__l.value = k + 1
        dut.len_w__limit.value = lim
        dut.len_w__offset.value = off
        await RisingEdge(dut.clk)
    dut.len_w__en.value = 0
    dut.sym_w__en.value = 1
    for a, s in enumerate(case["symbols"]):
        dut.sym_w__addr.value = a
        dut.sym_w__data.value = s
        await RisingEdge(dut.clk)
    dut.sym_w__en.value = 0


async def _feed(dut, words: list[int], p_in: float, rng: random.Random, rec: dict) -> None:
    i = 0
    while i < len(words):
        valid = p_in >= 1.0 or rng.random() < p_in
        dut.i_word__valid.value = int(valid)
        dut.i_word__payload.value = words[i] if valid else 0
        await ReadOnly()
        fire = valid and int(dut.i_word__ready.value) == 1
        if fire and rec["first_in"] is None:
            rec["first_in"] = _cycle()
        await RisingEdge(dut.clk)
        if fire:
            i += 1
    dut.i_word__valid.value = 0


async def _take(dut, want: int, p_out: float, rng: random.Random, widths: tuple[int, int],
                rec: dict, max_cycles: int) -> None:
    sw, lw = widths
    t0 = _cycle()
    deadline = None  # set once error is seen: drain what is still in flight, then stop
    while len(rec["symbols"]) < want and _cycle() - t0 < max_cycles:
        if deadline is not None and _cycle() >= deadline:
            break
        ready = deadline is not None or p_out >= 1.0 or rng.random() < p_out
        dut.o_sym__ready.value = int(ready)
        await ReadOnly()
        if int(dut.error.value) and rec["error_at"] is None:
            rec["error_at"] = len(rec["symbols"])
            deadline = _cycle() + TAIL_CYCLES
        if ready and int(dut.o_sym__valid.value):
            word = int(dut.o_sym__payload.value)
            rec["symbols"].append(word & ((1 << sw) - 1))
            rec["lengths"].append((word >> sw) & ((1 << lw) - 1))
            rec["last"].append((word >> (sw + lw)) & 1)
            rec["out_cycles"].append(_cycle())
        await RisingEdge(dut.clk)
    rec["timeout"] = len(rec["symbols"]) < want and rec["error_at"] is None


async def _run_case(dut, case: dict, widths: tuple[int, int]) -> dict:
    rng = random.Random(case.get("seed", 0))
    await _load_tables(dut, case)
    count = case["count"]
    dut.count.value = count
    dut.start.value = 1
    await RisingEdge(dut.clk)
    dut.start.value = 0
    start_cycle = _cycle()
    rec = {"name": case["name"], "symbols": [], "lengths": [], "last": [], "out_cycles": [],
           "first_in": None, "error_at": None, "start_cycle": start_cycle}
    want = min(count, case.get("abort_after", count))
    feeder = cocotb.start_soon(_feed(dut, case["words"], case.get("p_in", 1.0), rng, rec))
    max_cycles = case.get("max_cycles", 50 * (count + len(case["words"])) + 200)
    await _take(dut, want, case.get("p_out", 1.0), rng, widths, rec, max_cycles)
    if "abort_after" in case:
        feeder.cancel()
        dut.i_word__valid.value = 0
        dut.o_sym__ready.value = 0
        rec["aborted"] = True
        return rec
    # tail: no extra symbol may come out, error/done must settle
    extra = 0
    for _ in range(TAIL_CYCLES):
        dut.o_sym__ready.value = 1
        await ReadOnly()
        if int(dut.o_sym__valid.value):
            extra += 1
        if int(dut.error.value) and rec["error_at"] is None:
            rec["error_at"] = len(rec["symbols"])
        await RisingEdge(dut.clk)
    await ReadOnly()
    rec["extra"] = extra
    rec["error"] = int(dut.error.value)
    rec["done"] = int(dut.done.value)
    await RisingEdge(dut.clk)
    if not feeder.done():
        feeder.cancel()
    dut.i_word__valid.value = 0
    dut.o_sym__ready.value = 0
    return rec


@cocotb.test()
async def decode(dut):
    """Run every case of the parameter file on one simulator instance."""
    params = bench_params()
    widths = (params["sym_width"], params["len_bits"])
    Clock(dut.clk, PERIOD_NS, unit="ns").start()
    for sig in ("start", "i_word__valid", "o_sym__ready", "len_w__en", "sym_w__en"):
        getattr(dut, sig).value = 0
    dut.rst.value = 1
    for _ in range(2):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    await RisingEdge(dut.clk)
    await ReadOnly()
    reset_state = {"done": int(dut.done.value), "error": int(dut.error.value),
                   "o_valid": int(dut.o_sym__valid.value)}
    await RisingEdge(dut.clk)
    results = []
    for case in params["cases"]:
        results.append(await _run_case(dut, case, widths))
    bench_output({"reset": reset_state, "results": results})
