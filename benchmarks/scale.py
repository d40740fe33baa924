"""The compressor at ImageNet scale: time per stage and peak memory, 1M to 138M parameters.

    .venv/bin/python benchmarks/scale.py [--models vgg16-1m,vgg16-10m,alexnet,vgg16] [--seed 0]

AlexNet and VGG-16 as torchvision defines them (61,100,840 and 138,357,544
parameters), written in plain torch because torchvision is not installable
here, plus two VGG-16s of reduced width (about 1M and 10M parameters).
Random initialisation (torch's defaults), no training: the benchmark is the
pipeline's own cost. Stages, each the library call ``deepcomp compress``
makes (``compressor/pipeline.py``) with the training left out:

- ``prune``: one magnitude prune to the per-layer densities of the Deep
  Compression paper (Table 4 for AlexNet, 5 for VGG-16; the reduced VGGs
  use VGG-16's), i.e. ``prune_step`` at its last step, no retraining;
- ``quantize``: per-layer k-means (8 bits conv, 5 bits fc), the codebooks
  rounded to float16 (as fine-tuning ends) and the shared weights written
  back into the model;
- ``report``: what ``compress`` keeps for its ``.meta.json`` besides
  (a copy of the pruned weights, their histograms);
- ``zbits_auto``: the layer records and ``--zbits auto``, the relative-index
  width that codes each layer smallest (``container.best_zbits``: each width's
  Huffman-coded size from the streams' symbol counts, without building them);
- ``save``: Huffman coding and writing the ``.dcz`` (which reads its bytes back
  first); ``load``: reading it.

Memory: the peak resident set of each stage (``VmHWM`` of /proc/self/status,
reset before each stage by writing 5 to /proc/self/clear_refs), minus the
resident set once the model is built (``rss_model``), per parameter. Each model
runs in its own process. Checks, outside the timed stages: the loaded file's
weights put into the model give bit-identical outputs on a synthetic batch.
Writes benchmarks/results/scale.json and docs/scale.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"

VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
# Han, Mao & Dally 2016, Tables 4 and 5: fraction of weights kept per layer
DENSITY = {
    "alexnet": [0.84, 0.38, 0.35, 0.37, 0.37, 0.09, 0.09, 0.25],
    "vgg16": [0.58, 0.22, 0.34, 0.36, 0.53, 0.24, 0.42, 0.32, 0.27, 0.34, 0.35, 0.29, 0.36, 0.04, 0.04, 0.23],
}
# name: (builder, its arguments, density list)
MODELS = {
    "vgg16-1m": ("vgg", (8, 256), "vgg16"),  # channels / 8, fc 256
    "vgg16-10m": ("vgg", (2, 512), "vgg16"),  # channels / 2, fc 512
    "alexnet": ("alexnet", (), "alexnet"),
    "vgg16": ("vgg", (1, 4096), "vgg16"),
}
STAGES = ("prune", "quantize", "report", "zbits_auto", "save", "load")


def build(name: str):
    """The architecture in plain torch (torchvision's layer shapes), randomly initialised."""
    from torch import nn

    kind, args, _ = MODELS[name]
    if kind == "alexnet":
        return nn.Sequential(
            nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.AdaptiveAvgPool2d(6), nn.Flatten(), nn.Dropout(),
            nn.Linear(256 * 36, 4096), nn.ReLU(), nn.Dropout(),
            nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, 1000))
    shrink, fc = args
    layers, ch = [], 3
    for v in VGG16:
        if v == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += [nn.Conv2d(ch, v // shrink, 3, padding=1), nn.ReLU()]
            ch = v // shrink
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(7), nn.Flatten(),
                         nn.Linear(ch * 49, fc), nn.ReLU(), nn.Dropout(),
                         nn.Linear(fc, fc), nn.ReLU(), nn.Dropout(), nn.Linear(fc, 1000))


def rss() -> tuple[int, int]:
    """(current, peak since the last reset) resident set in bytes."""
    vals = {}
    for line in open("/proc/self/status"):
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            vals[key] = int(rest.split()[0]) * 1024
    return vals["VmRSS"], vals["VmHWM"]


def reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def run_one(name: str, seed: int) -> dict:
    """All stages on one model, in this process."""
    import numpy as np
    import torch
    from torch import nn

    from compressor.contract.container import CompressedModel, LayerRecord, best_zbits, load, save
    from compressor.models import compressible_layers, count_params, to_module
    from compressor.pipeline import _histogram, default_widths
    from compressor.prune import Masks, PruneConfig, prune_step
    from compressor.quantize import quantize_model, round_to_storage

    torch.manual_seed(seed)
    torch.set_grad_enabled(False)
    model = build(name).eval()
    params = count_params(model)
    layers = compressible_layers(model)
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(seed))
    model(x)  # a synthetic batch through the dense model (warms up torch's allocator too)
    rss_model = rss()[0]
    out: dict = {"model": name, "params": params, "layers": len(layers),
                 "weights": sum(m.weight.numel() for _, m in layers), "rss_model": rss_model, "stages": {}}
    dens = DENSITY[MODELS[name][2]]
    bits = default_widths(layers, None, 8, 5)
    state: dict = {}

    def stage(key: str, fn) -> None:
        reset_peak()
        t0 = time.perf_counter()
        fn()
        seconds = time.perf_counter() - t0
        now, peak = rss()
        out["stages"][key] = {"seconds": round(seconds, 3), "peak_rss": peak, "rss_after": now,
                              "peak_above_model_per_param": round((peak - rss_model) / params, 3)}
        print(f"{name:>10} {key:<11} {seconds:7.2f} s  peak {peak / 2**20:7.0f} MiB "
              f"({(peak - rss_model) / params:5.2f} B/param above the model)", flush=True)

    def prune() -> None:
        masks = Masks(model)
        prune_step(model, masks, PruneConfig(density=dens, steps=1), 1.0, {})
        state["density"] = masks.density()

    def quantize() -> None:
        state["quants"] = quantize_model(model, bits, "linear", seed)
        for q in state["quants"]:  # what finetune ends with: the codebook as the .dcz stores it
            q.codebook = q.codebook.astype(np.float16).astype(np.float32)
        round_to_storage(model, state["quants"])

    def report() -> None:  # compress() keeps the pruned weights for the report's histograms
        pruned = {n: m.weight.numpy().copy() for n, m in layers}
        state["hist"] = {n: _histogram(w[w != 0]) for n, w in pruned.items()}

    def records() -> None:
        recs = []
        for (lname, m), q in zip(layers, state.pop("quants"), strict=True):
            conv = isinstance(m, nn.Conv2d)
            recs.append(LayerRecord(
                lname, "conv" if conv else "linear", tuple(m.weight.shape), q.codebook, q.index,
                None if m.bias is None else m.bias.numpy().astype(np.float32).copy(), q.bits, 4,
                stride=m.stride[0] if conv else 1, padding=m.padding[0] if conv else 0))
            rec = recs[-1]
            rec.zbits = best_zbits(rec)
        state["cm"] = CompressedModel(name, recs)

    path = Path(tempfile.mkdtemp(prefix="scale-")) / f"{name}.dcz"

    def save_() -> None:
        state["bytes"] = save(state["cm"], path)

    def load_() -> None:
        state["back"] = load(path)

    stage("prune", prune)
    stage("quantize", quantize)
    y_quant = model(x)
    stage("report", report)
    stage("zbits_auto", records)
    stage("save", save_)
    stage("load", load_)
    cm, back = state["cm"], state.pop("back")
    same = all(np.array_equal(a.index, b.index) for a, b in zip(cm.layers, back.layers, strict=True))
    to_module(back, model)
    y_back = model(x)
    path.unlink()
    total = sum(s["seconds"] for s in out["stages"].values())
    peak = max(s["peak_rss"] for s in out["stages"].values())
    out.update({
        "bytes": state["bytes"], "ratio": round(4 * params / state["bytes"], 2),
        "zbits": [r.zbits for r in cm.layers],
        "nonzeros": int(sum(float(np.count_nonzero(r.index)) for r in cm.layers)),
        "seconds_total": round(total, 2), "peak_rss": peak,
        "peak_above_model_per_param": round((peak - rss_model) / params, 3),
        "check_indices_read_back": same,
        "check_outputs_identical": bool(torch.equal(y_quant, y_back)),
    })
    print(f"{name:>10} total {total:.2f} s, {state['bytes']} bytes ({out['ratio']}x), "
          f"peak {out['peak_above_model_per_param']} B/param above the model", flush=True)
    return out


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = [r["params"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    bottom = [0.0] * len(rows)
    for st in STAGES:
        vals = [r["stages"][st]["seconds"] for r in rows]
        a.plot(p, [b0 + v for b0, v in zip(bottom, vals, strict=True)], marker="o", label=f"+ {st}")
        bottom = [b0 + v for b0, v in zip(bottom, vals, strict=True)]
    a.axhline(30, color="0.5", ls="--", lw=1, label="floor for VGG-16: 30 s")
    top = rows[-1]
    a.plot(p, [top["seconds_total"] * x / top["params"] for x in p], color="0.6", ls=":", lw=1,
           label="linear in parameters")
    a.set(xscale="log", yscale="log", xlabel="parameters", ylabel="seconds (cumulative over stages)",
          title="Time per stage, no training")
    a.legend(fontsize=7)
    for st in STAGES:
        b.plot(p, [r["stages"][st]["peak_above_model_per_param"] for r in rows], marker="o", label=st)
    b.axhline(12, color="0.5", ls="--", lw=1, label="floor: 12 B/param")
    b.set(xscale="log", xlabel="parameters", ylabel="peak RSS above the model, bytes / parameter",
          title="Peak memory per stage")
    b.legend(fontsize=7)
    for r in rows:
        a.annotate(r["model"], (r["params"], r["seconds_total"]), fontsize=7, textcoords="offset points",
                   xytext=(3, -10))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--one", help=argparse.SUPPRESS)  # run one model in this process, JSON on stdout
    ap.add_argument("-o", "--output", type=Path, default=RESULTS / "scale.json")
    ap.add_argument("--plot", type=Path, default=ROOT / "docs" / "scale.png")
    ap.add_argument("--plot-only", action="store_true", help="redraw the plot from the JSON written before")
    args = ap.parse_args()
    if args.plot_only:
        plot(json.loads(args.output.read_text())["models"], args.plot)
        return
    if args.one:
        print("JSON " + json.dumps(run_one(args.one, args.seed)))
        return
    rows = []
    for name in args.models.split(","):
        proc = subprocess.run([sys.executable, __file__, "--one", name, "--seed", str(args.seed)],
                              stdout=subprocess.PIPE, text=True, check=True)
        for line in proc.stdout.splitlines():
            if line.startswith("JSON "):
                rows.append(json.loads(line[5:]))
            else:
                print(line)
    import numpy
    import torch

    res = {"command": "python benchmarks/scale.py " + " ".join(sys.argv[1:]),
           "machine": {"cpu": next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo")
                                    if ln.startswith("model name")), "?"),
                       "cores": os.cpu_count(), "python": platform.python_version(),
                       "numpy": numpy.__version__, "torch": torch.__version__,
                       "torch_threads": torch.get_num_threads(), "load_average_at_end": os.getloadavg()},
           "memory": "peak resident set per stage from /proc/self/status VmHWM, reset per stage via "
                     "/proc/self/clear_refs; rss_model = resident set after building the model and one "
                     "synthetic batch",
           "stages": list(STAGES), "models": rows}
    args.output.write_text(json.dumps(res, indent=1) + "\n")
    plot(rows, args.plot)
    print(f"wrote {args.output} and {args.plot}")


if __name__ == "__main__":
    main()
