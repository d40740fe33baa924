"""Data layouts shared between the engine's blocks (``amaranth.lib.data``)."""

from __future__ import annotations

from amaranth import signed, unsigned
from amaranth.lib import data

from .params import EngineParams

# error codes on the result stream (same numbers as the board protocol's status byte)
ERR_OK = 0
ERR_PARAMS = 2  # header / descriptor does not fit the RTL's parameters
ERR_STREAM = 5  # corrupt weight stream detected during inference


def issue_layout(p: EngineParams) -> data.StructLayout:
    """Broadcaster -> PEs: one non-zero activation and its column."""
    return data.StructLayout({"col": unsigned(p.dim_width), "act": unsigned(8)})


def queue_layout(p: EngineParams) -> data.StructLayout:
    """One entry of a PE's activation FIFO: the activation and its column's bit segment.

    The segment ``[start, end)`` is stored pre-digested (computed when the entry
    is written, off the fetcher's and decoder's paths): the even/odd bank
    addresses of its first 32-bit window (``ea``, ``oa``; ``odd``: the window
    starts with an odd word), the bits to skip in it, its length, and whether
    it is empty (``end == start``) or corrupt (``end < start``), and the first
    window's valid bits (``nb0``, after ``skip``), and whether it is shorter
    than 16 bits (``short``).
    """
    aw = unsigned(max(1, p.stream_half.bit_length()))
    return data.StructLayout({"act": unsigned(8), "ea": aw, "oa": aw, "odd": unsigned(1),
                              "skip": unsigned(4), "len": unsigned(p.ptr_width),
                              "nb0": unsigned(6), "short": unsigned(1),
                              "empty": unsigned(1), "bad": unsigned(1)})


def stream_load_layout(p: EngineParams) -> data.StructLayout:
    """Runtime loader -> engine: write one 16-bit stream word of PE ``pe`` (``odd``: odd bank)."""
    return data.StructLayout({"en": unsigned(1), "pe": unsigned(max(1, (p.n_pes - 1).bit_length())),
                              "odd": unsigned(1), "addr": unsigned(max(1, (p.stream_half - 1).bit_length())),
                              "data": unsigned(16)})


def layer_layout(p: EngineParams) -> data.StructLayout:
    """A layer descriptor as the descriptor memory holds it (see params.LayerWord)."""
    aw = lambda depth: unsigned(max(1, (depth - 1).bit_length()) + 1)  # noqa: E731
    return data.StructLayout({
        "rows": unsigned(16), "cols": unsigned(16),
        "wbits": unsigned(4), "zbits": unsigned(4),
        "relu": unsigned(1), "shift": unsigned(8), "mult": unsigned(32),
        "n_sym": unsigned(17),
        "sym_base": aw(p.sym_depth), "cb_base": aw(p.cb_depth),
        "bias_base": aw(p.bias_depth), "ptr_base": aw(p.ptr_rows),
        "limit": data.ArrayLayout(unsigned(p.max_len + 1), p.max_len),
        "offset": data.ArrayLayout(unsigned(16), p.max_len),
    })


HEADER_LAYOUT = data.StructLayout({
    "n_pes": unsigned(8), "n_layers": unsigned(8), "max_len": unsigned(8),
    "input_size": unsigned(16), "n_classes": unsigned(16), "flags": unsigned(8),
})

RESULT_LAYOUT = data.StructLayout({"data": unsigned(32), "last": unsigned(1)})

ACC_SHAPE = signed(32)
