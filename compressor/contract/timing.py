"""The golden model's cycle model: when the RTL finishes each layer (docs/arithmetic.md, "Cycle model").

numpy only, part of the specification. :class:`Timing` holds the RTL's
constants; :func:`scan_cycles` is one broadcaster scan with the PEs behind
it (an fc layer, or one output position of a convolution),
:func:`scan_cycles_batch` many scans at once, :func:`layer_cycles` a fully
connected layer and :func:`conv_layer_cycles` a convolution.

Dataflow (a) of the conv issue: rows = output channels interleaved over the
PEs, one output position at a time. For each position the broadcaster scans
the position's patch (the layer's columns, ``kh * kw * cs_in`` storage
elements in (ky, kx, channel) order, groups of N) exactly as it scans an fc
layer's input, the PEs decode each non-zero activation's column from the same
Huffman streams, and the tail reads the position's ``ceil(R / N)`` local rows
into the requantizers (which keep the max-pool). numpy only: part of the
golden model.

Schedule (hdl/engine.py, hdl/broadcast.py), cycles from the layer's first
setup cycle: the descriptor is read as for an fc layer and the first
position starts at ``setup - 1`` (the sequencer's fourth setup cycle); a
position started at ``S`` has its first scan slot at ``S + pos_start`` (one
priming cycle more than an fc scan: the patch's word look-ahead); its
column phase ends at ``d`` (:func:`scan_cycles`, the fc rules: FIFO
room, issue latency, one entry per cycle, drain); the sequencer sees it at
``d + 1`` and reads ``ceil(R / N)`` rows; the next position starts
``pos_gap`` cycles after the last read cycle's start... i.e. at
``d + ceil(R / N) + pos_gap``; after the last position the next layer's
setup begins at ``d + ceil(R / N) + conv_drain``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CYCLE_CHUNK = 1 << 21  # patch elements per batched scan of a conv layer (bounds the golden model's memory)


@dataclass(frozen=True)
class Timing:
    """Constants of the RTL schedule (docs/arithmetic.md, "Cycle model")."""

    fifo_depth: int = 8  # per-PE activation FIFO
    setup: int = 4  # per layer: descriptor fetch before the first scan slot
    issue_latency: int = 5  # broadcast -> earliest PE start (pointer read, register, queue, fetch, land)
    drain: int = 6  # last decode -> accumulator written (index, symbol read and registered, codebook, multiply, read registered, add)
    requant_latency: int = 5  # hidden layers: idle detect + bias/requantize pipeline + write
    readout_latency: int = 4  # last layer: idle detect + last sum registered, selected, compared
    # conv layers (conv_layer_cycles): a position's broadcaster start -> its first scan slot;
    # after the tail's reads -> the next position's start; after the last position's reads -> next layer
    pos_start: int = 3
    pos_gap: int = 2
    conv_drain: int = 5
    # a column a PE holds nothing of (its pointer flags: empty) leaves the PE's FIFO this many
    # cycles after its issue, never reaching the decoder (hdl/fetch.py); usable and idle one later
    drop_free: int = 2
    # decode contexts per PE (EngineParams.contexts): with 2, issue k of a scan goes to context
    # k mod 2, each context has a FIFO of fifo_depth slots, decodes in the cycles of its parity
    # (counted from the scan's first slot) and takes 2 cycles per entry (hdl/decode.py)
    contexts: int = 1

    @classmethod
    def engine(cls, fifo_depth: int = 8, registered: bool = True, contexts: int = 1) -> Timing:
        """The constants of one of the RTL's two variants (``EngineParams.bram_out_regs``).

        ``registered`` (the default engine, the ULX3S): the symbol and accumulator
        block RAM outputs registered (``drain`` 6), the requantizer's product summed
        in a stage of its own (``requant_latency`` and ``conv_drain`` 5) and every
        PE's read-out sum registered before the N-way select (``readout_latency``
        4), for the ECP5's DSP and block RAM delays; without (the iCEBreaker,
        whose limit is its decode loop): 4, 4, 4 and 3, and fewer LUTs.
        ``contexts`` 2 (``EngineParams.contexts``): the decode loop cut in two stages and
        two columns in flight; a column's first code is decodable one cycle later
        (``issue_latency`` 6: the landing window is placed in a stage of its own).
        """
        if contexts not in (1, 2):
            raise ValueError(f"a PE has 1 or 2 decode contexts, not {contexts}")
        extra = {"contexts": 2, "issue_latency": 6} if contexts == 2 else {}
        if registered:
            return cls(fifo_depth=fifo_depth, **extra)
        return cls(fifo_depth=fifo_depth, drain=4, requant_latency=4, conv_drain=4, readout_latency=3, **extra)


def scan_cycles(acts: np.ndarray, entries: np.ndarray, timing: Timing, start: int) -> tuple[int, int]:
    """(end of the column phase, ideal cycles) of one scan of ``acts`` whose first slot is cycle ``start``.

    The broadcaster scans the activations in groups of N (one bank per PE),
    one group per cycle, issuing a group's non-zeros one per cycle (leading
    non-zero detection). A PE *drops* an issued column it holds nothing of
    (its pointer flags say so ``drop_free`` cycles after the issue) and spends
    ``entries`` cycles on each other column, in order. An issue waits for room
    in every PE's FIFO: an issue occupies a slot from its cycle until the PE
    starts it, or drops it, and the slot is usable the cycle after. The phase
    ends once the scan is over and every PE has drained.

    With ``timing.contexts`` C = 2 (two decode contexts per PE) issue k goes to
    context k mod C, which has a FIFO of its own (``fifo_depth`` slots); a context starts
    its columns in order, only in the cycles t with ``(t - start) mod C`` equal
    to its number, and spends C cycles per entry.

    This is the reference, written as the rules read (the FIFO occupancy is
    counted outright); :func:`scan_cycles_batch` is the fast one, tested equal.
    """
    n = entries.shape[1]
    c_n, depth = timing.contexts, timing.fifo_depth
    nz = np.flatnonzero(acts)
    ideal = int(entries[nz].max(axis=1, initial=0).sum()) if nz.size else 0
    groups = -(-acts.size // n)
    per_group = np.bincount(nz // n, minlength=groups)
    t = start
    freed = np.zeros((nz.size, n), dtype=np.int64)  # the cycle each issue leaves each PE's FIFO
    end = np.zeros((n, c_n), dtype=np.int64)  # each PE context's end of its last started column
    idle = 0  # from this cycle on no PE is busy with the issues so far
    # empty groups before each non-zero cost one scan cycle each
    empty_before = np.cumsum(per_group == 0)[nz // n]
    prev_empty = 0
    for k in range(nz.size):
        t += int(empty_before[k] - prev_empty)
        prev_empty = int(empty_before[k])
        c = k % c_n
        b = t
        while ((freed[c:k:c_n] >= b).sum(axis=0) >= depth).any():  # a FIFO is full
            b += 1
        e = entries[nz[k]]
        keep = e > 0
        s = np.maximum(b + timing.issue_latency, end[:, c])
        s += (c - (s - start)) % c_n  # the context's own cycles
        freed[k] = np.where(keep, s, b + timing.drop_free)
        end[:, c] = np.where(keep, s + c_n * e, end[:, c])
        idle = max(idle, int((s + c_n * e + timing.drain).max()) if keep.any() else 0,
                   b + timing.drop_free + 1 if not keep.all() else 0)
        t = b + 1
    t += int(np.sum(per_group == 0) - prev_empty)  # trailing empty groups
    return max(t, idle), ideal


def scan_cycles_batch(acts: np.ndarray, entries: np.ndarray, timing: Timing, start: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`scan_cycles` of many independent scans at once: ``acts`` is (scans, cols).

    Why: a convolution is one scan per output position (576 for LeNet-5's
    first layer) and a benchmark runs thousands of images; the recurrence is
    sequential within a scan, so this steps all scans together, one non-zero
    at a time (numpy over the scans), instead of a Python loop per scan.
    The FIFO rule without counting: a PE starts the columns it keeps in
    order, so the kept issues still queued at cycle b are its most recent
    ones, and a dropped issue is queued only until ``b_i + drop_free``, i.e.
    (issues being at least a cycle apart) only the last ``drop_free`` issues
    can still hold a dropped slot. So per PE the ``depth`` latest release
    cycles are among its last ``depth`` kept starts (a ring) and its last
    ``drop_free`` drops, and issue k may go once b is past the
    ``depth``-th latest of them in every PE.
    Returns (end of each column phase, ideal cycles of each scan).
    """
    acts = np.asarray(acts)
    p, cols = acts.shape
    n = entries.shape[1]
    nzm = acts != 0
    count = nzm.sum(axis=1)
    kmax = int(count.max(initial=0))
    groups = -(-cols // n)
    gnz = np.pad(nzm, ((0, 0), (0, groups * n - cols))).reshape(p, groups, n).any(axis=2)
    empty_cum = np.cumsum(~gnz, axis=1)
    total_empty = empty_cum[:, -1] if groups else np.zeros(p, dtype=np.int64)
    order = np.argsort(~nzm, axis=1, kind="stable")[:, :kmax]  # the non-zeros' columns, in order
    valid = np.arange(kmax)[None, :] < count[:, None]
    ent = entries[order]  # (scans, kmax, N)
    ideal = (ent.max(axis=2, initial=0) * valid).sum(axis=1)
    eb = np.take_along_axis(empty_cum, order // n, axis=1)  # empty groups before each non-zero
    c_n, d, lag = timing.contexts, timing.fifo_depth, timing.drop_free
    never = np.iinfo(np.int64).min // 4
    t = np.full(p, start, dtype=np.int64)
    prev = np.zeros(p, dtype=np.int64)
    # per context (issue k goes to context k mod C): its end, its last d kept starts (a ring),
    # its kept issues so far (ring position), the cycles of its last `lag` issues if dropped
    end = np.zeros((c_n, p, n), dtype=np.int64)
    ring = np.full((c_n, p, n, d), never, dtype=np.int64)
    kept = np.zeros((c_n, p, n), dtype=np.int64)
    dropped_at = np.full((c_n, p, n, lag), never, dtype=np.int64)
    idle = np.zeros(p, dtype=np.int64)
    rows, pes = np.arange(p)[:, None], np.arange(n)[None, :]
    for k in range(kmax):
        c = k % c_n
        ring_c, kept_c = ring[c], kept[c]  # views: updated in place
        a = valid[:, k]
        b = t + eb[:, k] - prev
        # the slots' release cycles: the last d kept starts and the last `lag` drops; the FIFO
        # has room at b once fewer than d of them are >= b, i.e. b > the d-th latest of them
        rel = np.concatenate([ring_c, dropped_at[c] + lag], axis=2)
        b = np.maximum(b, np.partition(rel, lag, axis=2)[:, :, lag].max(axis=1) + 1)
        e = ent[:, k]
        keep = (e > 0) & a[:, None]
        drop = (e == 0) & a[:, None]
        s = np.maximum(b[:, None] + timing.issue_latency, end[c])
        if c_n > 1:
            s += (c - (s - start)) % c_n  # the context's own cycles
            e = c_n * e
        finish = s + e
        end[c] = np.where(keep, finish, end[c])
        slot = kept_c % d
        ring_c[rows, pes, slot] = np.where(keep, s, ring_c[rows, pes, slot])
        kept_c += keep
        dropped_at[c] = np.where(a[:, None, None], np.concatenate(
            [dropped_at[c][:, :, 1:], np.where(drop, b[:, None], never)[:, :, None]], axis=2), dropped_at[c])
        idle = np.maximum(idle, np.where(keep, finish + timing.drain, 0).max(axis=1))
        idle = np.maximum(idle, np.where(drop.any(axis=1), b + lag + 1, 0))
        t = np.where(a, b + 1, t)
        prev = np.where(a, eb[:, k], prev)
    t = t + total_empty - prev
    return np.maximum(t, idle), ideal


def fc_tail(rows: int, n: int, relu: bool, timing: Timing) -> int:
    """Cycles of an fc layer's tail: the PEs' lock-step requantization, or the last layer's read-out."""
    return -(-rows // n) + timing.requant_latency if relu else rows + timing.readout_latency


def layer_cycles(acts: np.ndarray, entries: np.ndarray, rows: int, relu: bool,
                 timing: Timing) -> tuple[int, int]:
    """(cycles, ideal cycles) of one fully connected layer for one input vector ``acts``:
    setup, the scan (:func:`scan_cycles`) and the tail."""
    n = entries.shape[1]
    done, ideal = scan_cycles(acts, entries, timing, timing.setup)
    tail = fc_tail(rows, n, relu, timing)
    return done + tail, ideal


def conv_layer_cycles(patches: np.ndarray, entries: np.ndarray, rows: int,
                      timing: Timing) -> tuple[np.ndarray, np.ndarray]:
    """(cycles, ideal cycles) of one conv layer for each image of a batch.

    ``patches``: (images, positions, cols) storage-order patch vectors in the
    order the engine visits the positions (out-of-bounds elements 0), or
    (positions, cols) for one image (then the results are scalars);
    ``entries``: (cols, N) entries per column segment, as
    :class:`golden.DecodedLayer` has them. The ideal is the fc layer's per
    position: for every non-zero patch activation, the most entries any PE
    holds in its column. All positions of all images are one batched scan
    (:func:`scan_cycles_batch`).
    """
    one = patches.ndim == 2
    patches = patches[None] if one else patches
    k, positions, cols = patches.shape
    done, ideal = scan_cycles_batch(patches.reshape(k * positions, cols), entries, timing, timing.pos_start)
    tail = -(-rows // entries.shape[1])
    total = (timing.setup - 1 + (done.reshape(k, positions) + tail).sum(axis=1)
             + (positions - 1) * timing.pos_gap + timing.conv_drain)
    ideal = ideal.reshape(k, positions).sum(axis=1)
    return (int(total[0]), int(ideal[0])) if one else (total, ideal)
