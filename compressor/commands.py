"""Compressor subcommands: train, compress, eval, stats, plot."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .archspec import arch_arg
from .contract.binfmt import atomic_write
from .contract.cli import Command, add_data_args, bounded, emit, listed
from .contract.container import CompressedModel, load, save
from .contract.data import load_dataset
from .contract.errors import DeepcompError
from .kmeans import INITS

# torch-based modules are imported inside the commands that use them, so
# `deepcomp --help` and the hardware commands start without loading torch


COUNT = bounded(int, 0, 100_000)  # epochs
RATE = bounded(float, 0, 100, above=True)  # learning rates
SHIFT = bounded(int, 0, 8)  # augmentation shift in pixels
SEED = bounded(int, 0, 2**32 - 1)  # numpy and torch seeds
DENSITIES = listed(bounded(float, 0, 1, above=True))
ZBITS = listed(bounded(int, 1, 8))  # the .dcz stores zbits in 4 bits, 1..8 (docs/format.md)


def zbits_arg(s: str) -> list[int] | str:
    return "auto" if s == "auto" else ZBITS(s)


def dataset_for_arch(arch: str) -> str:
    from .models import input_size

    return "digits" if input_size(arch) == 64 else "mnist"


def _builtin_dataset(arch: str) -> str | None:
    """The dataset of a built-in arch; None for a custom model (then --dataset says)."""
    try:
        return dataset_for_arch(arch)
    except DeepcompError:
        return None


def add_fit_args(p: argparse.ArgumentParser, prefix: str, epochs: int, lr: float) -> None:
    what = prefix.rstrip("-") or "training"
    p.add_argument(f"--{prefix}epochs", type=COUNT, default=epochs, help=f"{what} epochs")
    p.add_argument(f"--{prefix}lr", type=RATE, default=lr, help=f"{what} learning rate (SGD peak)")


def add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--arch", type=arch_arg, help="lenet300, lenet5, cnn8 (8x8 digits) or mlp:IN-H-...-OUT (default: by dataset)")
    add_data_args(p, default="digits")
    add_fit_args(p, "", 20, 0.05)
    p.add_argument("--augment", type=SHIFT, default=0, help="random shift in pixels (0: none)")
    p.add_argument("--seed", type=SEED, default=0, help="seed of the initialisation, shuffling and augmentation")
    p.add_argument("--val-fraction", type=bounded(float, 0, 1), default=0.0,
                   help="hold out this fraction of the training images (seeded by --seed), as "
                        "'compress --max-loss' does: its validation images then stay unseen (0: train on all)")
    p.add_argument("-o", "--output", type=Path, required=True, help="output .pt checkpoint")


def run_train(args: argparse.Namespace) -> int:
    from .checkpoint import save_dense
    from .models import DEFAULT_ARCH, build, input_size
    from .train import FitConfig, error_rate, fit, seed_everything

    data = load_dataset(args.dataset, args.data_dir)
    arch = args.arch or DEFAULT_ARCH[data.name]
    if input_size(arch) != data.train.images[0].size:
        raise DeepcompError(f"{arch}: expects {input_size(arch)} inputs, {data.name} has {data.train.images[0].size}")
    seed_everything(args.seed)  # before build: --seed seeds the initialisation too
    model = build(arch)
    t0 = time.time()
    train = data.train
    if args.val_fraction:
        from .split import hold_out

        train = hold_out(data.train, args.val_fraction, args.seed)[0]
    fit(model, train, FitConfig(epochs=args.epochs, lr=args.lr, augment=args.augment), seed=args.seed)
    err = error_rate(model, data.test)
    save_dense(model, arch, data.name, args.output,
               {"error": err, "epochs": args.epochs, "seed": args.seed, "seconds": time.time() - t0,
                "augment": args.augment, "val_fraction": args.val_fraction})
    print(f"{arch} on {data.name}: test error {100 * err:.2f}%, saved {args.output}")
    return 0


def add_compress_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", type=Path, help="dense .pt from 'deepcomp train'")
    p.add_argument("-o", "--output", type=Path, required=True, help="output .dcz")
    add_data_args(p)
    g = p.add_argument_group("pruning")
    g.add_argument("--density", type=DENSITIES, help="fraction of weights kept per layer, e.g. 0.08,0.09,0.26")
    g.add_argument("--quality", type=bounded(float, 0, above=True), help="threshold = quality x std of each layer (instead of --density)")
    g.add_argument("--prune-steps", type=bounded(int, 1, 1000), default=4, help="steps from dense to the final density")
    g.add_argument("--prune-epochs", type=COUNT, default=4, help="retraining epochs per step")
    g.add_argument("--final-epochs", type=COUNT, default=8, help="retraining epochs after the last step")
    g.add_argument("--lr", type=RATE, default=0.01, help="retraining learning rate")
    q = p.add_argument_group("quantization and coding")
    q.add_argument("--bits", type=listed(bounded(int, 1, 8)), help="weight index bits per layer (default 8 conv, 5 fc)")
    q.add_argument("--zbits", type=zbits_arg,
                   help="relative index bits per layer, or 'auto': the width that codes each layer smallest "
                        "(default 5 conv, 4 fc)")
    q.add_argument("--init", choices=INITS, default="linear", help="centroid initialisation")
    q.add_argument("--finetune-epochs", type=COUNT, default=4, help="epochs of centroid fine-tuning (Adam)")
    q.add_argument("--finetune-lr", type=RATE, default=1e-4, help="centroid fine-tuning learning rate")
    p.add_argument("--augment", type=SHIFT, default=0, help="random shift in pixels while retraining")
    p.add_argument("--seed", type=SEED, default=0, help="seed of k-means, shuffling and augmentation")
    b = p.add_argument_group("accuracy budget (instead of --density/--quality, --bits, --zbits)")
    b.add_argument("--max-loss", type=bounded(float, 0, 100), metavar="PP",
                   help="top-1 accuracy the result may lose, in percentage points on a validation split held "
                        "out from the training images: densities, bits and zbits are searched (compressor/budget.py)")
    b.add_argument("--val-fraction", type=bounded(float, 0, 1, above=True),
                   help="with --max-loss: the held-out fraction (default: the dense checkpoint's "
                        "--val-fraction, else 0.1)")
    r = p.add_argument_group("checkpoints (a checkpoint per epoch, prune step and quantization)")
    r.add_argument("--state-dir", type=Path, help="where checkpoints go (default: OUTPUT.state beside the output; "
                                                  "removed when the run completes)")
    r.add_argument("--resume", action="store_true",
                   help="continue from the last checkpoint (same options), as if never stopped")


# what a checkpoint must agree on with the run resuming it (output paths and --data-dir may move)
RESUME_OPTIONS = ("density", "quality", "prune_steps", "prune_epochs", "final_epochs", "lr", "bits", "zbits",
                  "init", "finetune_epochs", "finetune_lr", "augment", "seed")


def resume_options(args: argparse.Namespace, dataset: str, n_train: int) -> dict:
    """The options of a run as the user spells them, plus what it compresses and on what."""
    from hashlib import sha256

    opts = {"--" + k.replace("_", "-"): getattr(args, k) for k in RESUME_OPTIONS}
    digest = sha256(args.checkpoint.read_bytes()).hexdigest()[:16] if args.checkpoint.is_file() else None
    return {**opts, "--dataset": dataset, "training images": n_train, "dense checkpoint sha256": digest}


def run_compress(args: argparse.Namespace) -> int:
    """Under torchrun (WORLD_SIZE > 1) every rank runs this; rank 0 alone writes and prints."""
    from . import distributed

    created = distributed.init_from_env("gloo")  # the CLI pipeline trains on the CPU, as in one process
    code = _compress(args)
    distributed.shutdown(created)  # only after success: on an error torchrun stops the other ranks
    return code


def _compress(args: argparse.Namespace) -> int:
    from . import distributed
    from .checkpoint import load_dense
    from .pipeline import CompressConfig, compress
    from .prune import PruneConfig
    from .resume import Checkpoints, default_state_dir
    from .train import FitConfig

    model, arch, trained_on, dense_meta = load_dense(args.checkpoint)
    data = load_dataset(args.dataset or trained_on, args.data_dir)
    if args.max_loss is not None:
        from .budget import compress_to_budget, config_from_args

        if args.resume:
            raise DeepcompError("--resume: the --max-loss search writes no checkpoints to resume from")
        cm, report = compress_to_budget(model, arch, data, config_from_args(args, dense_meta))
        return _write_compressed(args, cm, report, None) if distributed.is_main() else 0
    density = args.density if args.density or args.quality else [0.08, 0.09, 0.26]
    cfg = CompressConfig(
        prune=PruneConfig(density=None if args.quality else density, quality=args.quality,
                          steps=args.prune_steps, epochs_per_step=args.prune_epochs,
                          final_epochs=args.final_epochs),
        bits=args.bits, zbits=args.zbits, init=args.init,
        retrain=FitConfig(lr=args.lr, augment=args.augment),
        finetune=FitConfig(epochs=args.finetune_epochs, lr=args.finetune_lr, optimizer="adam",
                           weight_decay=0.0, augment=args.augment),
        seed=args.seed,
    )
    state = Checkpoints(args.state_dir or default_state_dir(args.output),
                        resume_options(args, data.name, len(data.train)))
    cm, report = compress(model, arch, data, cfg, checkpoints=state, resume=args.resume)
    if not distributed.is_main():
        return 0
    return _write_compressed(args, cm, report, state)


def _write_compressed(args: argparse.Namespace, cm: CompressedModel, report: dict, state) -> int:
    from .stats import format_table, layer_stats

    size = save(cm, args.output)
    stats = layer_stats(cm)
    report.update(bytes=size, ratio=cm.dense_bytes() / size, stats=stats, dcz_crc32=file_crc(args.output))
    atomic_write(meta_path(args.output), json.dumps(report, indent=1).encode())
    print(format_table(stats))
    for name, st in report["stages"].items():
        print(f"  {name:<10} error {100 * st['error']:.2f}%  ({st['seconds']:.0f} s)")
    print(f"wrote {args.output}: {size} bytes, {cm.dense_bytes() / size:.1f}x")
    if state is not None:
        state.clear()  # the .dcz and its report are written: nothing left to resume
    return 0


def meta_path(dcz: Path) -> Path:
    """Sidecar report: provenance for plots, not needed to decode, not counted in the ratio."""
    return dcz.with_name(dcz.name + ".meta.json")


def file_crc(dcz: Path) -> int:
    """The ``.dcz``'s own stored CRC32 (its last 4 bytes): what its report refers to."""
    try:
        with open(dcz, "rb") as f:
            f.seek(-4, 2)
            return int.from_bytes(f.read(4), "little")
    except OSError:  # shorter than a CRC, or unreadable: load() has said why already
        return -1


