"""The paper's figures for a compressed model, as PNGs.

Fig. 4: weight distribution with the codebook before (initial k-means) and
after fine-tuning. The pre-quantization distribution and initial centroids
come from the ``.meta.json`` report written by ``compress``; without it the
figure shows the quantized weights and final codebook only.
Fig. 5: histograms of the weight-index and relative-index symbols.
Fig. 11: storage breakdown (weights, indices, codebooks, biases, overhead).
``compress --max-loss`` runs add sensitivity.png: each layer's validation error
pruned alone, against density, with the densities the search chose.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .contract.binfmt import atomic_write_many  # noqa: E402
from .contract.container import CompressedModel, encode  # noqa: E402


def _save(fig, path: Path) -> tuple[str, bytes]:
    """The figure as PNG bytes, named for ``plot_all``'s all-or-nothing write."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path.name, buf.getvalue()


def plot_codebooks(cm: CompressedModel, report: dict | None, out: Path) -> tuple[str, bytes]:
    n = len(cm.layers)
    fig, axes = plt.subplots(n, 1, figsize=(8, 2.4 * n), squeeze=False)
    for ax, rec in zip(axes[:, 0], cm.layers, strict=True):
        hist = (report or {}).get("weight_hist", {}).get(rec.name)
        books = (report or {}).get("codebooks", {}).get(rec.name, {})
        if hist:
            edges = np.array(hist["edges"])
            ax.stairs(hist["counts"], edges, fill=True, color="0.75", label="weights after pruning")
        else:
            w = rec.weight()[rec.index != 0]
            ax.hist(w, bins=120, color="0.75", label="quantized weights")
        if books.get("initial"):
            init = np.array(books["initial"][1:])
            ax.plot(init, np.zeros_like(init), "x", color="tab:blue", ms=7, label="initial centroids")
        final = rec.codebook[1:]
        ax.plot(final, np.zeros_like(final), "o", mfc="none", color="tab:red", ms=6,
                label="fine-tuned centroids")
        ax.set_title(f"{rec.name}: {(1 << rec.wbits) - 1} shared weights")
        ax.legend(fontsize=7, loc="upper right")
    fig.suptitle("Weight distribution and codebook (cf. paper Fig. 4)")
    return _save(fig, out / "codebook.png")


def plot_symbols(cm: CompressedModel, out: Path) -> tuple[str, bytes]:
    encode(cm)
    n = len(cm.layers)
    fig, axes = plt.subplots(n, 2, figsize=(10, 2.4 * n), squeeze=False)
    for row, rec, st in zip(axes, cm.layers, cm.streams, strict=True):
        for ax, sym, bits, what in ((row[0], st.w, rec.wbits, "weight index"),
                                    (row[1], st.z, rec.zbits, "relative index")):
            counts = np.bincount(sym, minlength=1 << bits)
            ax.bar(np.arange(counts.size), counts, width=0.9)
            ax.set_title(f"{rec.name}: {what}", fontsize=9)
    fig.suptitle("Symbol distributions Huffman coding exploits (cf. paper Fig. 5)")
    return _save(fig, out / "symbols.png")


def plot_storage(cm: CompressedModel, out: Path) -> tuple[str, bytes]:
    encode(cm)
    kinds = ["weights", "index", "codebook", "bias", "overhead"]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    bottom = np.zeros(len(cm.layers))
    names = [r.name for r in cm.layers]
    for kind in kinds:
        vals = np.array([b[kind] for b in cm.breakdown], dtype=float)
        ax.bar(names, vals, bottom=bottom, label=kind)
        bottom += vals
    ax.set_ylabel("bytes in the .dcz")
    ax.set_title(f"Storage breakdown (cf. paper Fig. 11); file header + CRC: {cm.header_bytes} B")
    ax.legend()
    return _save(fig, out / "storage.png")


def plot_sensitivity(budget: dict, out: Path) -> tuple[str, bytes]:
    """Validation error with each layer pruned alone (cf. the pruning paper's Fig. 6), the chosen densities marked."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, curve in budget["sensitivity"].items():
        line, = ax.plot(curve["density"], [100 * e for e in curve["val_error"]], ".-", label=name)
        chosen = budget["settings"].get(name, {}).get("density")
        if chosen is not None:
            ax.axvline(chosen, color=line.get_color(), ls=":", lw=1)
    ax.axhline(100 * budget["limit_val_error"], color="k", ls="--", lw=1,
               label=f"budget: dense + {budget['max_loss_pp']:g} pp")
    ax.set_xscale("log")
    ax.set_xlabel("density of the layer alone (no retraining); dotted: chosen after retraining")
    ax.set_ylabel("validation error %")
    ax.set_title("Sensitivity of each layer to pruning (compress --max-loss)")
    ax.legend(fontsize=8)
    return _save(fig, out / "sensitivity.png")


def plot_all(cm: CompressedModel, report: dict | None, out: Path) -> list[Path]:
    figures = [plot_codebooks(cm, report, out), plot_symbols(cm, out), plot_storage(cm, out)]
    if report and "budget" in report:
        figures.append(plot_sensitivity(report["budget"], out))
    return atomic_write_many(out, dict(figures))
