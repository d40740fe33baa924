"""The ROM reader's limits, at each limit and just past it (docs/format.md, "Limits").

An image at the limits must be accepted, and then the RTL must compute
exactly what the golden model computes (every logit, class and cycle count);
an image one step past a limit must be refused by the reader (and by the
writer, where the writer could produce it), so the golden model never runs
anything the hardware does not implement.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from compressor.contract.errors import DeepcompError, FormatError
from compressor.contract.fixedpoint import ACT_MAX, IntLayer
from compressor.contract.golden import decode_rom
from compressor.contract.rom import DESC, HEADER, _layout, build, from_readmemh, parse, to_readmemh
from tests.engine_checks import check_against_golden, extreme_inputs

ACC_LIMIT = (1 << 31) - 1


def recrc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def limit_net(rng: np.random.Generator) -> list[IntLayer]:
    """Every arithmetic field at its limit: wbits + zbits = 16, M = 2^16 - 1 with S = 0,
    S = 62, and a last layer whose accumulator bound is exactly 2^31 - 1."""
    a_idx = np.where(rng.random((12, 16)) < 0.5, rng.integers(1, 256, (12, 16)), 0)
    a = IntLayer(a_idx, np.concatenate([[0], rng.integers(-32767, 32768, 255)]),
                 rng.integers(-(1 << 20), 1 << 20, 12), True, mult=(1 << 16) - 1, shift=0, wbits=8, zbits=8)
    b_idx = np.where(rng.random((10, 12)) < 0.6, 1, 0)
    b = IntLayer(b_idx, np.array([0, -32767]), rng.integers(-100, 100, 10), True,
                 mult=1 << 15, shift=62, wbits=1, zbits=1)
    c_idx = np.where(rng.random((6, 10)) < 0.5, rng.integers(1, 4, (6, 10)), 0)
    c_cb = np.array([0, 32767, -32767, 12345])
    bound = (np.abs(c_cb[c_idx]).sum(axis=1) * ACT_MAX)
    c_bias = np.where(np.arange(6) % 2, -(ACC_LIMIT - bound), ACC_LIMIT - bound)  # |b| + bound = 2^31 - 1
    c = IntLayer(c_idx, c_cb, c_bias, False, wbits=2, zbits=3)
    return [a, b, c]


@pytest.fixture(scope="module")
def image() -> bytes:
    layers = limit_net(np.random.default_rng(5))
    assert max(ly.acc_bound() for ly in layers) == ACC_LIMIT
    return build(layers, 2, max_len=16)


def test_at_the_limits_is_accepted(image):
    rom = parse(image)
    assert [ly.wbits + ly.zbits for ly in rom.layers][0] == 16 and rom.max_len == 16
    assert (rom.layers[0].mult, rom.layers[1].shift) == ((1 << 16) - 1, 62)
    decode_rom(rom)
    assert parse(from_readmemh(to_readmemh(image, 4))).total_bytes == len(image)


def _desc_field(image: bytes, layer: int, field: int, value: int) -> bytes:
    """``image`` with descriptor field ``field`` (struct index) of ``layer`` set, CRC recomputed."""
    off = HEADER.size + DESC.size * layer
    vals = list(DESC.unpack_from(image, off))
    vals[field] = value
    body = bytearray(image[:-4])
    body[off: off + DESC.size] = DESC.pack(*vals)
    return recrc(bytes(body))


def _header_field(image: bytes, field: int, value) -> bytes:
    vals = list(HEADER.unpack_from(image, 0))
    vals[field] = value
    return recrc(HEADER.pack(*vals) + image[HEADER.size:-4])


PAST = {  # one step past a limit
    "mult 2^16": lambda im: _desc_field(im, 0, 6, 1 << 16),
    "shift 63": lambda im: _desc_field(im, 1, 5, 63),
    "last layer M != 0": lambda im: _desc_field(im, 2, 6, 1),
    "relu on the last layer": lambda im: _desc_field(im, 2, 4, 1),
    "no relu on a hidden layer": lambda im: _desc_field(im, 1, 4, 0),
    "reserved 1": lambda im: _desc_field(im, 0, 13, 1),
    "n_symbols 0": lambda im: _desc_field(im, 1, 12, 0),
    "acc_bits 33": lambda im: _header_field(im, 8, 33),
    "cb_bits 8": lambda im: _header_field(im, 9, 8),
    "flags 2": lambda im: _header_field(im, 10, 2),
    "signed input without a scale": lambda im: _header_field(im, 10, 1),
    "n_pes 65": lambda im: _header_field(im, 2, 65),
    "max_len 17": lambda im: _header_field(im, 4, 17),
    "ptr_bytes 5": lambda im: _header_field(im, 7, 5),
    "a stray byte before the CRC": lambda im: recrc(_header_field(im, 13, len(im) + 1)[:-4] + b"\0"),
    "non-zero padding": lambda im: _poke_padding(im),
    "a limit with bits below its length": lambda im: _poke_table(im, 0, 1),
    "an offset the counts do not imply": lambda im: _poke_table(im, 1, 1),
}


def _poke_table(image: bytes, word: int, xor: int) -> bytes:
    """XOR ``xor`` into u32 ``word`` of layer 0's Huffman table (0: limit[1], 1: offset[1])."""
    table_off = DESC.unpack_from(image, HEADER.size)[8]
    body = bytearray(image[:-4])
    at = table_off + 4 * word
    body[at:at + 4] = struct.pack("<I", struct.unpack_from("<I", body, at)[0] ^ xor)
    return recrc(bytes(body))


