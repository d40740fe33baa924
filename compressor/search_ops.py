"""What the accuracy-budget search needs from a model and its training (``compressor.budget``).

A module of its own so that the search (``budget``), its bits step
(``bitwidths``) and the real-model driver (``budget_api``) share the type
without importing each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn


class MaskSet(Protocol):
    """Keep-masks by weight name: ``compressor.prune.Masks`` or the API's ``Compressor``, adapted."""

    masks: dict[str, torch.Tensor]

    def density(self) -> dict[str, float]: ...

    def apply(self) -> None: ...


@dataclass
class SearchOps:
    """What the search does to the model, however it is trained and measured.

    Why: the built-in pipeline trains on a ``Split`` with ``train.fit`` and the
    real-model API on the user's loaders and steps; the search (sensitivity,
    prune steps, bits) is the same for both and only calls these.
    ``retrain(epochs, seed, desc)`` trains with ``masks`` enforced;
    ``refine(bits)`` quantizes every weight (k-means, ``bits`` per weight, in
    ``weights`` order) from the model as it is and fine-tunes the centroids,
    returning whatever the caller needs to write the file.
    """

    model: nn.Module
    weights: list[tuple[str, torch.Tensor]]
    masks: MaskSet
    error: Callable[[], float]
    retrain: Callable[[int, int, str], None]
    refine: Callable[[list[int]], Any]
