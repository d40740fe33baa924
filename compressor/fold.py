"""Fold each BatchNorm into the conv/linear layer it follows, in place, before pruning.

Pruning and k-means then see the *effective* weights ``w * gamma / sqrt(var + eps)``
(what an integer engine would multiply by), not weights whose scale a
BatchNorm undoes. The model keeps its structure, so the user's class still
loads the file: the BatchNorm stays, turned into the shift it still owes,
``running_mean = mu * s``, ``running_var = 1 - eps``, ``weight = 1`` (frozen),
``bias = beta`` (trainable), and is kept in eval mode by a forward pre-hook
while the model trains (batch statistics would undo the fold). The bytes do
not change: the BatchNorm's four vectors are still stored.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from .contract.errors import DeepcompError

NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


def folding_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """(layer, batchnorm) module names where the BatchNorm is the only user of the layer's output."""
    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception as e:  # tracing fails in many types on data-dependent Python
        first = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
        raise DeepcompError(f"fold_bn: torch.fx cannot trace the model ({first}); fold by hand or "
                            "leave fold_bn off") from None
    mods = dict(model.named_modules())
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(mods.get(node.target), NORMS):
            continue
        src = node.args[0] if node.args else None
        if (isinstance(src, torch.fx.Node) and src.op == "call_module" and len(src.users) == 1
                and isinstance(mods.get(src.target), (nn.Conv2d, nn.Linear))
                and mods[node.target].track_running_stats):
            pairs.append((str(src.target), str(node.target)))
    return pairs


def fold_batchnorm(model: nn.Module) -> tuple[list[tuple[str, str]], list[RemovableHandle]]:
    """Fold every foldable BatchNorm (see module doc); the pairs and the eval-mode hooks."""
    pairs = folding_pairs(model)
    handles = []
    with torch.no_grad():
        for layer_name, bn_name in pairs:
            layer, bn = model.get_submodule(layer_name), model.get_submodule(bn_name)
            gamma = bn.weight if bn.affine else torch.ones_like(bn.running_var)
            s = gamma / torch.sqrt(bn.running_var + bn.eps)
            layer.weight.mul_(s.reshape(-1, *([1] * (layer.weight.dim() - 1))))
            if layer.bias is not None:
                layer.bias.mul_(s)
            bn.running_mean.mul_(s)
            bn.running_var.fill_(1 - bn.eps)
            if bn.affine:
                bn.weight.fill_(1)
                bn.weight.requires_grad_(False)
            handles.append(bn.register_forward_pre_hook(_frozen))
    return pairs, handles


def _frozen(module: nn.Module, _inputs: tuple) -> None:
    module.training = False  # a folded BatchNorm never normalises with batch statistics again