def _poke_padding(image: bytes) -> bytes:
    """A 1 in the first alignment gap between two sections."""
    rom = parse(image)
    geometry = [(ly.rows, ly.cols, ly.wbits, ly.zbits, ly.symbols.size) for ly in rom.layers]
    layout, _ = _layout(geometry, rom.n_pes, rom.max_len, rom.ptr_bytes)
    off, n = next((o, n) for offs in layout for o, n in offs.values() if n % 4)
    body = bytearray(image[:-4])
    body[off + n] = 1
    return recrc(bytes(body))


@pytest.mark.parametrize("what", sorted(PAST))
def test_one_step_past_a_limit_is_refused(image, what):
    bad = PAST[what](image)
    with pytest.raises(FormatError):
        decode_rom(parse(bad, "x.rom"), "x.rom")


def test_accumulator_one_past_the_bound_is_refused_by_writer_and_reader(image):
    layers = limit_net(np.random.default_rng(5))
    layers[2].bias[0] += 1
    with pytest.raises(DeepcompError, match="accumulator bound"):
        build(layers, 2, max_len=16)
    # the same bias written into the valid image: the golden model's re-check refuses it
    rom = parse(image)
    off = next(o for o in range(len(image)) if image[o:o + 4] == struct.pack("<i", int(rom.layers[2].bias[0])))
    body = bytearray(image[:-4])
    body[off:off + 4] = struct.pack("<i", int(rom.layers[2].bias[0]) + 1)
    with pytest.raises(FormatError, match="accumulator bound"):
        decode_rom(parse(recrc(bytes(body)), "x.rom"), "x.rom")


def test_hex_claiming_more_bytes_than_it_holds(image):
    text = to_readmemh(image, 1).splitlines(keepends=True)
    with pytest.raises(FormatError, match="header says"):
        from_readmemh(b"".join(text[:-1]), "x.hex")


@pytest.mark.rtl
def test_rtl_equals_golden_at_the_limits(image, tmp_path_factory):
    from sim import engine_sim

    b = engine_sim.build(image, tmp_path_factory.mktemp("limits"))
    x = extreme_inputs(np.random.default_rng(9), parse(image).input_size)
    check_against_golden(image, x, engine_sim.run(b, x))
