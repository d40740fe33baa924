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
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial

import numpy as np
import torch
from torch import nn

from . import distributed
from .contract.binfmt import MAX_TEXT
from .contract.container import (
    MAX_DIM,
    MAX_LAYERS,
    MAX_STRIDE,
    CompressedModel,
    LayerRecord,
    best_zbits,
)
from .contract.data import Dataset, Split
from .contract.errors import DeepcompError
from .models import compressible_layers
from .plan import budget_problem
from .prune import Masks, PruneConfig, per_layer, prune_step
from .quantize import LayerQuant, finetune, index_array, quantize_model, round_to_storage
from .resume import Checkpoints
from .train import FitConfig, error_rate, fit, seed_everything, to_tensor


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


def compress(model: nn.Module, arch: str, data: Dataset, cfg: CompressConfig,
             checkpoints: Checkpoints | None = None, resume: bool = False) -> tuple[CompressedModel, dict]:
    """Prune, quantize and fine-tune ``model`` in place; return its container record and a report.

    With ``checkpoints`` every stage boundary is saved there (each retraining and
    fine-tuning epoch, each prune step, quantization); ``resume`` continues from the
    last one (same options required) and gives the uninterrupted run's result.
    """
    check_config(model, arch, data, cfg)
    seed_everything(cfg.seed)
    layers = compressible_layers(model)
    bits = default_widths(layers, cfg.bits, 8, 5)
    zbits = default_widths(layers, None if cfg.zbits == "auto" else cfg.zbits, 5, 4)
    ck = checkpoints.resume_state() if checkpoints is not None and resume else None
    report: dict = ck["report"] if ck else {"arch": arch, "dataset": data.name, "stages": {}}
    at = ck["stage"] if ck else "dense"

    def stage(name: str, t0: float) -> None:
        report["stages"][name] = {"error": error_rate(model, data.test), "seconds": round(time.time() - t0, 2)}

    def save(state: dict) -> None:
        if checkpoints is not None:
            checkpoints.save({**state, "report": report})

    t0 = time.time()
    if at == "dense":
        stage("dense", t0)
    if at in ("dense", "prune"):
        t0 = time.time()
        masks = prune_and_retrain(model, data.train, cfg, ck if at == "prune" else None, save)
        stage("pruned", t0)
        report["density"] = masks.density()
        _check_budget(layers, list(report["density"].values()))  # before quantizing, when --quality is used
        pruned = {n: m.weight.detach().numpy() for n, m in layers}
        report["weight_hist"] = {n: _histogram(w[w != 0]) for n, w in pruned.items()}
        t0 = time.time()
        quants = distributed.on_rank0(lambda: quantize_model(model, bits, cfg.init, cfg.seed))
        round_to_storage(model, quants)
        stage("quantized", t0)
        save({"stage": "quantized", "quants": quants_state(quants), "model": model.state_dict()})
        resume_fit = None
    else:
        quants = quants_from_state(ck["quants"])
        if at == "quantized":
            model.load_state_dict(ck["model"])
        resume_fit = ck.get("fit")
    t0 = time.time()
    saved = quants_state(quants)
    finetune(model, quants, data.train, cfg.finetune, cfg.seed, resume=resume_fit,
             on_epoch=lambda fs: save({"stage": "finetune", "quants": saved, "fit": fs}))
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


def prune_and_retrain(model: nn.Module, data: Split, cfg: CompressConfig, ck: dict | None,
                      save: Callable[[dict], None]) -> Masks:
    """``cfg.prune.steps`` prune steps, each retrained; a checkpoint per epoch and per step.

    ``ck`` (a "prune" checkpoint) continues inside the step it was taken in. Each
    step's masks are rank 0's (``distributed.on_rank0``): equal on every rank.
    """
    p = cfg.prune
    if p.density is None and p.quality is None:
        raise ValueError("pruning needs a density or a quality parameter")
    masks = Masks(model)
    if ck is None:
        std0 = {name: float(m.weight.detach().std()) for name, m in masks.layers}
        first, resume_fit = 1, None
    else:
        masks.masks, std0, first, resume_fit = ck["masks"], ck["std0"], ck["step"], ck["fit"]
        if resume_fit is None:  # the step was complete: its weights, then the next step
            model.load_state_dict(ck["model"])
            first += 1
    for step in range(first, p.steps + 1):
        if resume_fit is None:
            masks.masks = distributed.on_rank0(partial(_pruned, model, masks, p, step / p.steps, std0))
            masks.apply()
        where = {"stage": "prune", "step": step, "std0": std0}
        epochs = p.final_epochs if step == p.steps else p.epochs_per_step
        fit(model, data, replace(cfg.retrain, epochs=epochs), seed=cfg.seed + step, hooks=masks.hooks(),
            desc=f"prune {step}/{p.steps}", resume=resume_fit,
            on_epoch=lambda fs, where=where: save({**where, "masks": masks.masks, "fit": fs}))
        resume_fit = None
        save({**where, "masks": masks.masks, "fit": None, "model": model.state_dict()})
    masks.apply()
    return masks


def _pruned(model: nn.Module, masks: Masks, p: PruneConfig, frac: float, std0: dict) -> dict:
    prune_step(model, masks, p, frac, std0)
    return masks.masks


def quants_state(quants: list[LayerQuant]) -> list[dict]:
    """Codebooks and indices as tensors (a checkpoint is loaded with ``weights_only``)."""
    return [{"name": q.name, "codebook": torch.from_numpy(q.codebook.copy()),
             "index": torch.from_numpy(np.ascontiguousarray(q.index)), "bits": q.bits,
             "initial": torch.from_numpy(q.initial_codebook.copy())} for q in quants]


def quants_from_state(state: list[dict]) -> list[LayerQuant]:
    quants = []
    for s in state:
        index = index_array(tuple(s["index"].shape))  # the column-major layout quantize_layer makes
        index[...] = s["index"].numpy()
        quants.append(LayerQuant(s["name"], s["codebook"].numpy().copy(), index, int(s["bits"]),
                                 s["initial"].numpy().copy()))
    return quants


def _histogram(x: np.ndarray, bins: int = 120) -> dict:
    """Compact weight distribution for the paper's Fig. 4 (kept in the report, not the .dcz)."""
    counts, edges = np.histogram(x, bins=bins)
    return {"counts": counts.tolist(), "edges": edges.tolist()}
