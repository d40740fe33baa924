"""Seeded training and evaluation loops shared by every stage (dense, prune, quantize).

``fit`` trains whatever parameters it is given, and calls ``hooks`` around the
optimizer step: the pruning masks and the tied-codebook model plug in there
instead of each stage carrying its own loop.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from . import distributed
from .contract.data import Split
from .contract.errors import DeepcompError


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 pixels -> float model input in [0, 1] (the scale the hardware also uses).

    Anything but uint8 is refused: float inputs are already scaled, and dividing
    them by 255 again would train a different model without a word.
    """
    if images.dtype != np.uint8:
        raise DeepcompError(f"images are {images.dtype}, not uint8 pixels (scaled by 1/255 here); "
                            "compressor.api.compress takes inputs as your loader gives them")
    return torch.from_numpy(images).float().div_(255.0)


def shift_augment(x: torch.Tensor, gen: torch.Generator, max_shift: int) -> torch.Tensor:
    """Random per-image translation by up to ``max_shift`` pixels (zero fill)."""
    if max_shift <= 0:
        return x
    b, c, h, w = x.shape
    pad = nn.functional.pad(x, (max_shift,) * 4)
    dy = torch.randint(0, 2 * max_shift + 1, (b,), generator=gen)
    dx = torch.randint(0, 2 * max_shift + 1, (b,), generator=gen)
    rows = (torch.arange(h)[None, :] + dy[:, None])[:, None, :, None]
    cols = (torch.arange(w)[None, :] + dx[:, None])[:, None, None, :]
    bidx = torch.arange(b)[:, None, None, None]
    cidx = torch.arange(c)[None, :, None, None]
    return pad[bidx, cidx, rows, cols]


@dataclass
class Hooks:
    """Called around each optimizer step (masks, codebook ties)."""

    before_step: Callable[[], None] | None = None
    after_step: Callable[[], None] | None = None


@dataclass
class FitConfig:
    epochs: int = 10
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 128
    augment: int = 0  # max pixel shift
    optimizer: str = "sgd"  # sgd | adam


FitState = dict  # {"epoch", "module", "optimizer", "scheduler", "generator"}: see fit_state


def fit(
    model: nn.Module,
    data: Split,
    cfg: FitConfig,
    *,
    seed: int,
    params: Iterable[nn.Parameter] | None = None,
    hooks: Hooks | None = None,
    desc: str = "train",
    resume: FitState | None = None,
    on_epoch: Callable[[FitState], None] | None = None,
) -> None:
    """Train with cross-entropy, cosine learning-rate decay, seeded shuffling and augmentation.

    ``on_epoch`` receives the state after each epoch but the last (:func:`fit_state`;
    it must serialise it before returning: the tensors are live), and ``resume``,
    such a state, continues from there: model, optimizer, schedule and the
    generator of shuffling and augmentation, so the result is the uninterrupted one.
    Under ``torchrun`` the model trains in DDP on this rank's share of every
    global batch (``compressor.distributed``): the same batches as one process.
    """
    if cfg.epochs <= 0:
        return
    hooks = hooks or Hooks()
    params = list(params if params is not None else model.parameters())
    if cfg.optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=True
        )
    x_all, y_all = to_tensor(data.images), torch.from_numpy(data.labels)
    n = len(data)
    steps_per_epoch = (n + cfg.batch_size - 1) // cfg.batch_size
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch, pct_start=0.15
    ) if cfg.optimizer == "sgd" else torch.optim.lr_scheduler.CosineAnnealingLR(
        opt, T_max=cfg.epochs * steps_per_epoch
    )
    gen = torch.Generator().manual_seed(seed)
    start = 0
    if resume is not None:
        model.load_state_dict(resume["module"])
        opt.load_state_dict(resume["optimizer"])
        sched.load_state_dict(resume["scheduler"])
        gen.set_state(resume["generator"])
        start = int(resume["epoch"])
    world = distributed.world_size()
    with distributed.data_parallel(model, params) as net:
        net.train()
        bar = tqdm(range(start, cfg.epochs), desc=desc, unit="epoch", leave=False,
                   disable=None if distributed.is_main() else True)
        for epoch in bar:
            perm = torch.randperm(n, generator=gen)
            total = 0.0
            for i in range(steps_per_epoch):
                idx = perm[i * cfg.batch_size : (i + 1) * cfg.batch_size]
                x, y = shift_augment(x_all[idx], gen, cfg.augment), y_all[idx]
                if world == 1:
                    loss = nn.functional.cross_entropy(net(x), y)
                else:  # this rank's rows; DDP's mean over ranks is the whole batch's mean loss
                    rows = distributed.share(len(idx))
                    loss = nn.functional.cross_entropy(net(x[rows]), y[rows], reduction="sum") * (world / len(idx))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if hooks.before_step:
                    hooks.before_step()
                opt.step()
                if hooks.after_step:
                    hooks.after_step()
                sched.step()
                total += loss.item()
            bar.set_postfix(loss=f"{total / steps_per_epoch:.4f}")
            if on_epoch is not None and epoch + 1 < cfg.epochs:
                on_epoch(fit_state(epoch + 1, model, opt, sched, gen))
    model.eval()


def fit_state(epoch: int, model: nn.Module, opt: torch.optim.Optimizer, sched: Any,
              gen: torch.Generator) -> FitState:
    """What ``fit`` needs to continue after ``epoch`` epochs exactly as if never stopped."""
    return {"epoch": epoch, "module": model.state_dict(), "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(), "generator": gen.get_state()}


@torch.no_grad()
def predict(model: nn.Module, images: np.ndarray, batch_size: int = 2000) -> np.ndarray:
    model.eval()
    out = [
        model(to_tensor(images[i : i + batch_size])).argmax(1).numpy()
        for i in range(0, len(images), batch_size)
    ]
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def error_rate(model: nn.Module, split: Split) -> float:
    """Top-1 error as a fraction."""
    return float((predict(model, split.images) != split.labels).mean())
