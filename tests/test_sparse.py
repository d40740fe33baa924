import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from compressor.contract.sparse import relative_decode, relative_encode


def test_filler_for_gap_far_beyond_index_width():
    z, w, _ = relative_encode(np.array([100]), np.array([3]), np.array([True]), zbits=4)
    # 100 = 6 fillers of 16 positions + z=4
    assert z.tolist() == [15] * 6 + [4] and w.tolist() == [0] * 6 + [3]
    pos, idx = relative_decode(z, w)
    assert pos.tolist() == [100] and idx.tolist() == [3]


def test_gap_exactly_at_limits():
    z, w, _ = relative_encode(np.array([15, 32]), np.array([1, 2]), np.array([True, False]), zbits=4)
    assert z.tolist() == [15, 15, 0] and w.tolist() == [1, 0, 2]


def test_group_restart_and_empty_columns():
    # column 0 holds rows 2 and 5; columns 1-2 are empty; column 3 holds row 0
    pos = np.array([2, 5, 0])
    first = np.array([True, False, True])
    z, w, run = relative_encode(pos, np.array([1, 2, 3]), first, zbits=2)
    starts = np.zeros(z.size, bool)
    starts[run[first]] = True
    p, i = relative_decode(z, w, starts)
    assert p.tolist() == [2, 5, 0] and i.tolist() == [1, 2, 3]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 300), max_size=60, unique=True), st.integers(1, 8))
def test_roundtrip_property(positions, zbits):
    pos = np.sort(np.array(positions, dtype=np.int64))
    w = (np.arange(pos.size) % 7) + 1
    first = np.zeros(pos.size, bool)
    first[:1] = True
    z, ww, _ = relative_encode(pos, w, first, zbits)
    assert z.size == 0 or z.max() < (1 << zbits)
    p, i = relative_decode(z, ww)
    np.testing.assert_array_equal(p, pos)
    np.testing.assert_array_equal(i, w)


def test_relative_histograms_are_the_streams_symbol_counts():
    from compressor.contract.sparse import relative_histograms

    rng = np.random.default_rng(3)
    for density in (0.9, 0.2, 0.01):
        flat = np.where(rng.random(20_000) < density, rng.integers(1, 32, 20_000), 0)
        pos = np.flatnonzero(flat)
        first = rng.random(pos.size) < 0.01
        first[:1] = True
        pos_local = pos - np.maximum.accumulate(np.where(first, pos, 0))  # restart per group
        hist = relative_histograms(pos_local, flat[pos], first, range(1, 9), 5)
        for zbits, (zf, wf) in hist.items():
            z, w, _ = relative_encode(pos_local, flat[pos], first, zbits)
            np.testing.assert_array_equal(zf, np.bincount(z, minlength=1 << zbits))
            np.testing.assert_array_equal(wf, np.bincount(w, minlength=32))
