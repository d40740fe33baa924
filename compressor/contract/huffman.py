"""Canonical, length-limited Huffman coding.

Why canonical: a decoder (software or the hardware's table-driven decoder)
needs only the code length of each symbol; codes are assigned in order of
(length, symbol), so the file stores one nibble per symbol instead of a tree.
Why length-limited: the hardware decoder compares the next ``max_len`` bits
against one limit per length, so the bound sets its width. Lengths come from
package-merge, which is optimal under the bound (plain Huffman then clipping
is not).

Encoding is numpy-vectorised (no per-symbol Python loop); decoding uses
bitarray's C canonical decoder.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from bitarray import bitarray
from bitarray.util import canonical_decode

MAX_LEN = 15  # nibble-storable; the ROM may choose a tighter bound


def code_lengths(freqs: np.ndarray, max_len: int = MAX_LEN) -> np.ndarray:
    """Optimal code lengths for ``freqs`` with no code longer than ``max_len``.

    Symbols with zero frequency get length 0 (no code). A single used symbol
    gets length 1, so every stream has at least one bit per symbol and the
    decoder never has to special-case an empty code.
    """
    freqs = np.asarray(freqs, dtype=np.int64)
    lengths = np.zeros(freqs.size, dtype=np.uint8)
    used = np.flatnonzero(freqs > 0)
    if used.size == 0:
        return lengths
    if used.size == 1:
        lengths[used[0]] = 1
        return lengths
    if used.size > (1 << max_len):
        raise ValueError(f"{used.size} symbols cannot have codes of at most {max_len} bits")
    lengths[used] = _package_merge(freqs[used], max_len)
    return lengths


def _package_merge(w: np.ndarray, max_len: int) -> np.ndarray:
    """Package-merge (Larmore & Hirschberg): length of leaf i = times it is chosen."""
    n = w.size
    order = np.argsort(w, kind="stable")
    leaves = [(int(w[i]), i) for i in order]  # node ids < n are leaves
    children: list[tuple[int, int]] = []  # node id n + k -> children of package k
    level = leaves
    for _ in range(max_len - 1):
        packages = []
        for k in range(len(level) // 2):
            (wa, a), (wb, b) = level[2 * k], level[2 * k + 1]
            children.append((a, b))
            packages.append((wa + wb, n + len(children) - 1))
        level = _merge(leaves, packages)
    depth = np.zeros(n, dtype=np.int64)
    stack = [node for _, node in level[: 2 * n - 2]]
    while stack:
        node = stack.pop()
        if node < n:
            depth[node] += 1
        else:
            stack.extend(children[node - n])
    return depth.astype(np.uint8)


def _merge(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Stable merge by weight, leaves (``a``) first on ties."""
    out, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        if a[i][0] <= b[j][0]:
            out.append(a[i])
            i += 1
        else:
            out.append(b[j])
            j += 1
    out.extend(a[i:])
    out.extend(b[j:])
    return out


