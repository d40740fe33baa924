"""The device's CRC-32 (boards.device.ImageCRC: amaranth.lib.crc) against zlib, as LOAD uses it.

One byte per ``valid`` cycle with idle cycles in between, ``clear`` between
messages (the DeviceController pulses it on LOAD); ``crc`` must be zlib's and
``ok`` (the residue check) must hold exactly for messages that end with their
own CRC32 (little endian), the ROM image's trailer.
"""

import os
import zlib

from amaranth.sim import Simulator

from boards.device import ImageCRC


def run(chunks: list[bytes]) -> list[tuple[int, int]]:
    dut = ImageCRC()
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    out = []

    async def tb(ctx):
        for chunk in chunks:
            ctx.set(dut.clear, 1)
            await ctx.tick()
            ctx.set(dut.clear, 0)
            for i, b in enumerate(chunk):
                ctx.set(dut.data, b)
                ctx.set(dut.valid, 1)
                await ctx.tick()
                if i % 7 == 3:  # idle cycles must not change the state
                    ctx.set(dut.valid, 0)
                    await ctx.tick()
            ctx.set(dut.valid, 0)
            await ctx.tick()
            out.append((ctx.get(dut.crc), ctx.get(dut.ok)))

    sim.add_testbench(tb)
    sim.run()
    return out


def test_crc_matches_zlib_and_residue_check():
    msgs = [b"", b"a", os.urandom(300)]
    sealed = [m + zlib.crc32(m).to_bytes(4, "little") for m in msgs]
    corrupt = bytearray(sealed[2])
    corrupt[10] ^= 0x20
    res = run(msgs + sealed + [bytes(corrupt)])
    assert [c for c, _ in res[:3]] == [zlib.crc32(m) for m in msgs]
    assert [ok for _, ok in res[:3]] == [0, 0, 0]
    assert [ok for _, ok in res[3:6]] == [1, 1, 1]
    assert res[6][1] == 0
