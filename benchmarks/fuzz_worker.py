"""The worker subprocess of benchmarks/fuzz_formats.py: runs one chunk of cases and classifies them.

Started as ``fuzz_formats.py --worker --start A --stop B --seeds-file F``: it
loads the pickled seeds, caps its address space (RLIMIT_AS = its measured
baseline + 1.5 GiB), runs cases A ... B - 1 under tracemalloc and a SIGALRM
hard timeout, and writes progress lines (``P n``) and one result line
(``R {json}``: per-kind outcome counts, rejection reasons, the worst memory
and time, the first failures and warnings) to stdout.
"""

from __future__ import annotations

import json
import pickle
import re
import resource
import signal
import sys
import time
import traceback
import tracemalloc
import warnings
from collections import Counter
from pathlib import Path

from fuzz_cases import Seeds, make_case, run_case

from compressor.contract.errors import DeepcompError

MEM_BOUND = 1 << 30  # bytes
TIME_BOUND = 2.0  # seconds
HARD_TIMEOUT = 30  # seconds: a case still running is stopped and counted over the time bound
CAP_MARGIN = 3 << 29  # RLIMIT_AS = the worker's measured baseline + 1.5 GiB
OUTCOMES = ("accepted", "rejected", "bad_message", "unexpected", "over_memory", "over_time")


class CaseTimeout(BaseException):
    """Raised by SIGALRM when a case runs past HARD_TIMEOUT (a BaseException: no reader catches it)."""


def _alarm(signum, frame):
    raise CaseTimeout


def vm_size() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    return 0


def classify(case: dict, seed: int, timed: bool) -> dict:
    """Run one case; its outcome, peak traced memory, wall time and, when it went wrong, why."""
    rec = {"outcome": "accepted", "peak": 0, "time": 0.0, "read_time": 0.0}
    base = tracemalloc.get_traced_memory()[0] if timed else 0
    if timed:
        tracemalloc.reset_peak()
    signal.setitimer(signal.ITIMER_REAL, HARD_TIMEOUT)
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            rec["read_time"] = run_case(case, seed)
    except CaseTimeout:
        rec["outcome"] = "over_time"
        rec["error"] = f"still running after {HARD_TIMEOUT} s"
    except MemoryError:
        rec["outcome"] = "over_memory"
        rec["error"] = "MemoryError under RLIMIT_AS"
    except DeepcompError as e:
        msg = str(e)
        rec["outcome"] = "rejected"
        rec["message"] = msg
        if len(msg.splitlines()) != 1 or not msg.startswith(case["path"] + ": "):
            rec["outcome"] = "bad_message"
            rec["error"] = f"{type(e).__name__}: {msg!r}"
    except Exception as e:  # noqa: BLE001 -- anything else is what the fuzzer is looking for
        rec["outcome"] = "unexpected"
        rec["error"] = f"{type(e).__name__}: {e}"[:500]
        rec["traceback"] = traceback.format_exc()[-1500:]
    finally:
        rec["time"] = time.perf_counter() - t0
        signal.setitimer(signal.ITIMER_REAL, 0)
    if rec["outcome"] != "accepted":  # rejected (or stopped) while reading
        rec["read_time"] = rec["time"]
    # a warning is printed to stderr ahead of the one-line error or the result: counted, not an outcome
    rec["warnings"] = sorted({f"{w.category.__name__}: {w.message} ({Path(w.filename).name}:{w.lineno})"
                              for w in caught})
    if timed:
        rec["peak"] = max(0, tracemalloc.get_traced_memory()[1] - base)
    return rec


def norm_message(msg: str, path: str) -> str:
    """A rejection message without its path and numbers, to count rejection reasons."""
    msg = msg[len(path) + 2:] if msg.startswith(path + ": ") else msg
    return re.sub(r"\d+", "N", msg)[:80]


