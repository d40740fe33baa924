"""Byte-level helpers and generic damage shared by the fuzz mutations of benchmarks/fuzz_formats.py.

Integer fields (varints, little-endian uints, boundary values), the generic
mutations that know nothing of the format (bit flips, byte sets, truncation,
inserted / deleted / duplicated spans), the filler bytes of the ``*_grow``
kinds, and the trailing CRC32 seal. Each mutation takes a ``random.Random``
and the file body (without its CRC) and returns the new body.
"""

from __future__ import annotations

import random
import struct
import zlib


def varint_bytes(v: int) -> bytes:
    out = bytearray()
    while True:
        b, v = v & 0x7F, v >> 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def boundary_ints(r: random.Random, value: int, bits: int, limits=()) -> int:
    """A boundary value for an unsigned field of ``bits`` bits holding ``value``."""
    top = (1 << bits) - 1
    cands = [0, 1, 2, value - 1, value + 1, value * 2, value // 2, value ^ 1, top, top - 1,
             1 << (bits - 1), (1 << (bits - 1)) - 1, r.randint(0, top)]
    for lim in limits:
        cands += [lim - 1, lim, lim + 1]
    return r.choice(cands) & top


def set_uint(body: bytearray, off: int, nbytes: int, value: int) -> None:
    body[off:off + nbytes] = (value & ((1 << (8 * nbytes)) - 1)).to_bytes(nbytes, "little")


def get_uint(body: bytes, off: int, nbytes: int) -> int:
    return int.from_bytes(body[off:off + nbytes], "little")


def g_bitflip(r, body):
    for _ in range(r.randint(1, 8)):
        if body:
            i = r.randrange(len(body))
            body[i] ^= 1 << r.randrange(8)
    return body


def g_byte_set(r, body):
    for _ in range(r.randint(1, 4)):
        if body:
            body[r.randrange(len(body))] = r.choice([0, 0xFF, 0x7F, 0x80, 1, r.randrange(256)])
    return body


def g_truncate(r, body):
    return body[: r.randrange(len(body) + 1)] if r.random() < 0.7 else body[: max(0, len(body) - r.randint(1, 8))]


def g_insert(r, body):
    i = r.randint(0, len(body))
    body[i:i] = bytes(r.choice([0, 0xFF, r.randrange(256)]) for _ in range(r.randint(1, 16)))
    return body


def g_delete(r, body):
    i = r.randrange(max(1, len(body)))
    del body[i:i + r.randint(1, 16)]
    return body


def g_dup_span(r, body):
    if not body:
        return body
    i = r.randrange(len(body))
    span = bytes(body[i:i + r.randint(1, 64)])
    j = r.randint(0, len(body))
    if r.random() < 0.5:
        body[j:j] = span
    else:
        body[j:j + len(span)] = span
    return body


GENERIC = {"bitflip": g_bitflip, "byte_set": g_byte_set, "truncate": g_truncate, "insert": g_insert,
           "delete": g_delete, "dup_span": g_dup_span}
LENGTH_CHANGING = {"truncate", "insert", "delete", "dup_span", "splice"}

GROW = [4, 8, 64, 1024, 16384, 65536, 262144, 1 << 20]  # bytes added by the *_grow kinds (up to 1 MiB)
GROW_WEIGHTS = [4, 3, 3, 2, 2, 1, 0.6, 0.3]


def filler(r, k: int, like: bytes = b"") -> bytes:
    """``k`` bytes to insert: zeros, ones, random, or repeats of ``like`` (valid codes of the same stream)."""
    op = r.randrange(4)
    if op == 3 and like:
        return (like * (k // len(like) + 1))[:k]
    if op == 2:
        return r.randbytes(k)
    return bytes([0xFF if op == 1 else 0]) * k


def seal(body: bytearray | bytes) -> bytes:
    return bytes(body) + struct.pack("<I", zlib.crc32(body))
