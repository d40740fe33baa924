"""``deepcomp rom`` (lay a .dcz out for N PEs) and ``deepcomp golden`` (run the golden model)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from .contract.cli import IMAGES, PES, Command, add_data_args, bounded, emit
from .contract.container import CompressedModel, load
from .contract.data import load_dataset
from .contract.errors import DeepcompError
from .contract.fixedpoint import IntLayer, feature_scale, quantize_features, to_int_layers
from .contract.rom import FLAG_SIGNED_INPUT, build, save


def float_layers(cm: CompressedModel) -> list[tuple]:
    """The fully connected layers as (index, codebook, bias, wbits, zbits).

    Convolutions must all come before the fully connected layers: they run on
    the host (docs/arithmetic.md, "Convolutions") and are not part of the ROM.
    """
    if cm.version == 2 or not cm.fits_v1():  # BatchNorm, groups, ...: the engine would silently drop them
        raise DeepcompError(f"{cm.arch}: the ROM holds Linear layers (after host convolutions) only; this "
                            ".dcz stores other layers or tensors (made by compressor.api)")
    kinds = [r.kind for r in cm.layers]
    first_fc = kinds.index("linear") if "linear" in kinds else None
    if first_fc is None or "conv" in kinds[first_fc:]:
        raise DeepcompError(f"{cm.arch}: the ROM needs fully connected layers after any convolutions")
    return [(r.matrix_index, r.codebook, r.bias if r.bias is not None else np.zeros(r.shape[0]),
             r.wbits, r.zbits) for r in cm.layers if r.kind == "linear"]


def host_features(cm: CompressedModel, images: np.ndarray, source: str = "<model>") -> np.ndarray | None:
    """Real-valued inputs of the first fc layer for a conv net (None for an MLP: pixels go in)."""
    if all(r.kind == "linear" for r in cm.layers):
        return None
    import torch

    from .models import to_module
    from .train import to_tensor

    model = to_module(cm, source=source)
    with torch.no_grad():
        return np.concatenate([model.features(to_tensor(images[i:i + 1000])).numpy()
                               for i in range(0, len(images), 1000)])


def calibration_images(dataset: str, data_dir: Path | None, count: int, seed: int = 0) -> np.ndarray:
    data = load_dataset(dataset, data_dir)
    return data.train.images[np.random.default_rng(seed).permutation(len(data.train))[:count]]


def int_layers_for(cm: CompressedModel, dataset: str, data_dir: Path | None,
                   calib: int, percentile: float, source: str = "<model>") -> tuple[list[IntLayer], float]:
    """Integer layers and the input scale (0 for pixels) of the ROM."""
    images = calibration_images(dataset, data_dir, calib)
    first = cm.layers[0]
    if first.kind == "linear" and images[0].size != first.shape[1]:
        raise DeepcompError(f"{source}: expects {first.shape[1]} inputs, {dataset} images have {images[0].size}")
    feats = host_features(cm, images, source)
    if feats is None:
        return to_int_layers(float_layers(cm), images.reshape(len(images), -1),
                             percentile=percentile), 0.0
    scale = feature_scale(feats, percentile)
    return to_int_layers(float_layers(cm), quantize_features(feats, scale), percentile=percentile,
                         input_scale=scale), scale


def add_rom_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", type=Path, help="compressed .dcz")
    p.add_argument("--pes", type=PES, default=4, help="number of processing elements N")
    p.add_argument("-o", "--output", type=Path, required=True, help="output ROM image")
    p.add_argument("--format", choices=["bin", "hex", "mem"], default="bin",
                   help="bin: raw bytes; hex: one byte per line; mem: one 32-bit word per line")
    p.add_argument("--max-code-len", type=bounded(int, 1, 16), default=12, help="Huffman code length bound L")
    add_data_args(p)
    p.add_argument("--calib-images", type=bounded(int, 1, 1_000_000), default=5000, help="training images for scales")
    p.add_argument("--percentile", type=bounded(float, 0, 100, above=True), default=99.99, help="activation range percentile")


def run_rom(args: argparse.Namespace) -> int:
    from .commands import dataset_for_arch

    cm = load(args.model)
    float_layers(cm)  # a file the ROM cannot hold says so before its arch is looked up
    layers, scale = int_layers_for(cm, args.dataset or dataset_for_arch(cm.arch), args.data_dir,
                                   args.calib_images, args.percentile, str(args.model))
    image = build(layers, args.pes, args.max_code_len, flags=FLAG_SIGNED_INPUT if scale else 0,
                  input_scale=scale)
    save(image, args.output, args.format)
    print(f"wrote {args.output}: {len(image)} bytes ROM for {args.pes} PEs "
          f"(.dcz {args.model.stat().st_size} bytes)")
    return 0


def add_golden_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("rom", type=Path, help="ROM image (bin, hex or mem)")
    add_data_args(p, default="mnist")
    p.add_argument("--images", type=IMAGES, help="first K test images (default: all)")
    p.add_argument("--host", type=Path,
                   help="for a ROM of a conv net's fc layers: the .dcz whose convolutions run on the host")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--logits", action="store_true",
                   help="with --json: also each image's int32 logits and cycle count")
    p.add_argument("--fifo-depth", type=int, choices=(2, 4, 8, 16), default=8,
                   help="the engine's per-PE activation FIFO (the iCEBreaker build uses 4), for the cycle model")


def golden_run(rom_path: Path, dataset: str, data_dir: Path | None, images: int | None,
               host: Path | None = None, logits: bool = False, fifo_depth: int = 8) -> dict:
    """Decode the ROM, run the integer network and the cycle model on test images.

    ``cycles`` and ``ideal_cycles`` are means per inference; ``utilisation`` is
    Σ ideal ÷ Σ cycles over the images (not a mean of ratios).
    """
    from compressor.contract.golden import Timing, decode_rom, infer

    from .contract.rom import load as load_rom

    rom = load_rom(rom_path)
    layers = decode_rom(rom, str(rom_path))
    data = load_dataset(dataset, data_dir)
    x = data.test.images[:images]
    y = data.test.labels[: len(x)]
    if rom.signed_input:
        if host is None:
            raise DeepcompError(f"{rom_path}: holds the fc layers of a conv net; pass --host model.dcz")
        feats = host_features(load(host), x, str(host))
        if feats is None or feats[0].size != rom.input_size:
            raise DeepcompError(f"{host}: its convolutions make {0 if feats is None else feats[0].size} "
                                f"features, {rom_path} expects {rom.input_size} inputs")
        x = quantize_features(feats, rom.input_scale)
    elif host is not None:
        raise DeepcompError(f"{rom_path}: takes pixels; --host is only for the fc layers of a conv net")
    x = x.reshape(len(x), -1)
    if x.shape[1] != rom.input_size:
        raise DeepcompError(f"{rom_path}: expects {rom.input_size} inputs, {dataset} images have {x.shape[1]}")
    res = infer(layers, x, Timing(fifo_depth=fifo_depth))
    return {
        "rom": str(rom_path), "pes": rom.n_pes, "images": int(len(x)),
        "error": float((res["pred"] != y).mean()) if len(x) else 0.0,
        "cycles": float(res["cycles"].mean()), "ideal_cycles": float(res["ideal"].mean()),
        "utilisation": float(res["ideal"].sum() / max(res["cycles"].sum(), 1)),
        "predictions": res["pred"].tolist(),
        **({"logits": res["logits"].tolist(), "cycles_each": res["cycles"].tolist()} if logits else {}),
    }


def run_golden(args: argparse.Namespace) -> int:
    res = golden_run(args.rom, args.dataset, args.data_dir, args.images, args.host, args.logits,
                     args.fifo_depth)
    emit(args, res, f"{args.rom}: {res['images']} images, error {100 * res['error']:.2f}%, "
         f"{res['cycles']:.0f} cycles/inference (ideal {res['ideal_cycles']:.0f}, "
         f"utilisation {res['utilisation']:.3f}) with {res['pes']} PEs")
    return 0


ROM = Command("lay a .dcz out as the accelerator's ROM image for N PEs", add_rom_args, run_rom)
GOLDEN = Command("run the bit-exact golden model of the hardware on a ROM image", add_golden_args, run_golden)
