"""Fixed-point arithmetic of the accelerator (specified in docs/arithmetic.md).

Per layer the hardware computes, with integers only::

    acc[r] = bias[r] + sum_j codebook[w_rj] * a[j]          (int32 accumulator)
    ReLU hidden:   a_next[r] = clamp((max(acc, 0) * M + 2**(S-1)) >> S, 0, 255)   (uint8)
    signed hidden: a_next[r] = clamp((acc * M + 2**(S-1)) >> S, -128, 127)       (int8)
    last:   logits = acc; class = argmax (lowest index wins ties)

``a`` is uint8 (layer 0: the pixels) or int8 (after a signed layer). Codebooks
are signed ``cb_bits``-bit integers with a per-layer scale; biases are in the
accumulator's scale; the requantization multiplier ``M`` (16 bits) and shift
``S`` map the accumulator scale onto the next layer's activation scale, which
is calibrated on training images.

A convolution layer (:class:`ConvGeom`) computes the same sum for every output
position over its input patch (im2col), then requantizes and optionally
max-pools 2x2. Layers and activation vectors exist in two orders:

- *model order* (what a .dcz and :func:`to_int_layers` hold): a conv layer's
  columns are ``(c, ky, kx)`` and a feature map is flattened ``(C, H, W)``;
- *storage order for N PEs* (what the ROM holds and the engine's banks see,
  :func:`to_storage`): channels padded to ``cs(C) = N * ceil(C / N)``, a map
  stored as ``v[(y * W + x) * cs + c]``, a conv layer's columns
  ``(ky * kw + kx) * cs_in + c``.

:func:`run_int` runs either (``n_pes``), with the same integers.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .errors import DeepcompError

ACT_MAX = 255
SIGNED_MIN, SIGNED_MAX = -128, 127
MULT_BITS = 16
MAX_KERNEL = 7  # conv kernel sizes and strides the engine takes: 1..7
EXACT_FLOAT = 1 << 52  # |partial sums| below this: a float64 matmul is exact (BLAS speed)
CHUNK_ELEMENTS = 1 << 22  # im2col elements held at once by run_int


def cs(channels: int, n_pes: int) -> int:
    """Channels padded to a multiple of N: each pixel's channel c is in bank c mod N."""
    return n_pes * -(-channels // n_pes)


@dataclass(frozen=True)
class ConvGeom:
    """Geometry of a convolution layer (zero padding ``pad_h``/``pad_w`` at the top/left).

    ``out_h``/``out_w`` are the conv output before pooling; ``pool`` 1 (none) or 2
    (2x2 max, stride 2, floor mode: an odd last row/column is dropped).
    """

    in_c: int
    in_h: int
    in_w: int
    kh: int
    kw: int
    stride: int
    pad_h: int
    pad_w: int
    out_h: int
    out_w: int
    pool: int = 1

    @classmethod
    def from_padding(cls, in_c: int, in_h: int, in_w: int, kh: int, kw: int, stride: int = 1,
                     pad_h: int = 0, pad_w: int = 0, pad_b: int | None = None, pad_r: int | None = None,
                     pool: int = 1) -> ConvGeom:
        """PyTorch's sizes: bottom/right padding defaults to top/left (symmetric ``padding=p``)."""
        pad_b = pad_h if pad_b is None else pad_b
        pad_r = pad_w if pad_r is None else pad_r
        return cls(in_c, in_h, in_w, kh, kw, stride, pad_h, pad_w,
                   (in_h + pad_h + pad_b - kh) // stride + 1, (in_w + pad_w + pad_r - kw) // stride + 1, pool)

    @property
    def out_hp(self) -> int:
        return self.out_h // self.pool

    @property
    def out_wp(self) -> int:
        return self.out_w // self.pool

    @property
    def in_size(self) -> int:
        return self.in_c * self.in_h * self.in_w

    def reach(self) -> tuple[int, int]:
        """Bottom/right zero padding the last output row/column reads (negative: input rows left unread)."""
        return ((self.out_h - 1) * self.stride + self.kh - self.pad_h - self.in_h,
                (self.out_w - 1) * self.stride + self.kw - self.pad_w - self.in_w)

    def problem(self) -> str | None:
        """Why the engine cannot run this geometry, or None (docs/arithmetic.md, "Convolutions")."""
        if not (1 <= self.kh <= MAX_KERNEL and 1 <= self.kw <= MAX_KERNEL and 1 <= self.stride <= MAX_KERNEL):
            return f"kernel {self.kh}x{self.kw} / stride {self.stride}: must be 1..{MAX_KERNEL}"
        if not (0 <= self.pad_h < self.kh and 0 <= self.pad_w < self.kw):
            return f"padding ({self.pad_h}, {self.pad_w}) must be below the kernel size {self.kh}x{self.kw}"
        if self.pool not in (1, 2):
            return f"pool {self.pool}: must be 1 or 2"
        if min(self.in_c, self.in_h, self.in_w) < 1 or max(self.in_c, self.in_h, self.in_w) >= 1 << 16:
            return f"input {self.in_c}x{self.in_h}x{self.in_w} out of range"
        if self.out_hp < 1 or self.out_wp < 1:
            return f"output {self.out_h}x{self.out_w} pooled by {self.pool} is empty"
        rh, rw = self.reach()
        if not (-self.stride < rh < self.kh and -self.stride < rw < self.kw):
            return (f"output {self.out_h}x{self.out_w} is not (in + pad + pad_bottom - k) // stride + 1 "
                    f"for any bottom/right padding 0..k-1")
        return None

    def positions(self) -> tuple[np.ndarray, np.ndarray]:
        """(oy, ox) of the computed output positions in the engine's order.

        No pooling: raster order. Pool 2: for each pooled (py, px) in raster order the
        four positions (2py+dy, 2px+dx), dy then dx; a dropped odd last row/column is not computed.
        """
        if self.pool == 1:
            oy, ox = np.meshgrid(np.arange(self.out_h), np.arange(self.out_w), indexing="ij")
            return oy.ravel(), ox.ravel()
        py, px, dy, dx = np.meshgrid(np.arange(self.out_hp), np.arange(self.out_wp), (0, 1), (0, 1),
                                     indexing="ij")
        return (2 * py + dy).ravel(), (2 * px + dx).ravel()

    def gather(self, n_pes: int | None = None) -> np.ndarray:
        """(positions, cols) indices into the layer's input vector of every patch element.

        ``n_pes`` None: model order (input ``c * H * W + y * W + x``, columns ``(c, ky, kx)``);
        else storage order for N PEs (input ``(y * W + x) * cs + c``, columns ``(ky, kx, c)``,
        c < cs). Out-of-bounds elements index one past the input (the caller appends a zero).
        """
        oy, ox = self.positions()
        ky, kx = np.meshgrid(np.arange(self.kh), np.arange(self.kw), indexing="ij")
        y = oy[:, None, None] * self.stride + ky[None] - self.pad_h  # (P, kh, kw)
        x = ox[:, None, None] * self.stride + kx[None] - self.pad_w
        inside = (y >= 0) & (y < self.in_h) & (x >= 0) & (x < self.in_w)
        pix = np.where(inside, y * self.in_w + x, -1)
        if n_pes is None:
            c = np.arange(self.in_c)[None, :, None, None]
            idx = c * (self.in_h * self.in_w) + pix[:, None]  # (P, C, kh, kw)
            size = self.in_size
            out_of = np.broadcast_to(~inside[:, None], idx.shape)
        else:
            s = cs(self.in_c, n_pes)
            idx = pix[..., None] * s + np.arange(s)  # (P, kh, kw, cs)
            size = self.in_h * self.in_w * s
            out_of = np.broadcast_to(~inside[..., None], idx.shape)
        return np.where(out_of, size, idx).reshape(len(oy), -1)


@dataclass
class IntLayer:
    """One layer as integers: what the ROM stores and the hardware computes with."""

    index: np.ndarray  # (rows, cols) codebook indices, 0 = zero weight
    codebook: np.ndarray  # int64 (2**wbits,), codebook[0] == 0
    bias: np.ndarray  # int64 (rows,)
    relu: bool  # hidden layer (requantized: ReLU -> uint8, or ``signed`` -> int8); else logits
    mult: int = 0
    shift: int = 0
    wbits: int = 5
    zbits: int = 4
    conv: ConvGeom | None = None  # a convolution layer (rows = output channels)
    signed: bool = False  # hidden layer without ReLU: output int8

    @property
    def rows(self) -> int:
        return int(self.index.shape[0])

    @property
    def cols(self) -> int:
        return int(self.index.shape[1])

    @property
    def act(self) -> int:
        """0: last layer (logits), 1: ReLU -> uint8, 2: signed -> int8 (the ROM's act byte)."""
        return 0 if not self.relu else 2 if self.signed else 1

    def weights(self) -> np.ndarray:
        return self.codebook[self.index]

    def acc_bound(self) -> int:
        """Largest |accumulator| any uint8 (or int8) input can produce (overflow proof)."""
        return int((np.abs(self.weights()).sum(axis=1) * ACT_MAX + np.abs(self.bias)).max(initial=0))

    def in_size(self, n_pes: int | None = None) -> int:
        """Length of the input vector (model order, or storage order for N PEs)."""
        g = self.conv
        if g is None:
            return self.cols
        return g.in_size if n_pes is None else g.in_h * g.in_w * cs(g.in_c, n_pes)

    def out_size(self, n_pes: int | None = None) -> int:
        g = self.conv
        if g is None:
            return self.rows
        return g.out_hp * g.out_wp * (self.rows if n_pes is None else cs(self.rows, n_pes))


def requantize(acc: np.ndarray, mult: int, shift: int, signed: bool = False) -> np.ndarray:
    """Multiply, round half up (arithmetic shift), saturate: ReLU -> uint8 or signed -> int8, as the hardware."""
    y = np.asarray(acc, dtype=np.int64)
    y = (y if signed else np.maximum(y, 0)) * mult
    if shift:
        y = (y + (1 << (shift - 1))) >> shift
    return np.clip(y, SIGNED_MIN, SIGNED_MAX) if signed else np.minimum(y, ACT_MAX)


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


def _matmul(a: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``a @ w.T`` of integers, exactly: in float64 (BLAS) when no partial sum can reach 2**52."""
    bound = float(np.abs(a).max(initial=0)) * float(np.abs(w).sum(axis=1).max(initial=0))
    if bound < EXACT_FLOAT:
        return np.rint(np.asarray(a, dtype=np.float64) @ w.T.astype(np.float64)).astype(np.int64)
    return a.astype(np.int64) @ w.T.astype(np.int64)


def layer_acc(layer: IntLayer, a: np.ndarray, n_pes: int | None = None,
              gather: np.ndarray | None = None) -> np.ndarray:
    """Accumulators of one layer for a batch of input vectors ``a`` (n, in_size), max-pooled.

    fc: (n, rows). conv: the pooled accumulators as an output vector (model order (C, H, W), or
    storage order with padded channels 0). Max-pooling accumulators equals pooling the
    requantized outputs: requantization is monotone non-decreasing.
    """
    g = layer.conv
    w = layer.weights()
    if g is None:
        return _matmul(a, w) + layer.bias
    if gather is None:
        gather = g.gather(n_pes)
    used = np.flatnonzero(w.any(axis=0))  # empty columns (padded channels, pruned inputs) add nothing
    gather, w = gather[:, used], w[:, used]
    n, (positions, cols) = len(a), gather.shape
    out = np.zeros((n, layer.out_size(n_pes)), dtype=np.int64)
    step = max(1, CHUNK_ELEMENTS // max(positions * cols, 1))
    # gather in float64 when the matmul runs in float64 anyway (exact: see _matmul)
    exact = float(np.abs(a).max(initial=0)) * float(np.abs(w).sum(axis=1).max(initial=0)) < EXACT_FLOAT
    for i in range(0, n, step):
        part = a[i:i + step].astype(np.float64 if exact else np.int64)
        padded = np.concatenate([part, np.zeros((len(part), 1), dtype=part.dtype)], axis=1)
        acc = _matmul(padded[:, gather].reshape(-1, cols), w).reshape(len(part), positions, -1) + layer.bias
        if g.pool == 2:
            acc = acc.reshape(len(part), -1, 4, layer.rows).max(axis=2)
        if n_pes is None:
            out[i:i + step] = acc.transpose(0, 2, 1).reshape(len(part), -1)
        else:
            full = np.zeros((len(part), acc.shape[1], cs(layer.rows, n_pes)), dtype=np.int64)
            full[:, :, :layer.rows] = acc
            out[i:i + step] = full.reshape(len(part), -1)
    return out


def activate(layer: IntLayer, acc: np.ndarray) -> np.ndarray:
    """A hidden layer's requantized output; the last layer's logits unchanged."""
    return requantize(acc, layer.mult, layer.shift, layer.signed) if layer.relu else acc


def run_int(layers: list[IntLayer], acts: np.ndarray, n_pes: int | None = None,
            keep: int | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
    """Integer inference for a batch; returns logits (int64) and each layer's input activations.

    ``n_pes`` None: layers and ``acts`` in model order; N: in storage order for N PEs
    (:func:`to_storage`, :func:`storage_input`). ``keep``: return the inputs of the first
    ``keep`` images only (None: all).
    """
    a = np.asarray(acts, dtype=np.int64).reshape(len(acts), -1)
    inputs = []
    for layer in layers:
        inputs.append(a if keep is None else a[:keep])
        if a.shape[1] != layer.in_size(n_pes):
            raise DeepcompError(f"a layer takes {layer.in_size(n_pes)} inputs, it is given {a.shape[1]}")
        a = activate(layer, layer_acc(layer, a, n_pes))
    return a, inputs


def storage_input(acts: np.ndarray, first: IntLayer, n_pes: int) -> np.ndarray:
    """Layer-0 inputs (n, C * H * W) in model order -> the engine's storage vectors (fc: unchanged)."""
    a = np.asarray(acts, dtype=np.int64).reshape(len(acts), -1)
    g = first.conv
    if g is None:
        return a
    if a.shape[1] != g.in_size:
        raise DeepcompError(f"the first layer takes {g.in_size} inputs, it is given {a.shape[1]}")
    out = np.zeros((len(a), g.in_h * g.in_w, cs(g.in_c, n_pes)), dtype=np.int64)
    out[:, :, :g.in_c] = a.reshape(len(a), g.in_c, -1).transpose(0, 2, 1)
    return out.reshape(len(a), -1)


def to_storage(layers: list[IntLayer], n_pes: int) -> list[IntLayer]:
    """Model-order layers -> the storage order for N PEs (what the ROM holds); fc-only nets unchanged.

    conv: columns (c, ky, kx) -> (ky * kw + kx) * cs_in + c, padded channels' columns empty.
    fc after a conv layer: columns c * H * W + p -> p * cs + c (p = y * W + x), padded columns empty.
    """
    out = []
    prev: IntLayer | None = None
    for layer in layers:
        g = layer.conv
        index = layer.index
        if g is not None:
            s = cs(g.in_c, n_pes)
            idx = np.zeros((layer.rows, g.kh, g.kw, s), dtype=np.int64)
            idx[..., :g.in_c] = index.reshape(layer.rows, g.in_c, g.kh, g.kw).transpose(0, 2, 3, 1)
            index = idx.reshape(layer.rows, -1)
        elif prev is not None and prev.conv is not None:
            c, hw, s = prev.rows, prev.conv.out_hp * prev.conv.out_wp, cs(prev.rows, n_pes)
            idx = np.zeros((layer.rows, hw, s), dtype=np.int64)
            idx[..., :c] = index.reshape(layer.rows, c, hw).transpose(0, 2, 1)
            index = idx.reshape(layer.rows, -1)
        out.append(replace(layer, index=index))
        prev = layer
    return out


def chain_problem(layers: list[IntLayer]) -> str | None:
    """Why model-order ``layers`` do not form a net the engine runs, or None."""
    for i, layer in enumerate(layers):
        last = i == len(layers) - 1
        if bool(layer.relu) == last:
            return f"layer {i}: hidden layers are requantized, the last layer is not"
        if layer.signed and not layer.relu:
            return f"layer {i}: only a hidden layer can have a signed output"
        g = layer.conv
        if g is not None:
            if last:
                return f"layer {i}: a convolution cannot be the last layer"
            why = g.problem()
            if why:
                return f"layer {i}: {why}"
            if layer.cols != g.in_c * g.kh * g.kw:
                return f"layer {i}: {layer.cols} columns for a {g.in_c}x{g.kh}x{g.kw} kernel"
        if i:
            prev = layers[i - 1]
            if g is not None and (prev.conv is None or (prev.rows, prev.conv.out_hp, prev.conv.out_wp)
                                  != (g.in_c, g.in_h, g.in_w)):
                return f"layer {i}: a convolution's input must be the previous convolution's output map"
            if g is None and layer.cols != prev.out_size():
                return f"layer shapes do not chain ({prev.out_size()} outputs feed {layer.cols} inputs)"
    return None


def to_int_layers(float_layers: list[tuple], calib_inputs: np.ndarray, cb_bits: int = 16, acc_bits: int = 32,
                  percentile: float = 99.99, input_scale: float = 1.0 / ACT_MAX) -> list[IntLayer]:
    """Scale a float quantized net to integers, calibrating activation scales on ``calib_inputs``.

    ``float_layers``: per layer ``(index (R, C), codebook float (2**wbits,), bias float (R,),
    wbits, zbits)``, optionally followed by ``conv`` (:class:`ConvGeom` or None) and ``signed``
    (hidden layer with int8 output, no ReLU); the index in model order. ``calib_inputs``: integer
    layer-0 inputs ``(n, C0)`` (uint8 pixels, CHW for a conv net) whose step is worth
    ``input_scale``. Activation scales are set by the ``percentile`` of each hidden layer's real
    output (ReLU: of ``max(acc, 0)``, mapped to 255; signed: of ``|acc|``, mapped to 127; a conv
    layer's output after pooling) on the integer network's own inputs, so rounding errors of
    earlier layers are already included when a later scale is chosen.
    """
    s_in = input_scale
    a = np.asarray(calib_inputs, dtype=np.int64).reshape(len(calib_inputs), -1)
    out: list[IntLayer] = []
    qmax = (1 << (cb_bits - 1)) - 1
    for i, spec in enumerate(float_layers):
        index, cb, bias, wbits, zbits = spec[:5]
        conv = spec[5] if len(spec) > 5 else None
        signed = bool(spec[6]) if len(spec) > 6 else False
        last = i == len(float_layers) - 1
        peak = float(np.abs(cb).max(initial=0.0)) or 1.0
        s_w = peak / qmax
        qcb = np.rint(np.asarray(cb, dtype=np.float64) / s_w).astype(np.int64)
        s_acc = s_w * s_in
        qbias = np.rint(np.asarray(bias, dtype=np.float64) / s_acc).astype(np.int64)
        layer = IntLayer(np.asarray(index, dtype=np.int64).reshape(len(qbias), -1), qcb, qbias, not last,
                         wbits=wbits, zbits=zbits, conv=conv, signed=bool(signed) and not last)
        if layer.acc_bound() >= 1 << (acc_bits - 1):
            raise DeepcompError(
                f"layer {i}: accumulator bound {layer.acc_bound()} needs more than {acc_bits} bits")
        why = layer.conv.problem() if layer.conv is not None else None
        if why or a.shape[1] != layer.in_size():
            raise DeepcompError(f"layer {i}: {why or f'takes {layer.in_size()} inputs, is given {a.shape[1]}'}")
        if not last:
            acc = layer_acc(layer, a)
            if layer.signed:
                real = np.abs(acc) * s_acc
                steps = SIGNED_MAX
            else:
                real = np.maximum(acc, 0) * s_acc
                steps = ACT_MAX
            top = float(np.percentile(real, percentile)) if real.size else 0.0
            top = top if top > 0 else float(real.max(initial=0.0)) or 1.0
            s_out = top / steps
            layer.mult, layer.shift = multiplier(s_acc / s_out)
            a = activate(layer, acc)
            s_in = s_out
        out.append(layer)
    why = chain_problem(out)
    if why:
        raise DeepcompError(why)
    return out
