"""CPU baseline for on-board throughput: LeNet-300-100 (or LeNet-5) at batch 1 on this machine.

    .venv/bin/python benchmarks/cpu_baseline.py [--images 2000]
    .venv/bin/python benchmarks/cpu_baseline.py --arch lenet5 [--images 2000]   # cpu_baseline_lenet5.json

``--arch lenet5``: PyTorch dense float32 at batch 1 with 1 and with 2 threads
(the committed benchmarks/results/lenet5_mnist.dcz), beside the engine's
cycles per image from the golden model at N = 8 (the RTL meets them), so the
comparison is made in one run.

Times, per image at batch 1: PyTorch dense float32 (the trained architecture
with the compressed model's weights), PyTorch with the weights as a sparse
CSR matrix, and the integer golden model's arithmetic in numpy. Writes
benchmarks/results/cpu_baseline.json (images/s and microseconds per image,
torch threads used) for comparison with the accelerator's cycles / clock.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from compressor.contract.container import load
from compressor.contract.data import load_dataset
from compressor.contract.fixedpoint import run_int
from compressor.models import to_module
from compressor.rom_cli import int_layers_for
from compressor.train import to_tensor

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def per_image(fn, xs) -> float:
    for x in xs[:50]:  # warm-up
        fn(x)
    t0 = time.perf_counter()
    for x in xs:
        fn(x)
    return (time.perf_counter() - t0) / len(xs)


def lenet5(args) -> None:
    import os
    import tempfile

    from mnist_rom import MODELS, make_rom

    from compressor.contract.golden import decode_rom, infer
    from compressor.contract.rom import load as load_rom

    cm = load(MODELS["lenet5"])
    imgs = load_dataset("mnist", args.data_dir).test.images[: args.images]
    model = to_module(cm).eval()
    xs = [to_tensor(imgs[i : i + 1]) for i in range(len(imgs))]
    res: dict = {"images": len(imgs), "model": "benchmarks/results/lenet5_mnist.dcz",
                 "load_average_at_start": list(os.getloadavg())}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        with torch.inference_mode():
            sec = per_image(model, xs)
        res[f"pytorch_dense_{threads}_threads_us"] = 1e6 * sec
        res[f"pytorch_dense_{threads}_threads_images_per_s"] = 1 / sec
    with tempfile.TemporaryDirectory() as tmp:
        rom = Path(tmp) / "l5.rom"
        make_rom(MODELS["lenet5"], 8, rom, args.data_dir)
        first = imgs[:500]
        g = infer(decode_rom(load_rom(rom)), first.reshape(len(first), -1))
    cyc = float(g["cycles"].mean())
    res.update(engine_n8_cycles=cyc, engine_n8_images_per_s_at_50mhz=50e6 / cyc,
               load_average_at_end=list(os.getloadavg()),
               command=f".venv/bin/python benchmarks/cpu_baseline.py --arch lenet5 --images {args.images}")
    (RESULTS / "cpu_baseline_lenet5.json").write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--arch", choices=["lenet300", "lenet5"], default="lenet300")
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "mnist")
    args = ap.parse_args()
    if args.arch == "lenet5":
        lenet5(args)
        return
    cm = load(RESULTS / "lenet300_mnist.dcz")
    data = load_dataset("mnist", args.data_dir)
    imgs = data.test.images[: args.images]
    model = to_module(cm).eval()
    xs = [to_tensor(imgs[i : i + 1]) for i in range(len(imgs))]
    sparse = [(torch.from_numpy(r.weight()).to_sparse_csr(), torch.from_numpy(r.bias)) for r in cm.layers]

    def sparse_forward(x):
        h = x.flatten(1).T
        for i, (w, b) in enumerate(sparse):
            h = torch.sparse.mm(w, h) + b[:, None]
            if i < len(sparse) - 1:
                h = torch.relu(h)
        return h

    layers, _ = int_layers_for(cm, "mnist", args.data_dir, 5000, 99.99)
    ints = [imgs[i : i + 1].reshape(1, -1) for i in range(len(imgs))]
    with torch.inference_mode():
        dense_s = per_image(model, xs)
        sparse_s = per_image(sparse_forward, xs)
    int_s = per_image(lambda a: run_int(layers, a), ints)
    res = {
        "images": len(imgs), "torch_threads": torch.get_num_threads(),
        "pytorch_dense_us": 1e6 * dense_s, "pytorch_dense_images_per_s": 1 / dense_s,
        "pytorch_sparse_csr_us": 1e6 * sparse_s, "pytorch_sparse_csr_images_per_s": 1 / sparse_s,
        "numpy_integer_dense_us": 1e6 * int_s, "numpy_integer_images_per_s": 1 / int_s,
        "command": f".venv/bin/python benchmarks/cpu_baseline.py --images {args.images}",
    }
    (RESULTS / "cpu_baseline.json").write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
