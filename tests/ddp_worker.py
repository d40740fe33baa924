"""What tests/test_distributed.py runs once in its own process and once under ``torchrun``.

``python tests/ddp_worker.py OUTDIR`` (or ``torchrun --nproc_per_node=2 tests/ddp_worker.py
OUTDIR``) trains a small MLP on digits with ``train.fit`` (masks held, shift augmentation,
an uneven last batch) and compresses it with ``api.compress`` over a shuffled DataLoader;
rank 0 writes ``fit.pt`` (the float32 weights) and ``api.dcz``, and in ``unequal.txt``
what ``api.compress`` said of loaders that differ between ranks. Equal files from one and
two processes are what the distributed design promises.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

if __name__ == "__main__":  # run as a script: make the checkout importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from compressor import distributed  # noqa: E402
from compressor.contract.container import save  # noqa: E402
from compressor.contract.data import load_dataset  # noqa: E402


def fit_run(out: Path) -> None:
    """Two epochs of masked retraining: DDP's averaged gradient vs one process's."""
    from compressor.models import build
    from compressor.prune import Masks
    from compressor.train import FitConfig, fit

    data = load_dataset("digits")
    torch.manual_seed(0)
    model = build("mlp:64-32-10")
    masks = Masks(model)
    for name, m in masks.layers:  # a fixed pattern: every third weight pruned
        masks.masks[name] = torch.arange(m.weight.numel()).reshape(m.weight.shape) % 3 != 0
    masks.apply()
    fit(model, data.train, FitConfig(epochs=2, lr=0.05, batch_size=100, augment=1), seed=3,
        hooks=masks.hooks())
    if distributed.is_main():
        torch.save(model.state_dict(), out / "fit.pt")


def api_run(out: Path) -> None:
    """``api.compress`` over a seeded shuffled DataLoader: each rank takes half of each batch."""
    from compressor import api

    data = load_dataset("digits")
    x = torch.from_numpy(data.train.images).float().div(255).flatten(1)
    y = torch.from_numpy(data.train.labels).long()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=64, shuffle=True,
                                         generator=torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    cm, _ = api.compress(model, loader, nn.functional.cross_entropy, density=0.4, bits=4, prune_steps=2,
                         prune_epochs=1, finetune_epochs=1,
                         optimizer=lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9))
    if distributed.is_main():
        save(cm, out / "api.dcz")


def unequal_loaders_run(out: Path) -> None:
    """Loaders shuffled differently on each rank: one error line on every rank, no hang."""
    from compressor import api
    from compressor.contract.errors import DeepcompError

    x, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8, shuffle=True,
                                         generator=torch.Generator().manual_seed(distributed.rank()))
    try:
        api.compress(nn.Linear(4, 3), loader, nn.functional.cross_entropy, density=0.5, prune_steps=1)
        message = "no error"
    except DeepcompError as e:
        message = str(e)
    if distributed.is_main():
        (out / "unequal.txt").write_text(message)


def main(out: Path) -> None:
    created = distributed.init_from_env()
    fit_run(out)
    api_run(out)
    unequal_loaders_run(out)
    distributed.shutdown(created)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
