"""Data-parallel training over processes started by ``torchrun`` (gloo on CPU, nccl on GPUs).

Why these rules, and not just "wrap the model in DDP":

* **The same global batches as one process.** Every rank draws the same
  permutation (and augmentation) from the same seeded generator and keeps
  its contiguous share of each *global* batch (:func:`share`). A rank's loss
  is scaled by ``world * n_local / n_global`` (:func:`loss_scale`), so the
  mean DDP takes over ranks is the 1-process gradient of the whole batch,
  even for an uneven last batch. The 2-process run then equals the
  1-process run up to float summation order.
* **Masks and codebooks from rank 0.** A mask is a comparison with a
  threshold and a k-means label a comparison with a cut: a 1-ulp difference
  between ranks (another BLAS blocking, another reduction order) could flip
  one. Rank 0 computes them and every rank receives its result
  (:func:`on_rank0`), so they are equal by construction; k-means then also
  runs once instead of on every rank. A ``DeepcompError`` raised there
  reaches every rank, so no rank waits forever in a collective.
* **Rank 0 writes.** Checkpoints, the ``.dcz`` and its report are written by
  rank 0 only (:func:`is_main`); progress bars show there only.

Without ``WORLD_SIZE > 1`` in the environment (and no process group of the
caller's own) every function here is the 1-process identity, so the
single-process path runs exactly the code it ran before.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DistributedSampler

from .contract.errors import DeepcompError

T = TypeVar("T")


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    """True on the one process that writes files and prints (rank 0, or the only process)."""
    return rank() == 0


def init_from_env(backend: str | None = None) -> bool:
    """Join the process group that ``torchrun`` describes; True if this call created it.

    Reads ``WORLD_SIZE``, ``RANK``, ``MASTER_ADDR``/``MASTER_PORT`` (the env://
    rendezvous). A group the caller made already is used as it is. ``backend``
    None: nccl where CUDA is, each process on the GPU of its ``LOCAL_RANK``,
    else gloo; a caller that trains on the CPU asks for gloo.
    """
    if not dist.is_available() or dist.is_initialized():
        return False
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise DeepcompError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not an integer") from None
    if world <= 1:
        return False
    missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise DeepcompError(f"WORLD_SIZE={world} but {', '.join(missing)} unset: start the run with torchrun")
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend)
    return True


def shutdown(created: bool) -> None:
    """Leave the group if :func:`init_from_env` made it (every rank together)."""
    if created and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def device() -> torch.device:
    """Where this rank's model lives: its GPU under nccl, else the CPU."""
    if world_size() > 1 and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def on_rank0(fn: Callable[[], T]) -> T:
    """``fn()`` computed on rank 0 and received by every rank (pickled), errors included."""
    if world_size() == 1:
        return fn()
    box: list[Any] = [None]
    if is_main():
        try:
            box[0] = ("ok", fn())
        except DeepcompError as e:
            box[0] = ("error", str(e))
    dist.broadcast_object_list(box, src=0, device=device() if dist.get_backend() == "nccl" else None)
    status, value = box[0]
    if status == "error":
        raise DeepcompError(value)
    return value


def share(n: int) -> slice:
    """This rank's contiguous rows of a global batch of ``n`` (sizes differ by at most one)."""
    w, r = world_size(), rank()
    base, extra = divmod(n, w)
    start = r * base + min(r, extra)
    return slice(start, start + base + (1 if r < extra else 0))


def loss_scale(n_local: int, n_global: int) -> float:
    """Factor on a rank's *mean* loss so that DDP's mean over ranks is the global batch's mean."""
    return world_size() * n_local / n_global if n_global else 0.0


