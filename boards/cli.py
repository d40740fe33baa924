"""``deepcomp board ...``: on-board inference over UART (build and flash join when the tops land)."""

from __future__ import annotations

import argparse
from pathlib import Path

from compressor.binfmt import read_file
from compressor.cli import add_data_args, command, emit
from compressor.data import load_dataset
from compressor.errors import DeepcompError

BAUD = 115200


def add_board_args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="board_command", required=True, metavar="ACTION")
    inf = sub.add_parser("infer", help="classify test images on a connected board")
    inf.add_argument("--port", required=True, help="serial port of the board, e.g. /dev/ttyUSB1")
    inf.add_argument("--baud", type=int, default=BAUD)
    inf.add_argument("--rom", type=Path, help="ROM image to load first (the device checks its CRC)")
    add_data_args(inf, default="mnist")
    inf.add_argument("--images", type=int, default=100)
    inf.add_argument("--json", action="store_true")
    inf.set_defaults(board_run=run_infer)


@command("board", "board flow: on-board inference over UART")(add_board_args)
def run_board(args: argparse.Namespace) -> int:
    return args.board_run(args)


def run_infer(args: argparse.Namespace) -> int:
    from .host import DeviceLink, classify, open_serial

    data = load_dataset(args.dataset, args.data_dir)
    image = read_file(args.rom) if args.rom else None
    link = DeviceLink(open_serial(args.port, args.baud), args.port)
    info = link.ping()
    if image is not None:
        link.load(image)
    elif not info.loaded:
        raise DeepcompError(f"{args.port}: the device has no ROM image; pass --rom model.rom")
    res = classify(link, data.test.images[: args.images], data.test.labels, progress=not args.json)
    res["port"] = args.port
    emit(args, res, f"{args.port}: {res['images']} images, error {100 * res['error']:.2f}%, "
         f"{res['cycles']:.0f} cycles/inference on the device, {res['latency_ms']:.1f} ms per image round trip")
    return 0
