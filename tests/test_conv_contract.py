"""Convolution layers in the golden model and the ROM image (version 2): the spec of issue #12.

A direct reference (loops over output positions on (C, H, W) maps, requantize then
pool, exactly as docs/arithmetic.md states it) against ``fixedpoint.run_int`` (model
order, im2col) and against the golden model on the ROM (storage order for N PEs).
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compressor.contract import rom as romfmt
from compressor.contract.errors import DeepcompError, FormatError
from compressor.contract.fixedpoint import (
    ConvGeom,
    IntLayer,
    activate,
    cs,
    layer_acc,
    multiplier,
    run_int,
    storage_input,
    to_storage,
)
from compressor.contract.golden import decode_rom, infer
from compressor.contract.rom import build, parse
from sim.testnets import extreme_net, int_layer
from tests.conftest import mnist_or_skip

ROOT = Path(__file__).resolve().parents[1]


def direct(layers: list[IntLayer], x: np.ndarray) -> np.ndarray:
    """Loop reference: zero padding, per-position sums, requantize, then 2x2 max-pool (floor)."""
    a = x.astype(np.int64)
    for layer in layers:
        g = layer.conv
        if g is None:
            acc = a.reshape(len(a), -1) @ layer.weights().T + layer.bias
        else:
            w = layer.weights().reshape(layer.rows, g.in_c, g.kh, g.kw)
            m = a.reshape(len(a), g.in_c, g.in_h, g.in_w)
            big = np.zeros((len(a), g.in_c, g.in_h + 2 * g.kh + g.stride * g.out_h,
                            g.in_w + 2 * g.kw + g.stride * g.out_w), dtype=np.int64)
            big[:, :, g.pad_h:g.pad_h + g.in_h, g.pad_w:g.pad_w + g.in_w] = m
            acc = np.zeros((len(a), layer.rows, g.out_h, g.out_w), dtype=np.int64)
            for oy in range(g.out_h):
                for ox in range(g.out_w):
                    win = big[:, :, oy * g.stride:oy * g.stride + g.kh, ox * g.stride:ox * g.stride + g.kw]
                    acc[:, :, oy, ox] = np.einsum("nckl,rckl->nr", win, w) + layer.bias
        if not layer.relu:
            a = acc
            continue
        y = (acc if layer.signed else np.maximum(acc, 0)) * layer.mult
        if layer.shift:
            y = np.floor_divide(y + 2 ** (layer.shift - 1), 2 ** layer.shift)
        y = np.clip(y, -128, 127) if layer.signed else np.minimum(y, 255)
        if g is not None and g.pool == 2:
            hp, wp = g.out_hp, g.out_wp
            y = y[:, :, :2 * hp, :2 * wp].reshape(len(a), layer.rows, hp, 2, wp, 2).max(axis=(3, 5))
        a = y.reshape(len(a), -1)
    return a


def conv_layer(rng, out_c: int, g: ConvGeom, density: float = 0.5, signed: bool = False,
               wbits: int = 5) -> IntLayer:
    cols = g.in_c * g.kh * g.kw
    layer = int_layer(rng, out_c, cols, density, wbits=wbits, zbits=4)
    layer.conv, layer.signed = g, signed
    layer.shift = int(rng.integers(17, 22))
    return layer


def fc_after(rng, prev: IntLayer, rows: int, last: bool = True) -> IntLayer:
    return int_layer(rng, rows, prev.out_size(), 0.4, relu=not last)


def random_net(rng, kind: str) -> tuple[list[IntLayer], tuple[int, int, int]]:
    """A small conv net exercising one feature; returns the layers and the input (C, H, W)."""
    if kind == "stride2":
        g1 = ConvGeom.from_padding(3, 9, 8, 3, 3, stride=2, pad_h=1, pad_w=1)
        g2 = ConvGeom.from_padding(5, g1.out_hp, g1.out_wp, 2, 2, stride=2, pool=1)
        shape = (3, 9, 8)
    elif kind == "same":  # 'same' with stride 1: (k-1)//2 top/left, the rest bottom/right
        g1 = ConvGeom.from_padding(2, 7, 7, 4, 4, pad_h=1, pad_w=1, pad_b=2, pad_r=2)
        assert (g1.out_h, g1.out_w) == (7, 7)
        g2 = ConvGeom.from_padding(5, 7, 7, 5, 3, pad_h=2, pad_w=1, pool=2)  # 7x7 -> pool 3x3
        shape = (2, 7, 7)
    elif kind == "1x1":
        g1 = ConvGeom.from_padding(7, 5, 6, 1, 1, pool=2)  # odd 5 rows: the last is dropped
        g2 = ConvGeom.from_padding(5, 2, 3, 1, 1)
        shape = (7, 5, 6)
    else:  # "lenet": LeNet-5 in miniature, signed convolutions
        g1 = ConvGeom.from_padding(1, 12, 12, 5, 5, pool=2)  # 8x8 -> 4x4
        g2 = ConvGeom.from_padding(5, 4, 4, 3, 3, pool=2)  # 2x2 -> 1x1
        shape = (1, 12, 12)
    signed = kind in ("lenet", "stride2")
    c1 = conv_layer(rng, 5, g1, signed=signed)
    c2 = conv_layer(rng, 6, g2, signed=kind != "1x1", density=0.7)
    f1 = fc_after(rng, c2, 9, last=False)
    f2 = int_layer(rng, 4, 9, 0.5, relu=False)
    return scaled([c1, c2, f1, f2], rng.integers(0, 256, (32, int(np.prod(shape))))), shape


def scaled(layers: list[IntLayer], x: np.ndarray) -> list[IntLayer]:
    """Set each hidden layer's M, S so its outputs on ``x`` spread over the 8 bits (few saturate)."""
    a = x
    for layer in layers[:-1]:
        acc = layer_acc(layer, a)
        top = float(np.percentile(np.abs(acc) if layer.signed else np.maximum(acc, 0), 95)) or 1.0
        layer.mult, layer.shift = multiplier((100 if layer.signed else 200) / top)
        a = activate(layer, acc)
    return layers


