"""The Deep Compression pipeline: prune + retrain, k-means + trained quantization, encode.

``compress`` works on any ``nn.Module`` of ``Linear``/``Conv2d`` layers and the
project's uint8 ``Dataset``; the CLI feeds it the built-in architectures. Any
other model, a ``DataLoader``, another loss: ``compressor.api``. It returns the container record and
a report (per-stage error and time, densities, codebooks before/after
fine-tuning) that the CLI writes beside the ``.dcz`` as ``.meta.json``. The
report is not needed to decode and is not part of the compressed size.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .contract.binfmt import MAX_TEXT
from .contract.container import (
    MAX_DIM,
    MAX_LAYERS,
    MAX_STRIDE,
    CompressedModel,
    LayerRecord,
    best_zbits,
)
from .contract.data import Dataset
from .contract.errors import DeepcompError
from .models import compressible_layers
from .plan import budget_problem
from .prune import PruneConfig, iterative_prune, per_layer
from .quantize import finetune, quantize_model, round_to_storage
from .train import FitConfig, error_rate, seed_everything, to_tensor


@dataclass
class CompressConfig:
    prune: PruneConfig = field(default_factory=lambda: PruneConfig(density=[0.08, 0.09, 0.26]))
    bits: list[int] | None = None  # per layer; default 8 for conv, 5 for fc
    zbits: list[int] | str | None = None  # per layer, or "auto"; default 5 for conv, 4 for fc
    init: str = "linear"
    retrain: FitConfig = field(default_factory=lambda: FitConfig(lr=0.01))
    finetune: FitConfig = field(default_factory=lambda: FitConfig(epochs=4, lr=1e-4, optimizer="adam", weight_decay=0.0))
    seed: int = 0


def default_widths(layers: list[tuple[str, nn.Module]], given: list[int] | None, conv: int, fc: int) -> list[int]:
    if given:
        return [int(b) for b in per_layer([float(v) for v in given], len(layers))]
    return [conv if isinstance(m, nn.Conv2d) else fc for _, m in layers]


def check_config(model: nn.Module, arch: str, data: Dataset, cfg: CompressConfig) -> None:
    """Refuse, before any training, settings or layers the ``.dcz`` cannot store (docs/format.md)."""
    if not isinstance(data, Dataset):
        raise DeepcompError(f"data: this pipeline takes a compressor.contract.data.Dataset, not a "
                            f"{type(data).__name__}; for a DataLoader and your own loss use "
                            "compressor.api.compress(model, loader, loss_fn, density=...)")
    if data.train.images.dtype != np.uint8:
        raise DeepcompError(f"data: {data.name} images are {data.train.images.dtype}: this pipeline scales "
                            "uint8 pixels by 1/255; compressor.api.compress takes inputs as they are")
    layers = compressible_layers(model)
    n = len(layers)
    if n > MAX_LAYERS:
        raise DeepcompError(f"model: {n} layers to compress, a .dcz holds at most {MAX_LAYERS}")
    for what, values, lo, hi in (("bits", cfg.bits, 1, 8),
                                 ("zbits", None if cfg.zbits == "auto" else cfg.zbits, 1, 8)):
        if values is not None:
            if len(values) > n:
                raise DeepcompError(f"--{what}: {len(values)} values for {n} layers")
            if any(not (lo <= int(v) <= hi) or int(v) != v for v in values):
                raise DeepcompError(f"--{what} {','.join(map(str, values))}: each must be {lo}..{hi}")
    dens = cfg.prune.density
    if dens is not None and (len(dens) > n or any(not (0 < d <= 1) for d in dens)):
        raise DeepcompError(f"--density: need at most {n} values in (0, 1], got {dens}")
    if dens is not None:  # with --quality the density is known after pruning: checked there
        _check_budget(layers, per_layer(dens, n))
    if len(arch.encode()) > MAX_TEXT:
        raise DeepcompError(f"architecture name of {len(arch.encode())} bytes (at most {MAX_TEXT})")
    for name, m in layers:
        if any(d > MAX_DIM for d in m.weight.shape):
            raise DeepcompError(f"layer {name}: weight shape {tuple(m.weight.shape)} exceeds {MAX_DIM} per dimension")
        if isinstance(m, nn.Conv2d):
            if isinstance(m.padding, str) or len(set(m.padding)) != 1 or len(set(m.stride)) != 1:
                raise DeepcompError(f"layer {name}: stride {m.stride} / padding {m.padding!r}: the .dcz stores "
                                    "one integer stride and padding for both dimensions")
            if m.stride[0] > MAX_STRIDE or m.padding[0] > MAX_STRIDE:
                raise DeepcompError(f"layer {name}: stride or padding above {MAX_STRIDE}")
    with torch.no_grad():  # the model must take the dataset's images (else a matmul error mid-run)
        try:
            model.eval()(to_tensor(data.train.images[:2]))
        except RuntimeError as e:
            raise DeepcompError(f"{arch}: does not take {data.name} images of shape "
                                f"{tuple(data.train.images.shape[1:])} ({str(e).splitlines()[0][:120]})") from None


def _check_budget(layers: list[tuple[str, nn.Module]], densities: list[float]) -> None:
    why = budget_problem([m.weight.numel() for _, m in layers], densities)
    if why:
        raise DeepcompError(f"model: {why}; raise --density")


def compress(model: nn.Module, arch: str, data: Dataset, cfg: CompressConfig) -> tuple[CompressedModel, dict]:
    """Prune, quantize and fine-tune ``model`` in place; return its container record and a report."""
    check_config(model, arch, data, cfg)
    seed_everything(cfg.seed)
    layers = compressible_layers(model)
    bits = default_widths(layers, cfg.bits, 8, 5)
    zbits = default_widths(layers, None if cfg.zbits == "auto" else cfg.zbits, 5, 4)
    report: dict = {"arch": arch, "dataset": data.name, "stages": {}}

    def stage(name: str, t0: float) -> None:
        report["stages"][name] = {"error": error_rate(model, data.test), "seconds": round(time.time() - t0, 2)}

    t0 = time.time()
    stage("dense", t0)
    t0 = time.time()
    masks = iterative_prune(model, data.train, cfg.prune, cfg.retrain, cfg.seed)
    stage("pruned", t0)
    report["density"] = masks.density()
    _check_budget(layers, list(report["density"].values()))  # before quantizing, when --quality is used
    pruned = {n: m.weight.detach().numpy().copy() for n, m in layers}
    t0 = time.time()
    quants = quantize_model(model, bits, cfg.init, cfg.seed)
    round_to_storage(model, quants)
    stage("quantized", t0)
    report["weight_hist"] = {q.name: _histogram(pruned[q.name][pruned[q.name] != 0])
                             for q, (_, m) in zip(quants, layers, strict=True)}
    t0 = time.time()
    finetune(model, quants, data.train, cfg.finetune, cfg.seed)
    stage("finetuned", t0)
    report["codebooks"] = {q.name: {"initial": q.initial_codebook.tolist(), "final": q.codebook.tolist()}
                           for q in quants}
    records = []
    for (name, m), q, zb in zip(layers, quants, zbits, strict=True):
        conv = isinstance(m, nn.Conv2d)
        records.append(LayerRecord(
            name, "conv" if conv else "linear", tuple(m.weight.shape), q.codebook, q.index,
            None if m.bias is None else m.bias.detach().numpy().astype(np.float32).copy(),
            q.bits, zb,
            stride=m.stride[0] if conv else 1, padding=m.padding[0] if conv else 0,
        ))
    if cfg.zbits == "auto":
        for rec in records:
            rec.zbits = best_zbits(rec)
    report["zbits"] = [rec.zbits for rec in records]
    return CompressedModel(arch, records), report


def _histogram(x: np.ndarray, bins: int = 120) -> dict:
    """Compact weight distribution for the paper's Fig. 4 (kept in the report, not the .dcz)."""
    counts, edges = np.histogram(x, bins=bins)
    return {"counts": counts.tolist(), "edges": edges.tolist()}
