import numpy as np
import pytest
from bitarray import bitarray
from hypothesis import given, settings
from hypothesis import strategies as st

from compressor.contract.huffman import CanonicalCode, code_lengths, entropy_bits


def roundtrip(sym: np.ndarray, alphabet: int, max_len: int = 15) -> CanonicalCode:
    code = CanonicalCode.from_symbols(sym, alphabet, max_len)
    bits = code.encode(sym)
    assert len(bits) == code.encoded_bits(sym)
    np.testing.assert_array_equal(code.decode(bits, sym.size), sym)
    return code


def test_single_symbol_alphabet():
    code = roundtrip(np.full(100, 7), 16)
    assert code.lengths[7] == 1 and code.lengths.sum() == 1


def test_empty_stream():
    code = CanonicalCode.from_symbols(np.zeros(0, dtype=np.int64), 16)
    assert len(code.encode(np.zeros(0, dtype=np.int64))) == 0


def test_very_skewed_alphabet_respects_length_bound():
    freqs = np.array([2**i for i in range(30)])  # plain Huffman would need 29-bit codes
    sym = np.repeat(np.arange(30), np.minimum(freqs, 5000))
    for bound in (5, 8, 12):
        code = roundtrip(sym, 30, bound)
        assert code.max_len <= bound
        assert np.sum(2.0 ** -code.lengths[code.lengths > 0].astype(float)) <= 1


def test_package_merge_matches_huffman_when_unbounded():
    rng = np.random.default_rng(0)
    freqs = rng.integers(1, 1000, 40)
    lens = code_lengths(freqs, 15)
    # optimal Huffman cost, by the classic two-smallest merge
    import heapq
    heap = list(freqs.tolist())
    heapq.heapify(heap)
    cost = 0
    while len(heap) > 1:
        a, b = heapq.heappop(heap), heapq.heappop(heap)
        cost += a + b
        heapq.heappush(heap, a + b)
    assert int((lens * freqs).sum()) == cost


def test_huffman_within_one_bit_of_entropy():
    rng = np.random.default_rng(1)
    sym = rng.geometric(0.2, 50_000).clip(0, 31)
    code = roundtrip(sym, 32)
    assert entropy_bits(sym) <= code.encoded_bits(sym) < entropy_bits(sym) + sym.size


def test_truncated_stream_raises():
    sym = np.arange(16).repeat(3)
    code = CanonicalCode.from_symbols(sym, 16)
    bits = code.encode(sym)
    with pytest.raises(ValueError):
        code.decode(bits[: len(bits) - 5], sym.size)


def test_invalid_lengths_rejected():
    code = CanonicalCode(np.array([1, 1, 1], dtype=np.uint8))  # Kraft sum 1.5
    with pytest.raises(ValueError, match="Kraft"):
        code.decode(bitarray("0101"), 2)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(0, 63), min_size=1, max_size=400), st.integers(6, 15))
def test_roundtrip_property(symbols, bound):
    roundtrip(np.array(symbols), 64, bound)


def test_chunked_counts_and_encoding_match_one_pass(monkeypatch):
    """Symbol counts and codes are built chunk by chunk; chunks whose largest symbol differs."""
    import compressor.contract.huffman as huffman

    monkeypatch.setattr(huffman, "ENCODE_CHUNK", 1000)
    rng = np.random.default_rng(4)
    sym = np.concatenate([rng.integers(0, 150, 2500), rng.integers(0, 20, 2500), [149]]).astype(np.uint16)
    np.testing.assert_array_equal(huffman.symbol_counts(sym, 0), np.bincount(sym))
    np.testing.assert_array_equal(huffman.symbol_counts(sym, 256), np.bincount(sym, minlength=256))
    code = roundtrip(sym, 256)
    ref = bitarray("".join(format(int(code.codes[s]), f"0{int(code.lengths[s])}b") for s in sym))
    assert code.encode(sym) == ref
