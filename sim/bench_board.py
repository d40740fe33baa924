"""cocotb bench of the board core (boards.device.BoardCore: UART + DeviceController + engine).

Driven only through the UART pins, with the framing of boards/protocol.py;
cocotbext-uart's UartSource drives ``rx`` and its UartSink reads ``tx``.
Parameters (sim.runner.bench_params): ``divisor`` (clock cycles per bit),
``steps``, a list of ``{"send": hex, "expect": n}``: send the bytes, then
read ``n`` reply bytes, and, for a core that boots from flash, ``flash``
(hex) and ``flash_offset``: the contents of the SPI flash model
(:class:`SpiFlash`), which the core reads before the first step. The bench hands back the replies (hex) with
sim.runner.bench_output; the pytest side decodes and checks them.
"""

from __future__ import annotations

import logging

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, Timer
from cocotbext.uart import UartSink, UartSource

from sim.runner import bench_output, bench_params

CLK_NS = 10  # clock period


class SpiFlash:
    """A SPI NOR flash in mode 0, as much of one as the boot loader uses (boards/flashboot.py).

    It powers up in deep power-down, where it ignores READ (so a loader that forgets
    the 0xAB wake-up reads nothing); ``0xAB`` wakes it when CS rises; READ ``0x03``
    with a 24-bit address then streams bytes MSB first, one bit per falling SCK edge.
    Evaluated once per clock, between the core's edges (like boards/boardsim.cpp).
    """

    def __init__(self, dut, data: bytes, offset: int) -> None:
        self.dut, self.mem, self.offset = dut, data, offset
        self.awake = False
        self.reads = 0  # READ commands served

    def byte(self, addr: int) -> int:
        i = addr - self.offset
        return self.mem[i] if 0 <= i < len(self.mem) else 0xFF

    async def run(self) -> None:
        d = self.dut
        selected, prev_sck, nbits, shift, reading, addr, bit, out = False, 0, 0, 0, False, 0, -1, 0xFF
        d.flash_cipo.value = 1
        while True:
            await FallingEdge(d.clk)
            cs, sck, mosi = int(d.flash_cs.value), int(d.flash_sck.value), int(d.flash_copi.value)
            if not cs and int(d.booted.value):
                return  # the loader never selects the flash again: no Python per clock from here
            if not cs:
                if selected and nbits >= 8 and ((shift >> (nbits - 8)) & 0xFF) == 0xAB:
                    self.awake = True
                selected, nbits, shift, reading, prev_sck = False, 0, 0, False, sck
                d.flash_cipo.value = 1
                continue
            selected = True
            if sck and not prev_sck and not reading:
                shift, nbits = shift << 1 | mosi, nbits + 1
                if nbits == 32 and shift >> 24 == 0x03 and self.awake:
                    reading, addr, bit, self.reads = True, shift & 0xFFFFFF, -1, self.reads + 1
            elif not sck and prev_sck and reading:
                if bit < 0:
                    out, addr, bit = self.byte(addr), addr + 1, 7
                d.flash_cipo.value = (out >> bit) & 1
                bit -= 1
            prev_sck = sck


@cocotb.test()
async def protocol(dut):
    p = bench_params()
    div = p["divisor"]
    baud = 1e9 / (div * CLK_NS)  # one bit = div clock cycles (an integer number of ns)
    dut.rx.value = 1
    cocotb.start_soon(Clock(dut.clk, CLK_NS, unit="ns").start())
    flash = None
    if "flash" in p:  # from the first cycle: the boot loader starts as reset ends
        flash = SpiFlash(dut, bytes.fromhex(p["flash"]), p["flash_offset"])
        cocotb.start_soon(flash.run())
    dut.rst.value = 1
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 4)
    if flash:
        while not int(dut.booted.value):
            await ClockCycles(dut.clk, 100)
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
    bench_output({"replies": replies, "flash_reads": flash.reads if flash else None})
