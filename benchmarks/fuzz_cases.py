"""The cases of benchmarks/fuzz_formats.py: what case ``i`` of a run is, and how it is read.

Each case takes one seed file and applies one mutation kind (a field-aware
one of fuzz_dcz / fuzz_rom / fuzz_romtext, or generic damage from
fuzz_bytes), then re-seals the CRC32 so the damage reaches the parser. Case
``i`` depends only on the run's seed and ``i`` (its own ``random.Random``).
:func:`run_case` is what a user of the file runs: ``container.decode`` and
``stats.layer_stats`` for ``.dcz``; ``rom.parse`` (after
``rom.from_readmemh`` for text), ``golden.decode_rom`` and ``golden.infer``
for ROM images.
"""

from __future__ import annotations

import random
import time

import numpy as np
from fuzz_bytes import GENERIC, LENGTH_CHANGING, g_bitflip, seal, set_uint
from fuzz_dcz import DCZ_FIELD, dcz_layout
from fuzz_rom import ROM_FIELD, rom_layout
from fuzz_romtext import TEXT

from compressor.contract import container, golden, rom
from compressor.contract.romtext import to_readmemh
from compressor.stats import layer_stats

EXT = {"dcz": "dcz", "rom": "rom", "rom_text": "mem"}


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
