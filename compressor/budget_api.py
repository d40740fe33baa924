"""``compressor.api.compress(..., max_loss=PP)``: the accuracy-budget search over the user's own loaders.

The same search as ``deepcomp compress --max-loss`` (``compressor.budget``:
sensitivity curves, prune steps with back-off, bits by coded bytes, then
``zbits="auto"``), driven through a :class:`compressor.api.Compressor`: its
masks while pruning, its k-means and tied centroids while fine-tuning, its
``finish()`` for the record, so a real model (any layer kind the API
compresses, BatchNorm folded or kept dense) goes through it unchanged.
Every decision is measured on ``eval_loader``, which must hold images the
model did not train on (a validation split, never the test set); its top-1
error is what ``max_loss`` (percentage points) bounds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from . import distributed
from .budget import BudgetConfig, search
from .contract.container import CompressedModel
from .contract.errors import DeepcompError
from .search_ops import SearchOps

# compressor.api's Compressor and step type; not imported (api imports this module when max_loss is given)
Compressor = Any
Step = Callable[[nn.Module, Any], torch.Tensor]


class _CompressorMasks:
    """The search's view of a :class:`Compressor`'s masks (``compressor.budget.MaskSet``)."""

    def __init__(self, comp: Compressor) -> None:
        self.comp = comp

    @property
    def masks(self) -> dict[str, torch.Tensor]:
        return self.comp.masks

    @masks.setter
    def masks(self, value: dict[str, torch.Tensor]) -> None:
        self.comp.masks = value

    def density(self) -> dict[str, float]:
        return self.comp.densities()

    def apply(self) -> None:
        self.comp.enforce()


def compress_to_budget(model: nn.Module, comp: Compressor, train_loader: Iterable, step: Step,
                       eval_loader: Iterable, evaluate: Callable[[], dict[str, float]],
                       make_optimizer: Callable[[], torch.optim.Optimizer], train_epochs: Callable, *,
                       max_loss: float, prune_epochs: int, finetune_epochs: int, seed: int, init: str,
                       arch: str | None, program: tuple[int, bytes] | None) -> tuple[CompressedModel, dict]:
    """Search densities and bits for ``comp``'s weights within ``max_loss`` on ``eval_loader``.

    Each prune step retrains ``prune_epochs`` epochs (a series ends with twice
    that), each fine-tuning of the centroids ``finetune_epochs``; the report's
    ``budget`` section is the CLI's (curves, steps, bits scan, settings).
    """
    if distributed.world_size() > 1:  # the search's masks and k-means are not shared from rank 0
        raise DeepcompError("max_loss: the budget search runs in one process; start it without torchrun")
    if prune_epochs < 1:
        raise DeepcompError(f"prune_epochs: {prune_epochs}: the budget search retrains after every step (>= 1)")

    def error() -> float:
        got = evaluate()
        if "error" not in got:
            raise DeepcompError("max_loss: eval_loader must give a top-1 error (class targets, or an eval_step "
                                "returning {'error': ...})")
        return float(got["error"])

    def train(epochs: int, seed_: int) -> None:
        torch.manual_seed(seed_)  # the loader's shuffling, when it draws from torch's global generator
        opt = make_optimizer()
        hook = opt.register_step_post_hook(lambda *_: comp.enforce())
        try:
            train_epochs(model, train_loader, step, opt, epochs)
        finally:
            hook.remove()

    def refine(bits: list[int]) -> None:
        comp.bits, comp.index, comp.codebooks = list(bits), None, {}
        comp.quantize()
        train(finetune_epochs, seed)

    cfg = BudgetConfig(max_loss=max_loss, epochs_per_step=prune_epochs, final_epochs=2 * prune_epochs,
                       init=init, seed=seed)
    dense = {"error": error()}
    ops = SearchOps(model, [(t.key, t.weight) for t in comp.plan.targets], _CompressorMasks(comp), error,
                    lambda epochs, s, _desc: train(epochs, s), refine)
    _, rep, density = search(ops, cfg)
    cm = comp.finish(arch, program)
    rep["settings"] = {t.key: {"density": density[t.key], "nonzeros": int((r.index != 0).sum()),
                               "bits": r.wbits, "zbits": r.zbits}
                       for t, r in zip(comp.plan.targets, cm.layers, strict=True)}
    report: dict[str, Any] = {"plan": {**comp.plan.table(), "folded": comp.folded}, "budget": rep,
                              "density": density,
                              "stages": {"dense": dense, "finetuned": {"error": error()}}}
    return cm, report
