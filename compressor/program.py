"""The model's architecture inside the ``.dcz``: a ``torch.export`` program without its weights.

So ``deepcomp eval`` and friends can run a custom model without its Python
class. The model is exported on zero inputs of the example inputs' shapes (so
no data of the user's is in the file), every parameter and buffer of the
program replaced by a zero-stride view of one scalar (shape kept, bytes gone:
the weights are the file's own records), and the archive xz-compressed; its
bytes count in the file size. TorchScript would be smaller (about 3.0 against
4.8 KB on the small ResNet) but is deprecated in torch 2.13. Loading a program
deserialises a graph: evaluate only files you trust.
"""

from __future__ import annotations

import copy
import io
import lzma
import types
import warnings
from typing import Any

import torch
from torch import nn

from .contract.container import CompressedModel
from .contract.errors import DeepcompError
from .restore import stored_tensors

EXPORT_XZ = 1  # program kind in the file (compressor/contract/tensors.py: PROGRAM_KINDS)
MAX_ARCHIVE = 1 << 28  # bytes a decompressed program may take


def _slots(module: nn.Module) -> list[tuple[nn.Module, str, str, bool]]:
    """(owner, attribute, state-dict name, is_parameter) of every tensor of ``module``."""
    out = []
    for name, mod in module.named_modules():
        for attr, _ in mod.named_parameters(recurse=False):
            out.append((mod, attr, f"{name}.{attr}" if name else attr, True))
        for attr, _ in mod.named_buffers(recurse=False):
            out.append((mod, attr, f"{name}.{attr}" if name else attr, False))
    return out


def embed(model: nn.Module, example_inputs: Any) -> tuple[int, bytes]:
    """``model``'s architecture as a program record, exported for inputs shaped like ``example_inputs``."""
    args = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
    tree_map = torch.utils._pytree.tree_map
    zeros = tree_map(lambda v: torch.zeros_like(v) if isinstance(v, torch.Tensor) else v, args)
    batch = tree_map(lambda v: {0: torch.export.Dim.AUTO} if isinstance(v, torch.Tensor) and v.dim() else None,
                     args)  # dimension 0 is the batch: any size runs
    try:
        ep = torch.export.export(copy.deepcopy(model).eval(), zeros, dynamic_shapes=batch)
    except Exception as e:  # export fails in many types, each with a long report
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise DeepcompError(f"program: torch.export cannot export the model ({first})") from None
    for key, t in list(ep.state_dict.items()):
        hollow = torch.zeros((), dtype=t.dtype).expand(t.shape)
        ep.state_dict[key] = nn.Parameter(hollow, requires_grad=False) if isinstance(t, nn.Parameter) else hollow
    buf = io.BytesIO()
    with warnings.catch_warnings():  # the hollow weights share one storage, which torch remarks on
        warnings.simplefilter("ignore")
        torch.export.save(ep, buf)
    return EXPORT_XZ, lzma.compress(buf.getvalue(), preset=9 | lzma.PRESET_EXTREME)


def module_of(cm: CompressedModel, source: str = "<model>") -> nn.Module:
    """The module a file's embedded program describes, holding the file's tensors."""
    if cm.program is None:
        raise DeepcompError(f"{source}: architecture {cm.arch!r} is not built in and the file embeds no "
                            "program: load it with apply_to(YourModule()) from Python, or compress "
                            "with program=compressor.program.embed(model)")
    kind, data = cm.program
    if kind != EXPORT_XZ:
        raise DeepcompError(f"{source}: program kind {kind} is not one this version runs")
    try:
        raw = lzma.LZMADecompressor().decompress(data, max_length=MAX_ARCHIVE)
        with warnings.catch_warnings():  # the hollow weights share one storage, which torch remarks on
            warnings.simplefilter("ignore")
            prog = torch.export.load(io.BytesIO(raw)).module()
    except Exception as e:  # a damaged archive fails deep inside torch in many ways
        first = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
        raise DeepcompError(f"{source}: the embedded program does not load ({first})") from None
    return _fill(prog, cm, source)


def _fill(prog: nn.Module, cm: CompressedModel, source: str) -> nn.Module:
    """Give the hollow program the file's tensors, by state-dict name."""
    values = stored_tensors(cm)
    slots = _slots(prog)
    names = {key for *_, key, _ in slots}
    extra = sorted(set(values) - names)
    if extra:
        raise DeepcompError(f"{source}: the file stores {extra[0]}, its program has no such tensor")
    with torch.no_grad():
        for owner, attr, key, is_param in slots:
            if key not in values:
                raise DeepcompError(f"{source}: its program's tensor {key} is not in the file")
            old = getattr(owner, attr)
            new = torch.from_numpy(values[key].copy()).to(old.dtype)
            if tuple(new.shape) != tuple(old.shape):
                raise DeepcompError(f"{source}: {key}: the program's shape {tuple(old.shape)} != the file's "
                                    f"{tuple(new.shape)}")
            setattr(owner, attr, nn.Parameter(new, requires_grad=False) if is_param else new)
    # an exported program refuses train()/eval(); it is inference-only, so both are no-ops here
    prog.train = types.MethodType(lambda self, mode=True: self, prog)  # type: ignore[method-assign]
    prog.eval = types.MethodType(lambda self: self, prog)  # type: ignore[method-assign]
    return prog
