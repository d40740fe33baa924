"""The ``.dcz`` field map and the field-aware ``.dcz`` mutations of benchmarks/fuzz_formats.py.

:func:`dcz_layout` walks a valid container (docs/format.md) and records the
byte span, type and value of every field and of each layer record; the
``dcz_*`` mutations set one field to boundary values (varints, texts, flags,
widths, float16 values, code-length nibbles, streams) or edit the structure
(resized, swapped or grown streams; duplicated, dropped, swapped or
miscounted layer records). ``DCZ_FIELD`` maps each kind to its mutation.
"""

from __future__ import annotations

from dataclasses import dataclass

from fuzz_bytes import GROW, GROW_WEIGHTS, filler, set_uint, varint_bytes

from compressor.contract import container
from compressor.contract.binfmt import MAX_TEXT


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
    raw += filler(r, r.choices(GROW, GROW_WEIGHTS)[0], raw)
    return replace_span(body, ln.start, f.end, varint_bytes(len(raw)) + raw)


DCZ_FIELD = {"dcz_varint": dcz_varint, "dcz_text": dcz_text, "dcz_flags": dcz_flags, "dcz_widths": dcz_widths,
             "dcz_f16": dcz_f16, "dcz_nibbles": dcz_nibbles, "dcz_stream": dcz_stream,
             "dcz_stream_resize": dcz_stream_resize, "dcz_stream_swap": dcz_stream_swap, "dcz_layers": dcz_layers,
             "dcz_stream_grow": dcz_stream_grow}
