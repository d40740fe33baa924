"""Images/s against logic for both boards: the design at earlier revisions and today's.

    .venv/bin/python benchmarks/plot_boards.py [--before REV ...]   # default: c595614 and 8c70ef2

Reads benchmarks/results/board_builds.json as committed at each ``--before``
revision (``git show``) and as it is now (only the records that name their
RTL commit), takes the LeNet-300-100 records of every board:N:MHz[:seed]
build (L = 12), one context per PE and, as a series of its own, two (``--contexts 2``
records), and plots engine images/s at the nextpnr Fmax (golden cycles
over the 10,000 MNIST test images with the build's own FIFO depth and drain,
which the RTL matches) against LUT4 / logic cells, one marker per seed. Why
at Fmax and not at the PLL clock: the default clocks did not move, so the
clock the placement reaches is what the RTL change bought. Writes
docs/boards.png.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from mnist_rom import RESULTS, ROOT  # noqa: E402 (this directory is on sys.path)

SOURCE = "benchmarks/results/board_builds.json"


def points(doc: dict, tagged_only: bool = False, contexts: int = 1) -> dict[tuple[str, int], list[tuple[int, float]]]:
    """(board, N) -> [(LUTs, images/s at Fmax)] over the seeds of the L = 12 LeNet-300-100 builds
    with ``contexts`` decode contexts per PE (``tagged_only``: only records that name their RTL
    commit, i.e. built by today's script)."""
    out: dict[tuple[str, int], list[tuple[int, float]]] = {}
    for key, rec in doc.get("builds", {}).items():
        if "/" in key or ":L" in key or not rec.get("built") or (tagged_only and "rtl" not in rec):
            continue
        if rec.get("contexts", 1) != contexts:
            continue
        out.setdefault((rec["board"], rec["n_pes"]), []).append(
            (rec["luts"], rec["engine_images_per_s_at_fmax"]))
        CAPACITY[rec["board"]] = rec["luts_available"]
    return out


CAPACITY: dict[str, int] = {}  # the device's LUT4 / logic cells, from the records


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", action="append",
                    help="git revision of earlier results (repeatable; default: c595614, the start of the "
                         "lean-PE work, and 8c70ef2, its first round)")
    args = ap.parse_args()
    runs = {}
    for rev in args.before or ["c595614", "8c70ef2"]:
        old = subprocess.run(["git", "show", f"{rev}:{SOURCE}"], cwd=ROOT, capture_output=True, text=True)
        if old.returncode:
            print(f"plot_boards: {SOURCE} at {rev}: {old.stderr.strip()}", file=sys.stderr)
            return 2
        runs[rev] = points(json.loads(old.stdout))
    # now: only the records built from a named RTL commit (older ones stay in the file, keyed alike)
    now = json.loads((RESULTS / "board_builds.json").read_text())
    runs["now"] = points(now, tagged_only=True)
    runs["now, two decode contexts"] = points(now, tagged_only=True, contexts=2)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, board, title in ((axes[0], "icebreaker", "iCEBreaker (iCE40UP5K)"), (axes[1], "ulx3s", "ULX3S (ECP5-85F)")):
        colors = {1: "C0", 4: "C1", 8: "C2", 16: "C3"}
        for (label, pts), marker in zip(runs.items(), ("o", "^", "s", "D", "v"), strict=False):
            for (b, n), xs in sorted(pts.items()):
                if b != board:
                    continue
                ax.scatter([x for x, _ in xs], [y for _, y in xs], marker=marker, color=colors.get(n, "C4"),
                           facecolors="none" if marker == "o" else colors.get(n, "C4"),
                           label=f"{label}, N = {n}", alpha=0.8)
        if board in CAPACITY:
            ax.axvline(CAPACITY[board], color="grey", ls="--", lw=1)
            ax.text(CAPACITY[board], ax.get_ylim()[0], " device", color="grey", fontsize=8, va="bottom")
        ax.set_xlim(0, CAPACITY.get(board, 0) * 1.08 or None)
        ax.set_title(title)
        ax.set_xlabel("LUT4 / logic cells (nextpnr)")
        ax.set_ylabel("engine images/s at Fmax (LeNet-300-100)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    out = ROOT / "docs" / "boards.png"
    tmp = out.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    tmp.replace(out)
    print(f"wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
