"""Model zoo and the rules for which layers the compressor handles.

A model is rebuilt from an *arch spec* string stored in the ``.dcz``
(``lenet300``, ``lenet5``, ``cnn8`` or ``mlp:64-100-50-10``), so a compressed file is
self-contained for the built-in architectures. :func:`compressible_layers` is
the CLI pipeline's rule (Linear/Conv2d only); any other ``nn.Module`` goes
through ``compressor.api`` (planned by ``compressor.plan``, restored by name
with ``compressor.restore.apply_to``).
"""

from __future__ import annotations

import torch
from torch import nn

from .archspec import CONV_SHAPES, _mlp_sizes, arch_shapes, engine_plan
from .contract.container import CompressedModel
from .contract.errors import DeepcompError

COMPRESSIBLE = (nn.Linear, nn.Conv2d)
DEFAULT_ARCH = {"mnist": "lenet300", "digits": "mlp:64-100-50-10"}


class MLP(nn.Module):
    """Fully connected ReLU network on flattened ``x / 255`` input."""

    def __init__(self, sizes: list[int]) -> None:
        super().__init__()
        self.sizes = sizes
        self.fcs = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for i, fc in enumerate(self.fcs):
            x = fc(x)
            if i < len(self.fcs) - 1:
                x = torch.relu(x)
        return x


class LeNet5(nn.Module):
    """Caffe's LeNet (examples/mnist/lenet.prototxt): 431,080 parameters.

    conv 20@5x5 -> max-pool 2 -> conv 50@5x5 -> max-pool 2 -> fc 500 -> ReLU -> fc 10.
    As in Caffe there is no non-linearity after the convolutions.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 20, 5)
        self.conv2 = nn.Conv2d(20, 50, 5)
        self.fc1 = nn.Linear(800, 500)
        self.fc2 = nn.Linear(500, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The convolutional part: conv1, pool, conv2, pool, flattened in (C, H, W) order."""
        x = nn.functional.max_pool2d(self.conv1(x), 2)
        return nn.functional.max_pool2d(self.conv2(x), 2).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(self.features(x))))


class CNN8(nn.Module):
    """A small conv net for scikit-learn's 8x8 digits: 1,898 parameters.

    conv 8@3x3 (padding 1) -> ReLU -> max-pool 2 (4x4) -> conv 16@3x3 (padding 1) -> ReLU
    -> max-pool 2 (2x2) -> flatten (C, H, W) 64 -> fc 10 (logits). Every layer runs on the
    engine (``engine_plan("cnn8")``).
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.fc = nn.Linear(64, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The convolutional part: conv, ReLU, pool twice, flattened in (C, H, W) order."""
        x = nn.functional.max_pool2d(torch.relu(self.conv1(x)), 2)
        return nn.functional.max_pool2d(torch.relu(self.conv2(x)), 2).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


CONV_NETS = {"lenet5": LeNet5, "cnn8": CNN8}
BUILT_IN = ("lenet300", *CONV_NETS)  # with mlp:..., the specs build() knows


def build(spec: str) -> nn.Module:
    """Instantiate the architecture named by ``spec``."""
    arch_shapes(spec)  # validates the spec (and the sizes) first
    if spec in CONV_NETS:
        return CONV_NETS[spec]()
    return MLP([784, 300, 100, 10] if spec == "lenet300" else _mlp_sizes(spec))


def input_size(spec: str) -> int:
    """Number of input pixels the architecture expects."""
    if spec in CONV_SHAPES:
        c, h, w = engine_plan(spec)[0]
        return c * h * w
    return arch_shapes(spec)[0][1]


def is_built_in(spec: str) -> bool:
    return spec in BUILT_IN or spec.startswith("mlp:")


def compressible_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The ``Linear``/``Conv2d`` layers, in definition order.

    Parameter-free layers (ReLU, pooling, flatten, dropout) pass through;
    any other module that owns parameters or persistent buffers (a
    ``BatchNorm2d(affine=False)``'s running statistics) is rejected, because
    a version 1 file could not store them and would silently lose them.
    """
    layers = []
    for name, mod in model.named_modules():
        own = list(mod.parameters(recurse=False)) + [
            b for n, b in mod.named_buffers(recurse=False) if n not in mod._non_persistent_buffers_set]
        if isinstance(mod, COMPRESSIBLE):
            if isinstance(mod, nn.Conv2d) and (mod.groups != 1 or mod.dilation != (1, 1)):
                raise DeepcompError(f"layer {name}: grouped or dilated Conv2d: this pipeline does not "
                                    "support it (compressor.api.compress does)")
            layers.append((name, mod))
        elif own:
            raise DeepcompError(
                f"layer {name or '<root>'}: unsupported weight-bearing layer {type(mod).__name__} "
                "(this pipeline compresses Linear and Conv2d; compressor.api.compress takes any model)"
            )
    if not layers:
        raise DeepcompError("model has no Linear or Conv2d layer to compress")
    return layers


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def weight_matrix(weight: torch.Tensor) -> torch.Tensor:
    """A layer's weight as the matrix the sparse engine sees: (out, in * kh * kw)."""
    return weight.reshape(weight.shape[0], -1)


def to_module(cm: CompressedModel, model: nn.Module | None = None, source: str = "<model>") -> nn.Module:
    """Load a ``.dcz``'s quantized weights into ``model``, or into a new ``build(cm.arch)``.

    Without ``model`` the architecture string stored in the file must be one
    :func:`build` knows (``lenet300``, ``lenet5``, ``cnn8``, ``mlp:...``); a custom
    ``nn.Module`` is passed in by the caller, with the same compressible layers
    in the same order and shapes. A version 2 file (any model) is loaded by
    name with ``compressor.restore.apply_to``, into ``model`` or, if the file
    embeds its architecture, into the module rebuilt from it.
    """
    if cm.version == 2 or not cm.fits_v1():
        from .program import module_of
        from .restore import apply_to

        if model is None and cm.program is not None:
            return module_of(cm, source)
        if model is None and not is_built_in(cm.arch):
            module_of(cm, source)  # raises: names the ways to load it
        return apply_to(cm, model if model is not None else build(cm.arch), source)
    stored = [rec.shape for rec in cm.layers]
    if model is None:
        want = arch_shapes(cm.arch) if is_built_in(cm.arch) else None
        if want is None:
            raise DeepcompError(f"{source}: architecture {cm.arch!r} is not built in; "
                                "load it with to_module(cm, YourModule()) from Python")
        if want != stored:
            raise DeepcompError(f"{source}: its layers {stored} do not match its architecture {cm.arch}")
        model = build(cm.arch)
    layers = compressible_layers(model)
    if len(layers) != len(cm.layers):
        raise DeepcompError(
            f"{source}: the model has {len(layers)} compressible layers, the file has {len(cm.layers)}")
    with torch.no_grad():
        for (name, m), rec in zip(layers, cm.layers, strict=True):
            if tuple(m.weight.shape) != rec.shape:
                raise DeepcompError(f"{source}: layer {name}: shape {tuple(m.weight.shape)} "
                                    f"!= the file's {rec.shape}")
            m.weight.copy_(torch.from_numpy(rec.weight()))
            if m.bias is not None and rec.bias is not None:
                m.bias.copy_(torch.from_numpy(rec.bias))
    model.eval()
    return model
