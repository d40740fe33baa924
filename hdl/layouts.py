"""Data layouts and port signatures shared between the engine's blocks.

Layouts are ``amaranth.lib.data`` structs; signatures are named
``wiring.Signature`` factories, each described from the *producer's* side
(the block that drives the ``Out`` members), so the consumer takes
``In(...)`` of the same signature and the two sides are joined with
``wiring.connect``.
"""

from __future__ import annotations

from amaranth import signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .params import EngineParams

# error codes on the result stream (same numbers as the board protocol's status byte)
ERR_OK = 0
ERR_PARAMS = 2  # header / descriptor does not fit the RTL's parameters
ERR_STREAM = 5  # corrupt weight stream detected during inference

ACC_SHAPE = signed(32)  # accumulators, biases, tail sums


def issue_layout(p: EngineParams) -> data.StructLayout:
    """Broadcaster -> PEs: one non-zero activation and its column."""
    return data.StructLayout({"col": unsigned(p.dim_width), "act": unsigned(8)})


def queue_layout(p: EngineParams) -> data.StructLayout:
    """One entry of a PE's activation FIFO: the activation and its column's bit segment.

    The segment ``[start, end)`` is stored pre-digested (computed when the entry
    is written, off the fetcher's and decoder's paths): the even/odd bank
    addresses of its first 32-bit window (``ea``, ``oa``; ``odd``: the window
    starts with an odd word), the bits to skip in it, its length, and whether
    it is corrupt (``end < start``; empty columns are never queued), and the first
    window's valid bits (``nb0``, after ``skip``), and whether it is shorter
    than 16 bits (``short``).
    """
    aw = unsigned(max(1, p.stream_half.bit_length()))
    return data.StructLayout({"act": unsigned(8), "ea": aw, "oa": aw, "odd": unsigned(1),
                              "skip": unsigned(4), "len": unsigned(p.ptr_width),
                              "nb0": unsigned(6), "short": unsigned(1), "bad": unsigned(1)})


def column_layout(p: EngineParams) -> data.StructLayout:
    """The FIFO head as the decoder sees it: the fields of :func:`queue_layout` it uses."""
    return data.StructLayout({"act": unsigned(8), "len": unsigned(p.ptr_width), "short": unsigned(1),
                              "bad": unsigned(1)})


def pe_load_layout(p: EngineParams) -> data.StructLayout:
    """One 16-bit stream word for a PE's single-port stream RAM: bank (``odd``), address, data."""
    return data.StructLayout({"odd": unsigned(1), "addr": unsigned(max(1, (p.stream_half - 1).bit_length())),
                              "data": unsigned(16)})


def stream_load_layout(p: EngineParams) -> data.StructLayout:
    """Runtime loader -> engine: one 16-bit stream word of PE ``pe`` (``odd``: odd bank)."""
    return data.StructLayout({"pe": unsigned(max(1, (p.n_pes - 1).bit_length())),
                              **pe_load_layout(p).members})


def LoadSignature(p: EngineParams) -> stream.Signature:
    """Runtime loader -> engine (``Accelerator.load``): a stream of :func:`stream_load_layout` words.

    Always ready: the stream RAMs take a word in any cycle (the loader writes
    only while the engine is idle), so a word is written in the cycle its
    ``valid`` is high.
    """
    return stream.Signature(stream_load_layout(p), always_ready=True)


def PELoadSignature(p: EngineParams) -> stream.Signature:
    """Engine -> one PE: :func:`LoadSignature` without the PE number (always ready)."""
    return stream.Signature(pe_load_layout(p), always_ready=True)


def ColumnSignature(p: EngineParams) -> wiring.Signature:
    """PE fetcher -> decoder: the FIFO head (:func:`column_layout`) as a FIFO read port.

    ``valid``: the head entry's first 32-bit fetch is in the bit buffer;
    ``payload``: that entry; ``pop`` (from the decoder): it starts that column
    this cycle (only while ``valid``: a FIFO ``r_en`` rather than a stream's
    ``ready``, so the transfer is the decoder's own start condition);
    ``pending``: issued columns not yet popped (part of the PE's ``busy``);
    ``pending_next``: ``pending`` next cycle if neither an issue nor a pop comes this cycle
    (a queued column is dropped instead: part of ``status.busy_next``).
    """
    return wiring.Signature({"valid": Out(1), "payload": Out(column_layout(p)), "pending": Out(1),
                             "pending_next": Out(1), "pop": In(1)})


def BitsSignature(p: EngineParams) -> wiring.Signature:
    """PE fetcher -> decoder: the bits landing in the bit buffer this cycle.

    ``bits``: a fetched window placed right behind the ``held`` bits (buffer
    positions, MSB-aligned like the buffer; zero elsewhere), to be ORed into
    the buffer before this cycle's shift; ``nb``: how many (0 = nothing lands).
    ``held`` (from the decoder): the buffer's registered bit count.
    """
    return wiring.Signature({"bits": Out(p.buf_bits), "nb": Out(6), "held": In(range(p.buf_bits + 1))})


