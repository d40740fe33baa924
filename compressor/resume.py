"""Stage checkpoints of a compress run, and continuing a killed run from the last one.

Why one file replaced at every stage boundary (each prune step, each retraining
and fine-tuning epoch, quantization): ``atomic_write`` renames a complete
temporary file over the old one, so whenever the process dies (SIGKILL, power)
the directory holds the last *complete* checkpoint, never half of one, and
there is nothing to choose between. A checkpoint holds everything the rest of
the run depends on: weights, masks, codebooks and indices, optimizer and
schedule state, the generator of shuffling and augmentation and the global RNG
states, so a resumed run computes what the uninterrupted run would have, bit
for bit in one process.

Why the options are stored: continuing with other options would produce a
model that neither run describes. ``resume_state`` compares them key by key
and names the first that differs in one line.

Under ``torchrun`` rank 0 writes and reads the file; the other ranks receive
what it read (``compressor.distributed.on_rank0``), so the state directory
need not be shared between machines.
"""

from __future__ import annotations

import io
import json
import pickle
import random
import sys
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import distributed
from .contract.binfmt import atomic_write, read_file
from .contract.errors import DeepcompError

FORMAT = "deepcomp-resume-v1"
NAME = "checkpoint.pt"


def default_state_dir(output: Path) -> Path:
    """``model.dcz`` -> ``model.dcz.state/`` beside it."""
    return output.with_name(output.name + ".state")


def _plain(options: Mapping[str, Any]) -> dict[str, Any]:
    """Options as JSON values (tuples -> lists, paths -> strings): stored and compared as such."""
    return json.loads(json.dumps(dict(options), default=str))


def _show(v: Any) -> str:
    if v is None:
        return "(unset)"
    if isinstance(v, list):
        return ",".join(map(str, v))
    return str(v)


def rng_states() -> dict[str, Any]:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"torch": torch.get_rng_state(), "python": random.getstate(),
            "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss))}


def set_rng_states(s: Mapping[str, Any]) -> None:
    torch.set_rng_state(s["torch"])
    version, internal, gauss_next = s["python"]
    random.setstate((version, tuple(internal), gauss_next))
    kind, keys, pos, has_gauss, gauss = s["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))


class Checkpoints:
    """The state directory of one run: ``save`` a stage, ``resume_state``, ``clear`` when done."""

    def __init__(self, directory: str | Path, options: Mapping[str, Any], restart: str = "--resume") -> None:
        self.directory = Path(directory)
        self.path = self.directory / NAME
        self.options = _plain(options)
        self.restart = restart  # how the user asked to resume, named in the mismatch message

    def save(self, state: Mapping[str, Any]) -> None:
        """Replace the checkpoint with ``state`` (rank 0 only; serialised before returning)."""
        if not distributed.is_main():
            return
        buf = io.BytesIO()
        torch.save({"format": FORMAT, "options": self.options, "rng": rng_states(), "state": dict(state)}, buf)
        atomic_write(self.path, buf.getvalue())

    def resume_state(self) -> dict[str, Any] | None:
        """The last checkpoint's state (global RNG states restored), or None if there is none.

        Read on rank 0 and received by every rank; a checkpoint made with other
        options, or not a checkpoint at all, is one ``DeepcompError`` line on every rank.
        """
        got = distributed.on_rank0(self._read)
        if got is None:
            if distributed.is_main():
                print(f"deepcomp: note: no checkpoint in {self.directory}: starting from the beginning",
                      file=sys.stderr)
            return None
        set_rng_states(got["rng"])
        return got["state"]

    def _read(self) -> dict[str, Any] | None:
        if not self.path.is_file():
            return None
        try:
            ck = torch.load(io.BytesIO(read_file(self.path)), map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError, KeyError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise DeepcompError(f"{self.path}: not a readable checkpoint ({first[:120]})") from None
        if not isinstance(ck, dict) or ck.get("format") != FORMAT:
            raise DeepcompError(f"{self.path}: not a deepcomp compress checkpoint")
        old = ck.get("options", {})
        for key in sorted(set(old) | set(self.options)):
            if old.get(key) != self.options.get(key):
                raise DeepcompError(
                    f"{self.path}: made with {key} {_show(old.get(key))}, this run has "
                    f"{_show(self.options.get(key))}; resume with the same options, or start over "
                    f"without {self.restart}")
        return ck

    def clear(self) -> None:
        """Remove the checkpoint (and the directory if that leaves it empty): the run is complete."""
        if not distributed.is_main():
            return
        self.path.unlink(missing_ok=True)
        try:
            self.directory.rmdir()
        except OSError:  # not empty (the user's own files, a stale temporary file) or already gone
            pass


def loader_generators(loader: Any) -> list[torch.Generator]:
    """The generators a DataLoader shuffles with (its own, its sampler's): saved with a checkpoint.

    A loader without one draws from torch's global generator, which ``rng_states`` saves.
    """
    found: list[torch.Generator] = []
    sampler = getattr(loader, "sampler", None)
    inner = getattr(getattr(loader, "batch_sampler", None), "sampler", None)
    for owner in (loader, sampler, inner):
        g = getattr(owner, "generator", None)
        if isinstance(g, torch.Generator) and all(g is not h for h in found):
            found.append(g)
    return found
