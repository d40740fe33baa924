import numpy as np
import pytest
import torch
from torch import nn

from compressor.contract.data import Split
from compressor.kmeans import init_centroids, kmeans_1d
from compressor.models import MLP
from compressor.prune import Masks, PruneConfig, iterative_prune
from compressor.quantize import TiedModel, quantize_layer
from compressor.train import FitConfig


@pytest.mark.parametrize("init", ["linear", "density", "random"])
def test_kmeans_inits_converge_and_differ(init):
    x = np.random.default_rng(0).laplace(size=5000)
    c0 = init_centroids(x, 8, init, np.random.default_rng(0))
    assert c0.size == 8 and x.min() <= c0.min() and c0.max() <= x.max()
    c, labels = kmeans_1d(x, 8, init, seed=0)
    assert np.all(np.diff(c) > 0)
    # Lloyd fixed point: every centroid is the mean of its members
    for k in range(8):
        np.testing.assert_allclose(c[k], x[labels == k].mean(), rtol=1e-9)


def test_init_shapes_are_as_in_paper():
    x = np.random.default_rng(0).normal(size=10000)
    lin = init_centroids(x, 5, "linear", np.random.default_rng(0))
    den = init_centroids(x, 5, "density", np.random.default_rng(0))
    np.testing.assert_allclose(np.diff(lin), np.diff(lin)[0])  # equal spacing in value
    assert np.diff(den)[0] > np.diff(den)[1]  # equal spacing in CDF: dense near the mode


def test_centroid_gradient_is_grouped_sum():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 4))
    w = model[0].weight.detach().numpy().copy()
    w[0, :3] = 0  # pruned
    q = quantize_layer("0", w, w != 0, bits=2, init="linear", seed=0)
    tied = TiedModel(model, [q])
    x = torch.randn(5, 6)
    tied(x).pow(2).sum().backward()
    # gradient of the loss w.r.t. each tied weight, computed densely
    wt = torch.from_numpy(q.weight()).requires_grad_(True)
    (torch.nn.functional.linear(x, wt, model[0].bias)).pow(2).sum().backward()
    expected = np.bincount(q.index.ravel(), weights=wt.grad.numpy().ravel(), minlength=4)[1:]
    np.testing.assert_allclose(tied.centroids[0].grad.numpy(), expected, rtol=1e-5)


def test_masks_hold_through_retraining():
    rng = np.random.default_rng(0)
    data = Split(rng.integers(0, 255, (256, 1, 4, 4)).astype(np.uint8), rng.integers(0, 3, 256))
    torch.manual_seed(0)
    model = MLP([16, 12, 3])
    masks = iterative_prune(model, data, PruneConfig(density=[0.25, 0.5], steps=2, epochs_per_step=2,
                                                     final_epochs=2), FitConfig(lr=0.1), seed=0)
    for name, m in masks.layers:
        assert torch.all(m.weight[~masks.masks[name]] == 0)
    dens = masks.density()
    assert abs(dens["fcs.0"] - 0.25) < 0.02 and abs(dens["fcs.1"] - 0.5) < 0.04


def test_quality_threshold_prunes_by_std():
    model = MLP([16, 8, 3])
    masks = Masks(model)
    from compressor.prune import prune_step
    std0 = {n: float(m.weight.detach().std()) for n, m in masks.layers}
    prune_step(model, masks, PruneConfig(quality=1.0), 1.0, std0)
    for name, m in masks.layers:
        assert torch.all(m.weight[m.weight != 0].abs() > std0[name])


def test_kth_smallest_is_exact_on_large_and_tied_arrays():
    from compressor.prune import kth_smallest, magnitude_threshold

    rng = np.random.default_rng(1)
    a = rng.standard_t(3, 5_000_000).astype(np.float32)  # large: the sampled bracket is used
    tied = np.repeat(np.arange(500, dtype=np.float32), 10_000)
    for x in (a, tied, a[:1000]):
        for r in (0, 7, x.size // 3, int(x.size * 0.96), x.size - 1):
            assert kth_smallest(x.copy(), r) == np.partition(x, r)[r]
    w = torch.from_numpy(a.reshape(1000, 5000))
    keep = round(0.04 * w.numel())
    assert magnitude_threshold(w, 0.04) == float(w.abs().flatten().kthvalue(w.numel() - keep + 1).values)