def SymbolSignature(p: EngineParams) -> wiring.Signature:
    """PE decoder -> MAC: one decoded joint symbol ``(z, w)`` per ``valid`` cycle (no back-pressure).

    ``first``: the first entry of its column; ``act``: the column's
    activation; ``sym``: ``z << wbits_max | w`` (the symbol memory's output).
    ``bad_row`` (from the MAC): this symbol is a real weight on a row past the
    PE's rows -- a corrupt stream, registered into the decoder's sticky error.
    ``ctx`` (two decode contexts only): the context, whose column position the MAC keeps.
    """
    ctx = {"ctx": Out(1)} if p.contexts == 2 else {}  # the decode context the symbol is of
    return wiring.Signature({"valid": Out(1), "first": Out(1), "act": Out(8), "sym": Out(p.sym_width),
                             **ctx, "bad_row": In(1)})


def StatusSignature() -> wiring.Signature:
    """PE -> sequencer: ``busy`` (work in flight), ``error`` (corrupt stream, sticky), ``starve`` (debug).

    ``busy_next`` and ``error_next``: what ``busy`` and ``error`` will be next cycle, the issue
    of this cycle aside (the sequencer knows of that from the broadcaster). The sequencer ORs
    them over the PEs into registers, so the long routes from N PEs end at a flip-flop instead
    of running on into its state machine (hdl/engine.py).
    """
    return wiring.Signature({"busy": Out(1), "busy_next": Out(1), "error": Out(1), "error_next": Out(1),
                             "starve": Out(1)})


def TailSignature(p: EngineParams) -> wiring.Signature:
    """Sequencer -> PE: the accumulator read-out port (tail, argmax, result), seen from the reader.

    ``rd``/``addr``: read local row ``addr``; one cycle later ``sum`` =
    accumulator + bias of that row. ``clear`` additionally zeroes that
    accumulator in the following cycle.
    """
    return wiring.Signature({"rd": Out(1), "addr": Out(range(max(2, p.acc_depth))), "clear": Out(1),
                             "sum": In(ACC_SHAPE)})


def act_word_bits(p: EngineParams) -> int:
    """Bits of a word address in an activation bank."""
    return max(1, (max(2, p.act_depth) - 1).bit_length())


def conv_layout(p: EngineParams) -> dict:
    """The descriptor fields of :class:`hdl.params.LayerWord` that only a conv engine has."""
    if not p.conv:
        return {}
    aw, d = act_word_bits(p), p.conv_dim
    return {"in_base": unsigned(aw), "out_base": unsigned(aw), "conv": unsigned(1), "in_signed": unsigned(1),
            "out_signed": unsigned(1), "pool": unsigned(1), "kw": unsigned(3), "gpp": unsigned(d),
            "in_h": unsigned(d), "in_w": unsigned(d), "hp": unsigned(d), "wp": unsigned(d),
            "row_step": unsigned(aw + 1), "base0": signed(aw + 2), "iy0": signed(4), "ix0": signed(4),
            "stride": unsigned(3), "pstride": unsigned(4), "x_step": unsigned(aw + 1),
            "y_step": unsigned(aw + 1), "gpo": unsigned(max(1, p.acc_depth.bit_length()))}


def layer_layout(p: EngineParams) -> data.StructLayout:
    """A layer descriptor as the descriptor memory holds it (see params.LayerWord)."""
    aw = lambda depth: unsigned(max(1, (depth - 1).bit_length()) + 1)  # noqa: E731
    return data.StructLayout({
        **conv_layout(p),
        "rows": unsigned(16), "cols": unsigned(16),
        "wbits": unsigned(4), "zbits": unsigned(4),
        "relu": unsigned(1), "shift": unsigned(8), "mult": unsigned(32),
        "n_sym": unsigned(17),
        "sym_base": aw(p.sym_depth), "cb_base": aw(p.cb_depth),
        "bias_base": aw(p.bias_depth), "ptr_base": aw(p.ptr_rows),
        "limit": data.ArrayLayout(unsigned(p.max_len + 1), p.max_len),
        "offset": data.ArrayLayout(unsigned(16), p.max_len),
    })


_HEADER = {"n_pes": unsigned(8), "n_layers": unsigned(8), "max_len": unsigned(8),
           "input_size": unsigned(16), "n_classes": unsigned(16), "flags": unsigned(8)}
HEADER_LAYOUT = data.StructLayout(_HEADER)


def header_layout(p: EngineParams) -> data.StructLayout:
    """The image header as the sequencer holds it; a conv engine adds layer 0's input geometry."""
    if not p.conv:
        return HEADER_LAYOUT
    return data.StructLayout({**_HEADER, "conv0": unsigned(1), "in_c": unsigned(16), "in_hw": unsigned(20),
                              "in_gpp": unsigned(p.conv_dim)})

RESULT_LAYOUT = data.StructLayout({"data": unsigned(32), "last": unsigned(1)})
