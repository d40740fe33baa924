"""cocotb bench for one :class:`hdl.pe.PE` (run through :mod:`sim.runner`).

The parameters (from :func:`sim.runner.bench_params`)::

    {"cfg": int,                 # the layer descriptor, packed as the ``cfg`` port's bits
     "issues": [int, ...],       # the broadcast words {col, act}, packed as ``issue.payload``
     "rows": int,                # local accumulator rows to read back
     "max_cycles": int}

The bench drives ``issue`` back to back (a word is taken in a cycle where
``valid`` and ``ready`` are both high), counts cycles from the first
``valid`` until ``status.busy`` falls, then reads every row through the tail
port (``tail.rd``; ``tail.sum`` = accumulator + bias one cycle later). Returned:
``cycles``, ``sums``, ``error``, ``starve``, ``timeout``.
"""

from __future__ import annotations

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

from sim.runner import bench_output, bench_params


@cocotb.test()
async def run(dut):
    """Issue every column, wait until the PE is idle, read the accumulators back."""
    params = bench_params()
    Clock(dut.clk, 10, unit="ns").start()
    for sig in ("issue__valid", "clear", "tail__rd", "tail__clear", "tail__addr"):
        getattr(dut, sig).value = 0
    dut.cfg.value = params["cfg"]
    dut.rst.value = 1
    for _ in range(2):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    await RisingEdge(dut.clk)

    t = 0
    for word in params["issues"]:
        dut.issue__payload.value = word
        dut.issue__valid.value = 1
        while True:
            await ReadOnly()
            ready = int(dut.issue__ready.value)
            await RisingEdge(dut.clk)
            t += 1
            if ready:
                break
    dut.issue__valid.value = 0
    timeout = True
    for _ in range(params["max_cycles"]):
        await ReadOnly()
        if not int(dut.status__busy.value):
            timeout = False
            break
        await RisingEdge(dut.clk)
        t += 1
    error, starve = int(dut.status__error.value), int(dut.status__starve.value)
    await RisingEdge(dut.clk)

    sums = []
    for r in range(params["rows"]):
        dut.tail__addr.value = r
        dut.tail__rd.value = 1
        await RisingEdge(dut.clk)
        dut.tail__rd.value = 0
        await ReadOnly()
        sums.append(dut.tail__sum.value.to_signed())
        await RisingEdge(dut.clk)
    bench_output({"cycles": t, "sums": sums, "error": error, "starve": starve, "timeout": timeout})