@dataclass(frozen=True)
class CanonicalCode:
    """A canonical code, fully determined by ``lengths`` (0 = symbol unused)."""

    lengths: np.ndarray

    @classmethod
    def from_symbols(cls, symbols: np.ndarray, alphabet: int, max_len: int = MAX_LEN):
        freqs = np.bincount(np.asarray(symbols, dtype=np.int64), minlength=alphabet)
        return cls(code_lengths(freqs[:alphabet], max_len))

    @property
    def max_len(self) -> int:
        return int(self.lengths.max(initial=0))

    @property
    def order(self) -> np.ndarray:
        """Used symbols in canonical order: by length, then by symbol value."""
        used = np.flatnonzero(self.lengths)
        return used[np.lexsort((used, self.lengths[used]))]

    @property
    def counts(self) -> np.ndarray:
        """counts[l] = number of codes of length l, l = 0..max_len (counts[0] = 0)."""
        c = np.bincount(self.lengths, minlength=self.max_len + 1)
        c[0] = 0
        return c

    def is_valid(self) -> bool:
        """Kraft inequality: a stored table that violates it is corrupt."""
        lens = self.lengths[self.lengths > 0].astype(np.float64)
        return bool(lens.size) and float(np.sum(2.0 ** -lens)) <= 1.0 + 1e-12

    @property
    def codes(self) -> np.ndarray:
        """Code value of each symbol (MSB-first, ``lengths[s]`` bits); 0 if unused."""
        codes = np.zeros(self.lengths.size, dtype=np.uint32)
        order = self.order
        lens = self.lengths[order].astype(np.int64)
        code, prev = 0, 0
        # canonical assignment; the loop runs over the alphabet (<= a few hundred), not the data
        for sym, ln in zip(order, lens, strict=True):
            code <<= int(ln) - prev
            codes[sym] = code
            code += 1
            prev = int(ln)
        return codes

    def encoded_bits(self, symbols: np.ndarray) -> int:
        return int(self.lengths[np.asarray(symbols, dtype=np.int64)].astype(np.int64).sum())

    def encode(self, symbols: np.ndarray) -> bitarray:
        """Concatenate the codes of ``symbols`` MSB-first (vectorised over symbols)."""
        symbols = np.asarray(symbols, dtype=np.int64)
        out = bitarray(endian="big")
        if symbols.size == 0:
            return out
        lens = self.lengths[symbols].astype(np.int64)
        if lens.min() == 0:
            raise ValueError("symbol without a code")
        codes = self.codes[symbols].astype(np.int64)
        # one output bit per code bit: which symbol it belongs to and its offset in that code
        owner = np.repeat(np.arange(symbols.size), lens)
        offset = np.arange(owner.size) - np.repeat(np.cumsum(lens) - lens, lens)
        bits = (codes[owner] >> (lens[owner] - 1 - offset)) & 1
        out.frombytes(np.packbits(bits.astype(np.uint8)).tobytes())
        del out[owner.size :]
        return out

    def decode(self, bits: bitarray, n: int) -> np.ndarray:
        """Decode exactly ``n`` symbols; ValueError if the stream is short or invalid."""
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        if not self.is_valid():
            raise ValueError("invalid code lengths (Kraft sum exceeds 1)")
        counts = [int(c) for c in self.counts]
        symbols = [int(s) for s in self.order]
        try:
            out = np.fromiter(
                itertools.islice(canonical_decode(bits, counts, symbols), n), dtype=np.int64
            )
        except ValueError as e:
            raise ValueError(f"invalid Huffman stream ({e})") from None
        if out.size != n:
            raise ValueError(f"Huffman stream ends after {out.size} of {n} symbols")
        return out


def decode_tables(code: CanonicalCode, max_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``limit``, ``offset`` (per length 1..L) and canonical symbol order: the decoder's tables.

    This is the one table builder (ROM image, golden model, RTL tests):
    ``limit[l-1]`` is the first code of length ``l + 1`` left-aligned to L bits
    (a window ``v`` has length ``l`` iff ``limit[l-2] <= v < limit[l-1]``), and
    ``offset[l-1]`` maps the code's top ``l`` bits to its index in ``order``,
    stored mod 2**16 because canonical offsets may be negative.
    """
    counts = np.zeros(max_len + 1, dtype=np.int64)
    c = code.counts
    counts[: c.size] = c
    limit = np.zeros(max_len, dtype=np.int64)
    offset = np.zeros(max_len, dtype=np.int64)
    first, base = 0, 0
    for ln in range(1, max_len + 1):
        limit[ln - 1] = (first + counts[ln]) << (max_len - ln)
        offset[ln - 1] = (base - first) % (1 << 16)
        base += counts[ln]
        first = (first + counts[ln]) << 1
    return limit, offset, code.order.astype(np.int64)


def entropy_bits(symbols: np.ndarray) -> float:
    """Order-0 entropy of the sequence, in bits (the floor any symbol-wise code can reach)."""
    symbols = np.asarray(symbols, dtype=np.int64)
    if symbols.size == 0:
        return 0.0
    p = np.bincount(symbols) / symbols.size
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum() * symbols.size)
