"""On-board throughput over the host link, measured on the simulated board (``deepcomp board sim``).

For each board: lay LeNet-300-100 (benchmarks/results/lenet300_mnist.dcz) out
for its PEs, start ``deepcomp board sim`` (the iCEBreaker with ``--flash``:
it boots the image from its simulated SPI flash, as after ``board flash
--rom``), and run ``deepcomp board infer`` -- the real host path, pyserial on
the pty -- over the first K MNIST test images, pipelined and not. Every class,
logit and cycle count is compared with ``deepcomp golden``. Throughput is in
the board's time: the simulator counts clock cycles from the first host byte
on rx to the last reply byte on tx (``--stats``), so it is what the board
would do at that clock and baud rate, whatever the simulator's own speed.
The link's bound is ``baud / 10 / (2 + 784)`` images/s (8N1; the INFER
command's bytes; replies travel the other way at the same time).

    .venv/bin/python benchmarks/board_link.py [--images 200] [--baud 3000000]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mnist_rom import MODELS, make_rom  # noqa: E402

BIN = str(Path(sys.executable).with_name("deepcomp"))
MODEL = MODELS["lenet300"]
OUT = ROOT / "benchmarks" / "results" / "board_link.json"
BOARDS = {"icebreaker": (1, 4, 4), "ulx3s": (4, 8, 6)}  # PEs, FIFO depth and drain of the build


def run(cmd: list, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))}: {r.stderr.strip()}")
    return r


def session(board: str, rom: Path, work: Path, baud: int, images: int, data_dir: Path, pipeline: bool) -> dict:
    """One ``board sim`` + one ``board infer``; the host's JSON plus the simulator's stats."""
    stats = work / f"{board}_{'pipe' if pipeline else 'serial'}_stats.json"
    stats.unlink(missing_ok=True)
    cmd = [BIN, "board", "sim", board, "--rom", rom, "--baud", baud, "--stats", stats,
           "--build-dir", work / "cache"] + (["--flash"] if board == "icebreaker" else [])
    sim = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.PIPE, text=True)
    try:
        line = sim.stdout.readline()
        if " on " not in line:
            raise SystemExit(f"board sim {board} did not start: {line!r}")
        port = line.split(" on ")[1].split()[0]
        t0 = time.perf_counter()
        host = json.loads(run([BIN, "board", "infer", "--port", port, "--baud", baud, "--dataset", "mnist",
                               "--data-dir", data_dir, "--images", images, "--json", "--logits",
                               "--timeout", 60] + ([] if pipeline else ["--no-pipeline"])).stdout)
        wall = time.perf_counter() - t0
    finally:
        sim.terminate()  # SIGTERM: a background job ignores SIGINT
        sim.wait(60)
    st = json.loads(stats.read_text())
    seconds = (st["last_out_cycle"] - st["first_in_cycle"]) / st["clk_hz"]
    return {"host": host, "stats": st, "board_seconds": seconds, "wall_seconds": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--baud", type=int, default=3_000_000)
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "mnist")
    ap.add_argument("--work", type=Path, default=ROOT / "build" / "board_link")
    ap.add_argument("--only", choices=list(BOARDS))
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    results = json.loads(OUT.read_text())["boards"] if OUT.exists() else {}
    bytes_per_image = 2 + 784
    bound = args.baud / 10 / bytes_per_image
    for board, (pes, fifo, drain) in BOARDS.items():
        if args.only and board != args.only:
            continue
        rom = args.work / f"lenet300_n{pes}.rom"
        make_rom(MODEL, pes, rom, args.data_dir)
        ref = json.loads(run([BIN, "golden", rom, "--dataset", "mnist", "--data-dir", args.data_dir,
                              "--images", args.images, "--json", "--logits", "--fifo-depth", fifo,
                              "--drain", drain]).stdout)
        res = {"pes": pes, "fifo_depth": fifo, "baud": args.baud, "images": args.images,
               "link_bound_images_per_s": round(bound, 1)}
        for pipeline in (True, False):
            s = session(board, rom, args.work, args.baud, args.images, args.data_dir, pipeline)
            h = s["host"]
            mism = sum(a != b or la != lb or ca != cb for a, b, la, lb, ca, cb in zip(
                h["predictions"], ref["predictions"], h["logits"], ref["logits"],
                h["cycles_each"], ref["cycles_each"], strict=True))
            rate = args.images / s["board_seconds"]
            res["pipelined" if pipeline else "one_at_a_time"] = {
                "mismatches": mism, "error": h["error"], "cycles_mean": h["cycles"],
                "board_images_per_s": round(rate, 1), "fraction_of_link_bound": round(rate / bound, 3),
                "clk_hz": s["stats"]["clk_hz"], "divisor": s["stats"]["divisor"],
                "frame_errors": s["stats"]["frame_errors"],
                "simulator_wall_seconds": round(s["wall_seconds"], 1)}
            print(f"{board} {'pipelined' if pipeline else 'one at a time'}: {rate:.1f} images/s on the board "
                  f"({rate / bound:.3f} of the link's {bound:.1f}), {mism} mismatches, "
                  f"{s['wall_seconds']:.0f} s of simulation", flush=True)
        results[board] = res
    out = {"command": "python benchmarks/board_link.py" + (f" --only {args.only}" if args.only else ""),
           "machine": platform.platform(), "old_link_115200_images_per_s": round(115200 / 10 / bytes_per_image, 1),
           "boards": results}
    OUT.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
