"""Dense checkpoints (``.pt``): a state dict plus the arch spec and dataset name.

Loaded with ``weights_only=True`` so a foreign pickle cannot run code; anything
that is not a deepcomp checkpoint is reported in one line naming the file.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path

import torch
from torch import nn

from .archspec import arch_shapes
from .contract.binfmt import atomic_write, read_file
from .contract.errors import DeepcompError
from .models import build

FORMAT = "deepcomp-dense-v1"


def save_dense(model: nn.Module, arch: str, dataset: str, path: str | Path, meta: dict | None = None) -> None:
    buf = io.BytesIO()
    torch.save({"format": FORMAT, "arch": arch, "dataset": dataset,
                "state_dict": model.state_dict(), "meta": meta or {}}, buf)
    atomic_write(path, buf.getvalue())


def load_dense(path: str | Path) -> tuple[nn.Module, str, str, dict]:
    """Returns ``(model, arch, dataset, meta)``."""
    raw = read_file(path)
    try:
        ck = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DeepcompError(f"{path}: not a PyTorch checkpoint ({first[:120]})") from None
    if not isinstance(ck, dict) or ck.get("format") != FORMAT:
        raise DeepcompError(f"{path}: not a deepcomp dense checkpoint (made by 'deepcomp train')")
    arch, state = ck.get("arch"), ck.get("state_dict")
    if not isinstance(arch, str) or not isinstance(state, dict):
        raise DeepcompError(f"{path}: checkpoint has no architecture or no weights")
    try:
        want = arch_shapes(arch)
    except DeepcompError as e:
        raise DeepcompError(f"{path}: {e}") from None
    have = [tuple(v.shape) for k, v in state.items() if k.endswith("weight") and hasattr(v, "shape")]
    if have != want:  # before building: the arch string alone could ask for any size
        raise DeepcompError(f"{path}: weights {have} do not match arch {arch}")
    model = build(arch)
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError) as e:
        raise DeepcompError(f"{path}: weights do not match arch {arch} ({str(e).splitlines()[0]})") from None
    model.eval()
    return model, arch, ck.get("dataset", "mnist"), ck.get("meta", {})
