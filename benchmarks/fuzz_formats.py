"""Field-aware fuzzing of both readers: the ``.dcz`` container and the ROM image (bin, hex, mem).

    .venv/bin/python benchmarks/fuzz_formats.py [--cases 100000] [--workers 2] [--seed 0]
    .venv/bin/python benchmarks/fuzz_formats.py --seed 0 --repro CASE [--dump FILE]

Seeds are valid files built in-process (random sparse MLPs, a convolution,
extreme sparsity structure, ROM images of ``sim.testnets`` nets and of the
committed LeNet-300-100 at N = 1, 2, 3, 4, 8, a signed-input image, their
hex/mem text) plus the committed ``benchmarks/results/lenet*_mnist.dcz``.
Each case takes one seed and applies one mutation kind: a field of the
format (found by walking the ``.dcz`` byte structure, or at the ROM's
header / descriptor / region-table struct offsets and in the sections the
descriptors point to) set to boundary values, structural edits (duplicated,
dropped or swapped layer records, swapped sections and streams, merged
column pointers), or generic damage (bit flips, truncation, inserted and
deleted bytes, splices); then the trailing CRC32 is recomputed so the damage
reaches the parser rather than the checksum.

Per case: ``.dcz``: ``container.decode`` then ``stats.layer_stats``; ROM:
``rom.parse`` (after ``rom.from_readmemh`` for text), ``golden.decode_rom``
and ``golden.infer`` on two random input vectors. Outcomes: accepted;
rejected (a DeepcompError, whose message must be one line starting with the
file's path, else "bad_message"); unexpected (any other exception); over the
memory bound (tracemalloc peak > 1 GiB, or a MemoryError under the worker's
RLIMIT_AS cap); over the time bound (> 2 s wall, re-timed without
tracemalloc). Cases run in worker subprocesses, in chunks, so a crash loses
one chunk and is reported; case ``i`` depends only on ``--seed`` and ``i``.
Writes benchmarks/results/fuzz_formats.json (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import random
import re
import resource
import shlex
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import tracemalloc
import warnings
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from compressor.contract import container, golden, rom
from compressor.contract.binfmt import MAX_TEXT
from compressor.contract.container import CompressedModel, LayerRecord
from compressor.contract.errors import DeepcompError
from compressor.contract.fixedpoint import to_int_layers
from compressor.stats import layer_stats
from sim.testnets import extreme_net, int_layer

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MEM_BOUND = 1 << 30  # bytes
TIME_BOUND = 2.0  # seconds
HARD_TIMEOUT = 30  # seconds: a case still running is stopped and counted over the time bound
CAP_MARGIN = 3 << 29  # RLIMIT_AS = the worker's measured baseline + 1.5 GiB
OUTCOMES = ("accepted", "rejected", "bad_message", "unexpected", "over_memory", "over_time")
EXT = {"dcz": "dcz", "rom": "rom", "rom_text": "mem"}


# ---------------------------------------------------------------- seeds

def random_record(rng, out, inp, density, wbits=5, zbits=4, name="fc", bias=True, kind="linear",
                  shape=None, stride=1, padding=0):
    """A random sparse layer record (as tests/conftest.py ``random_record``, conv shapes too)."""
    shape = shape or (out, inp)
    index = np.where(rng.random(shape) < density, rng.integers(1, 1 << wbits, shape), 0)
    codebook = np.concatenate([[0.0], np.sort(rng.normal(size=(1 << wbits) - 1))]).astype(np.float16)
    b = rng.normal(size=shape[0]).astype(np.float16).astype(np.float32) if bias else None
    return LayerRecord(name, kind, tuple(shape), codebook.astype(np.float32), index.astype(np.int64), b,
                       wbits, zbits, stride, padding)


def random_mlp(rng, sizes=(64, 40, 20, 10), density=0.3, **kw):
    layers = [random_record(rng, b, a, density, name=f"fcs.{i}", **kw)
              for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True))]
    return CompressedModel("mlp:" + "-".join(map(str, sizes)), layers)


def dcz_seeds() -> dict[str, bytes]:
    rng = np.random.default_rng(20240601)
    out = {"mlp": container.encode(random_mlp(rng)),
           "mlp_sparse_w3z2": container.encode(random_mlp(rng, (30, 17, 5), 0.05, wbits=3, zbits=2))}
    conv = random_record(rng, 0, 0, 0.4, name="conv1", kind="conv", shape=(6, 2, 3, 3), stride=2, padding=1)
    conv2 = random_record(rng, 0, 0, 0.2, name="conv2", kind="conv", shape=(4, 6, 1, 1), bias=False,
                          wbits=2, zbits=3)
    out["conv"] = container.encode(CompressedModel("my-convnet", [conv, conv2, random_record(rng, 10, 16, 0.5)]))
    empty = random_record(rng, 12, 20, 0.0, name="empty", bias=False)  # no entries at all
    dense = random_record(rng, 8, 12, 1.0, wbits=1, zbits=1, name="dense")
    gaps = random_record(rng, 50, 60, 0.005, wbits=2, zbits=1, name="gaps")  # long filler runs
    wide = random_record(rng, 40, 30, 0.6, wbits=8, zbits=8, name="w8z8")
    single = random_record(rng, 9, 33, 0.0, name="single")
    single.index[8, 32] = 3  # the last position only
    out["extreme"] = container.encode(CompressedModel("extreme", [empty, dense, gaps, wide, single]))
    for name in ("lenet300_mnist.dcz", "lenet5_mnist.dcz"):
        out[name] = (RESULTS / name).read_bytes()
    return out


def lenet300_int_layers():
    """The committed LeNet-300-100 as integers, calibrated on random sparse 'images' (numpy only)."""
    cm = container.decode((RESULTS / "lenet300_mnist.dcz").read_bytes(), "lenet300_mnist.dcz")
    rng = np.random.default_rng(3)
    calib = (rng.random((256, 784)) < 0.2) * rng.integers(0, 256, (256, 784))
    return to_int_layers([(r.matrix_index, r.codebook, r.bias, r.wbits, r.zbits) for r in cm.layers], calib)


def small_net(rng, sizes, density, wbits=5, zbits=4):
    return [int_layer(rng, b, a, density, wbits, zbits, relu=i < len(sizes) - 2)
            for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True))]


def rom_seeds() -> dict[str, bytes]:
    out = {}
    for n, max_len in ((1, 9), (2, 10), (3, 12), (4, 12), (8, 16)):
        out[f"extreme_n{n}_L{max_len}"] = rom.build(extreme_net(np.random.default_rng(7)), n, max_len)
    rng = np.random.default_rng(11)
    for n in (1, 2, 4, 8):
        out[f"small_n{n}"] = rom.build(small_net(rng, (24, 16, 10), 0.3), n, 12)
    out["tiny_w1z1_L2"] = rom.build(small_net(rng, (6, 5, 3), 0.5, wbits=1, zbits=1), 2, 2)
    out["signed_n2"] = rom.build(small_net(rng, (20, 12, 4), 0.4), 2, 11, flags=rom.FLAG_SIGNED_INPUT,
                                 input_scale=0.0625)
    lenet = lenet300_int_layers()
    out["lenet300_n1"] = rom.build(lenet, 1, 12)
    out["lenet300_n8"] = rom.build(lenet, 8, 12)
    return out


def build_seeds() -> dict[str, dict[str, bytes]]:
    roms = rom_seeds()
    text = {f"{k}.{ext}": rom.to_readmemh(roms[k], w)
            for k, ext, w in (("extreme_n2_L10", "hex", 1), ("small_n4", "mem", 4), ("signed_n2", "hex", 1),
                              ("signed_n2", "mem", 4), ("lenet300_n8", "mem", 4))}
    return {"dcz": dcz_seeds(), "rom": roms, "rom_text": text}


# ---------------------------------------------------------------- field maps

@dataclass
class Field:
    start: int
    end: int
    type: str  # varint, text, flags, widths, f16, nibbles, stream
    name: str
    layer: int
    value: int = 0
    limit: int = 0


def dcz_layout(data: bytes) -> dict:
    """Byte span of every field of a valid ``.dcz`` (docs/format.md), and of each layer record."""
    fields: list[Field] = []
    layers: list[tuple[int, int]] = []
    pos = 5

    def varint(name: str, layer: int, limit: int) -> int:
        nonlocal pos
        start, v, sh = pos, 0, 0
        while True:
            b = data[pos]
            pos += 1
            v |= (b & 0x7F) << sh
            sh += 7
            if not b & 0x80:
                break
        fields.append(Field(start, pos, "varint", name, layer, v, limit))
        return v

    def block(n: int, typ: str, name: str, layer: int) -> None:
        nonlocal pos
        fields.append(Field(pos, pos + n, typ, name, layer, n))
        pos += n

    def text(name: str, layer: int) -> None:
        block(varint(name + ".len", layer, MAX_TEXT), "text", name, layer)

    text("arch", -1)
    n_layers = varint("n_layers", -1, container.MAX_LAYERS)
    for li in range(n_layers):
        start = pos
        text("name", li)
        flags = data[pos]
        block(1, "flags", "flags", li)
        shape = [varint(f"shape{k}", li, container.MAX_DIM) for k in range(4 if flags & 1 else 2)]
        if flags & 1:
            varint("stride", li, container.MAX_STRIDE)
            varint("padding", li, container.MAX_STRIDE)
        wbits, zbits = data[pos] >> 4, data[pos] & 15
        block(1, "widths", "widths", li)
        varint("n_entries", li, 8 * len(data))
        block(2 * ((1 << wbits) - 1), "f16", "codebook", li)
        if flags & 2:
            block(2 * shape[0], "f16", "bias", li)
        block((1 << wbits) // 2, "nibbles", "wlengths", li)
        block((1 << zbits) // 2, "nibbles", "zlengths", li)
        for s in ("wstream", "zstream"):
            block(varint(s + ".len", li, len(data)), "stream", s, li)
        layers.append((start, pos))
    assert pos == len(data) - 4, "dcz_layout out of step with the format"
    return {"fields": fields, "layers": layers, "n_layers": next(f for f in fields if f.name == "n_layers")}


def struct_fields(st: struct.Struct, names: list[str]) -> list[tuple[str, int, str]]:
    """(name, offset, struct code) of each member of a little-endian struct."""
    out, off = [], 0
    for name, code in zip(names, re.findall(r"\d*[a-zA-Z]", st.format.lstrip("<")), strict=True):
        out.append((name, off, code))
        off += struct.calcsize("<" + code)
    return out


HEADER_FIELDS = struct_fields(rom.HEADER, ["magic", "version", "n_pes", "n_layers", "max_len", "input_size",
                                           "n_classes", "ptr_bytes", "acc_bits", "cb_bits", "flags",
                                           "desc_offset", "stream_offset", "total_bytes", "input_scale"])
DESC_FIELDS = struct_fields(rom.DESC, ["rows", "cols", "wbits", "zbits", "relu", "shift", "mult",
                                       "codebook_offset", "table_offset", "symbols_offset", "bias_offset",
                                       "pointer_offset", "n_symbols", "reserved"])


def rom_layout(data: bytes) -> dict:
    """Where everything of a valid ROM image is: descriptors, region table, sections, PE regions."""
    img = rom.parse(data, "seed")
    n_layers, n = len(img.layers), img.n_pes
    descs = [rom.DESC.unpack_from(data, rom.HEADER.size + rom.DESC.size * li) for li in range(n_layers)]
    layers = []
    for d, ly in zip(descs, img.layers, strict=True):
        layers.append({"codebook": (d[7], 2, ly.codebook.size), "table": (d[8], 4, 2 * img.max_len),
                       "symbols": (d[9], 2, ly.symbols.size), "bias": (d[10], 4, ly.rows),
                       "pointers": (d[11], img.ptr_bytes, ly.ptr.size), "rows": ly.rows, "cols": ly.cols,
                       "alphabet": 1 << (ly.wbits + ly.zbits), "ptr": ly.ptr})
    region_table = rom.HEADER.size + rom.DESC.size * n_layers
    regions = [(img.stream_offsets[p], len(img.streams[p])) for p in range(n)]
    return {"n_pes": n, "max_len": img.max_len, "ptr_bytes": img.ptr_bytes, "n_layers": n_layers,
            "layers": layers, "region_table": region_table, "regions": regions,
            "sections_start": region_table + 8 * n, "stream_offset": regions[0][0] if regions else len(data) - 4}


# ---------------------------------------------------------------- mutation helpers

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


# ---------------------------------------------------------------- .dcz field mutations

def pick(r, fields, *types, nonempty=False):
    cands = [f for f in fields if f.type in types and (f.end > f.start or not nonempty)]
    return r.choice(cands) if cands else None


def replace_span(body, start, end, new: bytes):
    return body[:start] + bytearray(new) + body[end:]


def dcz_varint(r, body, lay):
    f = pick(r, lay["fields"], "varint")
    v, lim = f.value, f.limit
    choice = r.random()
    if choice < 0.1:
        new = b"\xff" * r.randint(1, 12)  # unterminated / overlong continuation
    elif choice < 0.2:
        e = varint_bytes(v)
        new = e[:-1] + bytes([e[-1] | 0x80]) + b"\x80" * r.randint(0, 8) + b"\x00"  # non-minimal encoding
    else:
        new = varint_bytes(max(0, r.choice([0, 1, 2, v - 1, v + 1, 2 * v, lim - 1, lim, lim + 1, 127, 128,
                                            16383, 16384, 2**21 - 1, 2**28 - 1, 2**31 - 1, 2**31, 2**32 - 1,
                                            2**32, 2**35 - 1, 2**49 - 1, 2**56 - 1, 2**63 - 1, 2**63,
                                            2**64 - 1, 2**70, r.randrange(max(2, 2 * lim + 2))])))
    return replace_span(body, f.start, f.end, new)


def dcz_text(r, body, lay):
    f = pick(r, lay["fields"], "text")
    ln = next(g for g in lay["fields"] if g.end == f.start and g.type == "varint")
    new = r.choice([b"", b"\n", b"a\nb", b"x\r", b"\x1e", b"\xe2\x80\xa8", b"\xff", b"\xc3", b"\xed\xa0\x80",
                    b"\x00", "\u00e9".encode(), b"A" * MAX_TEXT, b"A" * (MAX_TEXT + 1),
                    bytes(r.randrange(256) for _ in range(r.randint(1, 20)))])
    if r.random() < 0.2:  # contents changed, length kept: everything after shifts
        return replace_span(body, f.start, f.end, new)
    return replace_span(body, ln.start, f.end, varint_bytes(len(new)) + new)


def dcz_flags(r, body, lay):
    f = pick(r, lay["fields"], "flags")
    body[f.start] = r.choice([0, 1, 2, 3, 4, 5, 8, 0x10, 0x80, 0xFF, body[f.start] ^ 1, body[f.start] ^ 2])
    return body


def dcz_widths(r, body, lay):
    f = pick(r, lay["fields"], "widths")
    vals = [0, 1, 2, 7, 8, 9, 15]
    body[f.start] = r.choice([(r.choice(vals) << 4) | r.choice(vals), body[f.start] + 1 & 0xFF,
                              body[f.start] - 1 & 0xFF, body[f.start] + 16 & 0xFF, r.randrange(256)])
    return body


F16_SPECIAL = [0x7E00, 0x7C00, 0xFC00, 0x7BFF, 0xFBFF, 0x8000, 0x0001, 0x0000, 0x3C00, 0xFE01]


def dcz_f16(r, body, lay):
    f = pick(r, lay["fields"], "f16", nonempty=True)
    if f is None:
        return dcz_varint(r, body, lay)
    if r.random() < 0.2:
        v = r.choice(F16_SPECIAL)
        for off in range(f.start, f.end, 2):
            set_uint(body, off, 2, v)
    else:
        set_uint(body, f.start + 2 * r.randrange((f.end - f.start) // 2), 2,
                 r.choice(F16_SPECIAL + [r.randrange(1 << 16)]))
    return body


def dcz_nibbles(r, body, lay):
    f = pick(r, lay["fields"], "nibbles")
    nib = []
    for b in body[f.start:f.end]:
        nib += [b >> 4, b & 15]
    op = r.randrange(6)
    if op == 0:
        nib[r.randrange(len(nib))] = r.choice([0, 1, 2, 15, r.randrange(16)])
    elif op == 1:
        nib = [r.choice([0, 1, 15])] * len(nib)
    elif op == 2 and len(nib) > 1:
        i, j = r.sample(range(len(nib)), 2)
        nib[i], nib[j] = nib[j], nib[i]
    elif op == 3:
        i = r.randrange(len(nib))
        nib[i] = (nib[i] + r.choice([1, -1])) % 16
    elif op == 4:
        r.shuffle(nib)
    else:
        nib = [0] * len(nib)
        nib[r.randrange(len(nib))] = r.choice([1, 15])
    body[f.start:f.end] = bytes((a << 4) | b for a, b in zip(nib[0::2], nib[1::2], strict=True))
    return body


def dcz_stream(r, body, lay):
    f = pick(r, lay["fields"], "stream", nonempty=True)
    if f is None:
        return dcz_nibbles(r, body, lay)
    op = r.randrange(3)
    if op == 0:
        for _ in range(r.randint(1, 4)):
            body[r.randrange(f.start, f.end)] ^= 1 << r.randrange(8)
    elif op == 1:
        body[r.randrange(f.start, f.end)] = r.choice([0, 0xFF])
    else:
        i = r.randrange(f.start, f.end)
        body[i:f.end] = bytes([r.choice([0, 0xFF])]) * (f.end - i)
    return body


def dcz_stream_resize(r, body, lay):
    f = pick(r, lay["fields"], "stream")
    ln = next(g for g in lay["fields"] if g.end == f.start and g.type == "varint")
    n = f.end - f.start
    new_n = max(0, r.choice([0, 1, n - 1, n + 1, n // 2, 2 * n, n + r.randint(1, 64)]))
    raw = bytes(body[f.start:f.end])[:new_n]
    raw += bytes(r.choice([0, 0xFF, r.randrange(256)]) for _ in range(new_n - len(raw)))
    return replace_span(body, ln.start, f.end, varint_bytes(new_n) + raw)


def _stream_pair(lay, li, name):
    s = next(f for f in lay["fields"] if f.layer == li and f.name == name)
    ln = next(g for g in lay["fields"] if g.end == s.start and g.type == "varint")
    return ln.start, s.end


def dcz_stream_swap(r, body, lay):
    n = len(lay["layers"])
    li = r.randrange(n)
    a = _stream_pair(lay, li, "wstream")
    if r.random() < 0.5 or n == 1:
        b = _stream_pair(lay, li, "zstream")  # the layer's two streams swapped
    else:
        b = _stream_pair(lay, r.choice([x for x in range(n) if x != li]), r.choice(["wstream", "zstream"]))
    (s1, e1), (s2, e2) = sorted([a, b])
    return body[:s1] + body[s2:e2] + body[e1:s2] + body[s1:e1] + body[e2:]


def dcz_layers(r, body, lay):
    recs = [bytes(body[s:e]) for s, e in lay["layers"]]
    nl = lay["n_layers"]
    n = len(recs)
    op = r.choice(["dup", "drop", "swap", "dup_nocount", "drop_nocount", "reverse", "count"])
    count = n
    if op in ("dup", "dup_nocount"):
        recs.insert(r.randint(0, n), recs[r.randrange(n)])
        count += op == "dup"
    elif op in ("drop", "drop_nocount"):
        del recs[r.randrange(n)]
        count -= op == "drop"
    elif op == "swap" and n > 1:
        i, j = r.sample(range(n), 2)
        recs[i], recs[j] = recs[j], recs[i]
    elif op == "reverse":
        recs.reverse()
    else:
        count = r.choice([0, n - 1, n + 1, container.MAX_LAYERS, container.MAX_LAYERS + 1])
    return body[:nl.start] + bytearray(varint_bytes(max(0, count))) + bytearray(b"".join(recs))


def dcz_stream_grow(r, body, lay):
    """Bytes appended to a stream, its length updated: more bytes than the codes of its entries."""
    f = pick(r, lay["fields"], "stream")
    ln = next(g for g in lay["fields"] if g.end == f.start and g.type == "varint")
    raw = bytes(body[f.start:f.end])
    raw += _filler(r, r.choices(GROW, GROW_WEIGHTS)[0], raw)
    return replace_span(body, ln.start, f.end, varint_bytes(len(raw)) + raw)


DCZ_FIELD = {"dcz_varint": dcz_varint, "dcz_text": dcz_text, "dcz_flags": dcz_flags, "dcz_widths": dcz_widths,
             "dcz_f16": dcz_f16, "dcz_nibbles": dcz_nibbles, "dcz_stream": dcz_stream,
             "dcz_stream_resize": dcz_stream_resize, "dcz_stream_swap": dcz_stream_swap, "dcz_layers": dcz_layers,
             "dcz_stream_grow": dcz_stream_grow}


# ---------------------------------------------------------------- ROM field mutations

def _struct_mutate(r, body, base, fields, limits):
    name, off, code = r.choice(fields)
    if code == "4s":
        body[base + off + r.randrange(4)] ^= 1 << r.randrange(8)
        return body
    if code == "f":
        v = r.choice([0.0, -0.0, float("nan"), float("inf"), -float("inf"), 1e-45, 1e-38, 1.0, 1 / 255,
                      3.4e38, -1.0, 0.0625])
        body[base + off:base + off + 4] = struct.pack("<f", v)
        return body
    size = struct.calcsize("<" + code)
    v = get_uint(body, base + off, size)
    set_uint(body, base + off, size, boundary_ints(r, v, 8 * size, limits.get(name, ())))
    return body


def rom_header(r, body, lay):
    limits = {"version": [rom.VERSION], "n_pes": [rom.MAX_PES], "n_layers": [255, lay["n_layers"]],
              "max_len": [rom.MAX_L], "ptr_bytes": [2, 4], "acc_bits": [rom.ACC_BITS], "cb_bits": [rom.CB_BITS],
              "flags": [1], "desc_offset": [rom.HEADER.size], "stream_offset": [lay["stream_offset"]],
              "total_bytes": [len(body) + 4], "input_size": [65535], "n_classes": [65535]}
    return _struct_mutate(r, body, 0, HEADER_FIELDS, limits)


def rom_desc(r, body, lay):
    li = r.randrange(lay["n_layers"])
    ly = lay["layers"][li]
    limits = {"rows": [65535, ly["cols"]], "cols": [65535, ly["rows"]], "wbits": [8], "zbits": [8], "relu": [1],
              "shift": [rom.MAX_SHIFT], "mult": [1 << 16], "n_symbols": [ly["alphabet"], 65535],
              "reserved": [0]}
    for key in ("codebook", "table", "symbols", "bias", "pointer"):
        limits[key + "_offset"] = [len(body), ly[key if key != "pointer" else "pointers"][0] + 4]
    return _struct_mutate(r, body, rom.HEADER.size + rom.DESC.size * li, DESC_FIELDS, limits)


def rom_region_table(r, body, lay):
    p = r.randrange(lay["n_pes"])
    off = lay["region_table"] + 8 * p + 4 * r.randrange(2)
    v = get_uint(body, off, 4)
    set_uint(body, off, 4, boundary_ints(r, v, 32, [len(body), v + 4, v - 4]))
    return body


def _element(r, body, lay, key, values):
    li = r.randrange(lay["n_layers"])
    start, size, count = lay["layers"][li][key]
    if count == 0:
        return rom_desc(r, body, lay)
    k = 0 if key == "codebook" and r.random() < 0.2 else r.randrange(count)
    off = start + size * k
    v = get_uint(body, off, size)
    set_uint(body, off, size, r.choice(values(v, lay["layers"][li], k)))
    return body


def rom_codebook(r, body, lay):
    return _element(r, body, lay, "codebook",
                    lambda v, ly, k: [0, 1, -1, 32767, -32768, v + 1, -v, r.randrange(1 << 16)])


def rom_table(r, body, lay):
    L = lay["max_len"]

    def values(v, ly, k):
        start = ly["table"][0]
        nxt = get_uint(body, start + 4 * min(k + 2, 2 * L - 2 + k % 2), 4)
        prv = get_uint(body, start + 4 * max(k - 2, k % 2), 4)
        if k % 2 == 0:  # limit
            return [0, 1 << L, (1 << L) + 1, nxt, prv, v + 1, v - 1, 2**32 - 1, 2**31]
        return [0, 65535, 65536, v + 1, v - 1, 2**32 - 1, nxt, prv]

    return _element(r, body, lay, "table", values)


def rom_symbols(r, body, lay):
    def values(v, ly, k):
        start, _, count = ly["symbols"]
        other = get_uint(body, start + 2 * r.randrange(count), 2)
        return [0, ly["alphabet"] - 1, ly["alphabet"], 65535, other, v ^ 1, v + 1]

    return _element(r, body, lay, "symbols", values)


def rom_bias(r, body, lay):
    return _element(r, body, lay, "bias",
                    lambda v, ly, k: [0, 2**31 - 1, -(2**31), -1, v * 2, v + (1 << 24), v - (1 << 24)])


def rom_pointer(r, body, lay):
    pb = lay["ptr_bytes"]

    def values(v, ly, k):
        p = k % lay["n_pes"]
        bits = 8 * lay["regions"][p][1]
        flat = ly["ptr"].reshape(-1)
        nxt = int(flat[min(k + lay["n_pes"], flat.size - 1)])
        prv = int(flat[max(k - lay["n_pes"], p)])
        return [0, v + 1, v - 1, bits, bits + 1, (1 << (8 * pb)) - 1, nxt, prv, r.randint(0, max(bits, 1))]

    return _element(r, body, lay, "pointers", values)


def _write_ptr(body, lay, li, row, p, value):
    start, pb, _ = lay["layers"][li]["pointers"]
    set_uint(body, start + pb * (row * lay["n_pes"] + p), pb, value)


def rom_ptr_merge(r, body, lay):
    """Columns j-1 ... k-1 of one PE made one segment: the decoder runs through several columns at once."""
    li = r.randrange(lay["n_layers"])
    ly = lay["layers"][li]
    cols, p = ly["cols"], r.randrange(lay["n_pes"])
    if cols < 2:
        return rom_pointer(r, body, lay)
    if r.random() < 0.3:
        j, k = 1, cols  # the whole layer in column 0
    else:
        j = r.randint(1, cols - 1)
        k = r.randint(j, cols)
    v = int(ly["ptr"][k, p]) if r.random() < 0.8 else int(ly["ptr"][j - 1, p])
    for row in range(j, k):
        _write_ptr(body, lay, li, row, p, v)
    return body


def rom_ptr_shift(r, body, lay):
    li = r.randrange(lay["n_layers"])
    ly = lay["layers"][li]
    cols, p = ly["cols"], r.randrange(lay["n_pes"])
    j = r.randint(0, cols)
    k = r.randint(j, cols)
    d = r.choice([1, -1, 2, -2, 7, -7, 8, -8, 13])
    for row in range(j, k + 1):
        _write_ptr(body, lay, li, row, p, max(0, int(ly["ptr"][row, p]) + d))
    return body


def rom_stream(r, body, lay):
    live = [(o, n) for o, n in lay["regions"] if n]
    if not live:
        return rom_pointer(r, body, lay)
    o, n = r.choice(live)
    op = r.randrange(4)
    if op == 0:
        for _ in range(r.randint(1, 4)):
            body[o + r.randrange(n)] ^= 1 << r.randrange(8)
    elif op == 1:
        body[o + r.randrange(n)] = r.choice([0, 0xFF, r.randrange(256)])
    elif op == 2:
        body[o + n - 1 - r.randrange(min(n, 4))] = r.choice([1, 0x80, 0xFF])  # the padding at the end
    else:
        i = o + r.randrange(n)
        end = min(o + n, i + r.randint(1, 64))
        body[i:end] = bytes([r.choice([0, 0xFF])]) * (end - i)
    return body


def rom_region_swap(r, body, lay):
    regions = lay["regions"]
    if len(regions) < 2:
        return rom_stream(r, body, lay)
    p, q = r.sample(range(len(regions)), 2)
    parts = [bytes(body[o:o + n]) for o, n in regions]
    parts[p], parts[q] = parts[q], parts[p]
    base = lay["stream_offset"]
    body = body[:base] + bytearray(b"".join(parts)) + body[base + sum(n for _, n in regions):]
    off = 0
    for i, part in enumerate(parts):
        set_uint(body, lay["region_table"] + 8 * i, 4, off)
        set_uint(body, lay["region_table"] + 8 * i + 4, 4, len(part))
        off += len(part)
    return body


def rom_section_swap(r, body, lay):
    secs = [(ly[k][0], ly[k][1] * ly[k][2], k) for ly in lay["layers"]
            for k in ("codebook", "table", "symbols", "bias", "pointers")]
    same = [(a, b) for i, a in enumerate(secs) for b in secs[i + 1:] if a[1] == b[1] and a[1]]
    if same and r.random() < 0.7:
        (s1, n, _), (s2, _, _) = r.choice(same)
        a, b = bytes(body[s1:s1 + n]), bytes(body[s2:s2 + n])
        body[s1:s1 + n], body[s2:s2 + n] = b, a
        return body
    lo, hi = lay["sections_start"], lay["stream_offset"]
    if hi - lo < 8:
        return rom_stream(r, body, lay)
    i, j = (lo + 4 * r.randrange((hi - lo) // 4) for _ in range(2))
    a, b = bytes(body[i:i + 4]), bytes(body[j:j + 4])
    body[i:i + 4], body[j:j + 4] = b, a
    return body


def rom_layers(r, body, lay):
    n = lay["n_layers"]
    base = rom.HEADER.size
    descs = [bytes(body[base + rom.DESC.size * i: base + rom.DESC.size * (i + 1)]) for i in range(n)]
    op = r.choice(["dup", "drop", "swap", "count"])
    count = n
    if op == "dup":
        descs.insert(r.randint(0, n), descs[r.randrange(n)])
        count += 1
    elif op == "drop" and n > 1:
        del descs[r.randrange(n)]
        count -= 1
    elif op == "swap" and n > 1:
        i, j = r.sample(range(n), 2)
        descs[i], descs[j] = descs[j], descs[i]
    else:
        count = r.choice([0, n - 1, n + 1, 255])
    body = body[:base] + bytearray(b"".join(descs)) + body[base + rom.DESC.size * n:]
    body[6] = count & 0xFF
    set_uint(body, 24, 4, len(body) + 4)  # total_bytes kept in step
    return body


GROW = [4, 8, 64, 1024, 16384, 65536, 262144, 1 << 20]  # bytes added by the *_grow kinds (up to 1 MiB)
GROW_WEIGHTS = [4, 3, 3, 2, 2, 1, 0.6, 0.3]


def _filler(r, k: int, like: bytes = b"") -> bytes:
    """``k`` bytes to insert: zeros, ones, random, or repeats of ``like`` (valid codes of the same stream)."""
    op = r.randrange(4)
    if op == 3 and like:
        return (like * (k // len(like) + 1))[:k]
    if op == 2:
        return r.randbytes(k)
    return bytes([0xFF if op == 1 else 0]) * k


def rom_column_grow(r, body, lay):
    """Bits inserted into one column's segment, every later pointer and region moved: the decoder sees more codes."""
    li = r.randrange(lay["n_layers"])
    ly = lay["layers"][li]
    n, p = lay["n_pes"], r.randrange(lay["n_pes"])
    j = r.randrange(ly["cols"])
    k = r.choices(GROW[:-1], GROW_WEIGHTS[:-1])[0]
    o, ln = lay["regions"][p]
    bits = np.unpackbits(np.frombuffer(bytes(body[o:o + ln]), dtype=np.uint8))
    a, b = int(ly["ptr"][j, p]), int(ly["ptr"][j + 1, p])
    at = a if r.random() < 0.5 else b
    own = np.packbits(bits[a:b]).tobytes() if b - a >= 8 and (b - a) % 8 == 0 else b""
    ins = np.unpackbits(np.frombuffer(_filler(r, k, own), dtype=np.uint8))
    region = np.packbits(np.concatenate([bits[:at], ins, bits[at:]])).tobytes()
    for lj in range(li, lay["n_layers"]):
        lp = lay["layers"][lj]
        for row in range(j + 1 if lj == li else 0, lp["cols"] + 1):
            _write_ptr(body, lay, lj, row, p, int(lp["ptr"][row, p]) + 8 * k)
    body = body[:o] + bytearray(region) + body[o + ln:]
    set_uint(body, lay["region_table"] + 8 * p + 4, 4, ln + k)
    for q in range(p + 1, n):
        set_uint(body, lay["region_table"] + 8 * q, 4, get_uint(body, lay["region_table"] + 8 * q, 4) + k)
    set_uint(body, 24, 4, len(body) + 4)
    return body


