"""cocotb bench of the board core (boards.device.BoardCore: UART + DeviceController + engine).

Driven only through the UART pins, with the framing of boards/protocol.py;
cocotbext-uart's UartSource drives ``rx`` and its UartSink reads ``tx``.
Parameters (sim.runner.bench_params): ``divisor`` (clock cycles per bit) and
``steps``, a list of ``{"send": hex, "expect": n}``: send the bytes, then
read ``n`` reply bytes. The bench hands back the replies (hex) with
sim.runner.bench_output; the pytest side decodes and checks them.
"""

from __future__ import annotations

import logging

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, Timer
from cocotbext.uart import UartSink, UartSource

from sim.runner import bench_output, bench_params

CLK_NS = 10  # clock period


@cocotb.test()
async def protocol(dut):
    p = bench_params()
    div = p["divisor"]
    baud = 1e9 / (div * CLK_NS)  # one bit = div clock cycles (an integer number of ns)
    dut.rx.value = 1
    cocotb.start_soon(Clock(dut.clk, CLK_NS, unit="ns").start())
    dut.rst.value = 1
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 4)
    source, sink = UartSource(dut.rx, baud=baud), UartSink(dut.tx, baud=baud)
    for end in (source, sink):
        end.log.setLevel(logging.WARNING)  # no line per byte
    replies = []
    for step in p["steps"]:
        sink.clear()
        await source.write(bytes.fromhex(step["send"]))
        await source.wait()
        waited = 0
        while sink.count() < step["expect"] and waited < p.get("timeout", 200_000):
            await ClockCycles(dut.clk, 10 * div)
            waited += 10 * div
        await ClockCycles(dut.clk, 12 * div)  # catch any unexpected extra byte
        replies.append(bytes(sink.read_nowait()).hex())
    await Timer(1, unit="ns")
    bench_output({"replies": replies})
