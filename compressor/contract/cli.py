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
    p.add_argument("--dataset", choices=DATASETS, default=default,
                   help="dataset" if default else "dataset (default: the one the model was trained on)")
    p.add_argument("--data-dir", type=Path, help="directory with MNIST-format IDX files")


def emit(args: argparse.Namespace, obj: dict, text: str) -> None:
    """Print ``obj`` as one JSON line under ``--json``, else the human-readable ``text``."""
    print(json.dumps(obj) if getattr(args, "json", False) else text)
