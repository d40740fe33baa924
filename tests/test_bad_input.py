"""Every subcommand against bad input, as a hostile user would try it.

Each case must end with exit status 2, exactly one line on stderr that names
the file or the option, nothing on stdout, no traceback, and no output file
left behind (the outputs of a case go to a folder that must stay empty).
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from compressor.contract.container import CompressedModel, encode, save
from compressor.contract.fixedpoint import ConvGeom
from compressor.contract.rom import FLAG_SIGNED_INPUT, build, to_readmemh
from sim.testnets import extreme_net, int_layer
from tests.conftest import MNIST_DIR, random_mlp, random_record


def conv_net():
    """conv 1x8x8 -> 4@3x3, pool 2 (signed) -> fc 10: a version 2 image for the digits."""
    rng = np.random.default_rng(4)
    conv = int_layer(rng, 4, 9, 0.6)
    conv.conv, conv.signed = ConvGeom.from_padding(1, 8, 8, 3, 3, pool=2), True
    return [conv, int_layer(rng, 10, 36, 0.5, relu=False)]


def recrc(data: bytes) -> bytes:
    """``data`` with its trailing CRC32 recomputed (so only the field checks can catch it)."""
    return data[:-4] + struct.pack("<I", zlib.crc32(data[:-4]))


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    import torch

    from compressor.checkpoint import FORMAT, save_dense
    from compressor.models import build as build_model

    d = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(7)
    cm = random_mlp(rng)  # mlp:64-40-20-10, fits the digits dataset
    save(cm, d / "ok.dcz")
    save_dense(build_model("mlp:64-40-20-10"), "mlp:64-40-20-10", "digits", d / "ok.pt")
    save_dense(build_model("lenet300"), "lenet300", "digits", d / "mnist_arch.pt")  # 784 inputs
    torch.save({"format": FORMAT, "arch": "mlp:64-1048576-10", "dataset": "digits",
                "state_dict": build_model("mlp:64-8-10").state_dict()}, d / "wrong_arch.pt")
    torch.save({"format": FORMAT, "dataset": "digits"}, d / "no_arch.pt")
    raw = encode(cm)
    out = {"ok.dcz": d / "ok.dcz", "ok.pt": d / "ok.pt", "mnist_arch.pt": d / "mnist_arch.pt",
           "wrong_arch.pt": d / "wrong_arch.pt", "no_arch.pt": d / "no_arch.pt"}
    variants = {
        "truncated.dcz": raw[: len(raw) // 2],
        "empty.dcz": b"",
        "magic.dcz": b"XXXX" + raw[4:],
        "crc.dcz": raw[:-1] + bytes([raw[-1] ^ 1]),
        "version.dcz": recrc(raw[:4] + b"\x09" + raw[5:]),
        # the arch text names another network than the layers hold (CRC recomputed)
        "archswap.dcz": recrc(raw.replace(b"mlp:64-40-20-10", b"mlp:64-40-20-11")),
        "random.pt": rng.bytes(300),
    }
    for name, data in variants.items():
        (d / name).write_bytes(data)
        out[name] = d / name
    image = build(extreme_net(np.random.default_rng(3)), 2)
    (d / "ok.rom").write_bytes(image)
    (d / "crc.rom").write_bytes(image[:-1] + bytes([image[-1] ^ 1]))
    text = to_readmemh(image, 1).splitlines(keepends=True)
    (d / "short.hex").write_bytes(b"".join(text[:-10]))  # the header claims 10 bytes more
    (d / "mlp.rom").write_bytes(build(extreme_net(np.random.default_rng(3)), 1))
    # a conv net of an architecture whose pooling/activations the ROM does not know
    conv = random_record(rng, 6, 9, 0.5, wbits=8, zbits=5, name="conv")
    conv.kind, conv.shape = "conv", (6, 1, 3, 3)
    conv.index = conv.index.reshape(conv.shape)
    save(CompressedModel("my-convnet", [conv, random_record(rng, 10, 6 * 36, 0.3)]), d / "conv.dcz")
    signed = build(extreme_net(np.random.default_rng(3)), 2, flags=FLAG_SIGNED_INPUT, input_scale=0.5)
    (d / "signed.rom").write_bytes(signed)
    v2 = build(conv_net(), 2)  # a version 2 image; then pool 3 in its conv block (CRC re-sealed)
    (d / "pool3.rom").write_bytes(recrc(v2[:32 + 36 + 15] + b"\x03" + v2[32 + 36 + 16:]))
    (d / "adir").mkdir()
    (d / "afile").write_text("x")
    (d / "nodigits").mkdir()
    for name in ("ok.rom", "crc.rom", "short.hex", "mlp.rom", "adir", "afile", "nodigits", "conv.dcz",
                 "signed.rom", "pool3.rom"):
        out[name] = d / name
    return out


# (id, argv); "{x}" is replaced by the path of input file x, "{out}" by a path in the output folder
CASES = [
    ("no-command", []),
    ("unknown-command", ["frobnicate"]),
    ("train-epochs", ["train", "--epochs", "-1", "-o", "{out}/d.pt"]),
    ("train-lr-nan", ["train", "--lr", "nan", "-o", "{out}/d.pt"]),
    ("train-seed", ["train", "--seed", "-1", "-o", "{out}/d.pt"]),
    ("train-arch", ["train", "--arch", "mlp:0-3", "-o", "{out}/d.pt"]),
    ("train-arch-unknown", ["train", "--arch", "resnet9000", "-o", "{out}/d.pt"]),
    ("train-arch-dataset", ["train", "--arch", "lenet300", "--dataset", "digits", "-o", "{out}/d.pt"]),
    ("train-no-mnist", ["train", "--dataset", "mnist", "--data-dir", "{nodigits}", "-o", "{out}/d.pt"]),
    ("train-out-is-dir", ["train", "--epochs", "0", "-o", "{adir}"]),
    ("train-out-under-file", ["train", "--epochs", "0", "-o", "{afile}/d.pt"]),
    ("compress-missing", ["compress", "{out}/none.pt", "-o", "{out}/m.dcz"]),
    ("compress-not-pt", ["compress", "{random.pt}", "-o", "{out}/m.dcz"]),
    ("compress-no-arch", ["compress", "{no_arch.pt}", "-o", "{out}/m.dcz"]),
    ("compress-wrong-arch", ["compress", "{wrong_arch.pt}", "-o", "{out}/m.dcz"]),
    ("compress-density-2", ["compress", "{ok.pt}", "-o", "{out}/m.dcz", "--density", "2"]),
    ("compress-density-nan", ["compress", "{ok.pt}", "-o", "{out}/m.dcz", "--density", "nan"]),
    ("compress-density-neg", ["compress", "{ok.pt}", "-o", "{out}/m.dcz", "--density", "-0.5"]),
    ("compress-density-many", ["compress", "{ok.pt}", "-o", "{out}/m.dcz", "--density", "0.1,0.1,0.1,0.1"]),
    ("compress-bits-0", ["compress", "{ok.pt}", "-o", "{out}/m.dcz", "--bits", "0"]),
    ("compress-bits-9", ["compress", "{ok.pt}", "-o", "{out}/m.dcz", "--bits", "9"]),
    ("compress-zbits-0", ["compress", "{ok.pt}", "-o", "{out}/m.dcz", "--zbits", "0"]),
    ("compress-zbits-9", ["compress", "{ok.pt}", "-o", "{out}/m.dcz", "--zbits", "9"]),
    ("compress-zbits-16", ["compress", "{ok.pt}", "-o", "{out}/m.dcz", "--zbits", "16"]),
    ("compress-lr", ["compress", "{ok.pt}", "-o", "{out}/m.dcz", "--lr", "-1"]),
    ("compress-steps", ["compress", "{ok.pt}", "-o", "{out}/m.dcz", "--prune-steps", "-1"]),
    ("compress-quality", ["compress", "{ok.pt}", "-o", "{out}/m.dcz", "--quality", "-1"]),
    ("compress-dataset-mismatch", ["compress", "{mnist_arch.pt}", "-o", "{out}/m.dcz", "--dataset", "digits"]),
    ("eval-missing", ["eval", "{out}/none.dcz"]),
    ("eval-dir", ["eval", "{adir}"]),
    ("eval-truncated", ["eval", "{truncated.dcz}"]),
    ("eval-empty", ["eval", "{empty.dcz}"]),
    ("eval-magic", ["eval", "{magic.dcz}"]),
    ("eval-crc", ["eval", "{crc.dcz}"]),
    ("eval-version", ["eval", "{version.dcz}"]),
    ("eval-arch-mismatch", ["eval", "{archswap.dcz}"]),
    ("stats-truncated", ["stats", "{truncated.dcz}"]),
    ("stats-crc", ["stats", "{crc.dcz}"]),
    ("plot-out-is-file", ["plot", "{ok.dcz}", "-o", "{afile}"]),
    ("plot-corrupt", ["plot", "{crc.dcz}", "-o", "{out}/plots"]),
    ("rom-pes-0", ["rom", "{ok.dcz}", "--pes", "0", "-o", "{out}/m.rom"]),
    ("rom-pes-65", ["rom", "{ok.dcz}", "--pes", "65", "-o", "{out}/m.rom"]),
    ("rom-percentile", ["rom", "{ok.dcz}", "--percentile", "101", "-o", "{out}/m.rom"]),
    ("rom-calib", ["rom", "{ok.dcz}", "--calib-images", "0", "-o", "{out}/m.rom"]),
    ("rom-code-len", ["rom", "{ok.dcz}", "--max-code-len", "17", "-o", "{out}/m.rom"]),
    ("rom-format", ["rom", "{ok.dcz}", "--format", "elf", "-o", "{out}/m.rom"]),
    ("rom-corrupt", ["rom", "{crc.dcz}", "-o", "{out}/m.rom", "--dataset", "digits"]),
    ("rom-out-is-dir", ["rom", "{ok.dcz}", "-o", "{adir}", "--dataset", "digits"]),
    ("golden-missing", ["golden", "{out}/none.rom", "--dataset", "digits"]),
    ("golden-crc", ["golden", "{crc.rom}", "--dataset", "digits"]),
    ("golden-short-hex", ["golden", "{short.hex}", "--dataset", "digits"]),
    ("golden-images-0", ["golden", "{ok.rom}", "--dataset", "digits", "--images", "0"]),
    ("golden-images-neg", ["golden", "{ok.rom}", "--dataset", "digits", "--images", "-1"]),
    ("golden-dataset-mismatch", ["golden", "{ok.rom}", "--dataset", "mnist", "--data-dir", str(MNIST_DIR)]),
    ("golden-signed-input", ["golden", "{signed.rom}", "--dataset", "digits"]),
    ("golden-conv-pool-3", ["golden", "{pool3.rom}", "--dataset", "digits"]),
    ("golden-cycle-images-0", ["golden", "{ok.rom}", "--dataset", "digits", "--cycle-images", "0"]),
    ("rom-conv-unknown-arch", ["rom", "{conv.dcz}", "-o", "{out}/m.rom", "--dataset", "digits"]),
    ("verilog-pes", ["verilog", "--rom", "{ok.rom}", "--pes", "3", "-o", "{out}/v"]),
    ("verilog-crc", ["verilog", "--rom", "{crc.rom}", "--pes", "2", "-o", "{out}/v"]),
    ("verilog-out-is-file", ["verilog", "--rom", "{ok.rom}", "--pes", "2", "-o", "{afile}"]),
    ("sim-pes", ["sim", "--rom", "{ok.rom}", "--pes", "3", "--dataset", "digits"]),
    ("sim-images", ["sim", "--rom", "{ok.rom}", "--pes", "2", "--dataset", "digits", "--images", "0"]),
    ("board-build-crc", ["board", "build", "ulx3s", "--rom", "{crc.rom}", "-o", "{out}/b"]),
    ("board-build-baud", ["board", "build", "ulx3s", "--rom", "{ok.rom}", "--baud", "-1", "-o", "{out}/b"]),
    ("board-build-freq", ["board", "build", "icebreaker", "--rom", "{mlp.rom}", "--freq", "500", "-o", "{out}/b"]),
    ("board-icebreaker-n2", ["board", "build", "icebreaker", "--rom", "{ok.rom}", "-o", "{out}/b"]),
    ("board-flash-nothing", ["board", "flash", "ulx3s", "{adir}"]),
    ("board-infer-port", ["board", "infer", "--port", "{out}/ttyNONE", "--dataset", "digits"]),
    ("board-infer-images", ["board", "infer", "--port", "{out}/ttyNONE", "--images", "0"]),
]


@pytest.mark.parametrize("case,argv", CASES, ids=[c for c, _ in CASES])
def test_bad_input_is_one_line_and_exit_2(cli, files, tmp_path, case, argv):
    out = tmp_path / "out"
    out.mkdir()
    args = [a.replace("{out}", str(out)) for a in argv]
    for name, path in files.items():
        args = [a.replace("{" + name + "}", str(path)) for a in args]
    before = {p: p.stat().st_mtime_ns for p in files.values() if p.is_file()}
    code, stdout, stderr = cli(*args)
    lines = stderr.splitlines()
    assert code == 2, f"exit {code}: {stderr or stdout}"
    assert len(lines) == 1 and lines[0].startswith("deepcomp"), stderr
    assert "Traceback" not in stderr and stdout == ""
    # the line names what is wrong: a file, an option or the offending value
    assert any(a in lines[0] or Path(a).name in lines[0] for a in args) or "COMMAND" in lines[0], \
        f"names neither a file nor an option: {lines[0]}"
    assert list(out.rglob("*")) == [], f"left behind: {list(out.rglob('*'))}"
    assert not any((files["adir"]).iterdir())
    assert {p: p.stat().st_mtime_ns for p in before} == before, "an input was modified"
