"""The ROM image map and the field-aware ROM mutations of benchmarks/fuzz_formats.py.

:func:`rom_layout` locates, in a valid ROM image, the descriptors, the region
table, the sections the descriptors point to (codebook, Huffman table,
symbols, bias, column pointers) and each PE's stream region. The ``rom_*``
mutations set header / descriptor / region-table struct fields and section
elements to boundary values, or edit the structure (merged or shifted column
pointers, damaged, swapped or grown streams, swapped sections, duplicated,
dropped or swapped descriptors). ``ROM_FIELD`` maps each kind to its mutation.
"""

from __future__ import annotations

import re
import struct

import numpy as np
from fuzz_bytes import GROW, GROW_WEIGHTS, boundary_ints, filler, get_uint, set_uint

from compressor.contract import rom


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
    ins = np.unpackbits(np.frombuffer(filler(r, k, own), dtype=np.uint8))
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
    body = body[:o + ln] + bytearray(filler(r, k, bytes(body[o:o + ln]))) + body[o + ln:]
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
