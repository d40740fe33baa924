"""Weight sharing: per-layer 1-D k-means, then trained quantization (paper section 3).

Codebook index 0 is reserved for the exact zero (pruned weights and the
filler entries of the sparse format), so a layer with ``b`` bits has
``2**b - 1`` trainable centroids. During fine-tuning each weight is
``codebook[index]``; autograd of that gather is a scatter-add, which is
exactly eq. 3: a centroid's gradient is the sum of its weights' gradients.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from .contract.data import Split
from .kmeans import kmeans_1d
from .models import compressible_layers
from .train import FitConfig, FitState, Hooks, fit


@dataclass
class LayerQuant:
    """A layer's shared weights: ``weight = codebook[index]`` with ``codebook[0] == 0``."""

    name: str
    codebook: np.ndarray  # float32 (2**bits,), entry 0 is 0
    index: np.ndarray  # uint8 (bits <= 8), weight's shape, column-major matrix (see index_array); 0 where pruned
    bits: int
    initial_codebook: np.ndarray  # before fine-tuning (for the paper's Fig. 4)

    def weight(self) -> np.ndarray:
        return self.codebook[self.index]


def index_array(shape: tuple[int, ...]) -> np.ndarray:
    """Zeroed uint8 indices of a weight of ``shape``, laid out as the ``.dcz`` reads them.

    One byte per weight (``bits <= 8``; int64 would be 8 bytes per parameter,
    a gigabyte for VGG-16). Memory order is that of the (out, in * kh * kw)
    matrix *column by column*, the order the container's relative indices run
    in, so ``index.reshape(out, -1).T.ravel()`` is a view and encoding each
    candidate ``--zbits`` never copies (transposes) the layer.
    """
    rows, cols = shape[0], int(np.prod(shape[1:], dtype=np.int64))
    return np.zeros((cols, rows), dtype=np.uint8).T.reshape(shape)


def quantize_layer(name: str, weight: np.ndarray, mask: np.ndarray, bits: int,
                   init: str, seed: int) -> LayerQuant:
    """Cluster the surviving weights of one layer into ``2**bits - 1`` centroids."""
    if not 1 <= bits <= 8:
        raise ValueError(f"{bits} bits: weight indices are stored in one byte (1..8 bits)")
    k = (1 << bits) - 1
    survivors = weight[mask]
    index = index_array(weight.shape)
    codebook = np.zeros(k + 1, dtype=np.float32)
    if survivors.size:
        c, labels = kmeans_1d(survivors, k, init, seed)
        del survivors
        codebook[1:] = c
        labels = labels.astype(np.uint8)
        labels += 1
        index[mask] = labels
    return LayerQuant(name, codebook, index, bits, codebook.copy())


class TiedModel(nn.Module):
    """Runs ``model`` with each compressible weight replaced by ``codebook[index]``.

    Only the free centroids (entries 1..) and the other parameters (biases) are
    trainable; pruned weights and fillers stay exactly zero by construction.
    """

    def __init__(self, model: nn.Module, quants: list[LayerQuant]) -> None:
        super().__init__()
        self.model = model
        self.names = [q.name for q in quants]
        self.centroids = nn.ParameterList(
            nn.Parameter(torch.from_numpy(q.codebook[1:].copy())) for q in quants
        )
        for i, q in enumerate(quants):
            # int32 for indexing: a uint8 tensor as an index would be a boolean mask, and
            # int64 would be 8 bytes per weight while fine-tuning (1.1 GB for VGG-16)
            self.register_buffer(f"index{i}", torch.from_numpy(np.ascontiguousarray(q.index, dtype=np.int32)))

    def tied_weights(self) -> dict[str, torch.Tensor]:
        out = {}
        for i, name in enumerate(self.names):
            table = torch.cat([torch.zeros(1), self.centroids[i]])
            out[f"{name}.weight"] = table[getattr(self, f"index{i}")]
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.model, self.tied_weights(), (x,))

    def trainable(self) -> list[nn.Parameter]:
        tied = {f"{n}.weight" for n in self.names}
        rest = [p for n, p in self.model.named_parameters() if n not in tied]
        return list(self.centroids) + rest

    def codebooks(self) -> list[np.ndarray]:
        return [np.concatenate([[0.0], c.detach().numpy()]).astype(np.float32) for c in self.centroids]


def quantize_model(model: nn.Module, bits: list[int], init: str, seed: int) -> list[LayerQuant]:
    """k-means each compressible layer over its non-zero weights (zeros are pruned)."""
    quants = []
    for (name, m), b in zip(compressible_layers(model), bits, strict=True):
        w = np.asarray(m.weight.detach().numpy(), dtype=np.float32)  # a view of float32 weights, not a copy
        quants.append(quantize_layer(name, w, w != 0, b, init, seed))
    return quants


def finetune(model: nn.Module, quants: list[LayerQuant], data: Split, cfg: FitConfig,
             seed: int, resume: FitState | None = None,
             on_epoch: Callable[[FitState], None] | None = None) -> list[LayerQuant]:
    """Trained quantization: fine-tune centroids and biases, then write the tied weights back.

    Biases and centroids are rounded to float16 at the end, because that is
    what the ``.dcz`` stores: the model in memory is then exactly the file.
    ``resume`` / ``on_epoch``: per-epoch checkpoints of the tied model (see ``train.fit``).
    """
    tied = TiedModel(model, quants)
    fit(tied, data, cfg, seed=seed, params=tied.trainable(), hooks=Hooks(), desc="quantize",
        resume=resume, on_epoch=on_epoch)
    with torch.no_grad():
        for q, cb in zip(quants, tied.codebooks(), strict=True):
            q.codebook = cb.astype(np.float16).astype(np.float32)
        round_to_storage(model, quants)
    return quants


def round_to_storage(model: nn.Module, quants: list[LayerQuant]) -> None:
    """Load ``codebook[index]`` into the model and round its biases to float16."""
    layers = dict(compressible_layers(model))
    with torch.no_grad():
        for q in quants:
            m = layers[q.name]
            write_weights(m.weight, q)
            if m.bias is not None:
                m.bias.copy_(m.bias.half().float())


def write_weights(weight: torch.Tensor, q: LayerQuant) -> None:
    """``weight[...] = codebook[index]``, touching only the non-zeros.

    The same as ``weight.copy_(torch.from_numpy(q.weight()))``, three times
    faster on a pruned layer: a gather ``codebook[index]`` over every weight
    (uint8 indices, cast on the fly) and a transposing copy from the
    column-major index cost more than finding the few non-zeros once and
    scattering their values to the (row-major) weight.
    """
    if not weight.is_contiguous():
        with torch.no_grad():
            weight.copy_(torch.from_numpy(q.weight()))
        return
    rows = q.index.shape[0]
    cols = q.index.size // max(rows, 1)
    flat = q.index.reshape(rows, -1).T.ravel()  # column-major: a view for index_array's layout
    pos = np.flatnonzero(flat)
    values = torch.from_numpy(q.codebook[flat[pos]].astype(np.float32, copy=False))
    dest = (pos % rows) * cols + pos // rows  # row-major position of each non-zero
    with torch.no_grad():
        weight.zero_()
        weight.view(-1)[torch.from_numpy(dest)] = values.to(weight.dtype)
