"""The import graph is a layered DAG (docs/architecture.md), checked from the source.

Every ``import`` in every module, function-level ones included, is read with
``ast``; an arrow from a lower layer to a higher one, a cycle between
modules, or a forbidden third-party package in a layer fails the test, so the
layering cannot rot one lazy import at a time.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("compressor", "hdl", "sim", "boards")

# layer -> the project layers it may import (itself included)
ALLOWED = {
    "contract": {"contract"},
    "compressor": {"contract", "compressor"},
    "hdl": {"contract", "hdl"},
    "sim": {"contract", "hdl", "sim"},
    "boards": {"contract", "hdl", "sim", "boards"},
}
# third-party packages a layer must never import (torch only in the compressor layer)
FORBIDDEN = {
    "contract": {"torch", "amaranth", "cocotb", "cocotb_tools", "serial", "matplotlib"},
    "compressor": {"amaranth", "cocotb", "cocotb_tools", "serial"},
    "hdl": {"torch", "cocotb", "cocotb_tools", "serial", "matplotlib"},
    "sim": {"torch", "serial", "matplotlib"},
    "boards": {"torch", "matplotlib"},
}


def layer_of(module: str) -> str:
    if module == "compressor.contract" or module.startswith("compressor.contract."):
        return "contract"
    return module.split(".")[0]


def modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            name = ".".join(rel.parts)
            out[name.removesuffix(".__init__")] = path
    return out


def imports(name: str, path: Path) -> set[str]:
    """Absolute names of everything ``path`` imports (relative imports resolved)."""
    is_pkg = path.name == "__init__.py"
    base = name.split(".") if is_pkg else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parent = base[: len(base) - node.level + 1]
                mod = ".".join(parent + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.add(mod)
            found.update(f"{mod}.{a.name}" for a in node.names)  # `from pkg import module`
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: {m for m in imports(name, path) if m in mods and m != name}
            for name, path in mods.items()}


def test_every_package_is_found():
    mods = modules()
    assert {"compressor.contract.rom", "compressor.contract.golden", "hdl.top", "sim.runner",
            "boards.cli", "compressor.cli"} <= set(mods)


def test_no_upward_or_sideways_arrow():
    bad = [f"{src} -> {dst}" for src, dsts in graph().items() for dst in sorted(dsts)
           if layer_of(dst) not in ALLOWED[layer_of(src)]]
    assert not bad, "imports against the layering:\n" + "\n".join(bad)


def test_no_forbidden_third_party_package():
    bad = []
    for name, path in modules().items():
        for imp in imports(name, path):
            if imp.split(".")[0] in FORBIDDEN[layer_of(name)]:
                bad.append(f"{name} imports {imp}")
    assert not bad, "\n".join(sorted(set(bad)))


def test_no_import_cycle():
    g = graph()
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done

    def visit(node: str, stack: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(g[node]):
            # `import a.b` also runs package a's __init__, which is harmless unless it imports back
            if state.get(nxt) == 1:
                return stack + [node, nxt]
            if nxt not in state and (cycle := visit(nxt, stack + [node])):
                return cycle
        state[node] = 2
        return None

    for n in sorted(g):
        if n not in state and (cycle := visit(n, [])):
            pytest.fail("import cycle: " + " -> ".join(cycle[cycle.index(cycle[-1]):]))


def test_hardware_layers_do_not_load_torch():
    """Importing every module of the contract, hdl, sim and boards layers leaves torch unloaded."""
    names = sorted(n for n in modules() if layer_of(n) in ("contract", "hdl", "sim", "boards")
                   and not n.startswith("sim.bench_"))  # benches import cocotb's simulator hooks
    code = ("import sys\n" + "".join(f"import {n}\n" for n in names)
            + "sys.exit(3 if 'torch' in sys.modules else 0)\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr or "torch was imported"


def test_the_checker_sees_a_bad_arrow(tmp_path):
    """The walk itself: relative imports are resolved, and one out of the contract is flagged."""
    path = tmp_path / "x.py"
    path.write_text("from .rom import parse\n\ndef f():\n    from .. import models\n")
    got = imports("compressor.contract.x", path)
    assert {"compressor.contract.rom", "compressor.models"} <= got
    assert layer_of("compressor.models") not in ALLOWED["contract"]
    assert layer_of("compressor.contract.rom") in ALLOWED["contract"]