KINDS = ["stride2", "same", "1x1", "lenet"]


@pytest.mark.parametrize("kind", KINDS)
def test_run_int_equals_direct_reference(rng, kind):
    layers, shape = random_net(rng, kind)
    x = rng.integers(0, 256, (13, int(np.prod(shape))))
    x[0] = 0
    x[1] = 255
    logits, inputs = run_int(layers, x)
    np.testing.assert_array_equal(logits, direct(layers, x))
    # every hidden output is in its range (and the net is not trivially constant)
    for layer, nxt in zip(layers[:-1], inputs[1:], strict=True):
        lo = -128 if layer.signed else 0
        assert nxt.min() >= lo and nxt.max() <= (127 if layer.signed else 255)
    assert len({tuple(r) for r in logits.tolist()}) > 3


def test_kernel_covering_the_input_is_the_fc_layer(rng):
    g = ConvGeom.from_padding(3, 4, 5, 4, 5)
    assert (g.out_h, g.out_w) == (1, 1)
    conv = conv_layer(rng, 6, g, signed=True)
    fc = replace(conv, conv=None)
    last = int_layer(rng, 3, 6, 0.6, relu=False)
    x = rng.integers(0, 256, (9, 60))
    np.testing.assert_array_equal(run_int([conv, last], x)[0], run_int([fc, last], x)[0])
    for n in (1, 2, 4):
        np.testing.assert_array_equal(infer(decode_rom(parse(build([conv, last], n))), x)["logits"],
                                      run_int([fc, last], x)[0])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n_pes", [1, 2, 3, 4, 8])
