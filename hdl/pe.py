"""Processing element: activation FIFO, bit fetcher, canonical Huffman decoder, sparse MAC.

One PE owns the rows ``r = i * N + q`` of every layer (``q`` = its index,
``i`` = local row) and the stream region ``q`` of the ROM. Per broadcast
non-zero activation ``a[j]`` it decodes its entries of column ``j`` -- one
joint ``(z, w)`` symbol per cycle -- and accumulates ``codebook[w] * a[j]``
into row ``pos`` (``pos += z + 1``; ``w == 0`` is a filler: no MAC).

Three blocks, joined with ``wiring.connect`` (named signatures in :mod:`hdl.layouts`)::

    issue ─► Fetch ──col (FIFO head)──► Decode ──sym {first, act, sym}──► MAC ◄─► tail
             (pointers, FIFO,   ◄──pop──  (bit buffer, loop,  ◄─bad_row──  (codebook, ×, accumulators,
              fetcher, landing) ──bits──► symbol index + memory)            bias, argmax compare)
                                ◄─held─        │
                                               └─► status {busy, error, starve}

Pipeline (cycle numbers relative to the broadcaster's issue ``b`` of a column)::

    b      issue accepted (FIFO counter + 1), pointer rows j, j+1 read (even/odd banks)  [Fetch]
    b+1    the pointer rows registered
    b+2    queue entry written: {act, first window's bank addresses, skip, length, flags},
           or the column dropped if this PE holds nothing of it (pointer flags: empty);
           when the fetcher has caught up with the FIFO it issues the segment's first
           32-bit read now (bypass; words w, w+1: even/odd banks)
    b+3    the window aligned (only the segment's own bits [start, end)) and registered
    b+4    the window lands in the bit buffer
    b+5    decoder may start the column: pop the FIFO entry (FIFO counter - 1)           [Decode]
    D      decode: top Lmax buffer bits vs. limit[] -> one-hot length; consume it
    D+1    symbol index = selected code bits + offset; range check; symbol memory read
    D+2    symbol registered (``p.bram_out_regs``; without it the stages below move up one)
    D+3    symbol -> (z, w), pos, row check, codebook read                               [MAC]
    D+4    product = codebook * act; accumulator read (transparent to the write below)
    D+5    accumulator read registered (``p.bram_out_regs``)
    D+6    accumulator write

So a column starts at ``max(b + 5, end of the previous column)`` and takes
``entries`` cycles, or is dropped at b+2 if the PE holds none of it (its FIFO
slot free at b+3: the cycle model's ``drop_free``); the accumulator of its last entry is written 6
cycles after its last decode cycle, 4 without ``p.bram_out_regs`` (the cycle
model's ``issue_latency`` 5 and ``drain``: ``EngineParams.drain``). The PE adds no logic of its own: its latency is the blocks'
(:mod:`hdl.fetch`, :mod:`hdl.decode`, :mod:`hdl.mac`); its ``status`` is the
decoder's (which sees the FIFO's ``pending`` columns).

**Corrupt streams** set ``status.error`` (sticky until ``clear``): no code length
matches, a code crosses the column end, a symbol index past the layer's
symbols, a row past the PE's rows (for a real weight), or a column whose end
pointer is below its start. Every decode consumes at least one bit of a
finite segment, so a corrupt stream cannot make a column run forever.
"""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out, connect

from .decode import Decode
from .fetch import Fetch
from .layouts import PELoadSignature, StatusSignature, TailSignature, issue_layout, layer_layout
from .mac import MAC
from .params import EngineParams


class PE(wiring.Component):
    """One processing element (see the module docstring for the pipeline).

    Ports:
      * ``issue`` (stream in): the broadcast ``{col, act}``; ``ready`` = FIFO room.
      * ``cfg``: the current layer's descriptor (registered by the sequencer).
      * ``clear``: drop all in-flight work and the sticky flags (abort / next inference).
      * ``status`` (:func:`~hdl.layouts.StatusSignature`): ``busy`` (FIFO, decoder or MAC
        pipeline not empty), ``error`` (corrupt stream, sticky), ``starve`` (debug, sticky).
      * ``tail`` (:func:`~hdl.layouts.TailSignature`, driven by the sequencer): read local row
        ``addr``; one cycle later ``sum`` = accumulator + bias and ``gt`` = ``sum > best``
        (the running argmax); ``clear`` zeroes the row in the following cycle.
      * ``load`` (with ``p.loadable_streams``; :func:`~hdl.layouts.PELoadSignature`): the
        runtime loader's 16-bit stream words (written only while the engine is idle).
    """

    def __init__(self, p: EngineParams, index: int, *, stream_even=None, stream_odd=None,
                 ptr_even=None, ptr_odd=None, ptr_flags=None, bias=None, codebook=None, symbols=None):
        self.p = p
        self.index = index
        self._init = dict(stream_even=stream_even or [], stream_odd=stream_odd or [],
                          ptr_even=ptr_even or [], ptr_odd=ptr_odd or [], bias=bias or [],
                          ptr_flags=ptr_flags or [], codebook=codebook or [],
                          symbols=symbols or [])
        loader = {"load": In(PELoadSignature(p))} if p.loadable_streams else {}
        super().__init__({
            **loader,
            "issue": In(stream.Signature(issue_layout(p))),
            "cfg": In(layer_layout(p)),
            "clear": In(1),
            "status": Out(StatusSignature()),
            "tail": In(TailSignature(p)),
            "start": In(1),  # the broadcaster starts a scan this cycle (two decode contexts only)
        })

    def elaborate(self, platform):
        m = Module()
        p, init = self.p, self._init
        m.submodules.fetch = fetch = Fetch(p, stream_even=init["stream_even"], stream_odd=init["stream_odd"],
                                           ptr_even=init["ptr_even"], ptr_odd=init["ptr_odd"],
                                           ptr_flags=init["ptr_flags"])
        m.submodules.decode = dec = Decode(p, symbols=init["symbols"])
        m.submodules.mac = mac = MAC(p, self.index, bias=init["bias"], codebook=init["codebook"])

        connect(m, wiring.flipped(self.issue), fetch.issue)
        if p.loadable_streams:
            connect(m, wiring.flipped(self.load), fetch.load)
        connect(m, fetch.col, dec.col)
        connect(m, fetch.bits, dec.bits)
        connect(m, dec.sym, mac.sym)
        connect(m, wiring.flipped(self.tail), mac.tail)
        connect(m, dec.status, wiring.flipped(self.status))
        for block in (fetch, dec, mac):  # the descriptor and the abort reach every block
            m.d.comb += [block.cfg.eq(self.cfg), block.clear.eq(self.clear)]
        if p.contexts == 2:
            # which context is in the decode loop's first stage: they alternate every cycle, and
            # a scan's first slot (2 cycles after the broadcaster's start for an fc layer, 3 for a
            # conv position) is context 0's. Between scans both contexts are idle and empty, so
            # naming them anew costs nothing
            phase = Signal()
            m.d.sync += phase.eq(~phase)
            with m.If(self.start):
                m.d.sync += phase.eq(~self.cfg.conv if p.conv else 1)
            m.d.comb += [fetch.phase.eq(phase), dec.phase.eq(phase), fetch.start.eq(self.start)]
        return m
