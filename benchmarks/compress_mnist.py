"""Full Deep Compression runs on MNIST, measured from the bytes written.

    .venv/bin/python benchmarks/compress_mnist.py --arch lenet300 [--data-dir ../shared/data/mnist]
    .venv/bin/python benchmarks/compress_mnist.py --arch lenet5

Writes benchmarks/results/<arch>_mnist.dcz (+ .meta.json) and
benchmarks/results/<arch>_mnist.json: error and size at every stage, time per
stage, Huffman encode/decode throughput, and each stream's coded size beside
its order-0 entropy and zstd/lzma of the same symbols.
"""

from __future__ import annotations

import argparse
import json
import lzma
import time
from pathlib import Path

import numpy as np
import zstandard
from bitarray import bitarray

from compressor.checkpoint import save_dense
from compressor.commands import file_crc, meta_path
from compressor.contract.container import load, save
from compressor.contract.data import load_dataset
from compressor.contract.huffman import entropy_bits
from compressor.models import build, count_params, to_module
from compressor.pipeline import CompressConfig, compress
from compressor.prune import PruneConfig
from compressor.stats import format_table, layer_stats
from compressor.train import FitConfig, error_rate, fit, seed_everything

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

# The settings that produced the committed results (see README, "Results").
SETTINGS = {
    "lenet300": dict(
        dense=FitConfig(epochs=40, lr=0.05, augment=2),
        cfg=CompressConfig(
            prune=PruneConfig(density=[0.033, 0.05, 0.2], steps=8, epochs_per_step=6, final_epochs=40),
            retrain=FitConfig(lr=0.01, augment=2),
            finetune=FitConfig(epochs=15, lr=1e-4, optimizer="adam", weight_decay=0.0, augment=2),
            bits=[5, 5, 5], zbits="auto")),
    "lenet5": dict(
        dense=FitConfig(epochs=15, lr=0.05, augment=2),
        cfg=CompressConfig(
            prune=PruneConfig(density=[0.5, 0.08, 0.02, 0.1], steps=4, epochs_per_step=3, final_epochs=8),
            retrain=FitConfig(lr=0.01, augment=2),
            finetune=FitConfig(epochs=4, lr=1e-4, optimizer="adam", weight_decay=0.0, augment=2),
            zbits="auto")),
}


def stream_report(cm) -> list[dict]:
    """Per layer and stream: Huffman bits vs order-0 entropy vs zstd / lzma of the symbols."""
    rows = []
    for rec, st in zip(cm.layers, cm.streams, strict=True):
        for name, code, sym in (("weight", st.wcode, st.w), ("index", st.zcode, st.z)):
            raw = sym.astype(np.uint8).tobytes()
            rows.append({
                "layer": rec.name, "stream": name, "symbols": int(sym.size),
                "huffman_bytes": (code.encoded_bits(sym) + 7) // 8,
                "entropy_bytes": round(entropy_bits(sym) / 8, 1),
                "zstd19_bytes": len(zstandard.ZstdCompressor(level=19).compress(raw)),
                "lzma_bytes": len(lzma.compress(raw, preset=9 | lzma.PRESET_EXTREME)),
            })
    return rows


def throughput(cm, repeat: int = 40) -> dict:
    """Huffman encode/decode symbols per second on the model's own streams, repeated."""
    enc = dec = n = 0.0
    for st in cm.streams:
        for code, sym in ((st.wcode, st.w), (st.zcode, st.z)):
            big = np.tile(sym, repeat)
            t0 = time.perf_counter()
            bits: bitarray = code.encode(big)
            t1 = time.perf_counter()
            out = code.decode(bits, big.size)
            t2 = time.perf_counter()
            assert np.array_equal(out, big)
            enc += t1 - t0
            dec += t2 - t1
            n += big.size
    return {"symbols": int(n), "encode_symbols_per_s": n / enc, "decode_symbols_per_s": n / dec}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", choices=sorted(SETTINGS), required=True)
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "mnist")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    s = SETTINGS[args.arch]
    data = load_dataset("mnist", args.data_dir)
    seed_everything(args.seed)
    model = build(args.arch)
    t0 = time.time()
    fit(model, data.train, s["dense"], seed=args.seed, desc="dense")
    t_dense = time.time() - t0
    out = RESULTS / f"{args.arch}_mnist"
    save_dense(model, args.arch, "mnist", out.with_suffix(".pt"), {})
    cfg = s["cfg"]
    cfg.seed = args.seed
    cm, report = compress(model, args.arch, data, cfg)
    dcz = out.with_suffix(".dcz")
    size = save(cm, dcz)
    stats = layer_stats(cm)
    report.update(bytes=size, ratio=cm.dense_bytes() / size, stats=stats, dcz_crc32=file_crc(dcz))
    meta_path(dcz).write_text(json.dumps(report, indent=1))
    out.with_suffix(".pt").unlink()  # the dense checkpoint is not a result
    back = load(dcz)
    err = error_rate(to_module(back), data.test)
    report["stages"]["dense"]["seconds"] = round(t_dense, 1)
    result = {
        "arch": args.arch, "params": count_params(model), "dense_bytes": cm.dense_bytes(),
        "dcz_bytes": size, "ratio": cm.dense_bytes() / size, "error": err,
        "stages": report["stages"], "density": report["density"],
        "total_seconds": round(time.time() - t0, 1),
        "huffman_throughput": throughput(cm), "streams": stream_report(cm),
        "table": stats, "settings": {k: str(v) for k, v in s.items()},
        "command": f".venv/bin/python benchmarks/compress_mnist.py --arch {args.arch}",
    }
    (RESULTS / f"{args.arch}_mnist.json").write_text(json.dumps(result, indent=1))
    print(format_table(stats))
    print(json.dumps({k: result[k] for k in ("arch", "dcz_bytes", "ratio", "error", "total_seconds")}))


if __name__ == "__main__":
    main()
