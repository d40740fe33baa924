"""The hex/mem text mutations of benchmarks/fuzz_formats.py (ROM images for ``$readmemh``).

The ``text_*`` mutations damage the header line, one word line, or the line
structure (dropped, repeated, blank, swapped or extra lines, other line ends)
of a valid hex/mem file; :func:`to_readmemh` (the library's) re-encodes a mutated binary
image as text. ``TEXT`` maps each
kind to its mutation.
"""

from __future__ import annotations


def _text_lines(text: bytes) -> list[bytes]:
    return text.split(b"\n")[:-1]


def _join(lines: list[bytes]) -> bytes:
    return b"".join(x + b"\n" for x in lines)


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
