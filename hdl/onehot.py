"""One-hot helpers of the decode loop (hdl/decode.py): OR trees instead of priority logic.

The decoder selects by a one-hot code length, so every small "mux" it needs
(symbol bits, offset, column-end tests) is an AND-OR over the candidates and
every binary value it derives from the one-hot is one OR per output bit -- no
priority encoder. The buffer shift is the exception: a barrel shifter over
those OR-derived binary digits is as deep as the AND-OR over L + 1 shifted
copies of the buffer and much smaller (docs/hardware.md, "The decode loop").
"""

from __future__ import annotations

from amaranth import Cat, Const


def or_reduce(terms):
    """OR of a list of values (0 if empty)."""
    out = Const(0, 1)
    for t in terms:
        out = out | t
    return out


def encode_onehot(onehot):
    """Binary ``k + 1`` of the set bit of ``onehot`` (0 if none): an OR per output bit."""
    n = len(onehot)
    return Cat(*[or_reduce([onehot[k] for k in range(n) if (k + 1) >> b & 1])
                 for b in range(n.bit_length())])
