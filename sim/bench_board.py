"""cocotb bench of the board core (boards.device.BoardCore: UART + DeviceController + engine).

Driven only through the UART pins, with the framing of boards/protocol.py.
Parameters (sim.runner.bench_params): ``divisor`` (clock cycles per bit) and
``steps``, a list of ``{"send": hex, "expect": n}``: send the bytes, then
read ``n`` reply bytes. The bench hands back the replies (hex) with
sim.runner.bench_output; the pytest side decodes and checks them.
"""

from __future__ import annotations

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, Timer

from sim.runner import bench_output, bench_params


async def _send_byte(dut, div: int, b: int) -> None:
    for bit in [0] + [(b >> i) & 1 for i in range(8)] + [1]:
        dut.rx.value = bit
        await ClockCycles(dut.clk, div)


async def _receiver(dut, div: int, out: bytearray) -> None:
    """Runs for the whole test: every byte on ``tx``, sampled in the middle of each bit."""
    while True:
        if int(dut.tx.value):
            await FallingEdge(dut.tx)
        await ClockCycles(dut.clk, div // 2)  # middle of the start bit
        v = 0
        for i in range(8):
            await ClockCycles(dut.clk, div)
            v |= int(dut.tx.value) << i
        await ClockCycles(dut.clk, div)  # stop bit
        assert int(dut.tx.value) == 1, "UART framing error on tx"
        out.append(v)


@cocotb.test()
async def protocol(dut):
    p = bench_params()
    div = p["divisor"]
    dut.rx.value = 1
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 4)
    rx = bytearray()
    cocotb.start_soon(_receiver(dut, div, rx))
    replies = []
    for step in p["steps"]:
        del rx[:]
        for b in bytes.fromhex(step["send"]):
            await _send_byte(dut, div, b)
        waited = 0
        while len(rx) < step["expect"] and waited < p.get("timeout", 200_000):
            await ClockCycles(dut.clk, 10 * div)
            waited += 10 * div
        await ClockCycles(dut.clk, 12 * div)  # catch any unexpected extra byte
        replies.append(bytes(rx).hex())
    await Timer(1, unit="ns")
    bench_output({"replies": replies})