def rom_region_grow(r, body, lay):
    """Bytes appended to one PE region (region table and total_bytes moved, pointers not): unused stream bytes."""
    n, p = lay["n_pes"], r.randrange(lay["n_pes"])
    k = r.choices(GROW, GROW_WEIGHTS)[0]
    o, ln = lay["regions"][p]
    body = body[:o + ln] + bytearray(_filler(r, k, bytes(body[o:o + ln]))) + body[o + ln:]
    set_uint(body, lay["region_table"] + 8 * p + 4, 4, ln + k)
    for q in range(p + 1, n):
        set_uint(body, lay["region_table"] + 8 * q, 4, get_uint(body, lay["region_table"] + 8 * q, 4) + k)
    set_uint(body, 24, 4, len(body) + 4)
    return body


ROM_FIELD = {"rom_header": rom_header, "rom_desc": rom_desc, "rom_region_table": rom_region_table,
             "rom_codebook": rom_codebook, "rom_table": rom_table, "rom_symbols": rom_symbols,
             "rom_bias": rom_bias, "rom_pointer": rom_pointer, "rom_ptr_merge": rom_ptr_merge,
             "rom_ptr_shift": rom_ptr_shift, "rom_stream": rom_stream, "rom_region_swap": rom_region_swap,
             "rom_section_swap": rom_section_swap, "rom_layers": rom_layers, "rom_column_grow": rom_column_grow,
             "rom_region_grow": rom_region_grow}


