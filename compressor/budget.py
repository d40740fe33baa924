"""Compress to an accuracy budget: the smallest ``.dcz`` within a named top-1 loss.

Users think in "how much accuracy may I lose", not in per-layer densities,
codebook bits and index widths, and hand-tuned densities do not carry over to
another dataset. So ``deepcomp compress --max-loss PP`` searches for them:

1. **Sensitivity** (as in the pruning paper, Fig. 6): each layer alone is
   pruned to a grid of densities, without retraining, and the validation
   error recorded. These curves rank the layers: where bytes are cheap to
   remove and where they are not.
2. **Prune** (``compressor.allocate`` turns the curves into densities for a
   target size): steps that each aim at a fraction of the current bytes, with
   retraining after each and a check on the validation split; a step that
   breaks the budget is undone and retried at half the cut (a back-off), until
   the cut is too small to matter. Then the final retraining.
3. **Bits**: per layer the number of codebook bits that codes the layer in
   the fewest bytes whose quantization loss fits the remaining slack (at most
   as many shared weights as non-zeros), then centroid fine-tuning; if the
   check fails, the layer where a bit buys most accuracy per byte gets one
   more and the step is redone.
4. **Index width**: ``--zbits auto`` (the width that codes each layer smallest).

Every decision is measured on a validation split held out from the training
images (``compressor.split``); the test set is evaluated once, at the end,
for the report. Nothing here knows the dataset: the only inputs are the
model, its data and the budget, and every run is seeded.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from . import distributed
from .allocate import Curve, allocate, estimated_bytes
from .bitwidths import choose_bits
from .contract.container import CompressedModel, LayerRecord, best_zbits
from .contract.data import Dataset
from .contract.errors import DeepcompError
from .models import compressible_layers
from .pipeline import _histogram, check_config
from .prune import Masks, magnitude_threshold
from .quantize import LayerQuant, finetune, quantize_layer, round_to_storage
from .search_ops import SearchOps
from .split import hold_out
from .train import FitConfig, error_rate, fit, seed_everything


@dataclass
class BudgetConfig:
    """The search's knobs. Only ``max_loss`` is the user's; the rest are generic defaults."""

    max_loss: float  # percentage points of top-1 accuracy on the validation split
    val_fraction: float = 0.1
    retrain: FitConfig = field(default_factory=lambda: FitConfig(lr=0.01))
    finetune: FitConfig = field(default_factory=lambda: FitConfig(epochs=4, lr=1e-4, optimizer="adam",
                                                                  weight_decay=0.0))
    epochs_per_step: int = 4  # one retraining round; a step over the limit may get more (see _recover)
    final_epochs: int = 8
    init: str = "linear"
    seed: int = 0
    cut: float = 0.5  # a prune step first aims at this fraction of the current bytes
    min_cut: float = 0.9  # stop once a step would keep more than this fraction (nothing left to gain)
    max_steps: int = 24  # prune steps tried at most, accepted or not
    series: int = 2  # series of steps, each ending in the final retraining (see prune_search)
    patience: int = 2  # extra retraining rounds a step over the limit gets while its error keeps falling
    quant_share: float = 0.2  # share of the budget the pruning phase leaves for quantization
    max_bits: int = 8


def check_budget_config(cfg: BudgetConfig) -> None:
    """One-line errors for values no search can honour (the CLI's types check most of them first)."""
    if not (np.isfinite(cfg.max_loss) and 0 <= cfg.max_loss < 100):
        raise DeepcompError(f"--max-loss {cfg.max_loss}: need percentage points in [0, 100)")
    if not 0 < cfg.val_fraction < 1:
        raise DeepcompError(f"--val-fraction {cfg.val_fraction}: must be in (0, 1)")


def search(ops: SearchOps, cfg: BudgetConfig) -> tuple[Any, dict, dict[str, float]]:
    """Sensitivity, prune steps and bits within ``cfg.max_loss`` on ``ops.error``.

    Returns what the last ``refine`` returned, the report's ``budget`` section
    (without ``settings``, which the caller knows from its records) and the
    pruned densities.
    """
    check_budget_config(cfg)
    seed_everything(cfg.seed)
    t_all = time.time()
    e0 = ops.error()
    limit = e0 + cfg.max_loss / 100
    rep: dict = {"max_loss_pp": cfg.max_loss, "dense_val_error": e0, "limit_val_error": limit, "seconds": {}}

    t0 = time.time()
    curves = sensitivity(ops.weights, ops.error)
    rep["sensitivity"] = {c.name: {"density": c.density.tolist(), "val_error": c.error.tolist()} for c in curves}
    rep["seconds"]["sensitivity"] = round(time.time() - t0, 1)

    t0 = time.time()
    err, steps = prune_search(ops, curves, e0 + (1 - cfg.quant_share) * (limit - e0), cfg)
    rep["steps"] = steps
    rep["pruned_val_error"] = err
    rep["seconds"]["prune"] = round(time.time() - t0, 1)
    density = ops.masks.density()

    t0 = time.time()
    result, err, scans = choose_bits(ops, limit, init=cfg.init, seed=cfg.seed, max_bits=cfg.max_bits)
    rep["bits_scan"] = scans
    rep["final_val_error"] = err
    rep["val_loss_pp"] = 100 * (err - e0)
    rep["within_budget"] = bool(err <= limit)
    rep["seconds"]["bits"] = round(time.time() - t0, 1)
    rep["seconds"]["search"] = round(time.time() - t_all, 1)
    return result, rep, density


def config_from_args(args: argparse.Namespace, dense_meta: dict) -> BudgetConfig:
    """``deepcomp compress --max-loss``'s options as a search config; conflicting ones refused.

    Retraining shifts images as the dense model was trained (the checkpoint
    records ``--augment``) unless ``--augment`` is given; the validation split
    is the one ``deepcomp train --val-fraction`` held out, if it did.
    """
    given = [o for o, v in (("--density", args.density), ("--quality", args.quality), ("--bits", args.bits),
                            ("--zbits", args.zbits), ("--resume", args.resume)) if v]
    if given:
        raise DeepcompError(f"--max-loss chooses densities, bits and zbits itself: drop {', '.join(given)}")
    if distributed.world_size() > 1:  # its masks and k-means are not yet shared from rank 0
        raise DeepcompError("--max-loss runs in one process: start it without torchrun")
    seen = float(dense_meta.get("val_fraction") or 0.0)
    fraction = args.val_fraction if args.val_fraction is not None else (seen or 0.1)
    if not 0 < fraction < 1:
        raise DeepcompError(f"--val-fraction {fraction}: must be in (0, 1)")
    if seen != fraction or dense_meta.get("seed", args.seed) != args.seed:
        print(f"deepcomp: warning: {args.checkpoint}: the dense model was not trained with --val-fraction "
              f"{fraction:g} --seed {args.seed}: it has seen validation images, the measured loss is optimistic",
              file=sys.stderr)
    augment = args.augment or int(dense_meta.get("augment", 0))
    return BudgetConfig(
        max_loss=args.max_loss, val_fraction=fraction,
        retrain=FitConfig(lr=args.lr, augment=augment),
        finetune=FitConfig(epochs=args.finetune_epochs, lr=args.finetune_lr, optimizer="adam",
                           weight_decay=0.0, augment=augment),
        epochs_per_step=args.prune_epochs, final_epochs=args.final_epochs, init=args.init, seed=args.seed)


def compress_to_budget(model: nn.Module, arch: str, data: Dataset, cfg: BudgetConfig) -> tuple[CompressedModel, dict]:
    """Search densities, bits and index widths for ``model``; return its record and a report.

    The report's ``budget`` section holds the sensitivity curves, every prune
    step tried, the bits scan and the chosen per-layer settings; ``stages``
    holds the test error of the dense and the final model, measured last.
    """
    check_budget_config(cfg)
    train, val = hold_out(data.train, cfg.val_fraction, cfg.seed)
    check_config(model, arch, Dataset(data.name, train, val), _pipeline_like(cfg))
    dense_state = copy.deepcopy(model.state_dict())
    layers = compressible_layers(model)
    masks = Masks(model)
    pruned: dict[str, torch.Tensor] = {}

    def retrain(epochs: int, seed: int, desc: str) -> None:
        fit(model, train, replace(cfg.retrain, epochs=epochs), seed=seed, hooks=masks.hooks(), desc=desc)

    def refine(bits: list[int]) -> list[LayerQuant]:
        if not pruned:  # the first call sees the pruned weights: kept for the codebook figure (Fig. 4)
            pruned.update({n: m.weight.detach().clone() for n, m in layers})
        quants = [quantize_layer(n, m.weight.detach().numpy(), m.weight.detach().numpy() != 0, b, cfg.init, cfg.seed)
                  for (n, m), b in zip(layers, bits, strict=True)]
        round_to_storage(model, quants)
        return finetune(model, quants, train, cfg.finetune, cfg.seed)

    ops = SearchOps(model, [(n, m.weight) for n, m in layers], masks, lambda: error_rate(model, val), retrain, refine)
    quants, rep, density = search(ops, cfg)
    rep.update(val_fraction=cfg.val_fraction, val_images=len(val))
    records = _records(layers, quants)
    for rec in records:
        rec.zbits = best_zbits(rec)
    rep["settings"] = {r.name: {"density": density[r.name], "nonzeros": int(np.count_nonzero(r.index)),
                                "bits": r.wbits, "zbits": r.zbits} for r in records}
    report = {"arch": arch, "dataset": data.name, "budget": rep, "density": density,
              "zbits": [r.zbits for r in records],
              "weight_hist": {n: _histogram(w[w != 0].numpy()) for n, w in pruned.items()},
              "codebooks": {q.name: {"initial": q.initial_codebook.tolist(), "final": q.codebook.tolist()}
                            for q in quants}}
    # the test set, once, after every decision: dense (from its saved weights), then compressed
    compressed_state = copy.deepcopy(model.state_dict())
    model.load_state_dict(dense_state)
    dense_test = error_rate(model, data.test)
    model.load_state_dict(compressed_state)
    report["stages"] = {"dense": {"error": dense_test, "seconds": 0.0},
                        "finetuned": {"error": error_rate(model, data.test), "seconds": rep["seconds"]["search"]}}
    return CompressedModel(arch, records), report


def _pipeline_like(cfg: BudgetConfig):
    """The pipeline's config for its up-front checks (layer kinds, shapes, input size)."""
    from .pipeline import CompressConfig
    from .prune import PruneConfig

    return CompressConfig(prune=PruneConfig(density=[1.0]), seed=cfg.seed)


SENSITIVITY_GRID = tuple(2.0 ** (-k / 2) for k in range(21))  # 1 down to 1/1024, half an octave apart


@torch.no_grad()
def sensitivity(weights: list[tuple[str, torch.Tensor]], error: Callable[[], float],
                grid: tuple[float, ...] = SENSITIVITY_GRID) -> list[Curve]:
    """Validation error with one layer at a time pruned to each density (no retraining).

    A layer's scan stops once its error passes half of all images wrong: below
    that density the curve says only "unusable", which is all the allocation needs.
    """
    curves = []
    bar = tqdm(total=len(weights) * len(grid), desc="sensitivity", unit="eval", leave=False)
    for name, weight in weights:
        w = weight.detach().clone()
        dens, errs = [], []
        for d in grid:
            if d * w.numel() < 1:
                break
            thr = magnitude_threshold(w, d)
            weight.copy_(w * (w.abs() >= thr))
            dens.append(d)
            errs.append(error())
            bar.update()
            if errs[-1] > 0.5:
                break
        weight.copy_(w)
        curves.append(Curve(name, w.numel(), np.array(dens), np.array(errs)))
    bar.close()
    return curves


def prune_search(ops: SearchOps, curves: list[Curve], limit: float, cfg: BudgetConfig) -> tuple[float, list[dict]]:
    """Prune in steps toward ever smaller allocations while the validation error stays within ``limit``.

    Why steps with back-off instead of one allocation: the curves are measured
    without retraining, which recovers much of the loss, so how far a network
    can go is only known by trying. Each accepted step is the new starting
    point; a failed one is undone (weights and masks) and retried at the square root of its cut.
    Why series: a series ends with the final retraining, which lowers the
    error below what the short checks measured; the next series spends that
    recovered slack, and a series that accepts no step ends the search.
    """
    model, masks = ops.model, ops.masks
    sizes = {c.name: c.size for c in curves}
    kept = (copy.deepcopy(model.state_dict()), {k: v.clone() for k, v in masks.masks.items()})
    err, steps, i = ops.error(), [], 0
    bar = tqdm(total=cfg.max_steps, desc="prune", unit="step", leave=False)
    for series in range(cfg.series):
        accepted, cut = 0, cfg.cut
        while i < cfg.max_steps:
            now = masks.density()
            target = cut * estimated_bytes(sizes, now)
            dens = {n: min(now[n], d) for n, d in allocate(curves, target).items()}
            if all(dens[n] * sizes[n] > now[n] * sizes[n] - 1 for n in dens):  # nothing would be pruned
                break
            _prune_to(ops, dens)
            e, rounds = _recover(ops, limit, cfg, i)
            i += 1
            bar.update()
            ok = e <= limit
            steps.append({"series": series, "target_bytes": round(target), "density": masks.density(),
                          "val_error": e, "retrain_rounds": rounds, "accepted": ok})
            bar.set_postfix(val=f"{100 * e:.2f}%", kept=f"{estimated_bytes(sizes, masks.density()):.0f}B")
            if ok:  # the next step may cut deeper again, up to the first step's cut
                err, cut, accepted = e, max(cfg.cut, cut * cut), accepted + 1
                kept = (copy.deepcopy(model.state_dict()), {k: v.clone() for k, v in masks.masks.items()})
            else:
                model.load_state_dict(kept[0])
                masks.masks = {k: v.clone() for k, v in kept[1].items()}
                cut = float(np.sqrt(cut))
                if cut > cfg.min_cut:
                    break
        if not accepted:
            break
        ops.retrain(cfg.final_epochs, cfg.seed + 100 * series, "final retrain")
        e = ops.error()
        ok = e <= limit  # the longer-trained weights, unless they broke the limit (noise aside, they rarely do)
        steps.append({"series": series, "final_retrain": True, "density": masks.density(), "val_error": e,
                      "accepted": ok})
        if ok:
            err = e
            kept = (copy.deepcopy(model.state_dict()), {k: v.clone() for k, v in masks.masks.items()})
        else:  # keep the last accepted state
            model.load_state_dict(kept[0])
            masks.masks = {k: v.clone() for k, v in kept[1].items()}
    bar.close()
    masks.apply()
    return err, steps


def _recover(ops: SearchOps, limit: float, cfg: BudgetConfig, step: int) -> tuple[float, int]:
    """Retrain a pruned step and check it; over ``limit``, up to ``cfg.patience`` more rounds while it can pass.

    Why rounds: a check after a few epochs is pessimistic (the hand-tuned runs
    retrain 40 epochs at the end), and undoing a step that only needed more
    training stops the search early; yet rejected steps are where the search
    spends its time. So after the second round an attempt ends when the
    round did not lower the error, or when the gap still left to ``limit`` is
    more than twice what the round gained: rounds gain less and less, and a
    step that far off would not pass (nearer ones, the usual third-round
    passes, go on; measured: a gap of one gain is not enough, LeNet-300-100
    lost a step that passed in its third round).
    """
    rounds, e = 0, float("inf")
    while rounds <= cfg.patience:
        ops.retrain(cfg.epochs_per_step, cfg.seed + 1 + step + 1000 * rounds, f"retrain {step + 1}.{rounds}")
        rounds, before, e = rounds + 1, e, ops.error()
        if e <= limit or e >= before or (rounds >= 2 and e - limit > 2 * (before - e)):
            break
    return e, rounds


def _prune_to(ops: SearchOps, density: dict[str, float]) -> None:
    """Shrink each layer's mask to ``density`` of its weights by magnitude (masks only shrink)."""
    masks = ops.masks
    for name, weight in ops.weights:
        w = weight.detach() * masks.masks[name]
        thr = magnitude_threshold(w, density[name])
        masks.masks[name] = masks.masks[name] & (w.abs() >= thr)
    masks.apply()


def _records(layers: list[tuple[str, nn.Module]], quants: list[LayerQuant]) -> list[LayerRecord]:
    records = []
    for (name, m), q in zip(layers, quants, strict=True):
        conv = isinstance(m, nn.Conv2d)
        records.append(LayerRecord(
            name, "conv" if conv else "linear", tuple(m.weight.shape), q.codebook, q.index,
            None if m.bias is None else m.bias.detach().numpy().astype(np.float32).copy(),
            q.bits, 4, stride=m.stride[0] if conv else 1, padding=m.padding[0] if conv else 0))
    return records
