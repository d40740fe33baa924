#!/usr/bin/env python3
"""A compile cache for Verilator's run-time library (the ``OBJCACHE`` of verilated.mk).

Every Verilator build compiles the same run-time sources (``verilated.cpp``,
``verilated_vpi.cpp``, ``verilated_threads.cpp``, ``verilated_dpi.cpp``:
about 9 s at -O0, more at -O1) next to the model; the test suite makes some
twenty builds. verilated.mk prefixes every compile with ``$(OBJCACHE)``:
sim.runner sets it to this script, which serves a run-time object from the
cache when one was compiled before with the same command line, compiler and
source, and otherwise compiles it and stores the result. Model sources (the
generated ``Vtop*.cpp``, cocotb's ``verilator.cpp``, which includes the
model's header) pass straight through to the compiler.

Usage (by make): ``objcache.py CXX ARGS... -c -o OUT SRC``. The cache lives in
``$DEEPCOMP_OBJCACHE`` (set by sim.runner, which runs it with its own Python,
so the project is importable: a cached object is written with
:func:`compressor.contract.binfmt.atomic_write`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path


def _key(argv: list[str], src: Path, out_index: int) -> str:
    """Hash of what decides the object: the command (without the output path), compiler and source."""
    h = hashlib.sha256()
    for i, a in enumerate(argv):
        if i != out_index:
            h.update(a.encode() + b"\0")
    cxx = shutil.which(argv[0]) or argv[0]
    st = os.stat(cxx)
    h.update(f"{os.path.realpath(cxx)}:{st.st_size}:{st.st_mtime_ns}".encode())
    h.update(src.read_bytes())
    return h.hexdigest()[:24]


def main(argv: list[str]) -> int:
    cache, root = os.environ.get("DEEPCOMP_OBJCACHE"), os.environ.get("VERILATOR_ROOT")
    try:
        out_index = argv.index("-o") + 1
        src = Path(argv[-1]).resolve()
    except ValueError:
        out_index, src = -1, Path()
    runtime = (cache and root and out_index > 0 and src.suffix == ".cpp"
               and src.is_relative_to(Path(root).resolve() / "include"))
    if not runtime:
        return subprocess.call(argv)
    from compressor.contract.binfmt import atomic_write  # only here: numpy, for 4 compiles a build

    out = Path(argv[out_index])
    hit = Path(cache) / f"{src.stem}-{_key(argv, src, out_index)}.o"
    if not hit.is_file():
        rc = subprocess.call(argv)
        if rc != 0:
            return rc
        atomic_write(hit, out.read_bytes())  # a concurrent build sees a whole object or none
        return 0
    atomic_write(out, hit.read_bytes())
    return 0

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
