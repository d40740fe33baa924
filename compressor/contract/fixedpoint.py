"""Fixed-point arithmetic of the accelerator (specified in docs/arithmetic.md).

Per layer the hardware computes, with integers only::

    acc[r] = bias[r] + sum_j codebook[w_rj] * a[j]          (int32 accumulator)
    hidden: a_next[r] = clamp((max(acc, 0) * M + 2**(S-1)) >> S, 0, 255)   (uint8)
    last:   logits = acc; class = argmax (lowest index wins ties)

``a`` is uint8 (layer 0: the pixels). Codebooks are signed ``cb_bits``-bit
integers with a per-layer scale; biases are in the accumulator's scale; the
requantization multiplier ``M`` (16 bits) and shift ``S`` map the accumulator
scale onto the next layer's activation scale, which is calibrated on training
images. This module turns a float quantized model into those integers and
runs the integer network (the golden model's arithmetic).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import DeepcompError

ACT_MAX = 255
MULT_BITS = 16


@dataclass
class IntLayer:
    """One layer as integers: what the ROM stores and the hardware computes with."""

    index: np.ndarray  # (rows, cols) codebook indices, 0 = zero weight
    codebook: np.ndarray  # int64 (2**wbits,), codebook[0] == 0
    bias: np.ndarray  # int64 (rows,)
    relu: bool  # hidden layer: ReLU + requantize to uint8; else logits
    mult: int = 0
    shift: int = 0
    wbits: int = 5
    zbits: int = 4

    @property
    def rows(self) -> int:
        return int(self.index.shape[0])

    @property
    def cols(self) -> int:
        return int(self.index.shape[1])

    def weights(self) -> np.ndarray:
        return self.codebook[self.index]

    def acc_bound(self) -> int:
        """Largest |accumulator| any uint8 input can produce (overflow proof)."""
        return int((np.abs(self.weights()).sum(axis=1) * ACT_MAX + np.abs(self.bias)).max(initial=0))


def requantize(acc: np.ndarray, mult: int, shift: int) -> np.ndarray:
    """ReLU, multiply, round half up, saturate to uint8 — exactly as the hardware does."""
    y = np.maximum(np.asarray(acc, dtype=np.int64), 0) * mult
    if shift:
        y = (y + (1 << (shift - 1))) >> shift
    return np.minimum(y, ACT_MAX)


def multiplier(ratio: float) -> tuple[int, int]:
    """``M, S`` with ``M / 2**S ~= ratio`` and ``M`` using all of its 16 bits."""
    if not ratio > 0:
        raise DeepcompError(f"requantization ratio {ratio} must be positive")
    shift = MULT_BITS - 1 - int(np.floor(np.log2(ratio)))
    mult = int(round(ratio * 2.0**shift))
    if mult >= 1 << MULT_BITS:
        mult, shift = mult >> 1, shift - 1
    if shift < 0 or shift > 62:
        raise DeepcompError(f"requantization ratio {ratio:g} out of range")
    return mult, shift


def run_int(layers: list[IntLayer], acts: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Integer inference for a batch; returns logits (int64) and each layer's input activations."""
    a = np.asarray(acts, dtype=np.int64).reshape(len(acts), -1)
    inputs = []
    for layer in layers:
        inputs.append(a)
        acc = a @ layer.weights().T + layer.bias
        a = requantize(acc, layer.mult, layer.shift) if layer.relu else acc
    return a, inputs


def to_int_layers(float_layers: list[tuple[np.ndarray, np.ndarray, np.ndarray, int, int]],
                  calib_inputs: np.ndarray, cb_bits: int = 16, acc_bits: int = 32,
                  percentile: float = 99.99, input_scale: float = 1.0 / ACT_MAX) -> list[IntLayer]:
    """Scale a float quantized MLP to integers, calibrating activation scales on ``calib_inputs``.

    ``float_layers``: per layer ``(index (R, C), codebook float (2**wbits,), bias float (R,),
    wbits, zbits)``. ``calib_inputs``: integer layer-0 inputs ``(n, C0)`` (uint8 pixels, or
    int8 features from :func:`quantize_features`) whose step is worth ``input_scale``. Activation scales are set by the
    ``percentile`` of each hidden layer's float ReLU output on the integer network's own
    inputs, so rounding errors of earlier layers are already included when a later scale is chosen.
    """
    s_in = input_scale
    a = np.asarray(calib_inputs, dtype=np.int64)
    out: list[IntLayer] = []
    qmax = (1 << (cb_bits - 1)) - 1
    for i, (index, cb, bias, wbits, zbits) in enumerate(float_layers):
        last = i == len(float_layers) - 1
        peak = float(np.abs(cb).max(initial=0.0)) or 1.0
        s_w = peak / qmax
        qcb = np.rint(np.asarray(cb, dtype=np.float64) / s_w).astype(np.int64)
        s_acc = s_w * s_in
        qbias = np.rint(np.asarray(bias, dtype=np.float64) / s_acc).astype(np.int64)
        layer = IntLayer(np.asarray(index, dtype=np.int64), qcb, qbias, not last, wbits=wbits, zbits=zbits)
        if layer.acc_bound() >= 1 << (acc_bits - 1):
            raise DeepcompError(
                f"layer {i}: accumulator bound {layer.acc_bound()} needs more than {acc_bits} bits")
        if not last:
            acc = a @ layer.weights().T + layer.bias
            real = np.maximum(acc, 0) * s_acc
            top = float(np.percentile(real, percentile)) if real.size else 0.0
            top = top if top > 0 else float(real.max(initial=0.0)) or 1.0
            s_out = top / ACT_MAX
            layer.mult, layer.shift = multiplier(s_acc / s_out)
            a = requantize(acc, layer.mult, layer.shift)
            s_in = s_out
        out.append(layer)
    return out


def feature_scale(features: np.ndarray, percentile: float = 99.99) -> float:
    """Step of signed int8 inputs covering the ``percentile`` of ``|features|`` (host-computed)."""
    top = float(np.percentile(np.abs(features), percentile)) if features.size else 0.0
    return (top or 1.0) / 127


def quantize_features(features: np.ndarray, scale: float) -> np.ndarray:
    """Real features -> int8 inputs of the engine (round to nearest, saturate to +-127)."""
    return np.clip(np.rint(np.asarray(features, dtype=np.float64) / scale), -127, 127).astype(np.int64)
