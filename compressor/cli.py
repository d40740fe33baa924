"""``deepcomp`` command line: one console script, one subcommand per stage.

The subcommands are the :class:`~compressor.contract.cli.Command` objects
listed under the ``deepcomp.commands`` entry point group of
``pyproject.toml`` (each package's ``cli`` module defines its own). Every
:class:`DeepcompError` becomes a single ``deepcomp: ...`` line on stderr and
exit status 2: no tracebacks for problems the user can fix.

The import names ``compressor``, ``hdl``, ``sim`` and ``boards`` are common
words: a user's own ``sim/`` folder ahead on ``sys.path`` would shadow ours.
Start-up checks where each resolves (without importing it) and turns a
foreign one into a one-line error for the commands that need it, instead of
letting those commands vanish from the parser.
"""

from __future__ import annotations

import argparse
import signal
import sys
from importlib import metadata, util
from pathlib import Path

# Only the standard library at import time: a Ctrl-C while the console script starts
# lands in main()'s handler, not in a traceback. The project's modules are imported there.

GROUP = "deepcomp.commands"
DIST = "deepcomp-fpga"
PACKAGES = ("compressor", "hdl", "sim", "boards")
ROOT = Path(__file__).resolve().parents[1]


def version() -> str:
    try:
        return metadata.version(DIST)
    except metadata.PackageNotFoundError:
        return "unknown (not installed: pip install -e .)"


def _error(msg: str) -> Exception:
    from .contract.errors import DeepcompError

    return DeepcompError(msg)


def foreign_package(name: str) -> str | None:
    """Why top-level package ``name`` is not this distribution's own, or None if it is."""
    try:
        spec = util.find_spec(name)
    except (ImportError, ValueError):
        spec = None
    ours = ROOT / name / "__init__.py"
    if spec is None or spec.origin is None:
        where = list(spec.submodule_search_locations or []) if spec else []
        return f"package '{name}' is missing" + (f" (a folder without __init__.py at {where[0]} shadows it)"
                                                 if where else f" (expected {ours.parent})")
    if Path(spec.origin).resolve() != ours:
        return (f"package '{name}' resolves to {Path(spec.origin).parent}, not {DIST}'s {ours.parent} "
                "(a folder of that name ahead on sys.path shadows it: rename it or run from elsewhere)")
    return None


class _Unavailable:
    """Stands in for a command whose package is shadowed: listed in --help, one error line if run."""

    def __init__(self, why: str) -> None:
        self.help = f"(unavailable: {why.split(' (')[0]})"
        self.why = why

    def add_args(self, p: argparse.ArgumentParser) -> None:
        pass

    def run(self, args: argparse.Namespace) -> int:
        raise _error(f"{args.command}: {self.why}")


def load_commands() -> dict:
    """Every registered subcommand (name -> Command), in the order the package metadata lists them."""
    from .contract.cli import Command

    found: dict = {}
    shadowed = {name: why for name in PACKAGES if (why := foreign_package(name))}
    for ep in entry_points():
        top = ep.value.split(".")[0].split(":")[0]
        if top in shadowed:
            found.setdefault(ep.name, _Unavailable(shadowed[top]))
            continue
        try:
            cmd = ep.load()
        except ImportError as e:
            found.setdefault(ep.name, _Unavailable(f"cannot import {e.name or e} for {ep.value}"))
            continue
        if not isinstance(cmd, Command):
            raise _error(f"command {ep.name} ({ep.value}): not a deepcomp Command")
        found.setdefault(ep.name, cmd)
    if not found:
        raise _error(f"no commands registered under '{GROUP}': install the package (pip install -e .)")
    return found


def entry_points() -> list[metadata.EntryPoint]:
    return list(metadata.entry_points(group=GROUP))


def build_parser(commands: dict | None = None) -> argparse.ArgumentParser:
    from .contract.cli import HelpFormatter, Parser

    commands = load_commands() if commands is None else commands
    parser = Parser(
        prog="deepcomp",
        description=f"Deep Compression to a ROM image, and the accelerator that runs it ({DIST}).")
    parser.add_argument("--version", action="version", version=f"deepcomp ({DIST}) {version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    for name, cmd in commands.items():
        p = sub.add_parser(name, help=cmd.help, description=cmd.help, formatter_class=HelpFormatter)
        cmd.add_args(p)
        p.set_defaults(run=cmd.run)
    return parser


class Terminated(BaseException):
    """SIGTERM/SIGHUP, raised in the main thread so ``finally`` blocks remove temporary files."""


def _terminate(signum, frame) -> None:
    raise Terminated(signum)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    chosen = next((a for a in argv if not a.startswith("-")), None)
    try:
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, _terminate)
        from .contract.errors import DeepcompError
    except KeyboardInterrupt:
        print("deepcomp: interrupted", file=sys.stderr)
        return 130
    try:
        commands = load_commands()
        if isinstance(commands.get(chosen), _Unavailable):  # before argparse sees its options
            raise DeepcompError(f"{chosen}: {commands[chosen].why}")
        args = build_parser(commands).parse_args(argv)
        return int(args.run(args) or 0)
    except DeepcompError as e:
        print(f"deepcomp: {e}", file=sys.stderr)
        return 2
    except Terminated as t:
        print("deepcomp: terminated", file=sys.stderr)
        return 128 + int(t.args[0])
    except ModuleNotFoundError as e:
        if e.name != "torch":
            raise
        print(f"deepcomp: {chosen}: needs PyTorch, which is not installed "
              f"(pip install '{DIST}[torch]', or a torch of your own)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("deepcomp: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
