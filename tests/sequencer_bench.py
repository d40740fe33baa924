"""The Sequencer's bench (tests/test_sequencer_unit.py): fake neighbours and the phase checks.

The fake broadcaster, PEs and requantizer observers, driven cycle by cycle in
Amaranth's simulator, and the checks of each phase against the cycle model
(``compressor.contract.golden.Timing``); the test module holds the scenarios.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from amaranth.sim import Simulator

from compressor.contract.golden import Timing
from compressor.contract.rom import build, parse
from hdl.engine import Sequencer, descriptor_fields
from hdl.layouts import layer_layout
from hdl.params import Contents, EngineParams, contents, fit
from sim.testnets import extreme_net

N = 3  # extreme_net's rows 40, 33, 10: in the tails of 40 and 10 rows some PEs have no row
T = Timing()
BC_PRIME = 2  # hdl/broadcast.py: `start` in cycle s reads group 0, the scan starts in s + 2
RQ_PIPE = 5  # hdl/requant.py: an input accepted in cycle t is written to its bank in t + 5
POISON = 0x2BADBEEF  # a fake PE's tail_sum when it was not read the cycle before


def s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >> 31 else v


@dataclass
class Plan:
    """What the fake neighbours do in one layer (cycles relative to the first scan slot)."""

    scan: int  # broadcaster: `done` rises in cycle f + scan
    busy: dict[int, list[tuple[int, int]]]  # PE -> busy windows [a, b)
    values: list[int]  # per row r: what the tail reads (accumulator + bias) of PE r mod N
    error: tuple[int, int] | None = None  # (PE, cycle): sticky error from then on


@dataclass
class Inference:
    x: list[int]
    plans: list[Plan] = field(default_factory=list)


@dataclass
class Rec:
    """Everything the sequencer drives in one cycle (and what the bench drove)."""

    t: int
    run: int
    start: int
    clear: int
    rd: int
    addr: int
    tclr: int
    rq: int
    tag: int
    tail: list[int]
    ld: int
    lda: int
    ldd: int
    fire_in: int
    beat: int
    ovalid: int
    oready: int
    odata: int
    olast: int
    cfg_bits: int


def setup_image(n: int = N) -> tuple[EngineParams, Contents]:
    rom = parse(build(extreme_net(np.random.default_rng(7)), n, max_len=10))
    p = fit(rom)
    return p, contents(rom, p)


def desc_bits(p: EngineParams, w) -> int:
    return layer_layout(p).const(descriptor_fields(w, p)).as_bits()


class Bench:
    """The Sequencer with fake neighbours; ``run`` returns the cycle trace and the result beats."""

    def __init__(self, p: EngineParams, c: Contents):
        self.p, self.c = p, c
        self.seq = Sequencer(p, c)
        self.bias = [[s32(v) for v in c.bias[q]] for q in range(p.n_pes)]

    def run(self, infs: list[Inference], *, valid=lambda t: True, stalls: list[int] | None = None,
            max_cycles: int = 5000):
        seq, p, n = self.seq, self.p, self.p.n_pes
        beats = [v for inf in infs for v in inf.x]
        trace: list[Rec] = []
        out: list[tuple[int, int, int]] = []  # (cycle, data, last)
        acc = [[0] * max(2, p.acc_depth) for _ in range(n)]
        acc_after: list[list[list[int]]] = []  # accumulators after each inference's last beat
        st = dict(done_at=None, windows=[], err_at={}, layer=0, tail=[POISON] * n, waited=0, k=0)

        async def tb(ctx):
            extra = 3
            for t in range(max_cycles):
                # the neighbours' flags one cycle ahead (a start or clear of this cycle aside:
                # the sequencer masks those itself)
                ctx.set(seq.bc_quiet, int(st["done_at"] is not None and t + 1 >= st["done_at"]))
                busy = 0
                for q, a, b in st["windows"]:
                    if a <= t + 1 < b:
                        busy |= 1 << q
                ctx.set(seq.pe_busy_next, busy)
                ctx.set(seq.pe_error_next, sum(1 << q for q, e in st["err_at"].items() if t + 1 >= e))
                tail = st["tail"]
                ctx.set(seq.tail_sum, tail)
                v = int(bool(beats) and valid(t))
                ctx.set(seq.i_act.valid, v)
                ctx.set(seq.i_act.payload, beats[0] if v else 0)
                ovalid = ctx.get(seq.o_res.valid)
                ready = 1
                if stalls is not None:  # hold ready low for stalls[b] cycles of beat b's valid
                    ready = int(ovalid and st["waited"] >= stalls[len(out) % len(stalls)])
                ctx.set(seq.o_res.ready, ready)

                o = ctx.get(seq.o_res.payload)
                cfg = ctx.get(seq.cfg)
                rec = Rec(t, ctx.get(seq.running), ctx.get(seq.bc_start), ctx.get(seq.clear),
                          ctx.get(seq.tail_rd), ctx.get(seq.tail_addr), ctx.get(seq.tail_clear),
                          ctx.get(seq.rq_en), ctx.get(seq.rq_tag), list(tail), ctx.get(seq.ld_en),
                          ctx.get(seq.ld_addr), ctx.get(seq.ld_data),
                          v & ctx.get(seq.i_act.ready), beats[0] if v else -1,
                          ovalid, ready, o.data, o.last, cfg.as_bits())
                trace.append(rec)

                # --- the neighbours' registers (what they see at the clock edge) -------------
                if rec.fire_in:
                    beats.pop(0)
                st["waited"] = st["waited"] + 1 if ovalid and not ready else 0
                if ovalid and ready:
                    out.append((t, o.data, o.last))
                    if o.last:
                        st["k"] += 1
                        acc_after.append([list(a) for a in acc])
                st["tail"] = [s32(acc[q][rec.addr] + self.bias[q][cfg.bias_base + rec.addr])
                              if rec.rd else POISON for q in range(n)]
                for q in range(n):
                    if rec.tclr >> q & 1:
                        acc[q][rec.addr] = 0
                if rec.clear:
                    st.update(done_at=None, windows=[], err_at={}, layer=0)
                if rec.start:
                    plan = infs[st["k"]].plans[st["layer"]]
                    w = self.c.layers[st["layer"]]
                    st["layer"] += 1
                    f = t + BC_PRIME
                    st["done_at"] = f + plan.scan
                    st["windows"] = [(q, f + a, f + b) for q, ws in plan.busy.items() for a, b in ws]
                    if plan.error is not None:
                        st["err_at"] = {plan.error[0]: f + plan.error[1]}
                    for r, val in enumerate(plan.values):
                        q, i = r % n, r // n
                        acc[q][i] += val - self.bias[q][w.bias_base + i]
                if st["k"] == len(infs):
                    extra -= 1
                    if extra == 0:
                        return
                await ctx.tick()
            raise AssertionError(f"no answer within {max_cycles} cycles")

        sim = Simulator(seq)
        sim.add_clock(1e-8)
        sim.add_testbench(tb)
        sim.run()
        return trace, out, acc_after


# --- expectations --------------------------------------------------------------------------


def first_idle(f: int, plan: Plan) -> int:
    """First cycle from the scan's end on with no PE busy: the sequencer's idle detection."""
    t = f + plan.scan
    while any(f + a <= t < f + b for ws in plan.busy.values() for a, b in ws):
        t += 1
    return t


def segments(trace: list[Rec], out) -> list[list[Rec]]:
    """The trace cut after each inference's final result beat."""
    ends = [t for t, _, last in out if last]
    segs, lo = [], 0
    for e in ends:
        segs.append(trace[lo: e + 1])
        lo = e + 1
    return segs


