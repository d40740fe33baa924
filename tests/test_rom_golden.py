"""ROM image and golden model: round trips, extreme sparsity structure, cycle model, fuzzing."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compressor.contract.errors import FormatError
from compressor.contract.fixedpoint import IntLayer, requantize, run_int
from compressor.contract.golden import Timing, decode_rom, infer, layer_cycles, scan_cycles
from compressor.contract.rom import build, from_readmemh, parse, to_readmemh
from sim.testnets import extreme_net, int_layer  # noqa: F401  (also used by other tests)


def reference(layers, x):
    """Plain dense integer reference, independent of the ROM and the decoder."""
    a = x.astype(np.int64)
    for layer in layers:
        acc = a @ layer.weights().T + layer.bias
        a = requantize(acc, layer.mult, layer.shift) if layer.relu else acc
    return a


@pytest.mark.parametrize("n_pes", [1, 2, 3, 4, 8, 16])
def test_golden_matches_reference_on_extreme_layers(rng, n_pes):
    layers = extreme_net(rng)
    image = build(layers, n_pes, max_len=10)
    rom = parse(image, "t.rom")
    dec = decode_rom(rom)
    for d, orig in zip(dec, layers, strict=True):
        np.testing.assert_array_equal(d.int_layer.index, orig.index)
        np.testing.assert_array_equal(d.int_layer.codebook, orig.codebook)
    x = rng.integers(0, 256, (20, 64))
    x[0] = 0  # all-zero input
    x[1] = 255  # all non-zero
    res = infer(dec, x)
    np.testing.assert_array_equal(res["logits"], reference(layers, x))
    assert np.all(res["cycles"] >= 1) and np.all(res["ideal"] >= 0)


def test_entry_counts_include_fillers(rng):
    layer = int_layer(rng, 20, 2, 0.0, zbits=2, relu=False)  # a one-layer net: its layer is the last
    layer.index[17, 1] = 1  # PE 0 of 1: gap 17 = 4 fillers of 4 + z=1
    d = decode_rom(parse(build([layer], 1)))[0]
    assert d.entries[:, 0].tolist() == [0, 5]
    d2 = decode_rom(parse(build([layer], 2)))[0]  # local row 8 in PE 1: 2 fillers + z=0
    assert d2.entries.tolist() == [[0, 0], [0, 3]]


def test_cycle_model_hand_computed():
    t = Timing(fifo_depth=2)  # the RTL's latencies (setup 4, issue 5, drain 6, requant 5, readout 4)
    assert (t.setup, t.issue_latency, t.drain, t.requant_latency, t.readout_latency) == (4, 5, 6, 5, 4)
    entries = np.array([[3, 1], [0, 0], [2, 5], [1, 1]])  # 4 columns x 2 PEs
    acts = np.array([7, 0, 9, 4])
    # groups of N=2: g0 = {0 nz, 1 zero} -> 1 issue; g1 = {2, 3} -> 2 issues
    # issue k=0 (col 0) at t=4: both PEs start at 4+5=9: PE0 [9, 12), PE1 [9, 10)
    # issue k=1 (col 2) at t=5: PE0 max(10, 12) -> [12, 14), PE1 max(10, 10) -> [10, 15)
    # issue k=2 (col 3) at t=6 but FIFO depth 2: wait for the cycle after column 0 started
    #   in every PE (9 + 1) -> t=10: PE0 max(15, 14) -> [15, 16), PE1 max(15, 15) -> [15, 16)
    # scan ends at 11; done = max(11, 16 + drain 6) = 22; requant ceil(5/2) + 5 = 8 -> 30
    cycles, ideal = layer_cycles(acts, entries, rows=5, relu=True, timing=t)
    assert ideal == 3 + 5 + 1
    assert cycles == 30
    # all-zero input: setup, scan 2 empty groups, nothing to drain, requant
    assert layer_cycles(np.zeros(4, int), entries, 5, True, t) == (4 + 2 + 8, 0)
    # final layer: one read-out cycle per row (running argmax) + readout latency instead
    assert layer_cycles(np.zeros(4, int), entries, 5, False, t)[0] == 4 + 2 + 5 + 4


def test_cycle_model_two_decode_contexts_hand_computed():
    """Two contexts per PE (EngineParams.contexts = 2): issue k to context k mod 2, each decoding
    in its own parity of cycles at 2 cycles an entry, first code one cycle later (issue latency 6)."""
    t1, t2 = Timing.engine(2), Timing.engine(2, contexts=2)
    assert (t2.contexts, t2.issue_latency, t2.drain) == (2, 6, 6) and t1.contexts == 1
    entries = np.array([[3], [3]])  # 2 columns x 1 PE, both issued back to back from cycle 0
    acts = np.array([1, 1])
    # one context: [5, 8), [8, 11); idle 11 + 6 = 17
    assert scan_cycles(acts, entries, t1, 0)[0] == 17
    # two: column 0 on context 0 from 0 + 6 (even) to 12; column 1 on context 1 from 1 + 6 = 7 (odd)
    # to 13, its cycles interleaved with column 0's; idle 13 + 6 = 19
    assert scan_cycles(acts, entries, t2, 0)[0] == 19
    # a context starts only in its own cycles: the scan starting at 1 shifts everything by one
    assert scan_cycles(acts, entries, t2, 1)[0] == 20
    # three columns: the third (context 0 again) waits for the first: [12, 18); idle 24
    assert scan_cycles(np.array([1, 1, 1]), np.array([[3], [3], [3]]), t2, 0)[0] == 24
    with pytest.raises(ValueError, match="1 or 2 decode contexts"):
        Timing.engine(contexts=3)


def test_cycle_model_drops_the_columns_a_pe_holds_nothing_of():
    t = Timing(fifo_depth=2)  # drop_free 2: a dropped issue at b holds its slot through b + 2
    assert t.drop_free == 2
    entries = np.array([[3, 0], [0, 0], [0, 2], [1, 1]])  # 4 columns x 2 PEs
    acts = np.array([5, 6, 7, 8])  # 4 issues, 2 groups of 2
    # k=0 (col 0) at b=4: PE0 keeps it [9, 12); PE1 drops it (slot freed at 6)
    # k=1 (col 1) at b=5: both PEs drop it (slots freed at 7)
    # k=2 (col 2) at b=6? PE0 holds issue 0 (until 9) and issue 1 (until 7): full at 6 and 7,
    #   room at 8 -> b=8: PE0 drops it (freed 10), PE1 keeps it [13, 15)
    # k=3 (col 3) at b=9? PE0 holds issues 0 (9) and 2 (10): full -> b=10:
    #   PE0 [max(15, 12), 16), PE1 [max(15, 15), 16)
    # scan ends at 11; done = max(11, 16 + drain 6) = 22
    done, ideal = scan_cycles(acts, entries, t, t.setup)
    assert (done, ideal) == (22, 3 + 0 + 2 + 1)
    # every issued column dropped by every PE: no drain, idle drop_free + 1 after the last issue
    assert scan_cycles(np.array([0, 9, 0, 0]), entries, t, 4) == (4 + 3, 0)


def test_hex_and_mem_parse_back_to_same_bytes(rng, tmp_path):
    from compressor.contract.rom import load, save

    image = build(extreme_net(rng), 4)
    for fmt in ("bin", "hex", "mem"):
        save(image, tmp_path / f"m.{fmt}", fmt)
        if fmt != "bin":
            assert from_readmemh((tmp_path / f"m.{fmt}").read_bytes()) == image
        rom = load(tmp_path / f"m.{fmt}")
        assert rom.n_pes == 4 and len(rom.layers) == 3
    # $readmemh needs plain hex words; mem lines are 8 digits (32-bit little-endian words)
    lines = (tmp_path / "m.mem").read_text().splitlines()[1:]
    assert all(len(x) == 8 for x in lines)
    assert int(lines[0], 16).to_bytes(4, "little") == image[:4]
    assert to_readmemh(image, 1).decode().splitlines()[1] == f"{image[0]:02x}"


def test_rom_rejects_bad_magic_version_crc(rng):
    image = build(extreme_net(rng), 2)
    with pytest.raises(FormatError, match="bad magic"):
        parse(b"XXXX" + image[4:], "m.rom")
    with pytest.raises(FormatError, match="version"):
        parse(image[:4] + b"\x07" + image[5:], "m.rom")
    with pytest.raises(FormatError, match="m.rom: CRC32"):
        parse(image[:-10] + bytes([image[-10] ^ 1]) + image[-9:], "m.rom")


def _reseal(body: bytes) -> bytes:
    import struct
    import zlib

    return body + struct.pack("<I", zlib.crc32(body))


FUZZ_IMAGE = build(extreme_net(np.random.default_rng(7)), 3, max_len=9)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzz_truncated_and_bitflipped_images(data):
    """Damaged images (CRC re-sealed, so the parser and decoder see the damage) fail cleanly."""
    body = bytearray(FUZZ_IMAGE[:-4])
    kind = data.draw(st.sampled_from(["flip", "truncate", "bytes"]))
    if kind == "truncate":
        body = body[: data.draw(st.integers(0, len(body) - 1))]
    else:
        for _ in range(data.draw(st.integers(1, 8))):
            i = data.draw(st.integers(0, len(body) - 1))
            body[i] = body[i] ^ (1 << data.draw(st.integers(0, 7))) if kind == "flip" \
                else data.draw(st.integers(0, 255))
    try:
        rom = parse(_reseal(bytes(body)), "fuzz.rom")
        layers = decode_rom(rom, "fuzz.rom")
        infer(layers, np.full((1, rom.input_size), 3))
    except FormatError as e:
        assert "fuzz.rom" in str(e)


def test_run_int_argmax_ties_pick_lowest():
    layer = IntLayer(np.ones((3, 2), dtype=np.int64), np.array([0, 1]), np.zeros(3, dtype=np.int64), False)
    logits, _ = run_int([layer], np.array([[1, 2]]))
    assert logits.argmax(axis=1).tolist() == [0]


def _grow_last_region(image: bytes, extra: bytes, move_end: bool) -> bytes:
    """``extra`` appended to the last PE's stream region; ``move_end``: the last column's pointer covers it."""
    import struct

    rom = parse(image, "t.rom")
    n, body = rom.n_pes, bytearray(image[:-4])
    table = 32 + 36 * len(rom.layers) + 8 * (n - 1)
    struct.pack_into("<I", body, table + 4, len(rom.streams[-1]) + len(extra))
    if move_end:  # pointer row C of the last layer, last PE
        pb, ptr_off = rom.ptr_bytes, struct.unpack_from("<I", image, 32 + 36 * (len(rom.layers) - 1) + 28)[0]
        at = ptr_off + pb * (rom.layers[-1].cols * n + n - 1)
        end = int(rom.layers[-1].ptr[-1, -1]) + 8 * len(extra)
        body[at:at + pb] = end.to_bytes(pb, "little")
    body += extra
    struct.pack_into("<I", body, 24, len(body) + 4)
    return _reseal(bytes(body))


@pytest.mark.parametrize("extra", [b"\0" * 4, b"\xff" * 4, b"\0" * (1 << 20)])
def test_unused_stream_bytes_are_refused(rng, extra):
    """Found by benchmarks/fuzz_formats.py: 1 MiB of unused bytes after a PE's codes was accepted and
    cost the golden model 400 MB and seconds; a region is exactly its codes, zero-padded to 4 bytes."""
    image = build(extreme_net(rng), 2, max_len=10)
    with pytest.raises(FormatError, match=r"t\.rom: PE 1: stream region of \d+ bytes for \d+ bits of codes"):
        parse(_grow_last_region(image, extra, move_end=False), "t.rom")


def test_nonzero_stream_padding_bits_are_refused(rng):
    image = build(extreme_net(rng), 1, max_len=10)
    rom = parse(image, "t.rom")
    end = int(rom.layers[-1].ptr[-1, 0])
    assert end % 32, "the test needs padding bits"
    body = bytearray(image[:-4])
    body[rom.stream_offsets[0] + len(rom.streams[0]) - 1] |= 1  # the region's last bit is padding
    with pytest.raises(FormatError, match=r"t\.rom: PE 0: stream region"):
        parse(_reseal(bytes(body)), "t.rom")


def test_a_column_of_a_million_codes_decodes_in_bounded_time():
    """Found by benchmarks/fuzz_formats.py: the golden decoder took one numpy step per code of the
    longest column, so bits inserted into one column (pointers moved) took seconds; now it takes
    log2(codes) passes. Fillers past the rows are harmless (as in the RTL): accepted, all counted."""
    import time

    index = np.zeros((65535, 2), dtype=np.int64)
    index[-1, :] = 1  # zbits 1: 32767 fillers then the weight in each column; "1" codes the filler
    layer = IntLayer(index, np.array([0, 5, 6, 7]), np.zeros(65535, dtype=np.int64), False, wbits=2, zbits=1)
    image = _grow_last_region(build([layer], 1, max_len=2), b"\xff" * (1 << 17), move_end=True)
    t0 = time.perf_counter()
    dec = decode_rom(parse(image, "t.rom"), "t.rom")
    assert time.perf_counter() - t0 < 2.5  # one numpy step per code: over 4 s
    assert dec[0].entries[:, 0].tolist() == [32768, 32768 + (1 << 20)]
    np.testing.assert_array_equal(dec[0].int_layer.index, index)


def test_each_layer_decodes_only_its_own_bits(rng):
    """Found by benchmarks/fuzz_formats.py: every layer ran the window decoder over the whole image's
    bits, so a deep net with one big layer cost layers x bits (this valid 42-layer image: 2.4 s)."""
    import time

    layers = [int_layer(rng, 64, 4096, 0.9, wbits=4)] + [int_layer(rng, 64, 64, 0.1) for _ in range(40)] \
        + [int_layer(rng, 10, 64, 0.1, relu=False)]
    for layer in layers:
        layer.codebook = np.clip(layer.codebook, -20, 20)  # the accumulator bound holds
    rom = parse(build(layers, 1, 12), "t.rom")
    t0 = time.perf_counter()
    dec = decode_rom(rom, "t.rom")
    assert time.perf_counter() - t0 < 1.5
    for d, orig in zip(dec, layers, strict=True):
        np.testing.assert_array_equal(d.int_layer.index, orig.index)
