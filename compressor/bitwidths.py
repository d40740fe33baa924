"""Codebook bits per layer for the budget search: by coded bytes, within the remaining accuracy slack.

Why measured per layer: a layer's weight-index stream is Huffman coded, so
the bytes a width costs depend on how its weights cluster, and the accuracy
it costs depends on how sensitive the layer is; both are measured by
quantizing each layer alone (k-means, no fine-tuning) at every width.
Part of ``compressor.budget`` (``deepcomp compress --max-loss``).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from .quantize import LayerQuant, quantize_layer, write_weights
from .search_ops import SearchOps


def choose_bits(ops: SearchOps, limit: float, *, init: str, seed: int, max_bits: int) -> tuple[Any, float, dict]:
    """Per-layer codebook bits by coded bytes within the slack, fine-tuned and checked.

    A layer never gets more shared weights than non-zeros (``2**bits - 1 <=
    nonzeros``): a bigger codebook only adds entries to store. If the
    fine-tuned model misses the budget, the layer where a bit buys most accuracy
    per byte gets one more and quantization and fine-tuning are redone from the
    pruned weights, until it fits or every layer is at its maximum.
    """
    weights, model = ops.weights, ops.model
    pruned = copy.deepcopy(model.state_dict())
    base = ops.error()
    scans, options = {}, []
    bar = tqdm(total=sum(_max_bits(w, max_bits) for _, w in weights), desc="bits", unit="eval", leave=False)
    for name, weight in weights:
        w = weight.detach().cpu().numpy().copy()
        rows = []
        for b in range(1, _max_bits(weight, max_bits) + 1):
            q = quantize_layer(name, w, w != 0, b, init, seed)
            with torch.no_grad():
                write_weights(weight, q)
            rows.append((b, ops.error() - base, _coded_bytes(q)))
            bar.update()
        with torch.no_grad():
            weight.copy_(torch.from_numpy(w))
        scans[name] = {"bits": [r[0] for r in rows], "val_loss": [r[1] for r in rows], "bytes": [r[2] for r in rows]}
        options.append(rows)
    bar.close()
    bits = _pick_bits(options, max(limit - base, 0.0))
    while True:
        model.load_state_dict(pruned)
        result = ops.refine(list(bits))
        err = ops.error()
        scans.setdefault("tried", []).append({"bits": list(bits), "val_error": err})
        top = [_max_bits(w, max_bits) for _, w in weights]
        if err <= limit or bits == top:
            return result, err, scans
        bits = _one_more_bit(options, bits, top)


def _one_more_bit(options: list[list[tuple[int, float, float]]], bits: list[int], top: list[int]) -> list[int]:
    """The next widths to try after a miss: one bit more where the scan says it buys most accuracy per byte.

    Why one layer and not all: a bit more on the big layer costs a bit per
    non-zero, on a small one almost nothing; raising all at once spends bytes
    where they buy no accuracy.
    """
    best, best_key = None, None
    for i, (o, b, t) in enumerate(zip(options, bits, top, strict=True)):
        if b >= t:
            continue
        now, up = o[b - 1], o[b]  # rows are (bits, loss, bytes) for bits 1, 2, ...
        key = (max(now[1] - up[1], 0.0) / max(up[2] - now[2], 1.0), -(up[2] - now[2]))
        if best_key is None or key > best_key:
            best, best_key = i, key
    out = list(bits)
    out[best] += 1  # some layer is below its top: the caller checked
    return out


def _max_bits(weight: torch.Tensor, max_bits: int) -> int:
    """At most ``max_bits``, and no more shared weights (``2**bits - 1``) than the layer's non-zeros."""
    nz = int(torch.count_nonzero(weight))
    return max(1, min(max_bits, int(np.log2(nz + 1))))


def _coded_bytes(q: LayerQuant) -> float:
    """Bytes of a layer's weight-index stream (its order-0 entropy) plus codebook and code table."""
    labels = q.index[q.index != 0]
    p = np.bincount(labels, minlength=1 << q.bits)[1:] / max(labels.size, 1)
    p = p[p > 0]
    return float(labels.size * -(p * np.log2(p)).sum() / 8 + 2 * ((1 << q.bits) - 1) + (1 << q.bits) / 2)


def _pick_bits(options: list[list[tuple[int, float, float]]], slack: float) -> list[int]:
    """Greedy: from each layer's most bits, take the bit cut that saves most bytes per unit of loss.

    ``options[i]`` lists ``(bits, loss alone, bytes)`` for layer ``i``; the summed
    losses of the layers alone stay within ``slack`` (fine-tuning then recovers
    part of it, which is what the check after it measures).
    """
    pos = [len(o) - 1 for o in options]
    used = sum(max(o[p][1], 0.0) for o, p in zip(options, pos, strict=True))
    while True:
        best, best_key = None, (False, 0.0)
        for i, o in enumerate(options):
            for j in range(pos[i]):
                saved = o[pos[i]][2] - o[j][2]
                extra = max(o[j][1], 0.0) - max(o[pos[i]][1], 0.0)
                if saved <= 0 or used + extra > slack:
                    continue
                key = (extra <= 0, saved if extra <= 0 else saved / extra)  # free cuts first, biggest first
                if best is None or key > best_key:
                    best, best_key = (i, j, extra), key
        if best is None:
            return [o[p][0] for o, p in zip(options, pos, strict=True)]
        i, j, extra = best
        pos[i], used = j, used + extra
