"""The console script as a stranger meets it: name and version, every command present, help
texts with defaults, no torch for hardware commands, and a shadowing folder named in one line."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {"train", "compress", "eval", "stats", "plot", "rom", "golden", "verilog", "sim", "board"}


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "compressor.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_version_names_the_distribution():
    from compressor.cli import DIST, version

    r = run("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"deepcomp ({DIST}) {version()}"
    assert DIST == "deepcomp-fpga" and version()[0].isdigit()


def test_python_m_lists_every_command():
    r = run("--help")
    assert r.returncode == 0, r.stderr
    listed = {line.split()[0] for line in r.stdout.splitlines() if line.startswith("    ") and line.split()}
    assert COMMANDS <= listed


def _actions(parser: argparse.ArgumentParser):
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            for sub in a.choices.values():
                yield from _actions(sub)
        elif a.option_strings and a.dest != "help":
            yield a


def test_every_option_has_help_and_its_default_shows():
    from compressor.cli import build_parser
    from compressor.contract.cli import HelpFormatter

    parser = build_parser()
    missing = [a.option_strings[0] for a in _actions(parser) if not a.help]
    assert not missing, f"options without help: {missing}"
    r = run("compress", "--help")
    assert "(default: 4)" in r.stdout and "(default: linear)" in r.stdout
    # required options and off flags say nothing about a default
    fmt = HelpFormatter("x")
    assert fmt._get_help_string(argparse.Action(["--o"], "o", required=True, help="h")) == "h"


def test_hardware_commands_start_without_torch():
    code = ("import sys\nfrom compressor.cli import main\n"
            "for cmd in ('verilog', 'sim', 'board', 'golden'):\n"
            "    try:\n        main([cmd, '--help'])\n    except SystemExit:\n        pass\n"
            "sys.exit(3 if 'torch' in sys.modules else 0)\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, "torch was imported" + r.stderr


@pytest.mark.parametrize("init", [True, False], ids=["package", "namespace"])
def test_a_shadowing_folder_is_named_in_one_line(tmp_path, init):
    (tmp_path / "sim").mkdir()
    if init:
        (tmp_path / "sim" / "__init__.py").write_text("")
    r = run("sim", "--rom", "x.rom", "--pes", "1", cwd=tmp_path)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("deepcomp: sim: package 'sim'")
    assert str(tmp_path / "sim") in r.stderr and "Traceback" not in r.stderr
    # the other commands are still there, and help lists the shadowed one as unavailable
    assert run("verilog", "--help", cwd=tmp_path).returncode == 0
    assert "unavailable" in run("--help", cwd=tmp_path).stdout
