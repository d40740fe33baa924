"""Which tensors of a model are compressed, which are stored dense, which are refused, and why.

Any ``nn.Module`` is planned by state-dict name: the weights of ``Linear``,
``Conv2d`` (grouped, depthwise, dilated, any stride and padding), ``Embedding``
and the weight matrices of ``LSTM``/``GRU``/``RNN`` are pruned and quantized;
every other parameter and buffer (BatchNorm affine and running statistics,
LayerNorm, biases of recurrent layers, root parameters, layers the user keeps
dense) is stored exactly. :func:`check_plan` applies every limit of the
``.dcz`` (docs/format.md, "Limits") before any training, so a run never ends in
a file that cannot be written or read back.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .contract.binfmt import MAX_TEXT
from .contract.container import (
    MAX_CONV,
    MAX_DIM,
    MAX_LAYERS,
    WEIGHTS_FLOOR,
    WEIGHTS_PER_BYTE,
    pair,
)
from .contract.errors import DeepcompError

RECURRENT_WEIGHTS = ("weight_ih_l", "weight_hh_l", "weight_hr_l")
# dense dtypes the file stores exactly (bfloat16 goes in as float32, which holds it exactly)
STORABLE = {torch.float32, torch.float16, torch.float64, torch.bfloat16, torch.int64, torch.int32,
            torch.int16, torch.int8, torch.uint8, torch.bool}


@dataclass
class Target:
    """One weight to prune and quantize: ``getattr(module, param)``."""

    module_name: str
    param: str
    kind: str  # linear | conv | embedding | matrix
    module: nn.Module

    @property
    def key(self) -> str:
        return f"{self.module_name}.{self.param}" if self.module_name else self.param

    @property
    def weight(self) -> nn.Parameter:
        return getattr(self.module, self.param)

    @property
    def bias(self) -> torch.Tensor | None:
        """The bias stored in the layer record (Linear and Conv2d only)."""
        return getattr(self.module, "bias", None) if self.kind in ("linear", "conv") else None


@dataclass
class Plan:
    targets: list[Target]
    dense: list[str]  # state-dict names stored exactly
    state: dict[str, torch.Tensor]  # the model's state dict (its own tensors, keep_vars)
    kept: list[str] = field(default_factory=list)  # modules kept dense on request
    aliases: dict[str, str] = field(default_factory=dict)  # name -> name of the same tensor

    def table(self) -> dict[str, list[str]]:
        return {"compressed": [t.key for t in self.targets], "dense": list(self.dense),
                "kept_dense": list(self.kept)}


def kind_of(module: nn.Module) -> str | None:
    """The record kind of a module whose weights compress, or None (stored dense)."""
    if isinstance(module, nn.Linear):
        return "linear"
    if isinstance(module, nn.Conv2d):
        return "conv"
    if isinstance(module, nn.Embedding):
        return "embedding"
    if isinstance(module, nn.RNNBase):
        return "matrix"
    return None


def plan_model(model: nn.Module, keep_dense: Iterable[str] = ()) -> Plan:
    """Split ``model``'s state dict into compressed weights and dense tensors (see module doc)."""
    if not isinstance(model, nn.Module):
        raise DeepcompError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    keep = list(keep_dense)
    names = dict(model.named_modules())
    for k in keep:
        if k not in names:
            raise DeepcompError(f"keep_dense: {k!r} is not a module of the model "
                                f"(modules: {', '.join(n for n in names if n)[:200]})")
    targets: list[Target] = []
    kept: list[str] = []
    tied: set[int] = set()
    for name, mod in names.items():
        kind = kind_of(mod)
        if kind is None:
            continue
        if any(name == k or name.startswith(k + ".") if k else True for k in keep):
            kept.append(name)
            continue
        params = ["weight"] if kind != "matrix" else [
            p for p, _ in mod.named_parameters(recurse=False) if p.startswith(RECURRENT_WEIGHTS)]
        for p in params:
            t = Target(name, p, kind, mod)
            if id(t.weight) not in tied:  # a tied weight (embedding = output layer) is stored once
                tied.add(id(t.weight))
                targets.append(t)
    _refuse_uninitialised(model)
    state = model.state_dict(keep_vars=True)
    covered = {t.key: t.weight for t in targets}
    for t in targets:
        if t.bias is not None:
            covered[f"{t.module_name}.bias" if t.module_name else "bias"] = t.bias
    for t in targets:
        if state.get(t.key) is not t.weight:
            raise DeepcompError(f"layer {t.key}: not a plain parameter of the state dict (a parametrization "
                                "or torch.nn.utils.prune on it? remove it first)")
    dense, aliases = [], {}
    seen: dict[int, str] = {id(v): k for k, v in covered.items()}
    for key, value in state.items():
        if key in covered:
            if covered[key] is not value:  # a state-dict hook renamed things: refuse to guess
                raise DeepcompError(f"tensor {key}: the state dict does not hold the module's own tensor")
            continue
        if not isinstance(value, torch.Tensor):
            raise DeepcompError(f"tensor {key}: extra state of type {type(value).__name__} cannot be stored")
        if id(value) in seen:  # tied weights: one stored copy
            aliases[key] = seen[id(value)]
            continue
        seen[id(value)] = key
        dense.append(key)
    if not targets and not dense:
        raise DeepcompError("model: it has no parameters or buffers, so a .dcz would hold nothing")
    return Plan(targets, dense, state, kept, aliases)