def test_rom_round_trip_and_golden_equal_run_int(rng, kind, n_pes):
    layers, shape = random_net(rng, kind)
    image = build(layers, n_pes, max_len=11)
    assert image[4] == 2
    rom = parse(image, "c.rom")
    assert rom.version == 2 and rom.input_size == int(np.prod(shape))
    stored = to_storage(layers, n_pes)
    dec = decode_rom(rom, "c.rom")
    for d, rl, s, orig in zip(dec, rom.layers, stored, layers, strict=True):
        assert rl.conv == orig.conv and rl.signed == orig.signed and rl.relu == orig.relu
        np.testing.assert_array_equal(d.int_layer.index, s.index)
        if orig.conv is not None:
            assert rl.cols == orig.conv.kh * orig.conv.kw * cs(orig.conv.in_c, n_pes)
    x = rng.integers(0, 256, (6, rom.input_size))
    x[0] = 0
    res = infer(dec, x)
    np.testing.assert_array_equal(res["logits"], run_int(layers, x)[0])
    assert res["layer_cycles"].shape == (6, 4) and np.all(res["cycles"] == res["layer_cycles"].sum(axis=1))
    assert np.all(res["cycles"] > 0)
    part = infer(dec, x, cycle_images=2)
    np.testing.assert_array_equal(part["logits"], res["logits"])
    np.testing.assert_array_equal(part["cycles"], res["cycles"][:2])


def test_storage_layout_by_hand():
    """cs = N * ceil(C / N); v[(y * W + x) * cs + c]; conv columns (ky * kw + kx) * cs_in + c."""
    assert [cs(c, 4) for c in (1, 4, 5, 20)] == [4, 4, 8, 20] and cs(20, 8) == 24
    g = ConvGeom.from_padding(3, 2, 2, 2, 1)  # out 1x2
    first = IntLayer(np.arange(1, 13).reshape(2, 6) % 4, np.arange(4), np.zeros(2, int), True, conv=g)
    x = np.arange(12).reshape(1, 3, 2, 2)  # a[c, y, x] = 4c + 2y + x
    v = storage_input(x.reshape(1, -1), first, 2)  # cs = 4
    assert v.shape == (1, 16)
    assert v[0].tolist() == [0, 4, 8, 0, 1, 5, 9, 0, 2, 6, 10, 0, 3, 7, 11, 0]
    s = to_storage([first], 2)[0]
    # model column (c, ky, kx=0) = c * 2 + ky -> storage column ky * cs + c
    for c in range(3):
        for ky in range(2):
            assert (s.index[:, ky * 4 + c] == first.index[:, c * 2 + ky]).all()
    assert not s.index[:, [3, 7]].any()
    # engine position order with pool 2: per pooled position, its 2x2 window dy then dx
    oy, ox = ConvGeom.from_padding(1, 5, 5, 1, 1, pool=2).positions()
    assert list(zip(oy[:8].tolist(), ox[:8].tolist(), strict=True)) == [
        (0, 0), (0, 1), (1, 0), (1, 1), (0, 2), (0, 3), (1, 2), (1, 3)]
    assert len(oy) == 16  # the odd last row and column are not computed


def test_geometry_rule():
    assert ConvGeom.from_padding(1, 28, 28, 5, 5).problem() is None
    # out = (in + pad + pad_bottom - k) // stride + 1 for some pad_bottom in 0..k-1
    ok = ConvGeom(1, 8, 8, 3, 3, 2, 1, 1, 4, 4)  # pad_bottom 0 (PyTorch padding=1 would give 4 too)
    assert ok.problem() is None
    assert replace(ok, out_h=5).problem() is None  # bottom padding 2 = k - 1
    assert "output" in replace(ok, out_h=6).problem()  # would need bottom padding 4
    assert "output" in replace(ok, out_h=3).problem()  # leaves rows unread beyond a stride
    assert "kernel" in replace(ok, kh=8).problem() and "stride" in replace(ok, stride=0).problem()
    assert "padding" in replace(ok, pad_w=3).problem() and "pool" in replace(ok, pool=3).problem()
    assert "empty" in ConvGeom.from_padding(1, 3, 3, 3, 3, pool=2).problem()


def test_build_refuses_what_the_engine_cannot_run(rng):
    layers, _ = random_net(rng, "lenet")
    with pytest.raises(DeepcompError, match="last layer"):
        build(layers[:2], 2)
    bad = [layers[0], replace(layers[1], conv=replace(layers[1].conv, in_h=5, out_h=3))] + layers[2:]
    with pytest.raises(DeepcompError, match="output map"):
        build(bad, 2)
    with pytest.raises(DeepcompError, match="do not chain"):
        build([layers[0], int_layer(rng, 4, 7, 0.5, relu=False)], 2)
    with pytest.raises(DeepcompError, match="kernel"):
        build([replace(layers[0], conv=replace(layers[0].conv, kh=9))] + layers[1:], 2)