@contextlib.contextmanager
def data_parallel(model: nn.Module, trainable: Iterable[nn.Parameter],
                  find_unused: bool = False) -> Iterator[nn.Module]:
    """``model`` wrapped in DDP while training ``trainable`` (``model`` itself in 1 process).

    DDP all-reduces every parameter that requires a gradient and fails when one
    gets none; a parameter the optimizer does not train (the weights a tied
    model replaces by ``codebook[index]``) is frozen meanwhile and thawed after.
    Wrapping broadcasts rank 0's parameters and buffers: every rank starts equal.
    """
    if world_size() == 1:
        yield model
        return
    keep = {id(p) for p in trainable}
    frozen = [p for p in model.parameters() if p.requires_grad and id(p) not in keep]
    for p in frozen:
        p.requires_grad_(False)
    ddp = nn.parallel.DistributedDataParallel(model, find_unused_parameters=find_unused)
    try:
        yield ddp
    finally:
        del ddp
        for p in frozen:
            p.requires_grad_(True)


def split_batch(batch: Any, rows: slice) -> Any:
    """The rows ``rows`` of every tensor in a batch (tuples, lists, dicts nested); others as they are."""
    if isinstance(batch, torch.Tensor):
        return batch[rows] if batch.dim() else batch
    if isinstance(batch, (tuple, list)):
        return type(batch)(split_batch(b, rows) for b in batch)
    if isinstance(batch, dict):
        return {k: split_batch(v, rows) for k, v in batch.items()}
    return batch


def batch_rows(batch: Any) -> int | None:
    """Rows of the first tensor of a batch (its batch size), None if it holds no tensor."""
    return next((t.shape[0] for t in _tensors(batch) if t.dim()), None)


def same_on_all_ranks(value: float) -> bool:
    """Whether every rank holds the same number (a fingerprint of what each rank sees)."""
    if world_size() == 1:
        return True
    t = torch.tensor([value, -value], dtype=torch.float64, device=device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)  # [max v, -min v]: the same answer on every rank
    return bool(t[0].item() == -t[1].item())


def check_same_batches(loader: Iterable, batch: Any) -> None:
    """Each rank keeps its share of every batch, so every rank's loader must yield the same ones.

    Checked on the first batch (the one the caller drew already: drawing another
    would move a shuffled loader's RNG, and the 1-process run does not) by a
    fingerprint that also depends on the order of its rows.
    """
    if world_size() == 1 or sampler_of(loader) is not None:
        return
    t = next((x for x in _tensors(batch) if x.dim() and x.shape[0]), None)
    value = 0.0
    if t is not None:
        rows = t.detach().cpu().double().reshape(t.shape[0], -1).sum(1)
        value = float((rows * torch.arange(1, len(rows) + 1, dtype=torch.float64)).sum())
    if not same_on_all_ranks(value):
        raise DeepcompError("train_loader: the ranks' loaders yield different batches; seed its shuffling "
                            "(DataLoader(..., generator=torch.Generator().manual_seed(0))) or shard it "
                            "with a DistributedSampler")


def _tensors(batch: Any) -> Iterable[torch.Tensor]:
    if isinstance(batch, torch.Tensor):
        yield batch
    elif isinstance(batch, (tuple, list, dict)):
        for b in batch.values() if isinstance(batch, dict) else batch:
            yield from _tensors(b)


def sampler_of(loader: Iterable) -> DistributedSampler | None:
    """The ``DistributedSampler`` a loader shards with (its own or its batch sampler's), if any."""
    for s in (getattr(loader, "sampler", None), getattr(getattr(loader, "batch_sampler", None), "sampler", None)):
        if isinstance(s, DistributedSampler):
            return s
    return None


def rank_share(batch: Any) -> tuple[Any, float]:
    """This rank's rows of a global batch and the weight of their mean loss."""
    n = batch_rows(batch)
    if n is None:
        raise DeepcompError(f"train_loader: a batch ({type(batch).__name__}) holds no tensor to share among "
                            "ranks; shard the loader with a DistributedSampler")
    if n < world_size():
        raise DeepcompError(f"train_loader: a batch of {n} rows cannot be shared by "
                            f"{world_size()} processes; use a larger batch or drop_last=True")
    rows = share(n)
    return split_batch(batch, rows), loss_scale(rows.stop - rows.start, n)