# ---------------------------------------------------------------- hex/mem text mutations

def _text_lines(text: bytes) -> list[bytes]:
    return text.split(b"\n")[:-1]


def _join(lines: list[bytes]) -> bytes:
    return b"".join(x + b"\n" for x in lines)


def to_readmemh(image: bytes, width: int) -> bytes:
    """``rom.to_readmemh``, vectorised (the same bytes; checked on every seed)."""
    pad = image + b"\0" * (-len(image) % width)
    digits = np.frombuffer(pad, dtype=np.uint8).reshape(-1, width)[:, ::-1].tobytes().hex()
    lines = np.frombuffer(digits.encode(), dtype=f"S{2 * width}")
    header = f"// deepcomp ROM image, {len(image)} bytes, {width}-byte little-endian words\n"
    return header.encode() + b"\n".join(lines.tolist()) + b"\n"


def text_header(r, text, n, width):
    lines = _text_lines(text)
    w2 = r.choice([width, 5 - width, 2, 8, 0])
    k = r.choice([n - 1, n + 1, n - width, n + width, 0, 1, 9999999999, 10000000000, 4 * n])
    head = r.choice([f"// deepcomp ROM image, {max(k, 0)} bytes, {width}-byte little-endian words",
                     f"// deepcomp ROM image, {n} bytes, {w2}-byte little-endian words",
                     f"//deepcomp ROM image, {n} bytes, {width}-byte little-endian words",
                     f"// deepcomp ROM image, {n} bytes, {width}-byte little-endian words ",
                     f"// deepcomp ROM image, +{n} bytes, {width}-byte little-endian words",
                     f"// deepcomp ROM image, {n:_} bytes, {width}-byte little-endian words",
                     "\ufeff" + f"// deepcomp ROM image, {n} bytes, {width}-byte little-endian words",
                     f"// DEEPCOMP ROM IMAGE, {n} BYTES, {width}-BYTE LITTLE-ENDIAN WORDS", ""]).encode()
    if r.random() < 0.15:
        return _join(lines[1:])
    return _join([head] + lines[1:])


