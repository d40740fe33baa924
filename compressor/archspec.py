"""Architecture spec strings (``lenet300``, ``lenet5``, ``cnn8``, ``mlp:IN-H...-OUT``), read without torch.

The spec is what a ``.dcz`` or a checkpoint says it holds; checking it
against the stored shapes before building anything keeps a hostile spec
from allocating gigabytes, and keeps the CLI's ``--arch`` check torch-free.
"""

from __future__ import annotations

import argparse

from .contract.errors import DeepcompError

MAX_WIDTH = 1 << 20  # widest layer an `mlp:` spec may name (the .dcz limit on a dimension)
LENET5_SHAPES = [(20, 1, 5, 5), (50, 20, 5, 5), (500, 800), (10, 500)]
# cnn8, a small conv net for the 8x8 digits: conv 8@3x3 pad 1 -> ReLU -> pool 2 (4x4),
# conv 16@3x3 pad 1 -> ReLU -> pool 2 (2x2), flatten 64 -> fc 10
CNN8_SHAPES = [(8, 1, 3, 3), (16, 8, 3, 3), (10, 64)]
CONV_SHAPES = {"lenet5": LENET5_SHAPES, "cnn8": CNN8_SHAPES}  # the built-in conv nets
KNOWN = "lenet300, lenet5, cnn8 or mlp:IN-H1-...-OUT"


def _mlp_sizes(spec: str) -> list[int] | None:
    try:
        sizes = [int(s) for s in spec[4:].split("-")]
    except ValueError:
        return None
    return sizes if len(sizes) >= 2 and all(0 < s <= MAX_WIDTH for s in sizes) else None


def arch_shapes(spec: str) -> list[tuple[int, ...]]:
    """The weight shapes ``build(spec)`` would have, computed without building anything.

    A file's arch string is checked against its layers with this before any
    module is allocated, so a hostile ``mlp:`` spec cannot ask for gigabytes.
    """
    sizes = [784, 300, 100, 10] if spec == "lenet300" else _mlp_sizes(spec) if spec.startswith("mlp:") else None
    if sizes is not None:
        return [(b, a) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
    if spec in CONV_SHAPES:
        return list(CONV_SHAPES[spec])
    raise DeepcompError(f"{spec}: unknown architecture ({KNOWN})")


def arch_arg(spec: str) -> str:
    """argparse type for ``--arch``: a spec :func:`arch_shapes` understands."""
    try:
        arch_shapes(spec)
    except DeepcompError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return spec


LENET5_INPUT = (1, 28, 28)  # (C, H, W) of an MNIST image
CNN8_INPUT = (1, 8, 8)  # (C, H, W) of a scikit-learn digit


def engine_plan(spec: str) -> tuple[tuple[int, int, int] | None, list[tuple[str, int]]]:
    """How a built-in arch runs on the engine: its input map and each layer's ``(act, pool)``.

    The input is ``(C, H, W)`` for a conv net (None: a vector). ``act`` is ``"relu"``
    (ReLU, uint8 output), ``"signed"`` (no non-linearity, int8 output) or ``"logits"``
    (the last layer); ``pool`` 2 is a 2x2 max-pool after the layer, 1 none. LeNet-5 is
    Caffe's: no ReLU after its convolutions, so their outputs are signed; cnn8 has a ReLU
    after each convolution (before its pool: the two commute).
    """
    if spec == "lenet5":
        return LENET5_INPUT, [("signed", 2), ("signed", 2), ("relu", 1), ("logits", 1)]
    if spec == "cnn8":
        return CNN8_INPUT, [("relu", 2), ("relu", 2), ("logits", 1)]
    n = len(arch_shapes(spec))
    return None, [("relu", 1)] * (n - 1) + [("logits", 1)]
