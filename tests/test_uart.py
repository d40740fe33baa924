"""UART blocks in Amaranth's simulator: loopback, framing error, back-pressure."""

import random

from amaranth import Module
from amaranth.sim import Simulator

from hdl.uart import UARTRx, UARTTx


def loopback(data: list[int], divisor: int, ready_prob: float = 1.0) -> tuple[list[int], int]:
    m = Module()
    m.submodules.tx = tx = UARTTx(divisor)
    m.submodules.rx = rx = UARTRx(divisor)
    m.d.comb += rx.rx.eq(tx.tx)
    got: list[int] = []
    overruns = 0
    rnd = random.Random(1)

    async def send(ctx):
        for byte in data:
            ctx.set(tx.i.payload, byte)
            ctx.set(tx.i.valid, 1)
            await ctx.tick().until(tx.i.ready)
            ctx.set(tx.i.valid, 0)

    async def receive(ctx):
        nonlocal overruns
        for _ in range((len(data) + 2) * 10 * divisor * 3):
            ready = rnd.random() < ready_prob
            ctx.set(rx.o.ready, ready)
            await ctx.tick()
            if ctx.get(rx.overrun):
                overruns += 1
            if ctx.get(rx.o.valid) and ready:
                got.append(ctx.get(rx.o.payload))

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(send)
    sim.add_testbench(receive, background=True)
    sim.run_until(1e-6 * (len(data) + 2) * 10 * divisor * 1.2)
    return got, overruns


def test_loopback_all_byte_values():
    data = list(range(256))
    got, _ = loopback(data, divisor=5)
    assert got == data


def test_framing_error_drops_byte():
    m = UARTRx(8)
    sim = Simulator(m)
    sim.add_clock(1e-6)
    flags = []

    async def tb(ctx):
        ctx.set(m.o.ready, 1)
        for bit in [0] + [1, 0, 1, 0, 1, 0, 1, 0] + [0] + [1] * 3:  # stop bit 0
            ctx.set(m.rx, bit)
            for _ in range(8):
                await ctx.tick()
                flags.append((ctx.get(m.frame_error), ctx.get(m.o.valid)))

    sim.add_testbench(tb)
    sim.run()
    assert any(f for f, _ in flags) and not any(v for _, v in flags)


def test_slow_consumer_sees_overrun_not_corruption():
    data = list(range(40))
    got, overruns = loopback(data, divisor=4, ready_prob=0.002)
    assert overruns > 0 and set(got) <= set(data) and got == sorted(got)
