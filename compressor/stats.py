"""Per-layer statistics in the columns of the paper's Table 2, from the bytes written.

"P+Q" counts fixed-width codes (``wbits`` per weight index, ``zbits`` per
relative index, fillers included); "P+Q+H" counts the Huffman streams as
written. Compress rates divide a layer's float32 weights by its storage;
the total row uses the whole file (header, tables, biases, CRC included).
"""

from __future__ import annotations

import numpy as np

from .contract.container import CompressedModel, encode


def layer_stats(cm: CompressedModel) -> dict:
    size = len(encode(cm))  # fills cm.streams / cm.breakdown
    rows = []
    for rec, st, part in zip(cm.layers, cm.streams, cm.breakdown, strict=True):
        n = int(np.prod(rec.shape))
        entries = max(int(st.z.size), 1)
        side = part["codebook"] + part["bias"] + part["overhead"]
        pq_bytes = st.z.size * (rec.wbits + rec.zbits) / 8 + side
        pqh_bytes = part["weights"] + part["index"] + side
        rows.append({
            "layer": rec.name if rec.param == "weight" else rec.key,  # an LSTM has several
            "weights": n,
            "density": st.nonzeros / n,
            "nonzeros": st.nonzeros,
            "fillers": st.fillers,
            "weight_bits_pq": rec.wbits,
            "weight_bits_pqh": st.wbits_total / entries,
            "index_bits_pq": rec.zbits,
            "index_bits_pqh": st.zbits_total / entries,
            "rate_pq": 4 * n / pq_bytes,
            "rate_pqh": 4 * n / pqh_bytes,
            "bytes": int(round(pqh_bytes)),
            **{f"bytes_{k}": v for k, v in part.items()},
        })
    n_all = sum(r["weights"] for r in rows)
    nz_all = sum(r["nonzeros"] for r in rows)
    pq_total = sum(st.z.size * (r.wbits + r.zbits) / 8 for r, st in zip(cm.layers, cm.streams, strict=True))
    pq_total += size - sum(p["weights"] + p["index"] for p in cm.breakdown)
    total = {
        "layer": "total", "weights": n_all, "density": nz_all / n_all, "nonzeros": nz_all,
        "fillers": sum(r["fillers"] for r in rows),
        "rate_pq": cm.dense_bytes() / pq_total, "rate_pqh": cm.dense_bytes() / size,
        "bytes": size, "dense_bytes": cm.dense_bytes(), "params": cm.params(),
        "header_bytes": cm.header_bytes,
        "dense_tensors": len(cm.dense),
        "dense_tensor_bytes": sum(a.nbytes for a in cm.dense.values()),
        "program_bytes": len(cm.program[1]) if cm.program else 0,
    }
    return {"layers": rows, "total": total}


def format_table(stats: dict) -> str:
    head = (f"{'layer':<10} {'#weights':>9} {'weights%':>8} {'wbits':>5} {'wbits':>6} "
            f"{'ibits':>5} {'ibits':>6} {'rate':>7} {'rate':>7} {'bytes':>7}\n"
            f"{'':<10} {'':>9} {'(P)':>8} {'P+Q':>5} {'P+Q+H':>6} {'P+Q':>5} {'P+Q+H':>6} "
            f"{'P+Q':>7} {'P+Q+H':>7} {'':>7}")
    lines = [head]
    for r in stats["layers"]:
        lines.append(
            f"{r['layer']:<10} {r['weights']:>9} {100 * r['density']:>7.2f}% {r['weight_bits_pq']:>5} "
            f"{r['weight_bits_pqh']:>6.2f} {r['index_bits_pq']:>5} {r['index_bits_pqh']:>6.2f} "
            f"{r['rate_pq']:>6.1f}x {r['rate_pqh']:>6.1f}x {r['bytes']:>7}")
    t = stats["total"]
    lines.append(
        f"{'total':<10} {t['weights']:>9} {100 * t['density']:>7.2f}% {'':>5} {'':>6} {'':>5} {'':>6} "
        f"{t['rate_pq']:>6.1f}x {t['rate_pqh']:>6.1f}x {t['bytes']:>7}")
    if t.get("dense_tensors") or t.get("program_bytes"):
        lines.append(f"stored exactly: {t['dense_tensors']} tensors, {t['dense_tensor_bytes']} bytes; "
                     f"embedded program: {t['program_bytes']} bytes")
    lines.append(f"file {t['bytes']} bytes vs dense float32 {t['dense_bytes']} bytes "
                 f"({t['params']} params): {t['rate_pqh']:.1f}x")
    return "\n".join(lines)


def format_budget(budget: dict) -> str:
    """What ``compress --max-loss`` decided (from the report beside the ``.dcz``): settings per layer."""
    lines = [f"accuracy budget: --max-loss {budget['max_loss_pp']:g} pp on {budget['val_images']} validation images: "
             f"error {100 * budget['dense_val_error']:.2f}% -> {100 * budget['final_val_error']:.2f}% "
             f"(loss {budget['val_loss_pp']:.2f} pp, {'within' if budget['within_budget'] else 'OVER'} budget), "
             f"search {budget['seconds']['search']:.0f} s",
             f"{'layer':<10} {'density':>8} {'nonzeros':>8} {'bits':>4} {'zbits':>5}  "
             "density alone at +1 pp validation error"]
    for name, s in budget["settings"].items():
        curve = budget["sensitivity"].get(name, {})
        lines.append(f"{name:<10} {100 * s['density']:>7.2f}% {s['nonzeros']:>8} {s['bits']:>4} {s['zbits']:>5}  "
                     f"{_density_at(curve, budget['dense_val_error'] + 0.01)}")
    return "\n".join(lines)


def _density_at(curve: dict, error: float) -> str:
    """The lowest scanned density whose error (the layer pruned alone) is still at most ``error``."""
    ok = [d for d, e in zip(curve.get("density", []), curve.get("val_error", []), strict=True) if e <= error]
    return f"{100 * min(ok):.2f}%" if ok else "-"
