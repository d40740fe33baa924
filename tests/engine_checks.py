"""Shared checks for the whole-engine benches: RTL results against ``compressor.contract.golden``."""

from __future__ import annotations

import numpy as np

from compressor.contract.golden import Timing, decode_rom, infer
from compressor.contract.rom import parse


def check_against_golden(image: bytes, x: np.ndarray, results: list[dict],
                         timing: Timing | None = None) -> None:
    """Every logit, the class and the cycle count of every inference equal the golden model's:
    the hardware is only trusted where it agrees with ``compressor.contract.golden`` to the integer and the cycle."""
    g = infer(decode_rom(parse(image)), x, timing or Timing())
    assert len(results) == len(x)
    for i, r in enumerate(results):
        assert r["error"] == 0, f"input {i}: engine error {r['error']}"
        assert r["starve"] == 0, "a decoder ran out of bits (fetcher fell behind)"
        assert r["logits"] == g["logits"][i].tolist(), f"input {i}: logits differ"
        assert r["cls"] == int(g["pred"][i]), f"input {i}: class differs"
        assert r["cycles"] == int(g["cycles"][i]), f"input {i}: {r['cycles']} cycles, model {g['cycles'][i]}"


def extreme_inputs(rng, size: int) -> np.ndarray:
    """Six inputs that stress the broadcaster: nothing to broadcast, everything, almost nothing,
    a long empty prefix, and two random ones."""
    x = rng.integers(0, 256, (6, size))
    x[0] = 0  # all-zero input
    x[1] = 255  # all non-zero
    x[2] = np.where(rng.random(size) < 0.15, x[2], 0)  # very sparse
    x[3, : size // 2] = 0  # long run of empty groups, then dense
    return x
