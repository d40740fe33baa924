"""The ROM image as hex text for ``$readmemh`` (``--format hex``: bytes; ``mem``: 32-bit words).

Verilog testbenches and Amaranth ``Memory(init=...)`` load these; the
header line carries the exact byte length, so padding to whole words is
dropped on reading (docs/format.md, "hex and mem variants").
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .errors import FormatError


def to_readmemh(image: bytes, width: int) -> bytes:
    """One ``width``-byte little-endian word per line: bytes (hex) or 32-bit words (mem)."""
    pad = image + b"\0" * (-len(image) % width)
    # vectorised: all digits at once, then cut into lines of 2 * width (no per-byte Python loop)
    digits = np.frombuffer(pad, dtype=np.uint8).reshape(-1, width)[:, ::-1].tobytes().hex()
    lines = np.frombuffer(digits.encode(), dtype=f"S{2 * width}")
    header = f"// deepcomp ROM image, {len(image)} bytes, {width}-byte little-endian words\n"
    return header.encode() + b"\n".join(lines.tolist()) + b"\n"


def from_readmemh(text: bytes, path: str | Path = "<text>") -> bytes:
    """Inverse of :func:`to_readmemh` (the header comment gives the exact length)."""
    lines = text.decode("ascii", errors="replace").splitlines()
    head = re.fullmatch(r"// deepcomp ROM image, (\d{1,10}) bytes, ([14])-byte little-endian words",
                        lines[0].strip()) if lines else None
    if head is None:
        raise FormatError(f"{path}: not a deepcomp hex/mem image (bad header line)")
    n, width = int(head.group(1)), int(head.group(2))
    rows = [x.strip() for x in lines[1:] if x.strip()]
    if len(rows) != -(-n // width):
        raise FormatError(f"{path}: header says {n} bytes, the text holds {len(rows) * width}")
    try:
        if any(len(x) != 2 * width for x in rows):
            raise ValueError
        words = [bytes.fromhex(x)[::-1] for x in rows]
    except ValueError:
        raise FormatError(f"{path}: malformed hex line (each holds {2 * width} hex digits)") from None
    return b"".join(words)[:n]
