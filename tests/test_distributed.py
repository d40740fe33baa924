"""Two processes under torchrun (gloo, CPU) compute what one process computes (issue #15).

The design (compressor/distributed.py): every rank draws the same global
batches and trains on its share of each, DDP averages the weighted gradients,
masks and k-means come from rank 0. So masks and codebook indices must be
exactly equal to the 1-process run and weights equal within float summation
error. Each test launches ``torch.distributed.run`` once (--standalone: a free
port of its own) on the offline digits set.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from compressor import distributed
from compressor.cli import main
from compressor.contract.container import CompressedModel, load
from tests.conftest import torch_threads

ROOT = Path(__file__).resolve().parents[1]
# uneven last batch (1437 training images, 128 a batch: 29 left, shared 15/14), augmentation on
OPTS = ["--density", "0.3,0.3,0.6", "--prune-steps", "2", "--prune-epochs", "2", "--final-epochs", "2",
        "--finetune-epochs", "2", "--augment", "1"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    with torch_threads(1):  # results do not depend on it; the time does
        yield


def torchrun(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def assert_same_model(one: CompressedModel, two: CompressedModel) -> None:
    for a, b in zip(one.layers, two.layers, strict=True):
        np.testing.assert_array_equal(a.index, b.index, err_msg=a.name)  # masks and clusters exactly
        np.testing.assert_allclose(a.codebook, b.codebook, rtol=0, atol=1e-3)  # at most a float16 ulp apart
        if a.bias is not None:
            np.testing.assert_allclose(a.bias, b.bias, rtol=0, atol=1e-3)


@pytest.mark.slow
def test_cli_two_processes_equal_one(tmp_path):
    dense = tmp_path / "dense.pt"
    assert main(["train", "--dataset", "digits", "--epochs", "3", "-o", str(dense)]) == 0
    assert main(["compress", str(dense), "-o", str(tmp_path / "one.dcz"), *OPTS]) == 0
    got = torchrun("-m", "compressor.cli", "compress", str(dense), "-o", str(tmp_path / "two.dcz"), *OPTS)
    assert got.returncode == 0, got.stderr[-2000:]
    assert got.stdout.count("wrote ") == 1  # rank 0 alone prints (and writes)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "dense.pt", "one.dcz", "one.dcz.meta.json", "two.dcz", "two.dcz.meta.json"]  # checkpoints removed
    assert_same_model(load(tmp_path / "one.dcz"), load(tmp_path / "two.dcz"))


@pytest.mark.slow
def test_fit_and_api_two_processes_equal_one(tmp_path):
    from tests.ddp_worker import main as worker

    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    worker(tmp_path / "one")
    got = torchrun(str(ROOT / "tests" / "ddp_worker.py"), str(tmp_path / "two"))
    assert got.returncode == 0, got.stderr[-2000:]
    one, two = (torch.load(tmp_path / d / "fit.pt", weights_only=True) for d in ("one", "two"))
    for k in one:
        assert torch.equal(one[k] == 0, two[k] == 0), k  # the masks held on both ranks
        assert float((one[k] - two[k]).abs().max()) < 1e-5, k
    assert_same_model(load(tmp_path / "one" / "api.dcz"), load(tmp_path / "two" / "api.dcz"))
    assert (tmp_path / "one" / "unequal.txt").read_text() == "no error"
    assert (tmp_path / "two" / "unequal.txt").read_text().startswith(
        "train_loader: the ranks' loaders yield different batches")


@pytest.mark.parametrize("world", [1, 2, 3])
def test_shares_cover_each_batch_once(monkeypatch, world):
    """The ranks' rows of a batch are the batch, in order, sizes within one; weights sum to world."""
    monkeypatch.setattr(distributed, "world_size", lambda: world)
    for n in range(world, 40):
        rows, sizes, weights = [], [], []
        for r in range(world):
            monkeypatch.setattr(distributed, "rank", lambda r=r: r)
            s = distributed.share(n)
            rows += list(range(n))[s]
            sizes.append(s.stop - s.start)
            weights.append(distributed.loss_scale(s.stop - s.start, n))
        assert rows == list(range(n))
        assert max(sizes) - min(sizes) <= 1
        assert abs(sum(weights) - world) < 1e-12  # mean over ranks of weight x local mean = global mean


def test_split_batch_takes_rows_of_every_tensor():
    batch = {"x": torch.arange(12).reshape(6, 2), "pair": (torch.arange(6), "tag"), "scalar": torch.tensor(3.0)}
    got = distributed.split_batch(batch, slice(2, 4))
    assert got["x"].tolist() == [[4, 5], [6, 7]]
    assert got["pair"][0].tolist() == [2, 3] and got["pair"][1] == "tag"
    assert float(got["scalar"]) == 3.0
    assert distributed.batch_rows(batch) == 6 and distributed.batch_rows(["no tensor"]) is None


def test_one_process_is_the_identity():
    assert (distributed.world_size(), distributed.rank(), distributed.is_main()) == (1, 0, True)
    assert distributed.on_rank0(lambda: 41 + 1) == 42
    assert distributed.same_on_all_ranks(1.5)
    lin = torch.nn.Linear(2, 2)
    with distributed.data_parallel(lin, lin.parameters()) as net:
        assert net is lin
