"""What the wheel and the sdist carry (benchmarks/wheel_install.py installs and uses them).

The wheel: the four import packages and their contract layer, the bench API,
the console script, the command table, LICENSE, the distribution name — and
not the test suite or the benchmarks. The sdist: everything `make test` needs, conftest and helpers included.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    r = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return out


def test_wheel_contents(dist):
    wheel = next(dist.glob("deepcomp_fpga-*-py3-none-any.whl"))
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        info = next(n for n in names if n.endswith(".dist-info/METADATA"))
        meta = z.read(info).decode()
        eps = z.read(info.replace("METADATA", "entry_points.txt")).decode()
    for must in ("compressor/cli.py", "compressor/contract/rom.py", "compressor/contract/golden.py",
                 "hdl/top.py", "sim/runner.py", "sim/bench_engine.py", "boards/cli.py"):
        assert must in names, must
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "Name: deepcomp-fpga" in meta and "License-Expression: MIT" in meta
    assert 'Provides-Extra: torch' in meta and "Requires-Dist: torch==2.13.0; extra == \"torch\"" in meta
    assert "deepcomp = compressor.cli:main" in eps and "[deepcomp.commands]" in eps
    assert eps.count(" = ") == 11  # the console script and the ten commands
    # the benches (sim/bench_*.py), the test nets and the board emulator ship on purpose: they
    # are the bench API a user's own block or host code is tested with (docs/architecture.md)
    assert {"sim/bench_pe.py", "sim/bench_board.py", "sim/testnets.py", "boards/emulator.py", "boards/boardsim.cpp"} <= names
    test_only = [n for n in names if n.startswith(("tests/", "benchmarks/"))]
    assert not test_only, test_only


def test_sdist_runs_its_tests(dist):
    sdist = next(dist.glob("deepcomp_fpga-*.tar.gz"))
    with tarfile.open(sdist) as t:
        names = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
    for must in ("tests/conftest.py", "tests/engine_checks.py", "tests/test_layers.py", "LICENSE",
                 "Makefile", "docs/format.md", "docs/architecture.md", "pyproject.toml",
                 "benchmarks/results/lenet300_mnist.dcz"):
        assert must in names, must
