"""Long fuzz run of the ROM reader and golden decoder.

    .venv/bin/python benchmarks/fuzz_rom.py [--cases 50000] [--seed 0]

Truncates, bit-flips and byte-overwrites a ROM image, re-seals the CRC (so
the damage reaches the parser and the decoder instead of stopping at the
checksum) and checks that every case is either accepted or rejected with a
FormatError naming the file — never another exception, never a hang (the
slowest case is reported). Writes benchmarks/results/fuzz_rom.json.
"""

from __future__ import annotations

import argparse
import json
import struct
import time
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
from tqdm import tqdm

from compressor.contract.errors import FormatError
from compressor.contract.golden import decode_rom, infer
from compressor.contract.rom import build, parse
from sim.testnets import extreme_net

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=50000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    image = build(extreme_net(np.random.default_rng(7)), 3, max_len=9)
    body0 = image[:-4]
    outcome: Counter = Counter()
    slowest = 0.0
    for _ in tqdm(range(args.cases), unit="case", disable=None):
        body = bytearray(body0)
        kind = rng.choice(["flip", "truncate", "bytes"])
        if kind == "truncate":
            body = body[: rng.integers(0, len(body))]
        else:
            for _ in range(rng.integers(1, 9)):
                i = int(rng.integers(0, len(body)))
                body[i] = body[i] ^ (1 << int(rng.integers(0, 8))) if kind == "flip" else int(rng.integers(0, 256))
        data = bytes(body) + struct.pack("<I", zlib.crc32(body))
        t0 = time.perf_counter()
        try:
            rom = parse(data, "fuzz.rom")
            infer(decode_rom(rom, "fuzz.rom"), np.full((1, rom.input_size), 3))
            outcome["accepted"] += 1
        except FormatError as e:
            assert "fuzz.rom" in str(e)
            outcome["rejected: " + str(e).split(": ", 1)[1].split(" (")[0][:60]] += 1
        slowest = max(slowest, time.perf_counter() - t0)
    res = {"cases": args.cases, "seed": args.seed, "image_bytes": len(image),
           "accepted": outcome["accepted"], "rejected": args.cases - outcome["accepted"],
           "unexpected_exceptions": 0, "slowest_case_s": round(slowest, 4),
           "top_rejections": dict(outcome.most_common(12)),
           "command": f".venv/bin/python benchmarks/fuzz_rom.py --cases {args.cases} --seed {args.seed}"}
    (RESULTS / "fuzz_rom.json").write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
