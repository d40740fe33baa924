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
ENCODE_CHUNK = 1 << 20  # symbols packed at a time by CanonicalCode.encode


def symbol_counts(symbols: np.ndarray, minlength: int) -> np.ndarray:
    """``np.bincount(symbols, minlength=minlength)``, in chunks of ``ENCODE_CHUNK``.

    bincount converts its input to int64 first; a layer's uint8/uint16 stream
    of tens of millions of entries would cost a temporary eight times its size
    (and its page faults), a chunk one that stays in cache.
    """
    symbols = np.asarray(symbols).ravel()
    counts = np.zeros(minlength, dtype=np.int64)
    for lo in range(0, symbols.size, ENCODE_CHUNK):
        c = np.bincount(symbols[lo : lo + ENCODE_CHUNK], minlength=counts.size)
        if c.size > counts.size:
            c[: counts.size] += counts
            counts = c
        else:
            counts += c
    return counts


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
    """Package-merge (Larmore & Hirschberg): length of leaf i = times it is chosen.

    Vectorised over each level (the alphabet has at most a few hundred
    symbols, but a layer's ``--zbits auto`` builds 16 codes for each of eight
    widths): a level is the leaves merged stably (leaves first on ties) with
    the packages of adjacent pairs of the level before; then the first
    ``2n - 2`` items of the last level are expanded level by level down to
    the leaves they contain.
    """
    n = w.size
    order = np.argsort(w, kind="stable")
    leaf_w = w[order].astype(np.int64)
    # an item of a level is a leaf (its position in ``order``) or a package (-1) whose
    # children are items 2j and 2j + 1 of the level before; per level kept:
    # (the level before's leaves, this level's first children)
    levels: list[tuple[np.ndarray, np.ndarray]] = []
    wts, leaf = leaf_w, np.arange(n)
    for _ in range(max_len - 1):
        m = wts.size // 2
        merged_w = np.concatenate([leaf_w, wts[0 : 2 * m : 2] + wts[1 : 2 * m : 2]])
        pick = np.argsort(merged_w, kind="stable")  # a stable merge: leaves (first) win ties
        levels.append((leaf, np.concatenate([np.full(n, -1), 2 * np.arange(m)])[pick]))
        wts, leaf = merged_w[pick], np.concatenate([np.arange(n), np.full(m, -1)])[pick]
    depth = np.zeros(n, dtype=np.int64)
    chosen = np.zeros(wts.size, dtype=bool)
    chosen[: 2 * n - 2] = True
    for prev_leaf, child in reversed(levels):
        # ``leaf`` and ``child`` describe the items of this level; prev_leaf the level below
        depth += np.bincount(leaf[chosen & (leaf >= 0)], minlength=n)
        kids = child[chosen & (child >= 0)]
        chosen = np.zeros(prev_leaf.size, dtype=bool)
        chosen[kids] = True
        chosen[kids + 1] = True
        leaf = prev_leaf
    depth += np.bincount(leaf[chosen & (leaf >= 0)], minlength=n)
    out = np.zeros(n, dtype=np.uint8)
    out[order] = depth
    return out


@dataclass(frozen=True)
class CanonicalCode:
    """A canonical code, fully determined by ``lengths`` (0 = symbol unused)."""

    lengths: np.ndarray

    @classmethod
    def from_symbols(cls, symbols: np.ndarray, alphabet: int, max_len: int = MAX_LEN):
        freqs = symbol_counts(symbols, alphabet)
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
        """Length of ``encode(symbols)`` in bits: symbol counts times code lengths."""
        counts = symbol_counts(symbols, 0)
        if counts.size > self.lengths.size:
            raise IndexError(f"symbol {counts.size - 1} is outside the alphabet of {self.lengths.size}")
        return int(counts @ self.lengths[: counts.size].astype(np.int64))

    def encode(self, symbols: np.ndarray) -> bitarray:
        """Concatenate the codes of ``symbols`` MSB-first (vectorised over symbols).

        Codes are packed into 64-bit words: a code lands in the word of its
        first bit, and the low bits of one that crosses a word boundary in the
        next word; no two codes share a bit, so a word is the OR of the codes
        that start in it. Memory is a few words per symbol, in chunks of
        ``ENCODE_CHUNK`` symbols (not per bit: a layer's stream is tens of
        millions of bits).
        """
        symbols = np.asarray(symbols).ravel()
        out = bitarray(endian="big")
        if symbols.size == 0:
            return out
        lengths = self.lengths.astype(np.int64)
        codes = self.codes.astype(np.uint64)
        for lo in range(0, symbols.size, ENCODE_CHUNK):
            chunk = symbols[lo : lo + ENCODE_CHUNK].astype(np.int64)
            lens = lengths[chunk]
            if lens.min() == 0:
                raise ValueError("symbol without a code")
            out.extend(_pack(codes[chunk], lens))
        return out

    def decode(self, bits: bitarray, n: int) -> np.ndarray:
        """Decode exactly ``n`` symbols; ValueError if the stream is short or invalid."""
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        if not self.is_valid():
            raise ValueError("invalid code lengths (Kraft sum exceeds 1)")
        counts = [int(c) for c in self.counts]
        symbols = [int(s) for s in self.order]
        try:  # the fast path: fromiter with a count stops after n symbols, no islice in between
            return np.fromiter(canonical_decode(bits, counts, symbols), dtype=np.int64, count=n)
        except ValueError:
            pass  # short or invalid: decode again below, to say which
        try:
            out = np.fromiter(
                itertools.islice(canonical_decode(bits, counts, symbols), n), dtype=np.int64
            )
        except ValueError as e:
            raise ValueError(f"invalid Huffman stream ({e})") from None
        if out.size != n:
            raise ValueError(f"Huffman stream ends after {out.size} of {n} symbols")
        return out


def _pack(codes: np.ndarray, lens: np.ndarray) -> bitarray:
    """The codes (uint64, ``lens`` bits each, all > 0) concatenated MSB-first."""
    end = np.cumsum(lens)
    total = int(end[-1])
    start = end - lens
    word = start >> 6
    shift = 64 - (start & 63) - lens  # where the code's last bit lands in its word; < 0: it spills over
    head = (codes << np.maximum(shift, 0).astype(np.uint64)) >> np.maximum(-shift, 0).astype(np.uint64)
    words = np.zeros(int(word[-1]) + 2, dtype=np.uint64)
    first = np.flatnonzero(np.diff(word, prepend=-1))
    words[word[first]] = np.bitwise_or.reduceat(head, first)
    spill = np.flatnonzero(shift < 0)  # at most one code crosses each word boundary
    words[word[spill] + 1] |= codes[spill] << (64 + shift[spill]).astype(np.uint64)
    out = bitarray(endian="big")
    out.frombytes(words.astype(">u8").tobytes()[: (total + 7) // 8])
    del out[total:]
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