def test_fc_only_images_stay_version_1(rng):
    image = build(extreme_net(rng), 4)
    assert image[4] == 1 and parse(image).version == 1
    # a signed fc hidden layer needs the v2 act byte
    net = extreme_net(rng)
    net[0].signed = True
    image2 = build(net, 4)
    assert image2[4] == 2 and len(image2) == len(build(extreme_net(rng), 4)) + 20 * 3
    rom = parse(image2)
    assert [ly.signed for ly in rom.layers] == [True, False, False]
    x = rng.integers(0, 256, (5, 64))
    np.testing.assert_array_equal(infer(decode_rom(rom), x)["logits"], run_int(net, x)[0])


def test_lenet300_rom_bytes_as_committed():
    """The committed ROM sizes of LeNet-300-100 (benchmarks/results/rom_golden.json) do not move."""
    mnist = mnist_or_skip()
    from compressor.contract.container import load
    from compressor.rom_cli import int_layers_for

    committed = {r["pes"]: r["rom_bytes"] for r in
                 json.loads((ROOT / "benchmarks/results/rom_golden.json").read_text())["rows"]}
    layers, _ = int_layers_for(load(ROOT / "benchmarks/results/lenet300_mnist.dcz"), "mnist", mnist,
                               5000, 99.99)
    for n in (1, 4):
        image = build(layers, n)
        assert image[4] == 1 and len(image) == committed[n]