def _refuse_uninitialised(model: nn.Module) -> None:
    for key, p in model.named_parameters():
        if isinstance(p, nn.parameter.UninitializedParameter):
            raise DeepcompError(f"tensor {key}: lazy module not initialised (run one batch through it first)")


def per_target(value: float | int | Mapping[str, float | int] | None, plan: Plan, what: str,
               default: Mapping[str, float | int] | None) -> list[float]:
    """A per-layer option: one value for all, or ``{module name or weight name: value}``.

    Names missing from a mapping take the kind's default; a name that is not a
    compressed layer is refused (a typo would otherwise be silently ignored).
    """
    if isinstance(value, Mapping):
        known = {t.key for t in plan.targets} | {t.module_name for t in plan.targets}
        for k in value:
            if k not in known:
                raise DeepcompError(f"{what}: {k!r} is not a compressed layer "
                                    f"({', '.join(sorted(known))[:200]})")
    out = []
    for t in plan.targets:
        if isinstance(value, Mapping):
            v = value.get(t.key, value.get(t.module_name))
        else:
            v = value
        if v is None:
            if default is None:
                raise DeepcompError(f"{what}: no value for layer {t.key}")
            v = default[t.kind]
        if isinstance(v, bool) or not isinstance(v, numbers.Real):  # numpy scalars too
            raise DeepcompError(f"{what}: {v!r} for layer {t.key} is not a number")
        out.append(v)  # as given, so messages quote it as the user wrote it
    return out