def text_line(r, text, n, width):
    lines = _text_lines(text)
    i = r.randrange(1, len(lines))
    x = lines[i].decode()
    j = r.randrange(len(x))
    new = r.choice([x[:j] + "g" + x[j + 1:], x.upper(), x[:-1], x + "0", x[:j] + " " + x[j + 1:],
                    " ".join(x[k:k + 2] for k in range(0, len(x), 2)), "0x" + x[2:], x[:j] + "\u0660" + x[j + 1:],
                    x[:j] + "\t" + x[j + 1:], x[:j] + "-" + x[j + 1:], x[:j] + "\x00" + x[j + 1:],
                    "f" * len(x), "", "// " + x])
    lines[i] = new.encode("utf-8")
    return _join(lines)


def text_lines(r, text, n, width):
    lines = _text_lines(text)
    i = r.randrange(1, len(lines))
    op = r.randrange(8)
    if op == 0:
        del lines[i]
    elif op == 1:
        lines.insert(i, lines[i])
    elif op == 2:
        lines[i:i] = [b""] * r.randint(1, 3)
    elif op == 3:
        return b"".join(x + b"\r\n" for x in lines)
    elif op == 4:
        return _join(lines)[:-1]
    elif op == 5:
        lines.append(r.choice([b"zz", b"00" * width, b"// end", b"\x0b", b" "]))
    elif op == 6 and len(lines) > 2:
        a, b = r.sample(range(1, len(lines)), 2)
        lines[a], lines[b] = lines[b], lines[a]
    else:
        return _join(lines).replace(b"\n", r.choice([b"\r", b"\x0b", b"\x1c", b"\n\n"]))
    return _join(lines)


