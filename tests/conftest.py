"""Shared fixtures: paths, small random compressed models, the CLI runner."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from compressor.cli import main
from compressor.contract.container import CompressedModel, LayerRecord

ROOT = Path(__file__).resolve().parents[1]
MNIST_DIR = Path(os.environ.get("DEEPCOMP_MNIST", ROOT.parent / "shared" / "data" / "mnist"))


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch on ``n`` threads meanwhile. Why one for training tests: each torchrun worker has one,
    and on a busy 2-core machine two threads contend with the other jobs (3x slower here)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def mnist_or_skip() -> Path:
    if not (MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"real MNIST not found at {MNIST_DIR}")
    return MNIST_DIR


def random_record(rng: np.random.Generator, out: int, inp: int, density: float,
                  wbits: int = 5, zbits: int = 4, name: str = "fc", bias: bool = True) -> LayerRecord:
    index = np.where(rng.random((out, inp)) < density, rng.integers(1, 1 << wbits, (out, inp)), 0)
    codebook = np.concatenate([[0.0], np.sort(rng.normal(size=(1 << wbits) - 1))]).astype(np.float16)
    return LayerRecord(name, "linear", (out, inp), codebook.astype(np.float32), index.astype(np.int64),
                       rng.normal(size=out).astype(np.float16).astype(np.float32) if bias else None,
                       wbits, zbits)


def random_mlp(rng: np.random.Generator, sizes=(64, 40, 20, 10), density: float = 0.3) -> CompressedModel:
    layers = [random_record(rng, b, a, density, name=f"fcs.{i}")
              for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True))]
    return CompressedModel("mlp:" + "-".join(map(str, sizes)), layers)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def cli(capsys):
    """Run ``deepcomp`` in-process; returns (exit code, stdout, stderr)."""

    def run(*args: str) -> tuple[int, str, str]:
        try:
            code = main([str(a) for a in args])
        except SystemExit as e:  # argparse usage errors
            code = int(e.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return run
