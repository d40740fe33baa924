"""cocotb bench for the whole engine (hdl.top.Accelerator), driven only through its streams.

Loaded by the simulator (see :mod:`sim.engine_sim`, through :func:`sim.runner.run_bench`);
the parameters (:func:`sim.runner.bench_params`) are ``{"inputs": [[int, ...], ...],
"timeout": cycles per input}``, the results go back with :func:`sim.runner.bench_output`
as ``{"results": [...], "complete": bool}``.
One coroutine feeds the input vectors (``i_act``), another waits for result
beats (``o_res``, always ready) -- Python sleeps on edges of ``valid`` rather
than polling every clock while the engine computes.
"""

from __future__ import annotations

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, First, ReadOnly, RisingEdge, Timer

from sim.runner import bench_output, bench_params


def _signed32(v: int) -> int:
    return v - (1 << 32) if v & (1 << 31) else v


async def _feed(dut, inputs: list[list[int]], gate) -> None:
    for k, x in enumerate(inputs):
        await gate[k]  # one inference at a time: wait for the previous result
        for b in x:
            dut.i_act__valid.value = 1
            dut.i_act__payload.value = int(b)
            while True:
                await ReadOnly()
                ready = int(dut.i_act__ready.value)
                await RisingEdge(dut.clk)
                if ready:
                    break
        dut.i_act__valid.value = 0


async def _collect(dut, count: int, results: list, gate) -> None:
    for k in range(count):
        beats = []
        while True:
            await ReadOnly()
            if int(dut.o_res__valid.value):
                word = int(dut.o_res__payload.value)
                data, last = word & 0xFFFFFFFF, (word >> 32) & 1
                beats.append(data)
                await RisingEdge(dut.clk)
                if last:
                    break
            else:
                await RisingEdge(dut.o_res__valid)
        status = beats[0]
        results.append({"status": status, "cls": status & 0xFFFF, "error": status >> 16,
                        "cycles": beats[1], "logits": [_signed32(v) for v in beats[2:]],
                        "starve": 0})
        if k + 1 < len(gate):
            gate[k + 1].set()


class _Gate:
    """A one-shot event that can be awaited (cocotb 2.x Event wrapper)."""

    def __init__(self, opened: bool = False):
        from cocotb.triggers import Event

        self.ev = Event()
        if opened:
            self.ev.set()

    def set(self) -> None:
        self.ev.set()

    def __await__(self):
        return self.ev.wait().__await__()


async def _watch_starve(dut, flag: list) -> None:
    await RisingEdge(dut.starve)
    flag.append(1)


@cocotb.test()
async def engine_inputs(dut):
    spec = bench_params()
    inputs = spec["inputs"]
    Clock(dut.clk, 10, unit="ns").start()
    dut.rst.value = 1
    dut.i_act__valid.value = 0
    dut.i_act__payload.value = 0
    dut.o_res__ready.value = 1
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    results: list = []
    starve: list = []
    gate = [_Gate(opened=(k == 0)) for k in range(len(inputs))]
    cocotb.start_soon(_watch_starve(dut, starve))
    cocotb.start_soon(_feed(dut, inputs, gate))
    collector = cocotb.start_soon(_collect(dut, len(inputs), results, gate))
    limit = int(spec.get("timeout", 2_000_000)) * max(1, len(inputs))
    await First(collector.complete, Timer(limit * 10, unit="ns"))
    for r in results:
        r["starve"] = int(bool(starve))
    bench_output({"results": results, "complete": len(results) == len(inputs)})
    assert len(results) == len(inputs), f"engine answered {len(results)} of {len(inputs)} inputs (hang?)"