TEXT = {"text_header": text_header, "text_line": text_line, "text_lines": text_lines}


# ---------------------------------------------------------------- cases

def kinds_of(fmt: str) -> tuple[list[str], list[float]]:
    """Mutation kinds of a format and their weights (field-aware ones dominate)."""
    if fmt == "rom_text":
        table = {"valid": 0.3, "text_image": 6, "text_header": 1, "text_line": 1.5, "text_lines": 1.5,
                 "text_bytes": 1.5}
    else:
        specific = DCZ_FIELD if fmt == "dcz" else ROM_FIELD
        table = {"valid": 0.3, "crc_stale": 0.3, **{k: 1.0 for k in GENERIC}, "splice": 1.0, "multi": 1.5,
                 **{k: 2.0 for k in specific}}
    return list(table), list(table.values())


FORMATS, FORMAT_WEIGHTS = ["dcz", "rom", "rom_text"], [0.42, 0.42, 0.16]


class Seeds:
    """The seed files and their field maps (built once per process)."""

    def __init__(self, seeds: dict[str, dict[str, bytes]]) -> None:
        self.files = seeds
        self.names = {fmt: sorted(v) for fmt, v in seeds.items()}
        self.dcz = {k: dcz_layout(v) for k, v in seeds["dcz"].items()}
        self.rom = {k: rom_layout(v) for k, v in seeds["rom"].items()}
        self.text_image = {k: rom.from_readmemh(v, k) for k, v in seeds["rom_text"].items()}
        self.text_layout = {k: rom_layout(v) for k, v in self.text_image.items()}
        for k, v in self.text_image.items():
            assert to_readmemh(v, 1 if k.endswith(".hex") else 4) == seeds["rom_text"][k]


