"""sim/objcache.py: Verilator's run-time objects are compiled once per command line and source."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

from sim import objcache


def _fake_cxx(tmp: Path) -> Path:
    """A 'compiler' that writes its source's text to the -o file and counts its runs."""
    cxx = tmp / "cxx"
    cxx.write_text(f"#!{sys.executable}\n"
                   "import sys, pathlib\n"
                   "a = sys.argv[1:]\n"
                   "pathlib.Path(a[a.index('-o') + 1]).write_text(pathlib.Path(a[-1]).read_text())\n"
                   f"open({str(tmp / 'runs')!r}, 'a').write('x')\n")
    cxx.chmod(cxx.stat().st_mode | stat.S_IEXEC)
    return cxx


def test_runtime_objects_are_served_from_the_cache(tmp_path, monkeypatch):
    root = tmp_path / "verilator"
    (root / "include").mkdir(parents=True)
    src = root / "include" / "verilated.cpp"
    src.write_text("runtime v1")
    model = tmp_path / "Vtop.cpp"
    model.write_text("model")
    cxx = _fake_cxx(tmp_path)
    monkeypatch.setenv("VERILATOR_ROOT", str(root))
    monkeypatch.setenv("DEEPCOMP_OBJCACHE", str(tmp_path / "cache"))
    runs = lambda: len((tmp_path / "runs").read_text())  # noqa: E731

    def cc(source: Path, out: str, *flags: str) -> str:
        assert objcache.main([str(cxx), *flags, "-c", "-o", str(tmp_path / out), str(source)]) == 0
        return (tmp_path / out).read_text()

    assert cc(src, "a.o", "-O0") == "runtime v1" and runs() == 1
    assert cc(src, "b.o", "-O0") == "runtime v1" and runs() == 1  # a hit: no compile
    assert cc(src, "c.o", "-O1") == "runtime v1" and runs() == 2  # other flags: compiled
    src.write_text("runtime v2")
    assert cc(src, "d.o", "-O0") == "runtime v2" and runs() == 3  # other source: compiled
    assert cc(model, "m.o", "-O0") == "model" and cc(model, "n.o", "-O0") == "model"
    assert runs() == 5  # the model's sources always compile
    monkeypatch.setenv("DEEPCOMP_OBJCACHE", "")
    assert cc(src, "e.o", "-O0") == "runtime v2" and runs() == 6  # no cache: always compiled
    assert not any(p.suffix == ".tmp" for p in (tmp_path / "cache").iterdir())
