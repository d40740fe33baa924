import struct
import zlib

import numpy as np
import pytest

from compressor.contract.container import decode, encode
from compressor.contract.errors import DeepcompError, FormatError
from compressor.models import to_module
from tests.conftest import random_mlp, random_record


def test_roundtrip_reproduces_quantized_weights_exactly(rng):
    cm = random_mlp(rng)
    back = decode(encode(cm))
    assert back.arch == cm.arch
    for a, b in zip(cm.layers, back.layers, strict=True):
        np.testing.assert_array_equal(a.index, b.index)
        np.testing.assert_array_equal(a.weight(), b.weight())
        np.testing.assert_array_equal(a.bias, b.bias)


def test_roundtrip_extreme_structure(rng):
    from compressor.contract.container import CompressedModel

    empty = random_record(rng, 8, 40, 0.0, name="empty")
    full = random_record(rng, 8, 40, 1.0, name="full", bias=False)
    lone = random_record(rng, 300, 50, 0.0, zbits=2, name="lone")
    lone.index[299, 49] = 5  # one weight after a gap far beyond 2**zbits
    conv = random_record(rng, 20, 25, 0.6, wbits=8, zbits=5, name="conv")
    conv.kind, conv.shape = "conv", (20, 1, 5, 5)
    conv.index = conv.index.reshape(conv.shape)
    cm = CompressedModel("custom", [empty, full, lone, conv])
    back = decode(encode(cm))
    for a, b in zip(cm.layers, back.layers, strict=True):
        assert a.shape == b.shape
        np.testing.assert_array_equal(a.index, b.index)
    assert back.layers[1].bias is None


def test_model_module_matches(rng):
    import torch

    from compressor.train import to_tensor

    cm = random_mlp(rng)
    model = to_module(decode(encode(cm)))
    x = rng.integers(0, 255, (3, 1, 8, 8)).astype(np.uint8)
    h = to_tensor(x).flatten(1).double().numpy()
    for i, rec in enumerate(cm.layers):
        h = h @ rec.weight().T.astype(np.float64) + rec.bias
        if i < len(cm.layers) - 1:
            h = np.maximum(h, 0)
    with torch.no_grad():
        np.testing.assert_allclose(model(to_tensor(x)).double().numpy(), h, rtol=1e-4, atol=1e-4)


def test_bad_magic_version_crc_truncation(rng):
    data = encode(random_mlp(rng))
    with pytest.raises(DeepcompError, match="bad magic"):
        decode(b"PK\x03\x04" + data[4:], "x.dcz")
    with pytest.raises(DeepcompError, match="version 9"):
        decode(data[:4] + b"\x09" + data[5:], "x.dcz")
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x10
    with pytest.raises(FormatError, match="x.dcz: CRC32 mismatch"):
        decode(bytes(flipped), "x.dcz")
    with pytest.raises(FormatError, match="x.dcz"):
        decode(data[: len(data) // 3], "x.dcz")


def test_consistent_crc_but_lying_body_is_rejected(rng):
    data = bytearray(encode(random_mlp(rng))[:-4])
    body = bytes(data[:-7])  # drop the end of the last stream, re-seal with a valid CRC
    with pytest.raises(FormatError, match="x.dcz"):
        decode(body + struct.pack("<I", zlib.crc32(body)), "x.dcz")


def test_best_zbits_is_the_smallest_encoding(rng):
    from dataclasses import replace

    from compressor.contract.container import best_zbits, layer_streams

    def size(rec, z):
        st = layer_streams(replace(rec, zbits=z))
        return (st.wbits_total + 7) // 8 + (st.zbits_total + 7) // 8 + (1 << z) // 2

    rec = random_record(rng, 300, 80, 0.03)  # gaps average ~33: wide indices pay off
    best = best_zbits(rec)
    assert all(size(rec, best) <= size(rec, z) for z in range(1, 9))
    assert best > 4
    # chosen from symbol counts: the same sizes as building every width's streams
    for out, inp, density in ((40, 30, 0.5), (200, 60, 0.01), (7, 3, 1.0), (50, 50, 0.0), (1, 900, 0.002)):
        rec = random_record(rng, out, inp, density, wbits=int(rng.integers(2, 8)))
        sizes = [size(rec, z) for z in range(1, 9)]
        assert size(rec, best_zbits(rec)) == min(sizes)


def _reseal(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


@pytest.mark.parametrize("arch, name", [("mlp", "fc\n1"), ("a\rb", "fc"), ("mlp", "fc\u2028"), ("mlp", "\x1e")])
def test_text_with_control_characters_is_refused_on_one_line(rng, arch, name):
    """Found by benchmarks/fuzz_formats.py: a layer name holding a line break split the error message."""
    cm = random_mlp(rng)
    cm.arch = arch
    cm.layers[0].name = name
    cm.layers[0].bias[0] = np.inf  # a later check fails too: its message would quote the name
    with pytest.raises(FormatError, match="control character or line break") as e:
        decode(encode(cm), "x.dcz")
    assert len(str(e.value).splitlines()) == 1 and str(e.value).startswith("x.dcz: ")


def test_signalling_nan_codebook_is_refused_without_a_warning(rng):
    """Found by benchmarks/fuzz_formats.py: a float16 signalling NaN made numpy warn before the error."""
    import warnings

    rec = random_record(rng, 10, 12, 0.5, wbits=2)
    rec.codebook = np.array([0.0, 1234.0, 1500.0, 1700.0], dtype=np.float32)
    from compressor.contract.container import CompressedModel

    data = encode(CompressedModel("mlp", [rec]))[:-4]
    at = data.find(struct.pack("<e", 1234.0))
    assert at > 0 and data.count(struct.pack("<e", 1234.0)) == 1
    bad = _reseal(data[:at] + b"\x01\x7c" + data[at + 2:])  # float16 sNaN
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(FormatError, match="x.dcz: layer fc: codebook or bias is not finite"):
            decode(bad, "x.dcz")


def test_stream_bytes_beyond_the_codes_are_refused(rng):
    """A stream is exactly its codes padded with zero bits: extra bytes would also raise the
    file's weight budget, so they are refused."""
    from compressor.contract.container import LayerStreams, layer_streams  # noqa: F401

    cm = random_mlp(rng, sizes=(16, 8, 4))
    data = bytearray(encode(cm))
    # the last stream of the last layer ends right before the CRC: grow it by one byte
    st = layer_streams(cm.layers[-1])
    n = (st.zcode.encoded_bits(st.z) + 7) // 8
    body = bytes(data[:-4])
    length_at = len(body) - n - 1  # its varint length (< 128 bytes: one byte)
    assert body[length_at] == n
    grown = body[:length_at] + bytes([n + 1]) + body[length_at + 1:] + b"\0"
    with pytest.raises(FormatError, match="trailing bytes"):
        decode(grown + struct.pack("<I", zlib.crc32(grown)), "x.dcz")
    # a set padding bit in the same stream
    if st.zcode.encoded_bits(st.z) % 8:
        flipped = bytearray(body)
        flipped[-1] |= 1
        with pytest.raises(FormatError, match="non-zero padding"):
            decode(bytes(flipped) + struct.pack("<I", zlib.crc32(bytes(flipped))), "x.dcz")