def check_plan(plan: Plan, densities: list[float], bits: list[float], zbits: list[float],
               dense_dtype: torch.dtype) -> None:
    """Every limit of the ``.dcz``, checked before training (docs/format.md, "Limits")."""
    if len(plan.targets) > MAX_LAYERS:
        raise DeepcompError(f"model: {len(plan.targets)} layers to compress, a .dcz holds at most "
                            f"{MAX_LAYERS} (keep some dense with keep_dense=[...])")
    for t, d, b, z in zip(plan.targets, densities, bits, zbits, strict=True):
        if not 0 < d <= 1:
            raise DeepcompError(f"density: {d} for layer {t.key} is not in (0, 1]")
        for what, v in (("bits", b), ("zbits", z)):
            if int(v) != v or not 1 <= v <= 8:
                raise DeepcompError(f"{what}: {v} for layer {t.key} is not an integer 1..8")
        _check_text(t.module_name)
        _check_text(t.param)
        shape = tuple(t.weight.shape)
        if len(shape) not in (2, 4) or any(not 1 <= s <= MAX_DIM for s in shape):
            where = f"keep_dense=[{t.module_name!r}]" + ("" if t.module_name else ", the root module")
            raise DeepcompError(f"layer {t.key}: weight shape {shape}: each dimension must be 1..{MAX_DIM} "
                                f"in a .dcz (keep it dense with {where})")
        if t.kind == "conv":
            m = t.module
            pad = [] if isinstance(m.padding, str) else pair(m.padding)
            if any(not 0 <= v <= MAX_CONV for v in (*pair(m.stride), *pair(m.dilation), *pad)):
                raise DeepcompError(f"layer {t.key}: stride {m.stride}, dilation {m.dilation} or padding "
                                    f"{m.padding} above {MAX_CONV}")
    for key in plan.dense:
        _check_text(key)
    _check_budget(plan, densities, dense_dtype)


def storage_dtype(dtype: torch.dtype, dense_dtype: torch.dtype) -> np.dtype:
    """The dtype a dense tensor is stored in: its own, except floats in ``dense_dtype`` = float16.

    bfloat16 is stored as float32, which holds every bfloat16 value exactly.
    """
    if dtype not in STORABLE:
        raise DeepcompError(f"dtype {dtype} cannot be stored in a .dcz")
    if dtype.is_floating_point:
        if dense_dtype == torch.float16 or dtype == torch.float16:
            return np.dtype(np.float16)
        return np.dtype(np.float64 if dtype == torch.float64 else np.float32)
    return np.dtype(str(dtype).removeprefix("torch."))


def smallest_file(sizes: list[int], densities: list[float], fixed_bytes: int = 0) -> int:
    """A lower bound on the bytes of a file with these layers at these densities.

    Each kept weight costs at least one bit in each of its two streams, and
    ``fixed_bytes`` (the dense tensors) are stored as they are.
    """
    return fixed_bytes + sum(-(-max(1, round(d * n)) // 4) for n, d in zip(sizes, densities, strict=True))


def budget_problem(sizes: list[int], densities: list[float], fixed_bytes: int = 0) -> str | None:
    """Why the reader's weight budget (64 per file byte + 2^20) would refuse such a file, or None."""
    low = smallest_file(sizes, densities, fixed_bytes)
    allowed = WEIGHTS_FLOOR + WEIGHTS_PER_BYTE * low
    if sum(sizes) <= allowed:
        return None
    return (f"{sum(sizes)} compressed weights at these densities would make a file of at least {low} bytes, "
            f"which may declare at most {allowed} weights ({WEIGHTS_PER_BYTE} per byte + {WEIGHTS_FLOOR})")


def _check_budget(plan: Plan, densities: list[float], dense_dtype: torch.dtype) -> None:
    fixed = 0
    for key in plan.dense:
        value = plan.state[key]
        if value.dim() > 8:
            raise DeepcompError(f"tensor {key}: {value.dim()} dimensions (a .dcz stores at most 8)")
        try:
            fixed += value.numel() * storage_dtype(value.dtype, dense_dtype).itemsize
        except DeepcompError as e:
            raise DeepcompError(f"tensor {key}: {e}") from None
    why = budget_problem([t.weight.numel() for t in plan.targets], densities, fixed)
    if why:
        big = max(plan.targets, key=lambda t: t.weight.numel())
        raise DeepcompError(f"model: {why}; raise the density or keep the largest layer dense "
                            f"(keep_dense=[{big.module_name!r}])")


def _check_text(s: str) -> None:
    if len(s.encode()) > MAX_TEXT or not s.isprintable():
        raise DeepcompError(f"name {s[:60]!r}: a .dcz stores names of at most {MAX_TEXT} printable bytes")
