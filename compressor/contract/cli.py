"""What every ``deepcomp`` subcommand is made of, and the argument helpers they share.

A subcommand is a :class:`Command` object in its own package's ``cli``
module, listed in ``pyproject.toml`` under the ``deepcomp.commands`` entry
point group; the dispatcher (:mod:`compressor.cli`) finds them there, so no
package imports another to register itself and a third-party package can add
a command the same way. Command modules import only this layer at import
time (heavy imports such as torch or Amaranth go inside ``run``), so building
the parser for ``--help`` stays cheap.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .data import DATASETS


@dataclass(frozen=True)
class Command:
    """One subcommand: a one-line ``help``, its arguments and what it does (returns the exit code)."""

    help: str
    add_args: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` shows every option's default; options with none (required, off flags) say nothing."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False or action.required:
            return action.help
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """A usage error is one line, ``deepcomp <command>: <problem>``, and exit status 2."""

    def error(self, message: str):
        print(f"{self.prog}: {message}", file=sys.stderr)
        raise SystemExit(2)


def bounded(kind: type, lo: float | None = None, hi: float | None = None, *,
            above: bool = False) -> Callable[[str], float]:
    """An argparse type: ``kind`` (int or float), finite, within ``[lo, hi]`` (``(lo, hi]`` if ``above``).

    Options are checked when the command line is parsed, before any work starts.
    """
    def parse(s: str):
        try:
            v = kind(s)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'an integer' if kind is int else 'a number'}, got {s!r}") from None
        if isinstance(v, float) and not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"{s!r} is not a finite number")
        if (lo is not None and (v <= lo if above else v < lo)) or (hi is not None and v > hi):
            left = "" if lo is None else f"{lo:g} {'<' if above else '<='} "
            right = "" if hi is None else f" <= {hi:g}"
            raise argparse.ArgumentTypeError(f"{s} is out of range (need {left}x{right})")
        return v

    parse.__name__ = kind.__name__  # argparse names the type in some messages
    return parse


def listed(item: Callable[[str], float]) -> Callable[[str], list]:
    """A comma-separated list of ``item`` values (an argparse type)."""
    def parse(s: str) -> list:
        return [item(v) for v in s.split(",")]

    parse.__name__ = "list"
    return parse


floats = listed(bounded(float))
ints = listed(bounded(int))
PES = bounded(int, 1, 64)  # processing elements N (the ROM header's limit)
IMAGES = bounded(int, 1)  # "first K images"


def add_data_args(p: argparse.ArgumentParser, default: str | None = None) -> None:
    p.add_argument("--dataset", choices=DATASETS, default=default,
                   help="dataset" if default else "dataset (default: the one the model was trained on)")
    p.add_argument("--data-dir", type=Path, help="directory with MNIST-format IDX files")


def emit(args: argparse.Namespace, obj: dict, text: str) -> None:
    """Print ``obj`` as one JSON line under ``--json``, else the human-readable ``text``."""
    print(json.dumps(obj) if getattr(args, "json", False) else text)