def seal(body: bytearray | bytes) -> bytes:
    return bytes(body) + struct.pack("<I", zlib.crc32(body))


def binary_mutation(r: random.Random, fmt: str, kind: str, data: bytes, lay: dict, others: list[bytes]) -> bytes:
    """Apply ``kind`` to a valid ``.dcz``/ROM file and re-seal the CRC (except ``crc_stale``)."""
    body = bytearray(data[:-4])
    specific = DCZ_FIELD if fmt == "dcz" else ROM_FIELD
    if kind == "valid":
        return data
    if kind == "crc_stale":
        return bytes(g_bitflip(r, body)) + data[-4:]
    if kind in specific:
        body = specific[kind](r, body, lay)
    elif kind == "splice":
        other = r.choice(others)[:-4]
        body = body[: r.randint(0, len(body))] + bytearray(other[r.randint(0, len(other)):])
    elif kind == "multi":
        body = specific[r.choice(list(specific))](r, body, lay)
        for _ in range(r.randint(1, 2)):
            g = r.choice(list(GENERIC))
            body = GENERIC[g](r, body)
            kind = g if g in LENGTH_CHANGING else kind
    else:
        body = GENERIC[kind](r, body)
    if fmt == "rom" and kind in LENGTH_CHANGING and len(body) >= 28 and r.random() < 0.5:
        set_uint(body, 24, 4, len(body) + 4)  # total_bytes kept in step, so the damage goes deeper
    return seal(body)


def make_case(seeds: Seeds, seed: int, i: int) -> dict:
    """Case ``i`` of run ``seed``: format, mutation kind, seed file and the bytes to read."""
    r = random.Random(f"deepcomp-fuzz:{seed}:{i}")
    fmt = r.choices(FORMATS, FORMAT_WEIGHTS)[0]
    kinds, weights = kinds_of(fmt)
    kind = r.choices(kinds, weights)[0]
    name = r.choice(seeds.names[fmt])
    data = seeds.files[fmt][name]
    if fmt == "dcz":
        data = binary_mutation(r, fmt, kind, data, seeds.dcz[name], list(seeds.files["dcz"].values()))
    elif fmt == "rom":
        data = binary_mutation(r, fmt, kind, data, seeds.rom[name], list(seeds.files["rom"].values()))
    elif kind == "text_image":
        image = seeds.text_image[name]
        sub = r.choices(*kinds_of("rom"))[0]
        image = binary_mutation(r, "rom", sub, image, seeds.text_layout[name], list(seeds.files["rom"].values()))
        data = to_readmemh(image, 1 if name.endswith(".hex") else 4)
    elif kind in TEXT:
        data = TEXT[kind](r, data, len(seeds.text_image[name]), 1 if name.endswith(".hex") else 4)
    elif kind == "text_bytes":
        data = bytes(GENERIC[r.choice(list(GENERIC))](r, bytearray(data)))
    return {"case": i, "format": fmt, "kind": kind, "seed_file": name, "data": data,
            "path": f"fuzz/case-{i}.{EXT[fmt] if fmt != 'rom_text' else name.rsplit('.', 1)[1]}"}


def run_case(case: dict, seed: int) -> float:
    """What a user of the file runs; returns the seconds spent reading (before accept / reject)."""
    fmt, data, path = case["format"], case["data"], case["path"]
    t0 = time.perf_counter()
    if fmt == "dcz":
        cm = container.decode(data, path)
        t_read = time.perf_counter() - t0
        layer_stats(cm)
        return t_read
    if fmt == "rom_text":
        data = rom.from_readmemh(data, path)
    img = rom.parse(data, path)
    dec = golden.decode_rom(img, path)
    t_read = time.perf_counter() - t0
    lo, hi = (-128, 128) if img.signed_input else (0, 256)
    x = np.random.default_rng([seed, case["case"], 1]).integers(lo, hi, (2, img.input_size))
    golden.infer(dec, x)
    return t_read


