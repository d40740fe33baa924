"""End to end through the console commands, on the offline digits set."""

import json

import numpy as np
import pytest

from tests.conftest import mnist_or_skip


@pytest.fixture(scope="module")
def dense(tmp_path_factory):
    from compressor.cli import main

    path = tmp_path_factory.mktemp("m") / "dense.pt"
    assert main(["train", "--dataset", "digits", "--epochs", "15", "-o", str(path)]) == 0
    return path


@pytest.fixture(scope="module")
def dcz(dense):
    from compressor.cli import main

    path = dense.with_name("model.dcz")
    assert main(["compress", str(dense), "-o", str(path), "--density", "0.3,0.3,0.6",
                 "--prune-steps", "2", "--prune-epochs", "3", "--final-epochs", "4",
                 "--finetune-epochs", "3"]) == 0
    return path


@pytest.mark.slow
def test_compress_eval_roundtrip(cli, dense, dcz):
    code, out, _ = cli("eval", dcz, "--json")
    assert code == 0
    res = json.loads(out)
    assert res["images"] == 360 and res["error"] < 0.08
    assert res["bytes"] == dcz.stat().st_size and res["params"] == 64 * 100 + 100 * 50 + 50 * 10 + 160
    meta = json.loads(dcz.with_name("model.dcz.meta.json").read_text())
    # the file decodes to exactly the fine-tuned model the pipeline evaluated
    assert res["error"] == pytest.approx(meta["stages"]["finetuned"]["error"])
    code, out, _ = cli("eval", dense, "--json")
    assert code == 0 and json.loads(out)["error"] < 0.08


@pytest.mark.slow
def test_stats_columns(cli, dcz):
    code, out, _ = cli("stats", dcz, "--json")
    stats = json.loads(out)
    assert code == 0 and len(stats["layers"]) == 3
    assert stats["total"]["bytes"] == dcz.stat().st_size
    for row in stats["layers"]:
        assert 0.25 < row["density"] < 0.65
        assert row["weight_bits_pqh"] <= row["weight_bits_pq"] + 1
        assert row["rate_pqh"] > row["rate_pq"] > 1


@pytest.mark.slow
def test_plot_writes_pngs(cli, dcz, tmp_path):
    code, out, _ = cli("plot", dcz, "-o", tmp_path)
    assert code == 0
    for name in ("codebook.png", "symbols.png", "storage.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncate", "flip", "magic", "version"])
def test_corrupt_dcz_gives_one_line(cli, dcz, tmp_path, damage):
    data = bytearray(dcz.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip":
        data[100] ^= 1
    elif damage == "magic":
        data[:4] = b"ABCD"
    else:
        data[4] = 77
    bad = tmp_path / "bad.dcz"
    bad.write_bytes(bytes(data))
    code, out, err = cli("stats", bad)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and str(bad) in err and "Traceback" not in err


def test_not_a_checkpoint_and_missing_inputs(cli, tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"hello world")
    code, _, err = cli("compress", junk, "-o", tmp_path / "o.dcz")
    assert code == 2 and "junk.pt" in err and err.count("\n") == 1
    assert not (tmp_path / "o.dcz").exists()
    code, _, err = cli("eval", tmp_path / "nope.dcz")
    assert code == 2 and "no such file" in err
    code, _, err = cli("train", "--dataset", "mnist", "--data-dir", tmp_path / "none", "-o", tmp_path / "d.pt")
    assert code == 2 and "none" in err and not (tmp_path / "d.pt").exists()


def test_corrupt_idx_file(cli, tmp_path):
    from compressor.contract.data import IDX_FILES

    for img, lab in IDX_FILES.values():
        dims = b"".join(d.to_bytes(4, "big") for d in (5, 28, 28))
        (tmp_path / img).write_bytes(b"\x00\x00\x08\x03" + dims + b"\x00" * 8)
        (tmp_path / lab).write_bytes(b"\x00\x00\x08\x01" + (5).to_bytes(4, "big") + b"\x00" * 5)
    code, _, err = cli("train", "--dataset", "mnist", "--data-dir", tmp_path, "-o", tmp_path / "d.pt")
    assert code == 2 and "train-images-idx3-ubyte" in err and "payload" in err


def test_unsupported_layer_is_named():
    import torch.nn as nn

    from compressor.contract.errors import DeepcompError
    from compressor.models import compressible_layers

    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))
    with pytest.raises(DeepcompError, match="layer 1: unsupported weight-bearing layer BatchNorm1d"):
        compressible_layers(model)


def test_mnist_loader_reads_real_files():
    from compressor.contract.data import load_mnist

    d = load_mnist(mnist_or_skip())
    assert d.train.images.shape == (60000, 1, 28, 28) and d.test.labels.shape == (10000,)
    assert np.bincount(d.test.labels).min() > 800


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["bin", "mem"])
def test_rom_and_golden_commands(cli, dcz, tmp_path, fmt):
    rom = tmp_path / f"model.{fmt}"
    code, out, err = cli("rom", dcz, "--pes", "4", "-o", rom, "--format", fmt)
    assert code == 0, err
    code, out, err = cli("golden", rom, "--dataset", "digits", "--json")
    assert code == 0, err
    res = json.loads(out)
    assert res["images"] == 360 and len(res["predictions"]) == 360
    assert res["cycles"] > 0 and 0 < res["ideal_cycles"] and 0.3 < res["utilisation"] < 2
    assert res["pes"] == 4 and res["rom"] == str(rom) and "logits" not in res
    code, out, err = cli("golden", rom, "--dataset", "digits", "--images", "7", "--json", "--logits")
    full = json.loads(out)
    assert code == 0 and len(full["logits"]) == 7 and all(len(row) == 10 for row in full["logits"])
    # the logits are the classes' scores, and the documented means and ratio hold
    assert [int(np.argmax(row)) for row in full["logits"]] == full["predictions"]
    assert full["predictions"] == res["predictions"][:7]
    assert full["cycles"] == pytest.approx(np.mean(full["cycles_each"]))
    # the integer network stays close to the float quantized model it came from
    _, out, _ = cli("eval", dcz, "--json")
    assert abs(res["error"] - json.loads(out)["error"]) <= 0.02


@pytest.mark.slow
def test_golden_rejects_damaged_rom(cli, dcz, tmp_path):
    rom = tmp_path / "m.rom"
    assert cli("rom", dcz, "--pes", "2", "-o", rom)[0] == 0
    data = bytearray(rom.read_bytes())
    data[len(data) // 2] ^= 4
    rom.write_bytes(bytes(data))
    code, out, err = cli("golden", rom, "--dataset", "digits")
    assert code == 2 and out == "" and "m.rom: CRC32 mismatch" in err and err.count("\n") == 1
