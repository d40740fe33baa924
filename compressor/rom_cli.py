"""``deepcomp rom`` (lay a .dcz out for N PEs) and ``deepcomp golden`` (run the golden model)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from .archspec import CONV_SHAPES, arch_shapes, engine_plan
from .contract.cli import IMAGES, PES, Command, add_data_args, bounded, emit
from .contract.container import CompressedModel, load, pair
from .contract.data import load_dataset
from .contract.errors import DeepcompError
from .contract.fixedpoint import ConvGeom, IntLayer, to_int_layers
from .contract.rom import build, save


def float_layers(cm: CompressedModel, source: str | None = None) -> list[tuple]:
    """Every layer as (index, codebook, bias, wbits, zbits, conv, signed), the index in model order.

    A net of Linear layers needs no architecture knowledge (ReLU hidden layers, logits
    last). A conv net's input size, pooling and activations come from its built-in arch
    (:func:`compressor.archspec.engine_plan`: the built-in conv nets).
    """
    source = source or cm.arch
    if cm.version == 2 or not cm.fits_v1():  # BatchNorm, groups, ...: the engine would silently drop them
        raise DeepcompError(f"{source}: the ROM holds Linear and Conv2d layers only; this "
                            ".dcz stores other layers or tensors (made by compressor.api)")
    bias = [r.bias if r.bias is not None else np.zeros(r.shape[0]) for r in cm.layers]
    if all(r.kind == "linear" for r in cm.layers):
        return [(r.matrix_index, r.codebook, b, r.wbits, r.zbits, None, False)
                for r, b in zip(cm.layers, bias, strict=True)]
    try:
        shape, plan = engine_plan(cm.arch)
    except DeepcompError:
        shape = None
    if shape is None:
        raise DeepcompError(f"{source}: architecture {cm.arch!r}: the ROM knows the pooling and activations "
                            f"of the built-in conv nets only ({', '.join(CONV_SHAPES)})")
    if arch_shapes(cm.arch) != [r.shape for r in cm.layers]:
        raise DeepcompError(f"{source}: its layers {[r.shape for r in cm.layers]} do not match its "
                            f"architecture {cm.arch}")
    out = []
    c, h, w = shape
    fc_seen = False
    for i, (r, b, (act, pool)) in enumerate(zip(cm.layers, bias, plan, strict=True)):
        geom = None
        if r.kind == "conv":
            stride, pad = pair(r.stride)[0], pair(r.padding)[0]
            geom = ConvGeom.from_padding(c, h, w, r.shape[2], r.shape[3], stride, pad, pad, pool=pool)
            why = "a convolution after a fully connected layer" if fc_seen else geom.problem()
            if why:
                raise DeepcompError(f"{source}: layer {i} ({r.name}): {why}: the engine cannot run it")
            c, h, w = r.shape[0], geom.out_hp, geom.out_wp
        else:
            fc_seen = True
        out.append((r.matrix_index, r.codebook, b, r.wbits, r.zbits, geom, act == "signed"))
    return out


def calibration_images(dataset: str, data_dir: Path | None, count: int, seed: int = 0) -> np.ndarray:
    data = load_dataset(dataset, data_dir)
    return data.train.images[np.random.default_rng(seed).permutation(len(data.train))[:count]]


def int_layers_for(cm: CompressedModel, dataset: str, data_dir: Path | None,
                   calib: int, percentile: float, source: str = "<model>") -> tuple[list[IntLayer], float]:
    """Integer layers (model order) and the input scale (0: pixels) of the ROM.

    The whole net, convolutions included, is calibrated on the integer network itself
    (compressor.contract.fixedpoint): no torch.
    """
    fl = float_layers(cm, source)
    images = calibration_images(dataset, data_dir, calib)
    want = fl[0][5].in_size if fl[0][5] is not None else fl[0][0].shape[1]
    if images[0].size != want:
        raise DeepcompError(f"{source}: expects {want} inputs, {dataset} images have {images[0].size}")
    return to_int_layers(fl, images.reshape(len(images), -1), percentile=percentile), 0.0


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
    float_layers(cm, str(args.model))  # a file the ROM cannot hold says so before its arch is looked up
    layers, _ = int_layers_for(cm, args.dataset or dataset_for_arch(cm.arch), args.data_dir,
                               args.calib_images, args.percentile, str(args.model))
    image = build(layers, args.pes, args.max_code_len)
    save(image, args.output, args.format)
    print(f"wrote {args.output}: {len(image)} bytes ROM for {args.pes} PEs "
          f"(.dcz {args.model.stat().st_size} bytes)")
    return 0


def add_golden_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("rom", type=Path, help="ROM image (bin, hex or mem)")
    add_data_args(p, default="mnist")
    p.add_argument("--images", type=IMAGES, help="first K test images (default: all)")
    p.add_argument("--cycle-images", type=IMAGES,
                   help="run the cycle model on the first K of the images only (default: all; a conv "
                        "layer's cycle model costs a scan per output position)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--logits", action="store_true",
                   help="with --json: also each image's int32 logits and cycle count")
    p.add_argument("--fifo-depth", type=int, choices=(2, 4, 8, 16), default=8,
                   help="the engine's per-PE activation FIFO (the iCEBreaker build uses 4), for the cycle model")
    p.add_argument("--drain", type=int, choices=(4, 6), default=6,
                   help="the engine variant, by its PE's decode -> accumulator-write pipeline, for the cycle "
                        "model: 6 with the block RAM outputs and the tail registered (the default engine, the "
                        "ULX3S), 4 without (the iCEBreaker; also requantizer latency 4, read-out 3)")
    p.add_argument("--contexts", type=int, choices=(1, 2), default=1,
                   help="decode contexts per PE: 2 cuts the decode loop in two stages, two columns in flight (EngineParams.contexts), for the cycle model")


def golden_run(rom_path: Path, dataset: str, data_dir: Path | None, images: int | None,
               logits: bool = False, fifo_depth: int = 8, cycle_images: int | None = None,
               drain: int = 6, contexts: int = 1) -> dict:
    """Decode the ROM, run the integer network and the cycle model on test images.

    ``cycles`` and ``ideal_cycles`` are means per inference (over the first
    ``cycle_images`` images when given); ``utilisation`` is Σ ideal ÷ Σ cycles
    over those images (not a mean of ratios); ``layers`` the per-layer means.
    """
    from compressor.contract.golden import Timing, decode_rom, infer

    from .contract.rom import load as load_rom

    rom = load_rom(rom_path)
    layers = decode_rom(rom, str(rom_path))
    if rom.signed_input:
        raise DeepcompError(f"{rom_path}: takes signed int8 input features (an fc-only ROM of a conv net); "
                            "deepcomp golden feeds dataset images: build the whole net with deepcomp rom")
    data = load_dataset(dataset, data_dir)
    x = data.test.images[:images]
    y = data.test.labels[: len(x)]
    x = x.reshape(len(x), -1)
    if x.shape[1] != rom.input_size:
        raise DeepcompError(f"{rom_path}: expects {rom.input_size} inputs, {dataset} images have {x.shape[1]}")
    res = infer(layers, x, Timing.engine(fifo_depth, registered=drain == 6, contexts=contexts), cycle_images)
    k = max(len(res["cycles"]), 1)
    return {
        "rom": str(rom_path), "pes": rom.n_pes, "images": int(len(x)),
        "error": float((res["pred"] != y).mean()) if len(x) else 0.0,
        "cycles": float(res["cycles"].sum() / k), "ideal_cycles": float(res["ideal"].sum() / k),
        "utilisation": float(res["ideal"].sum() / max(res["cycles"].sum(), 1)),
        "cycle_images": int(len(res["cycles"])),
        "layers": [{"cycles": float(c), "ideal_cycles": float(i)} for c, i in
                   zip(res["layer_cycles"].sum(axis=0) / k, res["layer_ideal"].sum(axis=0) / k, strict=True)],
        "predictions": res["pred"].tolist(),
        **({"logits": res["logits"].tolist(), "cycles_each": res["cycles"].tolist()} if logits else {}),
    }


def run_golden(args: argparse.Namespace) -> int:
    res = golden_run(args.rom, args.dataset, args.data_dir, args.images, args.logits, args.fifo_depth,
                     args.cycle_images, args.drain, args.contexts)
    k = res["cycle_images"]
    on = "" if k == res["images"] else f" on the first {k} images"
    emit(args, res, f"{args.rom}: {res['images']} images, error {100 * res['error']:.2f}%, "
         f"{res['cycles']:.0f} cycles/inference (ideal {res['ideal_cycles']:.0f}, "
         f"utilisation {res['utilisation']:.3f}{on}) with {res['pes']} PEs")
    return 0


ROM = Command("lay a .dcz out as the accelerator's ROM image for N PEs", add_rom_args, run_rom)
GOLDEN = Command("run the bit-exact golden model of the hardware on a ROM image", add_golden_args, run_golden)
