"""Between a planned PyTorch model and a ``.dcz``: records out of the model, tensors back in by name.

``apply_to`` is the inverse of ``compressor.api.Compressor.finish``: every
stored tensor goes to the state-dict entry of the same name, and every tensor
of the model must be in the file (or be a tied alias of one that is), so a
restored model is exactly the compressed one, or the call says what differs.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .contract.container import CompressedModel, LayerRecord, pair
from .contract.errors import DeepcompError
from .plan import Plan, Target, storage_dtype


def layer_record(t: Target, codebook: np.ndarray, index: np.ndarray, bits: int, zbits: int,
                 bias_dtype: str) -> LayerRecord:
    """The record of one compressed weight, with the module's conv geometry."""
    m = t.module
    bias = t.bias
    rec = LayerRecord(t.module_name, t.kind, tuple(t.weight.shape), codebook.astype(np.float32),
                      index.astype(np.int64),
                      None if bias is None else bias.detach().float().numpy().copy(),
                      bits, zbits, param=t.param, bias_dtype=bias_dtype)
    if t.kind == "conv":
        rec.stride, rec.dilation, rec.groups = pair(m.stride), pair(m.dilation), int(m.groups)
        rec.padding = "same" if m.padding == "same" else (0, 0) if m.padding == "valid" else pair(m.padding)
        rec.padding_mode = m.padding_mode
    return rec


def dense_arrays(plan: Plan, dense_dtype: torch.dtype) -> dict[str, np.ndarray]:
    """Every dense tensor of the plan as the array the file stores."""
    out = {}
    for key in plan.dense:
        v = plan.state[key].detach().cpu()
        dt = storage_dtype(v.dtype, dense_dtype)
        out[key] = (v.float() if v.dtype == torch.bfloat16 else v).numpy().astype(dt)
    return out


def round_to_file(plan: Plan, dense_dtype: torch.dtype, bias_dtype: str) -> None:
    """Round the model's biases and dense floats to what the file holds: model == file, exactly."""
    with torch.no_grad():
        for t in plan.targets:
            if t.bias is not None and bias_dtype == "float16":
                t.bias.copy_(t.bias.half())
        for key in plan.dense:
            v = plan.state[key]
            if v.dtype.is_floating_point and storage_dtype(v.dtype, dense_dtype) == np.float16:
                v.copy_(v.half())


def _module(model: nn.Module, name: str, source: str) -> nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError:
        raise DeepcompError(f"{source}: the model has no module {name!r} (the file stores one)") from None


def _check_geometry(rec: LayerRecord, m: nn.Module, source: str) -> None:
    """A record's layer must compute what it computed: same type and conv geometry."""
    want = {"linear": nn.Linear, "conv": nn.Conv2d, "embedding": nn.Embedding, "matrix": nn.RNNBase}[rec.kind]
    if not isinstance(m, want):
        raise DeepcompError(f"{source}: layer {rec.key}: the model's {type(m).__name__} is not the "
                            f"file's {rec.kind} layer")
    if rec.kind == "conv":
        pad = "same" if m.padding == "same" else (0, 0) if m.padding == "valid" else pair(m.padding)
        here = (pair(m.stride), pad, pair(m.dilation), int(m.groups), m.padding_mode)
        there = (pair(rec.stride), rec.padding if rec.padding == "same" else pair(rec.padding),
                 pair(rec.dilation), rec.groups, rec.padding_mode)
        if here != there:
            raise DeepcompError(f"{source}: layer {rec.key}: the model's (stride, padding, dilation, groups, "
                                f"padding_mode) {here} differ from the file's {there}")


def stored_tensors(cm: CompressedModel) -> dict[str, np.ndarray]:
    """Every tensor a file holds, by state-dict name: decoded weights, biases, dense tensors."""
    values: dict[str, np.ndarray] = dict(cm.dense)
    for rec in cm.layers:
        values[rec.key] = rec.weight()
        if rec.bias is not None:
            values[f"{rec.name}.bias" if rec.name else "bias"] = rec.bias
    return values


def apply_to(cm: CompressedModel, model: nn.Module, source: str = "<model>") -> nn.Module:
    """Load every tensor of ``cm`` into ``model`` by name; returns ``model`` in eval mode."""
    if not isinstance(model, nn.Module):
        raise DeepcompError(f"{source}: apply_to needs a torch.nn.Module, got {type(model).__name__}")
    state = model.state_dict(keep_vars=True)
    for rec in cm.layers:
        _check_geometry(rec, _module(model, rec.name, source), source)
    values = stored_tensors(cm)
    loaded: dict[int, str] = {}
    with torch.no_grad():
        for key, array in values.items():
            if key not in state:
                raise DeepcompError(f"{source}: the file stores {key}, the model has no such tensor")
            target = state[key]
            if tuple(target.shape) != array.shape:
                raise DeepcompError(f"{source}: {key}: the model's shape {tuple(target.shape)} != "
                                    f"the file's {array.shape}")
            target.copy_(torch.from_numpy(np.array(array, copy=True)).to(target.dtype))
            loaded[id(target)] = key
    missing = [k for k, v in state.items() if id(v) not in loaded]
    if missing:
        raise DeepcompError(f"{source}: the model has {len(missing)} tensors the file does not store "
                            f"(first: {missing[0]}); is it the model that was compressed?")
    return model.eval()
