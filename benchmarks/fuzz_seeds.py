"""The valid seed files of benchmarks/fuzz_formats.py, built in-process.

``.dcz``: random sparse MLPs, a convolution, extreme sparsity structure (empty,
dense, long filler runs, 8-bit widths, one entry at the last position) and the
committed ``benchmarks/results/lenet*_mnist.dcz``. ROM: images of
``sim.testnets`` nets and of the committed LeNet-300-100 at N = 1, 2, 3, 4, 8,
a signed-input image, and hex/mem text of some of them. Every seed is built
from fixed numpy seeds, so the set is the same on every run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from compressor.contract import container, rom
from compressor.contract.container import CompressedModel, LayerRecord
from compressor.contract.fixedpoint import to_int_layers
from sim.testnets import extreme_net, int_layer

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def random_record(rng, out, inp, density, wbits=5, zbits=4, name="fc", bias=True, kind="linear",
                  shape=None, stride=1, padding=0):
    """A random sparse layer record (as tests/conftest.py ``random_record``, conv shapes too)."""
    shape = shape or (out, inp)
    index = np.where(rng.random(shape) < density, rng.integers(1, 1 << wbits, shape), 0)
    codebook = np.concatenate([[0.0], np.sort(rng.normal(size=(1 << wbits) - 1))]).astype(np.float16)
    b = rng.normal(size=shape[0]).astype(np.float16).astype(np.float32) if bias else None
    return LayerRecord(name, kind, tuple(shape), codebook.astype(np.float32), index.astype(np.int64), b,
                       wbits, zbits, stride, padding)


def random_mlp(rng, sizes=(64, 40, 20, 10), density=0.3, **kw):
    layers = [random_record(rng, b, a, density, name=f"fcs.{i}", **kw)
              for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True))]
    return CompressedModel("mlp:" + "-".join(map(str, sizes)), layers)


def dcz_seeds() -> dict[str, bytes]:
    rng = np.random.default_rng(20240601)
    out = {"mlp": container.encode(random_mlp(rng)),
           "mlp_sparse_w3z2": container.encode(random_mlp(rng, (30, 17, 5), 0.05, wbits=3, zbits=2))}
    conv = random_record(rng, 0, 0, 0.4, name="conv1", kind="conv", shape=(6, 2, 3, 3), stride=2, padding=1)
    conv2 = random_record(rng, 0, 0, 0.2, name="conv2", kind="conv", shape=(4, 6, 1, 1), bias=False,
                          wbits=2, zbits=3)
    out["conv"] = container.encode(CompressedModel("my-convnet", [conv, conv2, random_record(rng, 10, 16, 0.5)]))
    empty = random_record(rng, 12, 20, 0.0, name="empty", bias=False)  # no entries at all
    dense = random_record(rng, 8, 12, 1.0, wbits=1, zbits=1, name="dense")
    gaps = random_record(rng, 50, 60, 0.005, wbits=2, zbits=1, name="gaps")  # long filler runs
    wide = random_record(rng, 40, 30, 0.6, wbits=8, zbits=8, name="w8z8")
    single = random_record(rng, 9, 33, 0.0, name="single")
    single.index[8, 32] = 3  # the last position only
    out["extreme"] = container.encode(CompressedModel("extreme", [empty, dense, gaps, wide, single]))
    for name in ("lenet300_mnist.dcz", "lenet5_mnist.dcz"):
        out[name] = (RESULTS / name).read_bytes()
    return out


def lenet300_int_layers():
    """The committed LeNet-300-100 as integers, calibrated on random sparse 'images' (numpy only)."""
    cm = container.decode((RESULTS / "lenet300_mnist.dcz").read_bytes(), "lenet300_mnist.dcz")
    rng = np.random.default_rng(3)
    calib = (rng.random((256, 784)) < 0.2) * rng.integers(0, 256, (256, 784))
    return to_int_layers([(r.matrix_index, r.codebook, r.bias, r.wbits, r.zbits) for r in cm.layers], calib)


def small_net(rng, sizes, density, wbits=5, zbits=4):
    return [int_layer(rng, b, a, density, wbits, zbits, relu=i < len(sizes) - 2)
            for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True))]


def rom_seeds() -> dict[str, bytes]:
    out = {}
    for n, max_len in ((1, 9), (2, 10), (3, 12), (4, 12), (8, 16)):
        out[f"extreme_n{n}_L{max_len}"] = rom.build(extreme_net(np.random.default_rng(7)), n, max_len)
    rng = np.random.default_rng(11)
    for n in (1, 2, 4, 8):
        out[f"small_n{n}"] = rom.build(small_net(rng, (24, 16, 10), 0.3), n, 12)
    out["tiny_w1z1_L2"] = rom.build(small_net(rng, (6, 5, 3), 0.5, wbits=1, zbits=1), 2, 2)
    out["signed_n2"] = rom.build(small_net(rng, (20, 12, 4), 0.4), 2, 11, flags=rom.FLAG_SIGNED_INPUT,
                                 input_scale=0.0625)
    lenet = lenet300_int_layers()
    out["lenet300_n1"] = rom.build(lenet, 1, 12)
    out["lenet300_n8"] = rom.build(lenet, 8, 12)
    return out


def build_seeds() -> dict[str, dict[str, bytes]]:
    roms = rom_seeds()
    text = {f"{k}.{ext}": rom.to_readmemh(roms[k], w)
            for k, ext, w in (("extreme_n2_L10", "hex", 1), ("small_n4", "mem", 4), ("signed_n2", "hex", 1),
                              ("signed_n2", "mem", 4), ("lenet300_n8", "mem", 4))}
    return {"dcz": dcz_seeds(), "rom": roms, "rom_text": text}
