"""Field-aware fuzzing of both readers: the ``.dcz`` container and the ROM image (bin, hex, mem).

    .venv/bin/python benchmarks/fuzz_formats.py [--cases 100000] [--workers 2] [--seed 0]
    .venv/bin/python benchmarks/fuzz_formats.py --seed 0 --repro CASE [--dump FILE]

Seeds are valid files built in-process (random sparse MLPs, a convolution,
extreme sparsity structure, ROM images of ``sim.testnets`` nets and of the
committed LeNet-300-100 at N = 1, 2, 3, 4, 8, a signed-input image, their
hex/mem text) plus the committed ``benchmarks/results/lenet*_mnist.dcz``.
Each case takes one seed and applies one mutation kind: a field of the
format (found by walking the ``.dcz`` byte structure, or at the ROM's
header / descriptor / region-table struct offsets and in the sections the
descriptors point to) set to boundary values, structural edits (duplicated,
dropped or swapped layer records, swapped sections and streams, merged
column pointers), or generic damage (bit flips, truncation, inserted and
deleted bytes, splices); then the trailing CRC32 is recomputed so the damage
reaches the parser rather than the checksum.

Per case: ``.dcz``: ``container.decode`` then ``stats.layer_stats``; ROM:
``rom.parse`` (after ``rom.from_readmemh`` for text), ``golden.decode_rom``
and ``golden.infer`` on two random input vectors. Outcomes: accepted;
rejected (a DeepcompError, whose message must be one line starting with the
file's path, else "bad_message"); unexpected (any other exception); over the
memory bound (tracemalloc peak > 1 GiB, or a MemoryError under the worker's
RLIMIT_AS cap); over the time bound (> 2 s wall, re-timed without
tracemalloc). Cases run in worker subprocesses, in chunks, so a crash loses
one chunk and is reported; case ``i`` depends only on ``--seed`` and ``i``.
Writes benchmarks/results/fuzz_formats.json (``--out``).

This file is the command-line driver: it builds and checks the seeds, runs
the chunks in worker subprocesses (this file again, with ``--worker``:
fuzz_worker), merges their counts and writes the JSON report. The parts:
fuzz_seeds (the valid seed files), fuzz_bytes (byte helpers, generic damage,
the CRC seal), fuzz_dcz (the ``.dcz`` field map and mutations), fuzz_rom (the
ROM image map and mutations), fuzz_romtext (hex/mem text mutations),
fuzz_cases (case ``i`` of a run and how it is read), fuzz_worker (one chunk).
They are imported as top-level modules: ``benchmarks/`` is on sys.path as the
directory of the script, in the worker subprocesses too.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shlex
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections import Counter
from pathlib import Path

from fuzz_cases import FORMATS, Seeds, make_case, run_case
from fuzz_seeds import RESULTS, ROOT, build_seeds
from fuzz_worker import HARD_TIMEOUT, MEM_BOUND, OUTCOMES, TIME_BOUND, classify, worker_main

from compressor.contract.errors import DeepcompError


def merge(total: dict, part: dict) -> None:
    for fmt, kinds in part["counts"].items():
        for kind, c in kinds.items():
            dst = total["counts"].setdefault(fmt, {}).setdefault(kind, Counter())
            dst.update(c)
    for fmt, c in part["reasons"].items():
        total["reasons"].setdefault(fmt, Counter()).update(c)
    if part["max_memory"]["bytes"] > total["max_memory"]["bytes"]:
        total["max_memory"] = part["max_memory"]
    if part["max_time"]["seconds"] > total["max_time"]["seconds"]:
        total["max_time"] = part["max_time"]
    total["failures"] += part["failures"]
    total["warnings"].update(part["warnings"])
    total["warned_cases"] += part["warned_cases"]
    for key in ("baseline_vm_bytes", "rlimit_as_bytes"):
        if key in part:
            total[key] = max(total.get(key, 0), part[key])


def run_workers(args, seeds_file: str, bar) -> dict:
    total = {"counts": {}, "reasons": {}, "max_memory": {"bytes": -1}, "max_time": {"seconds": -1.0},
             "failures": [], "crashed_chunks": [], "warnings": Counter(), "warned_cases": []}
    chunks = [(a, min(a + args.chunk, args.cases)) for a in range(0, args.cases, args.chunk)]
    lock = threading.Lock()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONHASHSEED": "0"}

    def slot() -> None:
        while True:
            with lock:
                if not chunks:
                    return
                start, stop = chunks.pop(0)
            cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--seed", str(args.seed),
                   "--start", str(start), "--stop", str(stop), "--seeds-file", seeds_file]
            with tempfile.TemporaryFile() as err:
                proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, env=env, text=True, cwd=ROOT)
                result, done = None, 0
                for line in proc.stdout:
                    if line.startswith("P "):
                        done += int(line[2:])
                        with lock:
                            bar.update(int(line[2:]))
                    elif line.startswith("R "):
                        result = json.loads(line[2:])
                rc = proc.wait()
                err.seek(0)
                tail = err.read().decode(errors="replace")[-2000:]
            with lock:
                if result is None or rc != 0:
                    bar.update(stop - start - done)
                    total["crashed_chunks"].append({"start": start, "stop": stop, "returncode": rc,
                                                    "cases_done_before_crash": done, "stderr_tail": tail})
                else:
                    merge(total, result)

    threads = [threading.Thread(target=slot) for _ in range(args.workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return total


def summarize(args, seeds: dict, total: dict, wall: float) -> dict:
    by_format = {}
    by_kind = {}
    for fmt in FORMATS:
        kinds = total["counts"].get(fmt, {})
        by_kind[fmt] = {k: {"cases": sum(kinds[k][o] for o in OUTCOMES), **{o: int(kinds[k][o]) for o in OUTCOMES},
                            "warned": int(kinds[k]["warned"])} for k in sorted(kinds)}
        by_format[fmt] = {c: sum(v[c] for v in by_kind[fmt].values()) for c in ("cases", *OUTCOMES, "warned")}
    totals = {o: sum(v[o] for v in by_format.values()) for o in (*OUTCOMES, "warned")}
    crashed = sum(c["stop"] - c["start"] for c in total["crashed_chunks"])
    totals["cases_run"] = sum(v["cases"] for v in by_format.values())
    totals["cases_lost_in_crashed_chunks"] = crashed
    totals["valid_seeds_not_accepted"] = sum(
        v["cases"] - v["accepted"] for fmt in FORMATS for k, v in by_kind[fmt].items() if k == "valid")
    failures = sorted(total["failures"], key=lambda f: f["case"])
    unexpected = [f for f in failures if f["outcome"] == "unexpected"]
    return {
        "command": " ".join([".venv/bin/python", "benchmarks/fuzz_formats.py", *map(shlex.quote, sys.argv[1:])]),
        "seed": args.seed, "cases": args.cases, "workers": args.workers, "chunk": args.chunk,
        "bounds": {"memory_bytes": MEM_BOUND, "time_s": TIME_BOUND, "hard_timeout_s": HARD_TIMEOUT,
                   "worker_baseline_vm_bytes": total.get("baseline_vm_bytes"),
                   "worker_rlimit_as_bytes": total.get("rlimit_as_bytes")},
        "seeds": {fmt: {k: len(v) for k, v in files.items()} for fmt, files in seeds.items()},
        "totals": totals,
        "by_format": by_format,
        "by_kind": by_kind,
        "max_peak_memory": total["max_memory"],
        "max_time": total["max_time"],
        "unexpected_exceptions": unexpected[:20],
        "other_failures": [f for f in failures if f["outcome"] != "unexpected"][:20],
        "warnings": {"cases": totals["warned"], "messages": dict(total["warnings"].most_common(20)),
                     "first_cases": sorted(total["warned_cases"], key=lambda w: w["case"])[:20]},
        "crashed_chunks": total["crashed_chunks"],
        "top_rejections": {fmt: dict(Counter(c).most_common(15)) for fmt, c in sorted(total["reasons"].items())},
        "wall_time_s": round(wall, 1),
    }


def print_table(res: dict) -> None:
    cols = ["cases", *OUTCOMES, "warned"]
    print(f"{'format':<10}" + "".join(f"{c:>13}" for c in cols))
    for fmt, row in [*res["by_format"].items(), ("total", {**res["totals"], "cases": res["totals"]["cases_run"]})]:
        print(f"{fmt:<10}" + "".join(f"{row[c]:>13}" for c in cols))
    m, t = res["max_peak_memory"], res["max_time"]
    print(f"max peak memory {m['bytes'] / 2**20:.1f} MiB (case {m.get('case')}, {m.get('format')} {m.get('kind')}); "
          f"max time {t['seconds']:.3f} s (case {t.get('case')}, {t.get('format')} {t.get('kind')}); "
          f"crashed chunks {len(res['crashed_chunks'])}; wall {res['wall_time_s']} s")


def repro(args) -> None:
    seeds = Seeds(build_seeds())
    case = make_case(seeds, args.seed, args.repro)
    print(f"case {args.repro}: {case['format']} {case['kind']} from {case['seed_file']}, {len(case['data'])} bytes")
    if args.dump:
        Path(args.dump).write_bytes(case["data"])
        print(f"wrote {args.dump}")
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        run_case(case, args.seed)
        print("accepted")
    except DeepcompError as e:
        print(f"rejected: {e!r}")
    print(f"{time.perf_counter() - t0:.3f} s, tracemalloc peak {tracemalloc.get_traced_memory()[1] / 2**20:.1f} MiB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=int, default=100000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--chunk", type=int, default=2000, help="cases per worker subprocess")
    ap.add_argument("--out", type=Path, default=RESULTS / "fuzz_formats.json")
    ap.add_argument("--repro", type=int, metavar="CASE", help="re-run one case in this process, with its traceback")
    ap.add_argument("--dump", type=Path, help="with --repro: write the case's file here")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--start", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--stop", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--seeds-file", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker_main(args)
    if args.repro is not None:
        return repro(args)
    if args.cases < 1 or args.workers < 1 or args.chunk < 1:
        ap.error("--cases, --workers and --chunk must be positive")
    from tqdm import tqdm

    t0 = time.perf_counter()
    seeds = build_seeds()
    checked = Seeds(seeds)  # every seed must be a valid file
    for fmt, names in checked.names.items():
        for name in names:
            rec = classify({"case": 0, "format": fmt, "kind": "valid", "seed_file": name,
                            "data": seeds[fmt][name], "path": name}, args.seed, timed=False)
            if rec["outcome"] != "accepted":
                raise SystemExit(f"seed {fmt}/{name} is not accepted: {rec}")
    with tempfile.TemporaryDirectory() as tmp:
        seeds_file = str(Path(tmp) / "seeds.pkl")
        with open(seeds_file, "wb") as f:
            pickle.dump(seeds, f)
        with tqdm(total=args.cases, unit="case", disable=None, smoothing=0.05) as bar:
            total = run_workers(args, seeds_file, bar)
    res = summarize(args, seeds, total, time.perf_counter() - t0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1) + "\n")
    print_table(res)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
