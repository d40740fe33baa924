"""``deepcomp`` command line: one console script, one subcommand per stage.

Every :class:`DeepcompError` becomes a single ``deepcomp: ...`` line on stderr
and exit status 2: no tracebacks for problems the user can fix.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from .errors import DeepcompError

COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {}


def command(name: str, help: str):
    """Register ``add_args`` / ``run`` pairs; modules of later stages add their own."""

    def wrap(add_args):
        def reg(run):
            COMMANDS[name] = (help, add_args, run)
            return run
        return reg
    return wrap


def floats(s: str) -> list[float]:
    try:
        return [float(v) for v in s.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {s!r}") from None


def ints(s: str) -> list[int]:
    try:
        return [int(v) for v in s.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {s!r}") from None


def add_data_args(p: argparse.ArgumentParser, default: str | None = None) -> None:
    p.add_argument("--dataset", choices=["mnist", "digits"], default=default,
                   help="dataset (default: the one the model was trained on)")
    p.add_argument("--data-dir", type=Path, help="directory with MNIST-format IDX files")


def emit(args: argparse.Namespace, obj: dict, text: str) -> None:
    print(json.dumps(obj) if getattr(args, "json", False) else text)


def build_parser() -> argparse.ArgumentParser:
    from . import commands  # noqa: F401  (registers the compressor subcommands)

    for mod in ("compressor.rom_cli", "hdl.cli", "sim.cli", "boards.cli"):
        try:
            __import__(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:
                raise
    parser = argparse.ArgumentParser(prog="deepcomp", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_, add_args, run) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        add_args(p)
        p.set_defaults(run=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except DeepcompError as e:
        print(f"deepcomp: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("deepcomp: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