def read_meta(dcz: Path) -> dict | None:
    """The report written beside ``dcz``, or None (with a one-line warning) if broken or stale.

    ``.dcz`` and report are two renames; a report whose ``dcz_crc32`` is not the
    file's own (an interrupted run, a copied file) describes another model.
    """
    meta = meta_path(dcz)
    if not meta.is_file():
        return None
    try:
        report = json.loads(meta.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        why = f"unreadable ({e.__class__.__name__})"
    else:
        if isinstance(report, dict) and report.get("dcz_crc32") == file_crc(dcz):
            return report
        why = "describes another model (stale)"
    print(f"deepcomp: warning: {meta}: {why}; ignored", file=sys.stderr)
    return None


def add_eval_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", type=Path, help="dense .pt or compressed .dcz")
    add_data_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")


def load_any(path: Path) -> tuple:
    """``(module, arch, dataset, CompressedModel | None)`` for a ``.pt`` or ``.dcz``."""
    from .checkpoint import load_dense
    from .models import to_module

    with open_or_fail(path) as head:
        magic = head.read(4)
    if magic == b"DCMP":
        cm = load(path)
        model = to_module(cm, source=str(path))  # a custom arch runs from the file's program
        return model, cm.arch, _builtin_dataset(cm.arch), cm
    model, arch, dataset, _ = load_dense(path)
    return model, arch, dataset, None


def open_or_fail(path: Path):
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise DeepcompError(f"{path}: no such file") from None
    except OSError as e:
        raise DeepcompError(f"{path}: cannot read ({e.strerror})") from None


def run_eval(args: argparse.Namespace) -> int:
    from .models import count_params
    from .train import error_rate

    model, arch, dataset, cm = load_any(args.model)
    if not (args.dataset or dataset):
        raise DeepcompError(f"{args.model}: {arch} is not a built-in architecture: name its test set "
                            "with --dataset (its images go in as pixels / 255, as for the built-ins)")
    data = load_dataset(args.dataset or dataset, args.data_dir)
    try:
        err = error_rate(model, data.test)
    except RuntimeError as e:  # a custom program fed images it does not take
        raise DeepcompError(f"{args.model}: {arch} does not run on {data.name} images "
                            f"({str(e).strip().splitlines()[0][:120]})") from None
    size = args.model.stat().st_size
    params = count_params(model)
    obj = {"model": str(args.model), "arch": arch, "dataset": data.name, "images": len(data.test),
           "error": err, "bytes": size, "params": params, "ratio": 4 * params / size}
    emit(args, obj, f"{args.model}: {arch} on {data.name} test ({len(data.test)} images): "
         f"error {100 * err:.2f}%, {size} bytes ({4 * params / size:.1f}x vs float32 {4 * params})")
    return 0


def add_stats_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", type=Path, help="compressed .dcz")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run_stats(args: argparse.Namespace) -> int:
    from .stats import format_budget, format_table, layer_stats

    stats = layer_stats(load(args.model))
    budget = (read_meta(args.model) or {}).get("budget")
    text = format_table(stats)
    if budget:  # what compress --max-loss decided, from the report beside the file
        stats["budget"] = {k: budget[k] for k in ("max_loss_pp", "dense_val_error", "final_val_error",
                                                  "val_loss_pp", "settings", "sensitivity")}
        text += "\n" + format_budget(budget)
    emit(args, stats, text)
    return 0


def add_plot_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", type=Path, help="compressed .dcz")
    p.add_argument("-o", "--output", type=Path, required=True, help="directory for the PNGs")


def run_plot(args: argparse.Namespace) -> int:
    from .plot import plot_all

    cm: CompressedModel = load(args.model)
    for path in plot_all(cm, read_meta(args.model), args.output):
        print(path)
    return 0


TRAIN = Command("train a dense model (seeded) and save a .pt checkpoint", add_train_args, run_train)
COMPRESS = Command("prune, quantize and Huffman-code a dense checkpoint into a .dcz", add_compress_args, run_compress)
EVAL = Command("top-1 error and size of a .pt or .dcz", add_eval_args, run_eval)
STATS = Command("per-layer table in the columns of the paper's Table 2", add_stats_args, run_stats)
PLOT = Command("figures: codebook over weights (Fig. 4), symbol histograms (Fig. 5), storage (Fig. 11)", add_plot_args, run_plot)