# ---------------------------------------------------------------- worker

class CaseTimeout(BaseException):
    """Raised by SIGALRM when a case runs past HARD_TIMEOUT (a BaseException: no reader catches it)."""


def _alarm(signum, frame):
    raise CaseTimeout


def vm_size() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    return 0


def classify(case: dict, seed: int, timed: bool) -> dict:
    """Run one case; its outcome, peak traced memory, wall time and, when it went wrong, why."""
    rec = {"outcome": "accepted", "peak": 0, "time": 0.0, "read_time": 0.0}
    base = tracemalloc.get_traced_memory()[0] if timed else 0
    if timed:
        tracemalloc.reset_peak()
    signal.setitimer(signal.ITIMER_REAL, HARD_TIMEOUT)
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            rec["read_time"] = run_case(case, seed)
    except CaseTimeout:
        rec["outcome"] = "over_time"
        rec["error"] = f"still running after {HARD_TIMEOUT} s"
    except MemoryError:
        rec["outcome"] = "over_memory"
        rec["error"] = "MemoryError under RLIMIT_AS"
    except DeepcompError as e:
        msg = str(e)
        rec["outcome"] = "rejected"
        rec["message"] = msg
        if len(msg.splitlines()) != 1 or not msg.startswith(case["path"] + ": "):
            rec["outcome"] = "bad_message"
            rec["error"] = f"{type(e).__name__}: {msg!r}"
    except Exception as e:  # noqa: BLE001 -- anything else is what the fuzzer is looking for
        rec["outcome"] = "unexpected"
        rec["error"] = f"{type(e).__name__}: {e}"[:500]
        rec["traceback"] = traceback.format_exc()[-1500:]
    finally:
        rec["time"] = time.perf_counter() - t0
        signal.setitimer(signal.ITIMER_REAL, 0)
    if rec["outcome"] != "accepted":  # rejected (or stopped) while reading
        rec["read_time"] = rec["time"]
    # a warning is printed to stderr ahead of the one-line error or the result: counted, not an outcome
    rec["warnings"] = sorted({f"{w.category.__name__}: {w.message} ({Path(w.filename).name}:{w.lineno})"
                              for w in caught})
    if timed:
        rec["peak"] = max(0, tracemalloc.get_traced_memory()[1] - base)
    return rec


def norm_message(msg: str, path: str) -> str:
    """A rejection message without its path and numbers, to count rejection reasons."""
    msg = msg[len(path) + 2:] if msg.startswith(path + ": ") else msg
    return re.sub(r"\d+", "N", msg)[:80]


def run_chunk(seeds: Seeds, seed: int, start: int, stop: int, progress=None) -> dict:
    """Run cases ``start`` ... ``stop - 1``; the chunk's counts, extremes and failures."""
    counts: dict[str, dict[str, Counter]] = {}
    reasons: dict[str, Counter] = {}
    worst_mem = {"bytes": -1}
    worst_time = {"seconds": -1.0}
    failures: list[dict] = []
    warned: Counter = Counter()
    warned_cases: list[dict] = []
    for i in range(start, stop):
        case = make_case(seeds, seed, i)
        rec = classify(case, seed, timed=True)
        if rec["outcome"] != "over_time" and rec["time"] > TIME_BOUND:  # re-time without tracemalloc's overhead
            tracemalloc.stop()
            again = classify(case, seed, timed=False)
            tracemalloc.start()
            rec["time"], rec["read_time"] = again["time"], again["read_time"]
        if rec["outcome"] in ("accepted", "rejected") and rec["peak"] > MEM_BOUND:
            rec["outcome"], rec["error"] = "over_memory", f"tracemalloc peak {rec['peak']} bytes"
        if rec["outcome"] in ("accepted", "rejected") and rec["time"] > TIME_BOUND:
            rec["outcome"], rec["error"] = "over_time", f"{rec['time']:.2f} s"
        fmt, kind = case["format"], case["kind"]
        counts.setdefault(fmt, {}).setdefault(kind, Counter())[rec["outcome"]] += 1
        if rec["warnings"]:
            counts[fmt][kind]["warned"] += 1
            warned.update(rec["warnings"])
            if len(warned_cases) < 20:
                warned_cases.append({"case": i, "format": fmt, "kind": kind, "warnings": rec["warnings"],
                                     "repro": repro_command(seed, i)})
        if rec["outcome"] == "rejected":
            reasons.setdefault(fmt, Counter())[norm_message(rec["message"], case["path"])] += 1
        info = {"case": i, "format": fmt, "kind": kind, "seed_file": case["seed_file"],
                "file_bytes": len(case["data"])}
        if rec["peak"] > worst_mem["bytes"]:
            worst_mem = {"bytes": rec["peak"], **info}
        if rec["time"] > worst_time["seconds"]:
            worst_time = {"seconds": round(rec["time"], 4), "read_seconds": round(rec["read_time"], 4), **info}
        if rec["outcome"] not in ("accepted", "rejected") or (kind == "valid" and rec["outcome"] != "accepted"):
            if len(failures) < 20:
                failures.append({**info, "outcome": rec["outcome"], "error": rec.get("error", rec.get("message")),
                                 "traceback": rec.get("traceback"), "repro": repro_command(seed, i)})
        if progress is not None and (i - start) % 50 == 49:
            progress(50)
    if progress is not None:
        progress((stop - start) % 50)
    return {"counts": {f: {k: dict(c) for k, c in v.items()} for f, v in counts.items()},
            "reasons": {f: dict(c) for f, c in reasons.items()}, "max_memory": worst_mem,
            "max_time": worst_time, "failures": failures, "warnings": dict(warned), "warned_cases": warned_cases}


def repro_command(seed: int, i: int) -> str:
    return f".venv/bin/python benchmarks/fuzz_formats.py --seed {seed} --repro {i}"


def worker_main(args) -> None:
    with open(args.seeds_file, "rb") as f:
        seeds = Seeds(pickle.load(f))
    signal.signal(signal.SIGALRM, _alarm)
    tracemalloc.start()
    baseline = vm_size()
    cap = baseline + CAP_MARGIN
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    out = sys.stdout

    def progress(n: int) -> None:
        if n:
            out.write(f"P {n}\n")
            out.flush()

    res = run_chunk(seeds, args.seed, args.start, args.stop, progress)
    res["baseline_vm_bytes"], res["rlimit_as_bytes"] = baseline, cap
    out.write("R " + json.dumps(res) + "\n")
    out.flush()


# ---------------------------------------------------------------- driver

def merge(total: dict, part: dict) -> None:
    for fmt, kinds in part["counts"].items():
        for kind, c in kinds.items():
            dst = total["counts"].setdefault(fmt, {}).setdefault(kind, Counter())
            dst.update(c)
    for fmt, c in part["reasons"].items():
        total["reasons"].setdefault(fmt, Counter()).update(c)
    if part["max_memory"]["bytes"] > total["max_memory"]["bytes"]:
        total["max_memory"] = part["max_memory"]
    if part["max_time"]["seconds"] > total["max_time"]["seconds"]:
        total["max_time"] = part["max_time"]
    total["failures"] += part["failures"]
    total["warnings"].update(part["warnings"])
    total["warned_cases"] += part["warned_cases"]
    for key in ("baseline_vm_bytes", "rlimit_as_bytes"):
        if key in part:
            total[key] = max(total.get(key, 0), part[key])