def _reseal(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def _poke(image: bytes, layer: int, field: int, value: int) -> bytes:
    """Set field ``field`` (index into the conv block) of layer ``layer``'s v2 descriptor."""
    off = romfmt.HEADER.size + layer * (romfmt.DESC.size + romfmt.CONV_BLOCK.size) + romfmt.DESC.size
    vals = list(romfmt.CONV_BLOCK.unpack(image[off:off + romfmt.CONV_BLOCK.size]))
    vals[field] = value
    body = bytearray(image[:-4])
    body[off:off + romfmt.CONV_BLOCK.size] = romfmt.CONV_BLOCK.pack(*vals)
    return _reseal(bytes(body))


# conv block fields: 0 kind, 1 act, 2 kh, 3 kw, 4 in_h, 5 in_w, 6 in_c, 7 cs_in, 8 stride,
# 9 pad_h, 10 pad_w, 11 pool, 12 out_h, 13 out_w
BAD_FIELDS = [
    ("kind-2", 0, 0, 2, "kind"), ("conv-as-fc", 0, 0, 0, "conv fields must be 0"),
    ("fc-as-conv", 2, 0, 1, ""), ("act-3", 0, 1, 3, "act"), ("hidden-act-0", 1, 1, 0, "act"),
    ("last-act-1", 3, 1, 1, "act"), ("kh-8", 0, 2, 8, ""), ("kw-0", 0, 3, 0, ""),
    ("in-h", 0, 4, 13, ""), ("in-w", 1, 5, 5, ""), ("in-c", 1, 6, 4, ""), ("cs-in", 0, 7, 6, "cs_in"),
    ("stride-0", 0, 8, 0, "stride"), ("pad-5", 0, 9, 5, "padding"), ("pad-w", 1, 10, 3, "padding"),
    ("pool-3", 0, 11, 3, "pool"), ("pool-1", 1, 11, 1, ""), ("out-h", 0, 12, 13, "output"),
    ("out-w-0", 1, 13, 0, ""), ("fc-field", 2, 9, 1, "conv fields must be 0"),
]


@pytest.mark.parametrize("case,layer,field,value,msg", BAD_FIELDS, ids=[c[0] for c in BAD_FIELDS])
def test_bad_v2_fields_are_one_line_errors(rng, case, layer, field, value, msg):
    layers, _ = random_net(np.random.default_rng(5), "lenet")
    image = build(layers, 3)
    bad = _poke(image, layer, field, value)
    with pytest.raises(FormatError) as e:
        parse(bad, "bad.rom")
    text = str(e.value)
    assert text.startswith("bad.rom: ") and "\n" not in text and msg in text


def test_padded_channel_column_with_entries_is_refused(rng, monkeypatch):
    layers, _ = random_net(rng, "lenet")  # conv2 has 5 input channels: cs = 8 for N = 4

    def leaky(ls, n):
        out = to_storage(ls, n)
        out[1].index[0, 7] = 1  # column (0, 0, channel 7): a padded channel
        return out

    monkeypatch.setattr(romfmt, "to_storage", leaky)
    image = build(layers, 4)
    monkeypatch.undo()
    with pytest.raises(FormatError, match="x.rom: layer 1: a padded channel's column holds entries"):
        parse(image, "x.rom")


def test_cli_lenet5_whole_net_in_hardware(cli, tmp_path):
    mnist = mnist_or_skip()
    rom = tmp_path / "l5.rom"
    dcz = ROOT / "benchmarks/results/lenet5_mnist.dcz"
    code, out, err = cli("rom", str(dcz), "--pes", "2", "-o", str(rom), "--data-dir", str(mnist),
                         "--calib-images", "500")
    assert code == 0, err
    assert rom.read_bytes()[4] == 2
    code, out, err = cli("golden", str(rom), "--dataset", "mnist", "--data-dir", str(mnist), "--images", "300",
                         "--cycle-images", "2", "--json")
    assert code == 0, err
    res = json.loads(out)
    assert res["images"] == 300 and res["cycle_images"] == 2 and res["error"] < 0.03
    assert len(res["layers"]) == 4 and res["cycles"] == pytest.approx(sum(x["cycles"] for x in res["layers"]))


FUZZ_V2 = build(random_net(np.random.default_rng(11), "same")[0], 3, max_len=10)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzz_damaged_v2_images(data):
    """Damaged version 2 images (CRC re-sealed) are read or refused with a one-line FormatError."""
    body = bytearray(FUZZ_V2[:-4])
    # mostly the header, descriptors and conv blocks, sometimes anywhere
    hi = data.draw(st.sampled_from([32 + 56 * 4, len(body)]))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, hi - 1))
        body[i] = data.draw(st.integers(0, 255))
    try:
        rom = parse(_reseal(bytes(body)), "fuzz.rom")
        layers = decode_rom(rom, "fuzz.rom")
        infer(layers, np.full((1, rom.input_size), 3), cycle_images=1)
    except FormatError as e:
        assert str(e).startswith("fuzz.rom") and "\n" not in str(e)


def test_batched_scan_equals_the_scan_loop():
    """golden.scan_cycles_batch (all positions and images at once) == scan_cycles one scan at a time."""
    from compressor.contract.golden import Timing, scan_cycles, scan_cycles_batch

    rng = np.random.default_rng(3)
    for _ in range(60):
        n, cols, scans = int(rng.integers(1, 9)), int(rng.integers(1, 80)), int(rng.integers(1, 20))
        acts = np.where(rng.random((scans, cols)) < rng.random(), rng.integers(1, 256, (scans, cols)), 0)
        # from nearly full to nearly empty columns: the PEs drop the columns they hold nothing of
        entries = rng.integers(0, 6, (cols, n)) * (rng.random((cols, n)) < rng.random())
        contexts = int(rng.choice([1, 2]))  # one decode context per PE, or two (EngineParams.contexts)
        timing = Timing(fifo_depth=int(rng.choice([1, 2, 4, 8])), drop_free=int(rng.choice([1, 2, 3])),
                        contexts=contexts, issue_latency=5 + contexts - 1)
        start = int(rng.integers(0, 6))
        done, ideal = scan_cycles_batch(acts, entries, timing, start)
        ref = [scan_cycles(a, entries, timing, start) for a in acts]
        assert done.tolist() == [r[0] for r in ref] and ideal.tolist() == [r[1] for r in ref]
