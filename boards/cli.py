"""``deepcomp board ...``: bitstream build, flash, and on-board inference over UART (docs/boards.md)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from compressor.contract.binfmt import atomic_write_many, read_file
from compressor.contract.cli import IMAGES, PES, Command, add_data_args, bounded, emit
from compressor.contract.data import load_dataset
from compressor.contract.errors import DeepcompError

from .link import DEFAULT_BAUD as BAUD

BAUD_RATE = bounded(int, 1)
SEED = bounded(int, 0, 2**31 - 1)  # nextpnr --seed
BOARDS = ("ulx3s", "icebreaker")
# what each board's build writes and how its programmer is called (docs/boards.md)
BITSTREAM = {"ulx3s": "deepcomp.bit", "icebreaker": "deepcomp.bin"}
PROGRAMMER = {"ulx3s": ("OPENFPGALOADER", "openFPGALoader"), "icebreaker": ("ICEPROG", "iceprog")}


def add_board_args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="board_command", required=True, metavar="ACTION")
    inf = sub.add_parser("infer", formatter_class=p.formatter_class, help="classify test images on a connected board")
    inf.add_argument("--port", required=True, help="serial port of the board, e.g. /dev/ttyUSB1")
    inf.add_argument("--baud", type=BAUD_RATE, default=BAUD, help="UART baud rate (as built into the bitstream)")
    inf.add_argument("--rom", type=Path, help="ROM image to load first (the device checks its CRC)")
    add_data_args(inf, default="mnist")
    inf.add_argument("--images", type=IMAGES, default=100, help="first K test images")
    inf.add_argument("--timeout", type=bounded(float, 0.01), default=5.0,
                     help="seconds to wait for each reply before giving up")
    inf.add_argument("--no-pipeline", action="store_true",
                     help="wait for each reply before sending the next image")
    inf.add_argument("--logits", action="store_true", help="with --json: every image's logits and cycles")
    inf.add_argument("--json", action="store_true", help="print one JSON object")
    inf.set_defaults(board_run=run_infer)

    sim = sub.add_parser("sim", formatter_class=p.formatter_class,
                         help="run the board's core in Verilator on a pseudo-terminal (a device without the board)")
    sim.add_argument("board", choices=BOARDS, help="board whose core to simulate")
    sim.add_argument("--rom", type=Path, required=True, help="ROM image (bin, hex or mem) the bitstream is built for")
    sim.add_argument("--pes", type=PES, help="number of PEs N (checked against the image)")
    sim.add_argument("--freq", type=float, help="engine clock in MHz (default: as `board build`)")
    sim.add_argument("--baud", type=BAUD_RATE, default=BAUD, help="UART baud rate (built-in divisor and host side)")
    sim.add_argument("--flash", action="store_true",
                     help="icebreaker: the simulated SPI flash holds the image, as after `board flash --rom` "
                          "(default: blank flash, the device powers up not loaded)")
    sim.add_argument("--link", type=Path, help="also make this symlink to the pty (a stable port name)")
    sim.add_argument("--stats", type=Path, help="write the simulated link's statistics (JSON) here at exit "
                     "and on SIGUSR1")
    sim.add_argument("--build-dir", type=Path, help="Verilator build cache (default build/board_sim)")
    sim.set_defaults(board_run=run_sim)

    bld = sub.add_parser("build", formatter_class=p.formatter_class, help="build the board bitstream for a ROM image (YoWASP tools)")
    bld.add_argument("board", choices=BOARDS, help="target board")
    bld.add_argument("--rom", type=Path, required=True, help="ROM image (bin, hex or mem) baked into block RAM")
    bld.add_argument("--pes", type=PES, help="number of PEs N (checked against the image)")
    bld.add_argument("-o", "--out", type=Path, default=Path("build"), help="build directory")
    bld.add_argument("--freq", type=float, help="engine clock in MHz made by the board's PLL "
                     "(default: ulx3s 50, icebreaker 24)")
    bld.add_argument("--baud", type=BAUD_RATE, default=BAUD, help="UART baud rate of the host link")
    bld.add_argument("--seed", type=SEED, default=1, help="nextpnr placement seed")
    bld.add_argument("--contexts", type=int, choices=(1, 2), default=1,
                     help="decode contexts per PE: 2 cuts the decode loop in two stages, two columns in flight "
                          "(more clock for more logic; `deepcomp golden --contexts 2` gives its cycles)")
    bld.add_argument("--json", action="store_true", help="print one JSON object")
    bld.set_defaults(board_run=run_build)

    fl = sub.add_parser("flash", formatter_class=p.formatter_class, help="program the board with a built bitstream")
    fl.add_argument("board", choices=BOARDS, help="target board")
    fl.add_argument("build_dir", type=Path, help="directory given to `board build -o`")
    fl.add_argument("--flash", action="store_true", help="write the SPI flash instead of SRAM (survives power-off)")
    fl.add_argument("--rom", type=Path, help="icebreaker: also write this ROM image (the one built in) to the flash, "
                    "behind the bitstream; the board then boots loaded (implies --flash)")
    fl.set_defaults(board_run=run_flash)


def run_board(args: argparse.Namespace) -> int:
    return args.board_run(args)


def run_infer(args: argparse.Namespace) -> int:
    from .host import DeviceLink, classify, open_serial

    data = load_dataset(args.dataset, args.data_dir)
    image = read_file(args.rom) if args.rom else None
    x = data.test.images[: args.images]
    link = DeviceLink(open_serial(args.port, args.baud, args.timeout), args.port)
    info = link.connect()
    if image is not None:
        link.load(image)
    elif not info.loaded:
        raise DeepcompError(f"{args.port}: the device has no ROM image; pass --rom model.rom")
    size = int(np.prod(x.shape[1:]))
    if image is not None:
        info = link.ping()  # what the device holds now
    if size != info.max_input:
        raise DeepcompError(f"{args.port}: the device takes {info.max_input} inputs, {args.dataset} images "
                            f"have {size}")
    depth = 1 if args.no_pipeline else info.pipeline_depth(2 + size)
    res = classify(link, x, data.test.labels, depth=depth, progress=not args.json)
    res["port"], res["baud"] = args.port, args.baud
    if not args.logits:
        del res["logits"], res["cycles_each"]
    emit(args, res, f"{args.port}: {res['images']} images, error {100 * res['error']:.2f}%, "
         f"{res['images_per_s']:.1f} images/s ({depth} in flight), "
         f"{res['cycles']:.0f} cycles/inference on the device, {res['latency_ms']:.1f} ms per round trip")
    return 0


def run_sim(args: argparse.Namespace) -> int:
    import signal

    from compressor.contract.rom import read_image

    from . import boardsim, icebreaker

    image, _ = read_image(args.rom, args.pes)
    if args.flash and args.board != "icebreaker":
        raise DeepcompError(f"{args.board}: --flash: only the icebreaker boots from flash (the ulx3s "
                            "bitstream carries its ROM)")
    binary = boardsim.build(args.board, image, args.freq, args.baud, args.build_dir)
    flash = image if args.flash else (b"" if binary.boot else None)
    served = boardsim.Served(binary, args.stats, args.link, flash, icebreaker.FLASH_OFFSET)
    print(f"{args.board}: serving the board core on {served.port} ({binary.clk_hz / 1e6:g} MHz, "
          f"divisor {binary.divisor}, {args.baud} baud); Ctrl-C to stop", flush=True)
    # SIGTERM stops it like Ctrl-C: raised out of the wait (stopping the child inside a
    # handler would wait on the Popen the interrupted wait() holds the lock of)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        served.proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        served.stop()
    return 0


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def run_build(args: argparse.Namespace) -> int:
    from compressor.contract.rom import read_image

    from . import icebreaker, ulx3s

    if args.board == "icebreaker":
        freq = icebreaker.DEFAULT_MHZ if args.freq is None else args.freq
        if not 16 <= freq <= 275:
            raise DeepcompError(f"--freq {freq:g}: the iCE40 PLL makes 16..275 MHz")
        image, _ = read_image(args.rom, args.pes)
        icebreaker.engine_params(image, args.contexts)  # fails early (one line) if the image cannot fit
        rep = icebreaker.build(image, args.out, freq, args.baud, args.seed, args.contexts)
        cells = (f"{rep['luts']}/{rep['luts_available']} LC, {rep['bram']}/{rep['bram_available']} EBR, "
                 f"{rep['spram']}/{rep['spram_available']} SPRAM, {rep['dsp']}/{rep['dsp_available']} DSP")
    else:
        freq = ulx3s.DEFAULT_MHZ if args.freq is None else args.freq
        if not 3.125 <= freq <= 400:
            raise DeepcompError(f"--freq {freq:g}: the ULX3S PLL makes 3.125..400 MHz")
        image, _ = read_image(args.rom, args.pes)
        rep = ulx3s.build(image, args.out, freq, args.baud, args.seed, args.contexts)
        cells = (f"{rep['luts']}/{rep['luts_available']} LUT4, {rep['bram']}/{rep['bram_available']} DP16KD, "
                 f"{rep['dsp']}/{rep['dsp_available']} MULT18X18D")
    rep["rom"] = str(args.rom)
    # the report and the image also land beside the bitstream, so a build directory documents
    # itself and `board flash --rom` can check an image against it
    atomic_write_many(args.out, {"report.json": (json.dumps(rep, indent=1) + "\n").encode(),
                                 ROM_IN_BUILD: image})
    fmax = "n/a" if rep["fmax_mhz"] is None else f"{rep['fmax_mhz']:.1f} MHz"
    emit(args, rep, f"{rep['bitstream']}: {cells}, Fmax {fmax} vs target {rep['target_mhz']:g} MHz"
         f"{'' if rep['timing_met'] else ' (TIMING NOT MET: rebuild with a lower --freq)'}, "
         f"built in {rep['seconds']:.0f} s")
    return 0


ROM_IN_BUILD = "rom.bin"  # the image a build was made for, beside its bitstream


def flash_command(board: str, build_dir: Path, to_flash: bool = False) -> list[str]:
    """The programmer command line for ``board`` (raises DeepcompError if there is nothing to flash)."""
    import os

    bit = Path(build_dir) / BITSTREAM[board]
    if not bit.is_file():
        raise DeepcompError(f"{bit}: no bitstream; run `deepcomp board build {board} --rom ... -o {build_dir}`")
    var, default = PROGRAMMER[board]
    tool = os.environ.get(var, default)
    if board == "icebreaker":  # iceprog writes the flash by default; -S loads the FPGA's SRAM
        return [tool] + ([] if to_flash else ["-S"]) + [str(bit)]
    return [tool, "-b", "ulx3s"] + (["-f"] if to_flash else ["-m"]) + [str(bit)]


def rom_flash_command(build_dir: Path, rom: Path) -> list[str]:
    """iceprog writing ``rom`` behind the bitstream, after checking it is the image the build holds.

    Why the check: the bitstream carries the image's layout and CRC (block RAM
    contents, the boot length), so another image would boot as PARAM_MISMATCH.
    """
    import os

    from compressor.contract.rom import read_image

    from .device import image_crc
    from .icebreaker import FLASH_OFFSET

    built = Path(build_dir) / ROM_IN_BUILD
    if not built.is_file():
        raise DeepcompError(f"{built}: missing; rebuild with `deepcomp board build icebreaker --rom ... -o {build_dir}`")
    image, _ = read_image(rom)
    if image != built.read_bytes():
        raise DeepcompError(f"{rom}: not the image {build_dir} was built for (CRC32 {image_crc(image):08x}, "
                            f"the bitstream's {image_crc(built.read_bytes()):08x}): rebuild for it")
    var, default = PROGRAMMER["icebreaker"]
    return [os.environ.get(var, default), "-o", f"{FLASH_OFFSET // 1024}k", str(built)]


def run_flash(args: argparse.Namespace) -> int:
    import shutil
    import subprocess

    if args.rom is not None and args.board != "icebreaker":
        raise DeepcompError(f"{args.board}: --rom: the ulx3s bitstream carries its ROM; flash the bitstream alone")
    cmds = [flash_command(args.board, args.build_dir, args.flash or args.rom is not None)]
    if args.rom is not None:
        cmds.append(rom_flash_command(args.build_dir, args.rom))
    if shutil.which(cmds[0][0]) is None:
        var, default = PROGRAMMER[args.board]
        raise DeepcompError(f"{args.board}: programmer '{cmds[0][0]}' not found on PATH "
                            f"(install {default}, or set {var})")
    for cmd in cmds:
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            lines = [ln for ln in (r.stderr + r.stdout).splitlines() if ln.strip()]
            why = lines[-1].strip() if lines else f"exit status {r.returncode}"
            raise DeepcompError(f"{args.board}: {cmd[0]} failed (no board connected?): {why}")
        print(f"{args.board}: programmed {cmd[-1]}" + (f" at {cmd[2]}" if "-o" in cmd else ""))
    return 0


BOARD = Command("board flow: on-board inference over UART", add_board_args, run_board)
