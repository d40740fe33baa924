"""``deepcomp`` command line: one console script, one subcommand per stage.

The subcommands are the :class:`~compressor.contract.cli.Command` objects
listed under the ``deepcomp.commands`` entry point group of
``pyproject.toml`` (each package's ``cli`` module defines its own). Every
:class:`DeepcompError` becomes a single ``deepcomp: ...`` line on stderr and
exit status 2: no tracebacks for problems the user can fix.
"""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import entry_points

from .contract.cli import Command, HelpFormatter
from .contract.errors import DeepcompError

GROUP = "deepcomp.commands"


def load_commands() -> dict[str, Command]:
    """Every registered subcommand, in the order ``pyproject.toml`` lists them."""
    found: dict[str, Command] = {}
    for ep in entry_points(group=GROUP):
        try:
            cmd = ep.load()
        except ImportError as e:
            raise DeepcompError(f"command {ep.name} ({ep.value}): cannot import {e.name or e}") from None
        if not isinstance(cmd, Command):
            raise DeepcompError(f"command {ep.name} ({ep.value}): not a deepcomp Command")
        found.setdefault(ep.name, cmd)
    if not found:
        raise DeepcompError(f"no commands registered under '{GROUP}': install the package (pip install -e .)")
    return found


def build_parser(commands: dict[str, Command] | None = None) -> argparse.ArgumentParser:
    commands = load_commands() if commands is None else commands
    parser = argparse.ArgumentParser(
        prog="deepcomp", description="Deep Compression to a ROM image, and the accelerator that runs it.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, cmd in commands.items():
        p = sub.add_parser(name, help=cmd.help, description=cmd.help, formatter_class=HelpFormatter)
        cmd.add_args(p)
        p.set_defaults(run=cmd.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return int(args.run(args) or 0)
    except DeepcompError as e:
        print(f"deepcomp: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("deepcomp: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
