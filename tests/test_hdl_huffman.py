"""The Huffman table contract the PE's decode loop (hdl/decode.py) is built on, in pure Python.

The RTL decodes with the tables of ``compressor.contract.huffman.decode_tables``
(the one table builder), rescaled to its Lmax by ``hdl.params.contents``, and
is checked against the golden decoder (``compressor.contract.golden``, the one
reference decoder) by the PE and engine benches. These properties are what the
decode loop's shape depends on (docs/hardware.md, "The decode loop"):

* the comparisons ``v < limit[k]`` form a thermometer code (limits never
  decrease), so the code length is its edge, a one-hot select;
* ``limit[l]`` has zeros in its low ``L - l`` bits, so the length depends only on
  the code's own bits: whatever follows a code (the next code, the next
  column's bits, zeros) does not change its length or its symbol index;
* a window at or above ``limit[L]`` matches no length (the loop's error check);
* rescaled to Lmax >= L the tables decode every code the same way.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from compressor.contract.errors import DeepcompError
from compressor.contract.fixedpoint import IntLayer
from compressor.contract.golden import decode_layer
from compressor.contract.huffman import CanonicalCode, code_lengths, decode_tables
from compressor.contract.rom import build, parse
from hdl.params import contents, fit


def decode_window(v: int, limit, offset) -> tuple[int, int] | None:
    """(length, table index) of window ``v`` as the RTL's loop finds them; None: no length."""
    lt = [v < int(x) for x in limit]  # the Lmax comparators
    if not any(lt):
        return None
    k = lt.index(True)
    assert all(lt[k:]), "not a thermometer code"
    L = len(limit)
    return k + 1, ((v >> (L - 1 - k)) + int(offset[k])) % (1 << 16)


def check_every_code(code: CanonicalCode, limit, offset, order, rng) -> None:
    """Each codeword, followed by any bits, decodes to its symbol with its length."""
    L = len(limit)
    for s in np.flatnonzero(code.lengths):
        ln, c = int(code.lengths[s]), int(code.codes[s])
        free = L - ln
        for tail in {0, (1 << free) - 1, int(rng.integers(0, 1 << free))}:
            got = decode_window((c << free) | tail, limit, offset)
            assert got is not None and got[0] == ln, (s, ln, got)
            assert int(order[got[1]]) == s


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 10_000), min_size=1, max_size=40), st.integers(1, 16), st.integers(0, 4))
def test_decode_tables_follow_the_canonical_code(freqs, max_len, extra):
    if len(freqs) > 1 << max_len:
        return
    code = CanonicalCode(code_lengths(np.asarray(freqs), max_len))
    limit, offset, order = decode_tables(code, max_len)
    assert np.all(np.diff(limit) >= 0)
    for ln in range(1, max_len + 1):  # the code's own prefix decides its length
        assert int(limit[ln - 1]) % (1 << (max_len - ln)) == 0
    rng = np.random.default_rng(len(freqs) * 17 + max_len)
    check_every_code(code, limit, offset, order, rng)
    kraft = sum(2.0 ** -int(x) for x in code.lengths if x)
    assert (int(limit[-1]) == 1 << max_len) == (kraft == 1.0)
    if int(limit[-1]) < 1 << max_len:  # an incomplete code: the windows past it match nothing
        assert decode_window(int(limit[-1]), limit, offset) is None
    # the decoder's Lmax >= L: limit << (Lmax - L), lengths above L repeat limit[L] (never match)
    lmax = min(16, max_len + extra)
    sh = lmax - max_len
    wide = [int(x) << sh for x in limit] + [int(limit[-1]) << sh] * sh
    wide_offset = [int(x) for x in offset] + [0] * sh
    for s in np.flatnonzero(code.lengths):
        ln, c = int(code.lengths[s]), int(code.codes[s])
        got = decode_window((c << (lmax - ln)) | ((1 << (lmax - ln)) - 1), wide, wide_offset)
        assert got is not None and got[0] == ln and int(order[got[1]]) == s


def skewed_layer(rng, rows: int, cols: int, wbits: int, zbits: int) -> IntLayer:
    """Geometric weight indices: long codes, which a small code length bound then clips."""
    w = np.minimum(rng.geometric(0.35, (rows, cols)), (1 << wbits) - 1)
    index = np.where(rng.random((rows, cols)) < 0.5, w, 0).astype(np.int64)
    codebook = np.concatenate([[0], rng.integers(-30000, 30000, (1 << wbits) - 1)])
    return IntLayer(index, codebook, rng.integers(-1000, 1000, rows), False, 1 << 15, 20,
                    wbits=wbits, zbits=zbits)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(2, 10), st.integers(1, 3), st.integers(0, 4))
def test_rom_tables_rescale_for_the_decoder_and_golden_reads_back(seed, max_len, n_pes, extra):
    rng = np.random.default_rng(seed)
    layer = skewed_layer(rng, int(rng.integers(1, 40)), int(rng.integers(1, 30)),
                         int(rng.integers(2, 6)), int(rng.integers(1, 5)))
    try:
        rom = parse(build([layer], n_pes, max_len=max_len))
    except DeepcompError:  # more joint symbols than 2**max_len codes
        assume(False)
    ly = rom.layers[0]
    # the canonical code the ROM's tables describe: count_l = first_{l+1} - 2 first_l, where
    # limit[l-1] >> (L - l) = first code of length l + count_l
    top = ly.limit >> (max_len - np.arange(1, max_len + 1))
    counts = top - 2 * np.concatenate([[0], top[:-1]])
    lengths = np.zeros(int(ly.symbols.max(initial=0)) + 1, dtype=np.uint8)
    lengths[ly.symbols] = np.repeat(np.arange(1, max_len + 1), counts)
    code = CanonicalCode(lengths)
    limit, offset, order = decode_tables(code, max_len)
    np.testing.assert_array_equal(ly.limit, limit)
    np.testing.assert_array_equal(ly.offset, offset)
    np.testing.assert_array_equal(ly.symbols, order)
    # the golden decoder reads back exactly the layer
    np.testing.assert_array_equal(decode_layer(rom, 0).int_layer.index, layer.index)
    # hdl.params.contents rescales the tables to the decoder's Lmax; every code decodes the same
    p = replace(fit(rom), max_len=min(16, max_len + extra))
    word = contents(rom, p).layers[0]
    check_every_code(code, word.limit, word.offset, order, rng)
