"""``deepcomp rom`` (lay a .dcz out for N PEs) and ``deepcomp golden`` (run the golden model)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from .cli import add_data_args, command, emit
from .container import CompressedModel, load
from .data import load_dataset
from .errors import DeepcompError
from .fixedpoint import IntLayer, to_int_layers
from .rom import build, save


def float_layers(cm: CompressedModel) -> list[tuple]:
    """The MLP's layers as (index, codebook, bias, wbits, zbits); conv nets are not (yet) lowered."""
    conv = [r.name for r in cm.layers if r.kind != "linear"]
    if conv:
        raise DeepcompError(
            f"{cm.arch}: layers {', '.join(conv)} are convolutions; the ROM holds fully connected "
            "layers only (see docs/arithmetic.md, 'Convolutions')")
    return [(r.matrix_index, r.codebook, r.bias if r.bias is not None else np.zeros(r.shape[0]),
             r.wbits, r.zbits) for r in cm.layers]


def calibration_inputs(dataset: str, data_dir: Path | None, count: int, seed: int = 0) -> np.ndarray:
    data = load_dataset(dataset, data_dir)
    pick = np.random.default_rng(seed).permutation(len(data.train))[:count]
    return data.train.images[pick].reshape(len(pick), -1)


def int_layers_for(cm: CompressedModel, dataset: str, data_dir: Path | None,
                   calib: int, percentile: float) -> list[IntLayer]:
    return to_int_layers(float_layers(cm), calibration_inputs(dataset, data_dir, calib),
                         percentile=percentile)


def add_rom_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", type=Path, help="compressed .dcz")
    p.add_argument("--pes", type=int, default=4, help="number of processing elements N")
    p.add_argument("-o", "--output", type=Path, required=True)
    p.add_argument("--format", choices=["bin", "hex", "mem"], default="bin",
                   help="bin: raw bytes; hex: one byte per line; mem: one 32-bit word per line")
    p.add_argument("--max-code-len", type=int, default=12, help="Huffman code length bound L")
    add_data_args(p)
    p.add_argument("--calib-images", type=int, default=5000, help="training images for scales")
    p.add_argument("--percentile", type=float, default=99.99, help="activation range percentile")


@command("rom", "lay a .dcz out as the accelerator's ROM image for N PEs")(add_rom_args)
def run_rom(args: argparse.Namespace) -> int:
    from .commands import dataset_for_arch

    cm = load(args.model)
    layers = int_layers_for(cm, args.dataset or dataset_for_arch(cm.arch), args.data_dir,
                            args.calib_images, args.percentile)
    image = build(layers, args.pes, args.max_code_len)
    save(image, args.output, args.format)
    print(f"wrote {args.output}: {len(image)} bytes ROM for {args.pes} PEs "
          f"(.dcz {args.model.stat().st_size} bytes)")
    return 0


def add_golden_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("rom", type=Path, help="ROM image (bin, hex or mem)")
    add_data_args(p, default="mnist")
    p.add_argument("--images", type=int, help="first K test images (default: all)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def golden_run(rom_path: Path, dataset: str, data_dir: Path | None, images: int | None) -> dict:
    """Decode the ROM, run the integer network and the cycle model on test images."""
    from sim.golden import decode_rom, infer

    from .rom import load as load_rom

    rom = load_rom(rom_path)
    layers = decode_rom(rom, str(rom_path))
    data = load_dataset(dataset, data_dir)
    x = data.test.images.reshape(len(data.test), -1)[:images]
    y = data.test.labels[: len(x)]
    if x.shape[1] != rom.input_size:
        raise DeepcompError(f"{rom_path}: expects {rom.input_size} inputs, {dataset} images have {x.shape[1]}")
    res = infer(layers, x)
    return {
        "rom": str(rom_path), "pes": rom.n_pes, "images": int(len(x)),
        "error": float((res["pred"] != y).mean()) if len(x) else 0.0,
        "cycles": float(res["cycles"].mean()), "ideal_cycles": float(res["ideal"].mean()),
        "utilisation": float(res["ideal"].sum() / max(res["cycles"].sum(), 1)),
        "predictions": res["pred"].tolist(),
    }


@command("golden", "run the bit-exact golden model of the hardware on a ROM image")(add_golden_args)
def run_golden(args: argparse.Namespace) -> int:
    res = golden_run(args.rom, args.dataset, args.data_dir, args.images)
    emit(args, res, f"{args.rom}: {res['images']} images, error {100 * res['error']:.2f}%, "
         f"{res['cycles']:.0f} cycles/inference (ideal {res['ideal_cycles']:.0f}, "
         f"utilisation {res['utilisation']:.3f}) with {res['pes']} PEs")
    return 0
