"""Real-shaped models through the user-loop API: a small ResNet (BatchNorm, residual adds) and a
small MobileNet (depthwise convs) on scikit-learn's 8x8 digits, offline.

    .venv/bin/python benchmarks/real_models.py [--epochs 20] [--seed 0]

Each model is trained dense by a plain user loop (standardised float inputs,
which the API takes as they are), then compressed in that same loop with
``compressor.api.Compressor`` attached to the user's optimizer: prune in
three steps with retraining, quantize, fine-tune the centroids. Variants:
BatchNorm folded first (``fold_bn``), dense tensors in float16, the smallest
layers kept dense (``keep_dense``), the architecture embedded as a program. For each the file is saved, loaded and
applied (``apply_to``) to a fresh instance of the class, and the outputs on
the test set compared with the compressed model's. Writes
benchmarks/results/real_models.json and the .dcz files under out/real_models/.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compressor import api  # noqa: E402
from compressor.contract.container import save  # noqa: E402
from compressor.contract.data import load_dataset  # noqa: E402
from compressor.models import to_module  # noqa: E402
from compressor.program import embed  # noqa: E402
from tests.real_nets import SmallMobileNet, SmallResNet  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
OUT = ROOT / "out" / "real_models"
DENSITY = {"SmallResNet": 0.3, "SmallMobileNet": 0.4}
BITS = 5  # 31 shared weights per layer: 8-bit codebooks (510 B each) would outweigh these small layers
NETS = {"SmallResNet": SmallResNet, "SmallMobileNet": SmallMobileNet}
# the per-layer choice: the smallest layers, where a codebook costs more than it saves
KEEP = {"SmallResNet": ["stem"], "SmallMobileNet": ["features.0", "features.3", "features.9", "features.15"]}


def loaders(seed: int) -> tuple[DataLoader, DataLoader, torch.Tensor]:
    """The user's data pipeline: digits standardised to mean 0, std 1 (float, not pixels)."""
    data = load_dataset("digits")
    x_tr = torch.from_numpy(data.train.images).float()
    mean, std = x_tr.mean(), x_tr.std()
    x_tr = (x_tr - mean) / std
    x_te = (torch.from_numpy(data.test.images).float() - mean) / std
    y_tr, y_te = torch.from_numpy(data.train.labels), torch.from_numpy(data.test.labels)
    train = DataLoader(TensorDataset(x_tr, y_tr), batch_size=64, shuffle=True,
                       generator=torch.Generator().manual_seed(seed))
    return train, DataLoader(TensorDataset(x_te, y_te), batch_size=500), x_te


def user_epochs(model: nn.Module, loader: DataLoader, opt: torch.optim.Optimizer, epochs: int) -> None:
    """What a user's loop looks like: nothing in it knows about compression."""
    for _ in range(epochs):
        model.train()
        for x, y in loader:
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    model.eval()


@torch.no_grad()
def test_error(model: nn.Module, x: torch.Tensor, labels: torch.Tensor) -> float:
    return float((model.eval()(x).argmax(1) != labels).float().mean())


def run(name: str, dense_state: dict, seed: int, epochs: int, variant: dict,
        base: torch.Tensor | None) -> tuple[dict, torch.Tensor]:
    """One compression of the dense model; same seeds and batches for every variant."""
    train, test, x_te = loaders(seed)
    y_te = torch.cat([y for _, y in test])
    torch.manual_seed(seed)
    model = NETS[name]()
    model.load_state_dict(dense_state)
    program = variant.pop("program", False)
    t0 = time.time()
    comp = api.Compressor(model, density=DENSITY[name], bits=BITS, zbits="auto", seed=seed, **variant)
    error_folded = test_error(model, x_te, y_te)
    opt = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9, weight_decay=5e-4)
    comp.attach(opt)
    for step in (1, 2, 3):
        comp.prune(step / 3)
        user_epochs(model, train, opt, max(1, epochs // 4))
    error_pruned = test_error(model, x_te, y_te)
    comp.quantize()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    comp.attach(opt)
    user_epochs(model, train, opt, max(1, epochs // 4))
    cm = comp.finish(arch=name.lower(), program=embed(model, x_te[:2]) if program else None)
    seconds = time.time() - t0
    tag = "-".join([name.lower()] + [k for k, v in variant.items() if v not in (False, "float32")]
                   + (["program"] if program else []))
    size = save(cm, OUT / f"{tag}.dcz")
    loaded = api.load(OUT / f"{tag}.dcz")
    fresh = loaded.apply_to(NETS[name]())  # the user's class, a new instance
    with torch.no_grad():
        ours = model.eval()(x_te)
        diff = float((fresh(x_te) - ours).abs().max())
        rebuilt = float((to_module(loaded.cm)(x_te) - ours).abs().max()) if program else None
    params = sum(p.numel() for p in model.parameters())
    n_stored = sum(a.size for a in cm.dense.values())
    return {
        "file": f"out/real_models/{tag}.dcz", "variant": {**variant, "program": program},
        "layers_compressed": len(cm.layers), "compressed": [r.key for r in cm.layers],
        "tensors_stored_dense": len(cm.dense), "kept_dense_layers": comp.plan.kept,
        "folded": comp.folded,
        "params": params, "dense_float32_bytes": 4 * params, "dcz_bytes": size,
        "ratio": round(4 * params / size, 2),
        "bytes_dense_tensors": sum(a.nbytes for a in cm.dense.values()), "values_dense_tensors": n_stored,
        "bytes_program": len(cm.program[1]) if cm.program else 0,
        "density": round(sum(float((model.get_submodule(r.name).weight != 0).sum()) for r in cm.layers)
                         / sum(model.get_submodule(r.name).weight.numel() for r in cm.layers), 4),
        "error_after_fold": error_folded, "error_pruned": error_pruned,
        "error_compressed": test_error(model, x_te, y_te),
        "max_abs_output_difference_apply_to": diff,
        "max_abs_output_difference_program": rebuilt,
        "max_abs_output_difference_vs_base_run": None if base is None else float((ours - base).abs().max()),
        "seconds": round(seconds, 1),
    }, ours


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(1)  # a shared 2-core machine
    train, test, x_te = loaders(args.seed)
    y_te = torch.cat([y for _, y in test])
    out: dict = {"dataset": "digits (scikit-learn, 8x8)", "epochs_dense": args.epochs, "bits": BITS,
                 "torch": torch.__version__, "models": {}}
    for name, cls in NETS.items():
        torch.manual_seed(args.seed)
        model = cls()
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
        user_epochs(model, train, opt, args.epochs)
        dense = {k: v.clone() for k, v in model.state_dict().items()}
        rows, base = [], None
        for variant in ({}, {"fold_bn": True}, {"dense_dtype": "float16"}, {"keep_dense": KEEP[name]},
                        {"program": True}):
            row, outputs = run(name, dense, args.seed, args.epochs, dict(variant), base)
            base = outputs if base is None else base
            rows.append(row)
            print(f"{name} {variant or 'base'}: {row['dcz_bytes']} B ({row['ratio']}x), error "
                  f"{test_error(model, x_te, y_te):.4f} -> {row['error_compressed']:.4f}, "
                  f"apply_to max diff {row['max_abs_output_difference_apply_to']}")
        out["models"][name] = {"error_dense": test_error(model, x_te, y_te), "runs": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "real_models.json").write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {RESULTS / 'real_models.json'}")


if __name__ == "__main__":
    main()