def run_chunk(seeds: Seeds, seed: int, start: int, stop: int, progress=None) -> dict:
    """Run cases ``start`` ... ``stop - 1``; the chunk's counts, extremes and failures."""
    counts: dict[str, dict[str, Counter]] = {}
    reasons: dict[str, Counter] = {}
    worst_mem = {"bytes": -1}
    worst_time = {"seconds": -1.0}
    failures: list[dict] = []
    warned: Counter = Counter()
    warned_cases: list[dict] = []
    for i in range(start, stop):
        case = make_case(seeds, seed, i)
        rec = classify(case, seed, timed=True)
        if rec["outcome"] != "over_time" and rec["time"] > TIME_BOUND:  # re-time without tracemalloc's overhead
            tracemalloc.stop()
            again = classify(case, seed, timed=False)
            tracemalloc.start()
            rec["time"], rec["read_time"] = again["time"], again["read_time"]
        if rec["outcome"] in ("accepted", "rejected") and rec["peak"] > MEM_BOUND:
            rec["outcome"], rec["error"] = "over_memory", f"tracemalloc peak {rec['peak']} bytes"
        if rec["outcome"] in ("accepted", "rejected") and rec["time"] > TIME_BOUND:
            rec["outcome"], rec["error"] = "over_time", f"{rec['time']:.2f} s"
        fmt, kind = case["format"], case["kind"]
        counts.setdefault(fmt, {}).setdefault(kind, Counter())[rec["outcome"]] += 1
        if rec["warnings"]:
            counts[fmt][kind]["warned"] += 1
            warned.update(rec["warnings"])
            if len(warned_cases) < 20:
                warned_cases.append({"case": i, "format": fmt, "kind": kind, "warnings": rec["warnings"],
                                     "repro": repro_command(seed, i)})
        if rec["outcome"] == "rejected":
            reasons.setdefault(fmt, Counter())[norm_message(rec["message"], case["path"])] += 1
        info = {"case": i, "format": fmt, "kind": kind, "seed_file": case["seed_file"],
                "file_bytes": len(case["data"])}
        if rec["peak"] > worst_mem["bytes"]:
            worst_mem = {"bytes": rec["peak"], **info}
        if rec["time"] > worst_time["seconds"]:
            worst_time = {"seconds": round(rec["time"], 4), "read_seconds": round(rec["read_time"], 4), **info}
        if rec["outcome"] not in ("accepted", "rejected") or (kind == "valid" and rec["outcome"] != "accepted"):
            if len(failures) < 20:
                failures.append({**info, "outcome": rec["outcome"], "error": rec.get("error", rec.get("message")),
                                 "traceback": rec.get("traceback"), "repro": repro_command(seed, i)})
        if progress is not None and (i - start) % 50 == 49:
            progress(50)
    if progress is not None:
        progress((stop - start) % 50)
    return {"counts": {f: {k: dict(c) for k, c in v.items()} for f, v in counts.items()},
            "reasons": {f: dict(c) for f, c in reasons.items()}, "max_memory": worst_mem,
            "max_time": worst_time, "failures": failures, "warnings": dict(warned), "warned_cases": warned_cases}


def repro_command(seed: int, i: int) -> str:
    return f".venv/bin/python benchmarks/fuzz_formats.py --seed {seed} --repro {i}"


def worker_main(args) -> None:
    with open(args.seeds_file, "rb") as f:
        seeds = Seeds(pickle.load(f))
    signal.signal(signal.SIGALRM, _alarm)
    tracemalloc.start()
    baseline = vm_size()
    cap = baseline + CAP_MARGIN
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    out = sys.stdout

    def progress(n: int) -> None:
        if n:
            out.write(f"P {n}\n")
            out.flush()

    res = run_chunk(seeds, args.seed, args.start, args.stop, progress)
    res["baseline_vm_bytes"], res["rlimit_as_bytes"] = baseline, cap
    out.write("R " + json.dumps(res) + "\n")
    out.flush()