def check_load(seg: list[Rec], x: list[int], hdr_ok: bool) -> int:
    """Input beats go to bank j mod N, address j div N; return the cycle after the last beat."""
    fires = [r for r in seg if r.fire_in]
    assert [r.beat for r in fires] == x
    for j, r in enumerate(fires):
        assert (r.ld, r.lda, r.ldd) == ((1 << (j % N), j // N, x[j]) if hdr_ok else (0, r.lda, r.ldd))
    assert all(r.ld == 0 for r in seg if not r.fire_in)
    assert all(not r.run for r in seg if r.t <= fires[-1].t)
    return fires[-1].t + 1


def check_stream_rules(trace: list[Rec]) -> None:
    """o_res: once valid, valid and payload hold until the transfer."""
    for a, b in zip(trace, trace[1:], strict=False):
        if a.ovalid and not a.oready:
            assert (b.ovalid, b.odata, b.olast) == (1, a.odata, a.olast), f"cycle {b.t}"


def run_layers(seg: list[Rec], inf: Inference, p: EngineParams, c: Contents, s0: int,
               upto: int | None = None) -> int:
    """Check layers 0 .. upto-1 (all: the whole run) of a run starting at s0; return the next
    layer's first setup cycle or, after the last layer, the first cycle after the count stops."""
    by_t = {r.t: r for r in seg}
    all_pes = (1 << N) - 1
    s = s0
    rq_cycles: list[int] = []
    n_layers = len(c.layers) if upto is None else upto
    for li in range(n_layers):
        plan, w = inf.plans[li], c.layers[li]
        # setup: descriptor read, register, check + broadcaster start, group 0 load
        x = s + T.setup - BC_PRIME
        starts = [r.t for r in seg if r.start and s <= r.t]
        assert starts[0] == x, f"layer {li}: broadcaster started in {starts[0]}, expected {x}"
        assert by_t[x].cfg_bits == desc_bits(p, w), f"layer {li}: cfg is not the descriptor"
        f = s + T.setup
        idle = first_idle(f, plan)
        # nothing happens on the tail ports in the column phase
        for t in range(s, idle + 1):
            r = by_t[t]
            assert (r.rd, r.tclr, r.rq, r.clear) == (0, 0, 0, 0), f"layer {li}: cycle {t}"
            assert r.start == (t == x)
        if w.relu:
            k = math.ceil(w.rows / N)
            for i in range(k):
                r = by_t[idle + 1 + i]  # row reads in lock-step, clearing
                assert (r.rd, r.addr, r.tclr, r.start) == (1, i, all_pes, 0), f"layer {li} row {i}"
                r = by_t[idle + 2 + i]  # the requantizers take the sum one cycle later
                mask = sum(1 << q for q in range(N) if i * N + q < w.rows)
                assert (r.rq, r.tag) == (mask, i), f"layer {li} row {i}: rq_en/tag"
                got = [r.tail[q] for q in range(N) if mask >> q & 1]
                assert got == [plan.values[i * N + q] for q in range(N) if mask >> q & 1]
            rq_cycles += range(idle + 2, idle + k + 2)
            nxt = idle + k + T.requant_latency
            for t in range(idle + k + 1, nxt):
                r = by_t[t]
                assert (r.rd, r.tclr, r.start, r.clear) == (0, 0, 0, 0), f"layer {li}: cycle {t}"
            # the last requantizer write lands before the next layer's broadcaster reads group 0
            assert idle + k + 1 + RQ_PIPE < nxt + T.setup - BC_PRIME
            s = nxt
        else:
            for rr in range(w.rows):  # read-out: one row per cycle, not cleared yet
                r = by_t[idle + 1 + rr]
                assert (r.rd, r.addr, r.tclr, r.rq) == (1, rr // N, 0, 0), f"read-out row {rr}"
            s = idle + w.rows + T.readout_latency
            assert all(not r.rd for r in seg if idle + w.rows < r.t < s)
    # the requantizers are enabled in the hidden tails' cycles above and never otherwise
    assert [r.t for r in seg if r.rq and s0 <= r.t < s] == rq_cycles
    return s


def check_ok(seg: list[Rec], beats: list[tuple[int, int, int]], acc_after, inf: Inference,
             p: EngineParams, c: Contents) -> None:
    s0 = check_load(seg, inf.x, True)
    end = run_layers(seg, inf, p, c, s0)
    assert [r.t for r in seg if r.run] == list(range(s0, end))
    assert all(not r.clear for r in seg if r.t >= s0)
    logits = inf.plans[-1].values
    cls = min(r for r in range(len(logits)) if logits[r] == max(logits))  # lowest index wins ties
    assert [d for _, d, _ in beats] == [cls, end - s0] + [v & 0xFFFFFFFF for v in logits]
    assert [last for _, _, last in beats] == [0] * (len(beats) - 1) + [1]
    assert beats[0][0] >= end
    assert next(r.t for r in seg if r.ovalid) == end  # the status is offered as the count stops
    # the result stream reads every logit again, clearing it: PE r mod N, local row r div N
    rd = [(r.addr, r.tclr) for r in seg if r.rd and r.t >= end]
    assert rd == [(i // N, 1 << (i % N)) for i in range(len(logits))]
    assert all(r.tclr == 0 for r in seg if not r.rd and r.t >= end)
    assert acc_after == [[0] * max(2, p.acc_depth)] * N  # every accumulator left at zero


def check_abort(seg: list[Rec], beats, acc_after, e: int, code: int, cycles: int,
                p: EngineParams) -> None:
    """An error seen in cycle e: clear (1 cycle), every accumulator zeroed (acc_depth cycles),
    status and cycle count, `last` on the count."""
    depth = max(2, p.acc_depth)
    by_t = {r.t: r for r in seg}
    assert by_t[e + 1].clear == 1
    for i in range(depth):
        r = by_t[e + 2 + i]
        assert (r.clear, r.rd, r.addr, r.tclr) == (0, 0, i, (1 << N) - 1), f"clearing row {i}"
    status = e + 2 + depth
    assert next(r.t for r in seg if r.ovalid) == status
    assert [(d, last) for _, d, last in beats] == [(code << 16, 0), (cycles, 1)]
    assert all((r.start, r.rq, r.rd, r.run) == (0, 0, 0, 0) for r in seg if r.t > e)
    assert sum(r.run for r in seg) == cycles
    assert acc_after == [[0] * depth] * N