def run_workers(args, seeds_file: str, bar) -> dict:
    total = {"counts": {}, "reasons": {}, "max_memory": {"bytes": -1}, "max_time": {"seconds": -1.0},
             "failures": [], "crashed_chunks": [], "warnings": Counter(), "warned_cases": []}
    chunks = [(a, min(a + args.chunk, args.cases)) for a in range(0, args.cases, args.chunk)]
    lock = threading.Lock()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONHASHSEED": "0"}

    def slot() -> None:
        while True:
            with lock:
                if not chunks:
                    return
                start, stop = chunks.pop(0)
            cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--seed", str(args.seed),
                   "--start", str(start), "--stop", str(stop), "--seeds-file", seeds_file]
            with tempfile.TemporaryFile() as err:
                proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, env=env, text=True, cwd=ROOT)
                result, done = None, 0
                for line in proc.stdout:
                    if line.startswith("P "):
                        done += int(line[2:])
                        with lock:
                            bar.update(int(line[2:]))
                    elif line.startswith("R "):
                        result = json.loads(line[2:])
                rc = proc.wait()
                err.seek(0)
                tail = err.read().decode(errors="replace")[-2000:]
            with lock:
                if result is None or rc != 0:
                    bar.update(stop - start - done)
                    total["crashed_chunks"].append({"start": start, "stop": stop, "returncode": rc,
                                                    "cases_done_before_crash": done, "stderr_tail": tail})
                else:
                    merge(total, result)

    threads = [threading.Thread(target=slot) for _ in range(args.workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return total


def summarize(args, seeds: dict, total: dict, wall: float) -> dict:
    by_format = {}
    by_kind = {}
    for fmt in FORMATS:
        kinds = total["counts"].get(fmt, {})
        by_kind[fmt] = {k: {"cases": sum(kinds[k][o] for o in OUTCOMES), **{o: int(kinds[k][o]) for o in OUTCOMES},
                            "warned": int(kinds[k]["warned"])} for k in sorted(kinds)}
        by_format[fmt] = {c: sum(v[c] for v in by_kind[fmt].values()) for c in ("cases", *OUTCOMES, "warned")}
    totals = {o: sum(v[o] for v in by_format.values()) for o in (*OUTCOMES, "warned")}
    crashed = sum(c["stop"] - c["start"] for c in total["crashed_chunks"])
    totals["cases_run"] = sum(v["cases"] for v in by_format.values())
    totals["cases_lost_in_crashed_chunks"] = crashed
    totals["valid_seeds_not_accepted"] = sum(
        v["cases"] - v["accepted"] for fmt in FORMATS for k, v in by_kind[fmt].items() if k == "valid")
    failures = sorted(total["failures"], key=lambda f: f["case"])
    unexpected = [f for f in failures if f["outcome"] == "unexpected"]
    return {
        "command": " ".join([".venv/bin/python", "benchmarks/fuzz_formats.py", *map(shlex.quote, sys.argv[1:])]),
        "seed": args.seed, "cases": args.cases, "workers": args.workers, "chunk": args.chunk,
        "bounds": {"memory_bytes": MEM_BOUND, "time_s": TIME_BOUND, "hard_timeout_s": HARD_TIMEOUT,
                   "worker_baseline_vm_bytes": total.get("baseline_vm_bytes"),
                   "worker_rlimit_as_bytes": total.get("rlimit_as_bytes")},
        "seeds": {fmt: {k: len(v) for k, v in files.items()} for fmt, files in seeds.items()},
        "totals": totals,
        "by_format": by_format,
        "by_kind": by_kind,
        "max_peak_memory": total["max_memory"],
        "max_time": total["max_time"],
        "unexpected_exceptions": unexpected[:20],
        "other_failures": [f for f in failures if f["outcome"] != "unexpected"][:20],
        "warnings": {"cases": totals["warned"], "messages": dict(total["warnings"].most_common(20)),
                     "first_cases": sorted(total["warned_cases"], key=lambda w: w["case"])[:20]},
        "crashed_chunks": total["crashed_chunks"],
        "top_rejections": {fmt: dict(Counter(c).most_common(15)) for fmt, c in sorted(total["reasons"].items())},
        "wall_time_s": round(wall, 1),
    }


def print_table(res: dict) -> None:
    cols = ["cases", *OUTCOMES, "warned"]
    print(f"{'format':<10}" + "".join(f"{c:>13}" for c in cols))
    for fmt, row in [*res["by_format"].items(), ("total", {**res["totals"], "cases": res["totals"]["cases_run"]})]:
        print(f"{fmt:<10}" + "".join(f"{row[c]:>13}" for c in cols))
    m, t = res["max_peak_memory"], res["max_time"]
    print(f"max peak memory {m['bytes'] / 2**20:.1f} MiB (case {m.get('case')}, {m.get('format')} {m.get('kind')}); "
          f"max time {t['seconds']:.3f} s (case {t.get('case')}, {t.get('format')} {t.get('kind')}); "
          f"crashed chunks {len(res['crashed_chunks'])}; wall {res['wall_time_s']} s")


def repro(args) -> None:
    seeds = Seeds(build_seeds())
    case = make_case(seeds, args.seed, args.repro)
    print(f"case {args.repro}: {case['format']} {case['kind']} from {case['seed_file']}, {len(case['data'])} bytes")
    if args.dump:
        Path(args.dump).write_bytes(case["data"])
        print(f"wrote {args.dump}")
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        run_case(case, args.seed)
        print("accepted")
    except DeepcompError as e:
        print(f"rejected: {e!r}")
    print(f"{time.perf_counter() - t0:.3f} s, tracemalloc peak {tracemalloc.get_traced_memory()[1] / 2**20:.1f} MiB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=int, default=100000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--chunk", type=int, default=2000, help="cases per worker subprocess")
    ap.add_argument("--out", type=Path, default=RESULTS / "fuzz_formats.json")
    ap.add_argument("--repro", type=int, metavar="CASE", help="re-run one case in this process, with its traceback")
    ap.add_argument("--dump", type=Path, help="with --repro: write the case's file here")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--start", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--stop", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--seeds-file", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker_main(args)
    if args.repro is not None:
        return repro(args)
    if args.cases < 1 or args.workers < 1 or args.chunk < 1:
        ap.error("--cases, --workers and --chunk must be positive")
    from tqdm import tqdm

    t0 = time.perf_counter()
    seeds = build_seeds()
    checked = Seeds(seeds)  # every seed must be a valid file
    for fmt, names in checked.names.items():
        for name in names:
            rec = classify({"case": 0, "format": fmt, "kind": "valid", "seed_file": name,
                            "data": seeds[fmt][name], "path": name}, args.seed, timed=False)
            if rec["outcome"] != "accepted":
                raise SystemExit(f"seed {fmt}/{name} is not accepted: {rec}")
    with tempfile.TemporaryDirectory() as tmp:
        seeds_file = str(Path(tmp) / "seeds.pkl")
        with open(seeds_file, "wb") as f:
            pickle.dump(seeds, f)
        with tqdm(total=args.cases, unit="case", disable=None, smoothing=0.05) as bar:
            total = run_workers(args, seeds_file, bar)
    res = summarize(args, seeds, total, time.perf_counter() - t0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1) + "\n")
    print_table(res)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
