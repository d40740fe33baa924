"""Property tests of ``.dcz`` version 2: anything the writer takes reads back exactly.

Two levels: random container records (every layer kind and conv geometry,
bias dtypes, dense tensors of every dtype and rank, a program) round-trip
through encode/decode field for field; and random models with random options
either are refused by ``Compressor`` before any training, or compress, save,
load and ``apply_to`` a fresh instance with an identical state dict.
"""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from torch import nn

from compressor import api
from compressor.contract.container import CompressedModel, LayerRecord, decode, encode, save
from compressor.contract.errors import DeepcompError
from compressor.contract.tensors import DTYPES

DENSE_DTYPES = sorted(set(DTYPES.values()))


@st.composite
def records(draw, i: int) -> LayerRecord:
    kind = draw(st.sampled_from(["linear", "conv", "embedding", "matrix"]))
    out = draw(st.integers(1, 12))
    if kind == "conv":
        groups = draw(st.sampled_from([g for g in (1, 2, 3, 4) if out % g == 0]))
        shape = (out, draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    else:
        groups, shape = 1, (out, draw(st.integers(1, 30)))
    wbits, zbits = draw(st.integers(1, 8)), draw(st.integers(1, 8))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    density = draw(st.sampled_from([0.0, 0.05, 0.5, 1.0]))
    index = np.where(rng.random(shape) < density, rng.integers(1, 1 << wbits, shape), 0)
    codebook = np.concatenate([[0.0], rng.normal(size=(1 << wbits) - 1)]).astype(np.float16).astype(np.float32)
    bias_dtype = draw(st.sampled_from(["float16", "float32"]))
    bias = None
    if kind in ("linear", "conv") and draw(st.booleans()):
        bias = rng.normal(size=out).astype(bias_dtype).astype(np.float32)
    rec = LayerRecord(f"m{i}", kind, shape, codebook, index.astype(np.int64), bias, wbits, zbits,
                      param=f"weight_ih_l{i}" if kind == "matrix" else "weight", bias_dtype=bias_dtype)
    if kind == "conv":
        pair = st.tuples(st.integers(1, 70_000), st.integers(1, 3))
        rec.stride, rec.dilation, rec.groups = draw(pair), draw(pair), groups
        rec.padding = draw(st.one_of(st.just("same"), st.tuples(st.integers(0, 65_536), st.integers(0, 2))))
        rec.padding_mode = draw(st.sampled_from(["zeros", "reflect", "replicate", "circular"]))
        rec.stride = (min(rec.stride[0], 65_536), rec.stride[1])
        rec.dilation = (min(rec.dilation[0], 65_536), rec.dilation[1])
    return rec


@st.composite
def models(draw) -> CompressedModel:
    layers = [draw(records(i)) for i in range(draw(st.integers(0, 4)))]
    dense = {}
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    for j in range(draw(st.integers(0 if layers else 1, 4))):
        shape = tuple(draw(st.lists(st.integers(0, 5), max_size=3)))
        dt = np.dtype(draw(st.sampled_from(DENSE_DTYPES)))
        dense[f"t{j}.x"] = (rng.normal(size=shape) * 100).astype(dt) if dt != np.bool_ else rng.random(shape) < 0.5
    program = draw(st.one_of(st.none(), st.binary(min_size=1, max_size=40).map(lambda b: (1, b))))
    return CompressedModel("any model", layers, dense, program)


@settings(max_examples=150, deadline=None)
@given(models())
def test_every_record_reads_back_field_for_field(cm):
    data = encode(cm)
    back = decode(data, "x.dcz")
    event(f"version {back.version}")
    assert back.version == (1 if cm.fits_v1() else 2)
    assert back.program == cm.program and list(back.dense) == list(cm.dense)
    for k, a in cm.dense.items():
        assert back.dense[k].dtype == a.dtype.newbyteorder("=") and np.array_equal(back.dense[k], a)
    for a, b in zip(cm.layers, back.layers, strict=True):
        assert (a.key, a.kind, a.shape, a.wbits, a.zbits) == (b.key, b.kind, b.shape, b.wbits, b.zbits)
        np.testing.assert_array_equal(a.index, b.index)
        np.testing.assert_array_equal(a.codebook, b.codebook)
        assert (a.bias is None) == (b.bias is None)
        if a.bias is not None:
            np.testing.assert_array_equal(a.bias, b.bias)
        if a.kind == "conv" and back.version == 2:
            assert (b.stride, b.padding, b.dilation, b.groups, b.padding_mode) == (
                a.stride, a.padding, a.dilation, a.groups, a.padding_mode)


def layer(spec: tuple) -> nn.Module:
    kind, a, b, k, stride, pad, groups, flag = spec
    if kind == "linear":
        return nn.Linear(a, b, bias=flag)
    if kind == "conv":
        return nn.Conv2d(a * groups, b * groups, k, stride=stride, padding=pad,
                         groups=groups, bias=flag)
    if kind == "embedding":
        return nn.Embedding(a, b)
    if kind == "gru":
        return nn.GRU(a, b, bidirectional=flag)
    if kind == "lstm":
        return nn.LSTM(a, b, num_layers=2)
    if kind == "bn":
        return nn.BatchNorm2d(a, affine=flag)
    return nn.LayerNorm(a, elementwise_affine=flag)


specs = st.tuples(
    st.sampled_from(["linear", "conv", "embedding", "gru", "lstm", "bn", "ln"]),
    st.integers(1, 6), st.integers(1, 6), st.integers(1, 3),
    st.sampled_from([1, 2, (1, 2), 70_000]),  # the last is beyond the format's limit
    st.sampled_from([0, 1, (1, 2), "same"]), st.sampled_from([1, 2]), st.booleans())


def build(layer_specs: list[tuple], seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(*(layer(s) for s in layer_specs))
    with torch.no_grad():  # BatchNorm statistics that are not the defaults
        for buf in model.buffers():
            if buf.dtype.is_floating_point:
                buf.uniform_(0.5, 2.0)
    return model


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(layer_specs=st.lists(specs, min_size=1, max_size=4),
       density=st.sampled_from([0.05, 0.3, 1.0]), bits=st.integers(0, 9),
       zbits=st.one_of(st.integers(1, 8), st.just("auto")),
       dense_dtype=st.sampled_from(["float32", "float16"]), bias_dtype=st.sampled_from(["float32", "float16"]),
       keep_first=st.booleans())
def test_compressor_refuses_at_start_or_round_trips_exactly(tmp_path, layer_specs, density, bits, zbits,
                                                            dense_dtype, bias_dtype, keep_first):
    conv_with_same_and_stride = any(s[0] == "conv" and s[5] == "same" and s[4] != 1 for s in layer_specs)
    if conv_with_same_and_stride:  # torch itself refuses padding='same' with a stride
        return
    model = build(layer_specs, 0)
    try:
        comp = api.Compressor(model, density=density, bits=bits, zbits=zbits, dense_dtype=dense_dtype,
                              bias_dtype=bias_dtype, keep_dense=["0"] if keep_first else [])
    except DeepcompError as e:
        event(f"refused at start: {str(e).split(':')[0]}")
        assert len(str(e).splitlines()) == 1
        return
    event("compressed")
    comp.prune()
    comp.quantize()
    cm = comp.finish()
    save(cm, tmp_path / "p.dcz")
    fresh = api.load(tmp_path / "p.dcz").apply_to(build(layer_specs, 1))
    mine, theirs = model.state_dict(), fresh.state_dict()
    assert list(mine) == list(theirs)
    for key in mine:
        assert torch.equal(mine[key], theirs[key]), key


@settings(max_examples=300, deadline=None)
@given(cm=models(), edits=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)),
                                   min_size=1, max_size=4),
       cut=st.one_of(st.none(), st.floats(0, 1)))
def test_damaged_files_are_read_or_refused_in_one_line(cm, edits, cut):
    """Any byte edit or truncation, re-sealed with a valid CRC: decoded, or one FormatError line."""
    import struct
    import zlib

    body = bytearray(encode(cm)[:-4])
    for where, value in edits:
        body[5 + int(where * (len(body) - 5))] = value  # past magic and version: both readers' fields
    if cut is not None:
        body = body[: 5 + int(cut * (len(body) - 5))]
    data = bytes(body) + struct.pack("<I", zlib.crc32(body))
    try:
        decode(data, "x.dcz")
        event("read")
    except DeepcompError as e:
        event("refused")
        assert str(e).startswith("x.dcz: ") and len(str(e).splitlines()) == 1
