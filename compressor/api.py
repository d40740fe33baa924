"""Deep Compression of any PyTorch model inside the user's own training loop.

In the style of ``torch.nn.utils.prune``: a :class:`Compressor` wraps the
model, hooks the gradients of the weights it compresses and a post-step hook
into the user's optimizer (:meth:`Compressor.attach`), and the user trains as
always. ``prune(f)`` raises each layer's magnitude threshold to the fraction
``f`` of the way to its target density; ``quantize()`` clusters the survivors
(k-means, index 0 = the zero) and from then on each weight's gradient is the
sum of its cluster's gradients (the paper's eq. 3), so any element-wise
optimizer moves a cluster as one centroid; ``finish()`` rounds the model to
exactly what the ``.dcz`` stores and returns the record. :func:`compress` runs
that schedule over the user's ``DataLoader``, loss and optional steps. Inputs
are used as the loader gives them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from . import distributed
from .contract.container import CompressedModel, best_zbits
from .contract.container import load as load_dcz
from .contract.errors import DeepcompError
from .fold import fold_batchnorm
from .kmeans import INITS, kmeans_1d
from .plan import Plan, check_plan, per_target, plan_model
from .restore import apply_to, dense_arrays, layer_record, round_to_file
from .resume import Checkpoints, loader_generators

DEFAULT_BITS = {"conv": 8, "linear": 5, "embedding": 5, "matrix": 5}
DEFAULT_ZBITS = {"conv": 5, "linear": 4, "embedding": 4, "matrix": 4}
DTYPES = {"float32": torch.float32, "float16": torch.float16}
PerLayer = float | int | Mapping[str, float | int] | None


class Compressor:
    """Masks, then tied centroids, on the compressible weights of ``model`` (see module doc).

    ``density``, ``bits`` and ``zbits`` are one value or ``{module or weight name: value}``
    (``zbits="auto"``: the width that codes each layer smallest); ``keep_dense`` names
    modules stored exactly instead; ``dense_dtype`` is the storage of every other float
    tensor and ``bias_dtype`` of Linear/Conv2d biases ("float32" or "float16").
    ``fold_bn`` folds each BatchNorm into the conv/linear layer before it first
    (``compressor.fold``). Every limit of the file is checked here, before any training.
    """

    def __init__(self, model: nn.Module, *, density: PerLayer, bits: PerLayer = None,
                 zbits: PerLayer | str = None, keep_dense: Iterable[str] = (),
                 dense_dtype: str = "float32", bias_dtype: str = "float16", init: str = "linear",
                 seed: int = 0, fold_bn: bool = False) -> None:
        for what, v in (("dense_dtype", dense_dtype), ("bias_dtype", bias_dtype)):
            if v not in DTYPES:
                raise DeepcompError(f"{what}: {v!r} (choose float32 or float16)")
        if init not in INITS:
            raise DeepcompError(f"init: {init!r} (choose from {', '.join(INITS)})")
        if isinstance(keep_dense, str):
            keep_dense = [keep_dense]
        self.model = model
        self.plan: Plan = plan_model(model, keep_dense)
        self.density = per_target(density, self.plan, "density", None)
        b = per_target(bits, self.plan, "bits", DEFAULT_BITS)
        self.auto_zbits = zbits == "auto"
        z = per_target(None if self.auto_zbits else zbits, self.plan, "zbits", DEFAULT_ZBITS)  # type: ignore[arg-type]
        self.dense_dtype, self.bias_dtype = DTYPES[dense_dtype], bias_dtype
        check_plan(self.plan, self.density, b, z, self.dense_dtype)  # integers 1..8 among the rest
        self.bits, self.zbits = [int(v) for v in b], [int(v) for v in z]
        self.folded: list[tuple[str, str]] = []
        self._handles: list = []
        if fold_bn:  # only once every check has passed: it changes the model
            self.folded, self._handles = fold_batchnorm(model)
        self.init, self.seed = init, seed
        self.masks = {t.key: torch.ones_like(t.weight, dtype=torch.bool) for t in self.plan.targets}
        self.index: dict[str, torch.Tensor] | None = None
        self.codebooks: dict[str, torch.Tensor] = {}
        self._handles += [t.weight.register_hook(self._grad_hook(t.key))
                          for t in self.plan.targets if t.weight.requires_grad]

    def attach(self, optimizer: torch.optim.Optimizer) -> Compressor:
        """Re-apply masks / ties after every ``optimizer.step()`` (momentum and decay move weights)."""
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise DeepcompError(f"optimizer: expected a torch.optim.Optimizer, got {type(optimizer).__name__}")
        self._handles.append(optimizer.register_step_post_hook(lambda *_: self.enforce()))
        return self

    def _grad_hook(self, key: str) -> Callable[[torch.Tensor], torch.Tensor]:
        def hook(g: torch.Tensor) -> torch.Tensor:
            if self.index is None:
                return g * self.masks[key]
            idx = self.index[key]
            sums = torch.zeros(len(self.codebooks[key]), dtype=g.dtype, device=g.device)
            sums.index_add_(0, idx.flatten(), g.flatten())
            sums[0] = 0  # the zero entry never moves
            return sums[idx]
        return hook

    def prune(self, fraction: float = 1.0) -> dict[str, float]:
        """Raise each threshold to ``fraction`` of the way (geometrically) to the target density."""
        if not 0 < fraction <= 1:
            raise DeepcompError(f"prune: fraction {fraction} is not in (0, 1]")
        if self.index is not None:
            raise DeepcompError("prune: the model is already quantized")
        masks = distributed.on_rank0(lambda: self._pruned(fraction))  # equal on every rank
        self.masks = {t.key: masks[t.key].to(t.weight.device) for t in self.plan.targets}
        self.enforce()
        return self.densities()

    @torch.no_grad()
    def _pruned(self, fraction: float) -> dict[str, torch.Tensor]:
        out = {}
        for t, d in zip(self.plan.targets, self.density, strict=True):
            w = t.weight.detach().abs().flatten()
            keep = max(1, int(round(d ** fraction * w.numel())))
            thr = w.float().kthvalue(w.numel() - keep + 1).values
            out[t.key] = (self.masks[t.key] & (t.weight.detach().abs() >= thr)).cpu()
        return out

    def densities(self) -> dict[str, float]:
        return {k: float(m.float().mean()) for k, m in self.masks.items()}

    def quantize(self) -> None:
        """k-means of each layer's surviving weights into ``2**bits - 1`` centroids; weights tied.

        Under ``torchrun`` rank 0 clusters and every rank receives its codebooks and indices.
        """
        got = distributed.on_rank0(self._kmeans)
        self.codebooks = {k: cb for k, (cb, _) in got.items()}
        self.index = {t.key: got[t.key][1].to(t.weight.device) for t in self.plan.targets}
        self.enforce()

    @torch.no_grad()
    def _kmeans(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        out = {}
        for t, b in zip(self.plan.targets, self.bits, strict=True):
            w = t.weight.detach().cpu().double().numpy()
            mask = self.masks[t.key].cpu().numpy()
            codebook = np.zeros(1 << b)
            index = np.zeros(w.shape, dtype=np.int64)
            if mask.any():
                c, labels = kmeans_1d(w[mask], (1 << b) - 1, self.init, self.seed)
                codebook[1:], index[mask] = c, labels + 1
            out[t.key] = (torch.from_numpy(codebook), torch.from_numpy(index))
        return out

    def state_dict(self) -> dict[str, Any]:
        """Masks, and once quantized indices and codebooks (CPU tensors): a checkpoint's part."""
        return {"masks": {k: m.cpu() for k, m in self.masks.items()},
                "index": None if self.index is None else {k: i.cpu() for k, i in self.index.items()},
                "codebooks": dict(self.codebooks)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from :meth:`state_dict` (the model's own weights load separately)."""
        dev = {t.key: t.weight.device for t in self.plan.targets}
        if set(state["masks"]) != set(dev):
            raise DeepcompError("compressor state: its layers are not this model's")
        self.masks = {k: m.to(dev[k]) for k, m in state["masks"].items()}
        self.index = None if state["index"] is None else {k: i.to(dev[k]) for k, i in state["index"].items()}
        self.codebooks = dict(state["codebooks"])

    def enforce(self) -> None:
        """Pruned weights to zero; once quantized, each cluster to its mean (its centroid)."""
        with torch.no_grad():
            for t in self.plan.targets:
                w = t.weight
                if self.index is None:
                    w.mul_(self.masks[t.key])
                    continue
                idx = self.index[t.key].flatten()
                cb = self.codebooks[t.key]
                sums = torch.zeros_like(cb).index_add_(0, idx.cpu(), w.detach().flatten().cpu().double())
                counts = torch.bincount(idx.cpu(), minlength=cb.numel())
                cb = torch.where(counts > 0, sums / counts.clamp(min=1), cb)
                cb[0] = 0
                self.codebooks[t.key] = cb
                w.copy_(cb.to(w.dtype)[self.index[t.key].cpu()].to(w.device))

    def finish(self, arch: str | None = None, program: tuple[int, bytes] | None = None) -> CompressedModel:
        """The ``.dcz`` record; the model is rounded to it in place (model == file) and unhooked."""
        if self.index is None:
            self.quantize()
        self.enforce()
        for h in self._handles:
            h.remove()
        self._handles = []
        for _, bn_name in self.folded:  # a folded BatchNorm trains as an ordinary one again
            bn = self.model.get_submodule(bn_name)
            if bn.affine:
                bn.weight.requires_grad_(True)
        records = []
        with torch.no_grad():
            round_to_file(self.plan, self.dense_dtype, self.bias_dtype)  # biases and dense floats
            for t, b, z in zip(self.plan.targets, self.bits, self.zbits, strict=True):
                cb = self.codebooks[t.key].numpy().astype(np.float16).astype(np.float32)
                index = self.index[t.key].cpu().numpy()
                t.weight.copy_(torch.from_numpy(cb[index]).to(t.weight.dtype))
                rec = layer_record(t, cb, index, b, z, self.bias_dtype)
                rec.zbits = best_zbits(rec) if self.auto_zbits else rec.zbits
                records.append(rec)
        name = arch or type(self.model).__name__
        return CompressedModel(name, records, dense_arrays(self.plan, self.dense_dtype), program)


class Loaded:
    """A ``.dcz`` read from disk, with the torch-side ways back to a model."""

    def __init__(self, cm: CompressedModel, source: str) -> None:
        self.cm, self.source = cm, source

    def apply_to(self, model: nn.Module) -> nn.Module:
        """Load every stored tensor into ``model`` by name (see :func:`compressor.restore.apply_to`)."""
        return apply_to(self.cm, model, self.source)


def load(path: str | Path) -> Loaded:
    return Loaded(load_dcz(path), str(path))


# --- the schedule over the user's loaders -----------------------------------------------------

Batch = Any
Step = Callable[[nn.Module, Batch], torch.Tensor]


def _check_loader(loader: Any, what: str) -> None:
    if loader is None or isinstance(loader, (str, bytes)) or not hasattr(loader, "__iter__"):
        raise DeepcompError(f"{what}: expected an iterable of batches such as a torch DataLoader, "
                            f"got {type(loader).__name__}")
    if iter(loader) is loader:  # a generator: used up after the first epoch (or the first check)
        raise DeepcompError(f"{what}: a {type(loader).__name__} can be iterated only once; pass something "
                            "that iterates again each epoch (a DataLoader, a list)")


def _default_step(loss_fn: Callable | None) -> Step:
    if not callable(loss_fn):
        raise DeepcompError("loss_fn: a callable (outputs, targets) -> loss is needed without a train_step")

    def step(model: nn.Module, batch: Batch) -> torch.Tensor:
        x, y = _pair_batch(batch, "train_loader", "train_step")
        return loss_fn(model(x), y)
    return step


def _pair_batch(batch: Batch, loader: str, step: str) -> tuple[Any, Any]:
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise DeepcompError(f"{loader}: a batch is a {type(batch).__name__}, not (inputs, targets); "
                            f"pass {step}=fn(model, batch)")
    return batch[0], batch[1]


@torch.no_grad()
def _first_batch_runs(model: nn.Module, loader: Iterable, step: Step) -> Batch:
    """One step on the first batch, without gradients, in eval mode: a model that does not take
    the loader's batches, or a loss that does not take its outputs, is one line before training.
    Returns that batch."""
    batch = next(iter(loader), None)
    if batch is None:
        raise DeepcompError("train_loader: yields no batches")
    was = model.training
    try:
        step(model.eval(), batch)
    except (RuntimeError, TypeError, ValueError, IndexError) as e:
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise DeepcompError(f"train_loader: the first batch does not run through the model and loss "
                            f"({type(e).__name__}: {first})") from None
    finally:
        model.train(was)
    return batch


def train_epochs(model: nn.Module, loader: Iterable, step: Step, optimizer: torch.optim.Optimizer,
                 epochs: int, first_epoch: int = 0, on_epoch: Callable[[int], None] | None = None) -> float:
    """Plain loop: ``loss = step(model, batch)``, backward, ``optimizer.step()``; mean loss of the last epoch.

    Under ``torchrun`` ``step`` gets the DDP-wrapped model and this rank's rows of each
    batch, its loss (a mean over the batch) weighted so that DDP's mean over ranks is the
    whole batch's gradient; a loader sharded by a ``DistributedSampler`` is used as it is
    (``set_epoch(first_epoch + e)`` each epoch). ``on_epoch(e)`` follows epoch ``e`` (1, 2, ...).
    See :func:`compress`.
    """
    mean = float("nan")
    sampler = distributed.sampler_of(loader)
    world = distributed.world_size()
    trainable = [p for g in optimizer.param_groups for p in g["params"]]
    with distributed.data_parallel(model, trainable, find_unused=True) as net:
        for e in range(epochs):
            if sampler is not None:
                sampler.set_epoch(first_epoch + e)
            net.train()
            total, n = 0.0, 0
            for batch in loader:
                optimizer.zero_grad(set_to_none=True)
                share, weight = batch, 1.0
                if world > 1 and sampler is None:
                    share, weight = distributed.rank_share(batch)
                loss = step(net, share)
                if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
                    raise DeepcompError(f"train_step: must return a scalar loss tensor, got {type(loss).__name__}")
                (loss * weight if weight != 1.0 else loss).backward()
                optimizer.step()
                total, n = total + loss.item(), n + 1
            if n == 0:
                raise DeepcompError("train_loader: yields no batches")
            mean = total / n
            if on_epoch is not None:
                on_epoch(e + 1)
    model.eval()
    return mean


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable, loss_fn: Callable | None,
             eval_step: Callable[[nn.Module, Batch], float] | None = None) -> dict[str, float]:
    """Mean of ``eval_step`` over batches, or the mean loss (and top-1 error for class targets)."""
    model.eval()
    sums: dict[str, float] = {}
    n = 0
    for batch in loader:
        if eval_step is not None:
            got = eval_step(model, batch)
            vals = dict(got) if isinstance(got, Mapping) else {"metric": float(got)}
        else:
            x, y = _pair_batch(batch, "eval_loader", "eval_step")
            out = model(x)
            vals = {"loss": float(loss_fn(out, y))} if loss_fn else {}
            if out.dim() == 2 and y.dim() == 1 and not y.dtype.is_floating_point:
                vals["error"] = float((out.argmax(1) != y).float().mean())
        for k, v in vals.items():
            sums[k] = sums.get(k, 0.0) + float(v)
        n += 1
    if n == 0:
        raise DeepcompError("eval_loader: yields no batches")
    return {k: v / n for k, v in sums.items()}


def _check_budget_call(max_loss: Any, density: PerLayer, eval_loader: Iterable | None,
                       state_dir: str | Path | None, options: Mapping[str, Any]) -> None:
    """``max_loss`` excludes what it chooses and needs a validation loader: one line each, before any work."""
    if isinstance(max_loss, bool) or not isinstance(max_loss, (int, float)) or not 0 <= max_loss < 100:
        raise DeepcompError(f"max_loss: {max_loss!r} is not percentage points in [0, 100)")
    given = (["density"] if density is not None else []) + [k for k in ("bits", "zbits") if k in options] \
        + (["state_dir"] if state_dir is not None else [])
    if given:
        raise DeepcompError(f"max_loss chooses densities, bits and zbits itself: drop {', '.join(given)}")
    if eval_loader is None:
        raise DeepcompError("max_loss: needs eval_loader, a validation split held out from the training data "
                            "(never the test set)")


def compress(model: nn.Module, train_loader: Iterable, loss_fn: Callable | None = None, *,
             density: PerLayer = None, optimizer: torch.optim.Optimizer | Callable | None = None,
             prune_steps: int = 3, prune_epochs: int = 1, finetune_epochs: int = 1,
             train_step: Step | None = None, eval_loader: Iterable | None = None,
             eval_step: Callable | None = None, arch: str | None = None,
             program: tuple[int, bytes] | None = None, state_dir: str | Path | None = None,
             resume: bool = False, max_loss: float | None = None, **options: Any) -> tuple[CompressedModel, dict]:
    """Prune in ``prune_steps`` steps of ``prune_epochs`` each, quantize, fine-tune; the record and a report.

    Or, with ``max_loss`` (percentage points of top-1 accuracy) instead of
    ``density``, ``bits`` and ``zbits``: the budget search of ``deepcomp
    compress --max-loss`` (``compressor.budget_api``) chooses them, measuring
    every decision on ``eval_loader``, which must then be a validation split
    held out from the training data (never the test set). ``prune_epochs`` is
    the retraining after each prune step, ``finetune_epochs`` the centroid
    fine-tuning after each bits choice; the report's ``budget`` section says
    what it decided. Not with ``state_dir``/``resume`` or under ``torchrun``.

    The first batch is run once, without gradients, before anything else: a
    model, batch or loss that do not fit together are one line, not a traceback.

    ``optimizer`` is an optimizer over ``model``'s parameters, a factory ``params -> optimizer``
    (a fresh one per phase) or None (SGD, lr 0.01, momentum 0.9). ``options`` go to
    :class:`Compressor` (bits, zbits, keep_dense, dense_dtype, bias_dtype, init, seed, fold_bn).

    ``state_dir``: a checkpoint after every epoch (and quantization) goes there, and
    ``resume=True`` continues from the last one: model, compressor, optimizer, torch's
    global RNG and the loader's generators, so the result is the uninterrupted run's.
    The last checkpoint stays (resuming from it returns the same record); remove the
    directory once the file is saved.

    Under ``torchrun`` (``WORLD_SIZE > 1``) this joins the process group and trains in
    DDP; every rank iterates ``train_loader``, which must then yield the same batches on
    every rank (seed its shuffling), and trains on its share of each; or shard it with a
    ``DistributedSampler`` (then it is used as it is). ``train_step`` gets the DDP model.
    Every rank returns the same record: save it on rank 0 (``compressor.distributed.is_main()``).
    """
    _check_loader(train_loader, "train_loader")
    if eval_loader is not None:
        _check_loader(eval_loader, "eval_loader")
    step = train_step if train_step is not None else _default_step(loss_fn)
    if not callable(step):
        raise DeepcompError(f"train_step: expected a callable (model, batch) -> loss, got {type(step).__name__}")
    for what, v, lo in (("prune_steps", prune_steps, 1), ("prune_epochs", prune_epochs, 0),
                        ("finetune_epochs", finetune_epochs, 0)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise DeepcompError(f"{what}: {v!r} is not an integer >= {lo}")
    if resume and state_dir is None:
        raise DeepcompError("resume: needs the state_dir the checkpoints were written to")
    if max_loss is not None:
        _check_budget_call(max_loss, density, eval_loader, state_dir, options)
        options = {**options, "zbits": "auto"}
    elif density is None:
        raise DeepcompError("density: needed (one value or {layer: value}), or max_loss=PP for the budget search")
    distributed.init_from_env()  # under torchrun: join its group (left to the caller to destroy)
    comp = Compressor(model, density=1.0 if max_loss is not None else density, **options)
    distributed.check_same_batches(train_loader, _first_batch_runs(model, train_loader, step))

    def make_optimizer() -> torch.optim.Optimizer:
        if isinstance(optimizer, torch.optim.Optimizer):
            return optimizer
        if optimizer is None:
            return torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        if not callable(optimizer):
            raise DeepcompError(f"optimizer: expected an Optimizer or a factory, got {type(optimizer).__name__}")
        return optimizer(model.parameters())

    if max_loss is not None:
        from .budget_api import compress_to_budget

        return compress_to_budget(model, comp, train_loader, step, eval_loader,
                                  lambda: evaluate(model, eval_loader, loss_fn, eval_step), make_optimizer,
                                  train_epochs, max_loss=float(max_loss), prune_epochs=prune_epochs,
                                  finetune_epochs=finetune_epochs, seed=comp.seed, init=comp.init,
                                  arch=arch, program=program)
    schedule = {"prune_steps": prune_steps, "prune_epochs": prune_epochs, "finetune_epochs": finetune_epochs}
    state = None if state_dir is None else Checkpoints(
        state_dir, {"density": density, **schedule, **options, "layers": comp.plan.table()}, "resume=True")
    ck = state.resume_state() if state is not None and resume else None
    gens = loader_generators(train_loader)
    report: dict = {"plan": {**comp.plan.table(), "folded": comp.folded}, "stages": {}}
    at, done = "dense", (0, 0)  # the stage reached, and (prune step, epoch) or (0, fine-tuning epoch)
    if ck is not None:
        model.load_state_dict(ck["model"])
        comp.load_state_dict(ck["compressor"])
        for g, st in zip(gens, ck["generators"], strict=True):
            g.set_state(st)
        report, at, done = ck["report"], ck["stage"], tuple(ck["done"])

    def save(stage_name: str, reached: tuple[int, int], opt: torch.optim.Optimizer | None) -> None:
        if state is not None:
            state.save({"stage": stage_name, "done": list(reached), "model": model.state_dict(),
                        "compressor": comp.state_dict(), "report": report,
                        "optimizer": None if opt is None else opt.state_dict(),
                        "generators": [g.get_state() for g in gens]})

    def stage(name: str, t0: float) -> None:
        got = evaluate(model, eval_loader, loss_fn, eval_step) if eval_loader is not None else {}
        report["stages"][name] = {**got, "seconds": round(time.time() - t0, 2)}

    t0 = time.time()
    if at == "dense":
        stage("dense", t0)
    if at in ("dense", "prune"):
        opt = make_optimizer()
        if at == "prune":
            opt.load_state_dict(ck["optimizer"])
        hook = opt.register_step_post_hook(lambda *_: comp.enforce())
        k0, e0 = done if at == "prune" and done[1] < prune_epochs else (done[0] + 1, 0)
        for k in range(k0, prune_steps + 1):
            first = e0 if k == k0 else 0
            if first == 0:
                comp.prune(k / prune_steps)
                if prune_epochs == 0:
                    save("prune", (k, 0), opt)
            train_epochs(model, train_loader, step, opt, prune_epochs - first, (k - 1) * prune_epochs + first,
                         lambda e, k=k, first=first: save("prune", (k, first + e), opt))
        hook.remove()
        stage("pruned", t0)
        report["density"] = comp.densities()
        t0 = time.time()
        comp.quantize()
        stage("quantized", t0)
        save("quantized", (0, 0), None)
        at, done = "quantized", (0, 0)
    t0 = time.time()
    opt = make_optimizer()
    if at == "finetune":
        opt.load_state_dict(ck["optimizer"])
    hook = opt.register_step_post_hook(lambda *_: comp.enforce())
    e0 = done[1]
    train_epochs(model, train_loader, step, opt, finetune_epochs - e0, prune_steps * prune_epochs + e0,
                 lambda e: save("finetune", (0, e0 + e), opt))
    hook.remove()
    cm = comp.finish(arch, program)
    stage("finetuned", t0)
    return cm, report
