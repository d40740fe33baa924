"""cnn8, the built-in conv net for the 8x8 digits: shapes, the CLI pipeline, the ROM and golden model."""

import json

import numpy as np
import pytest
import torch

from compressor.archspec import arch_shapes, engine_plan
from compressor.contract.errors import DeepcompError
from compressor.models import build, compressible_layers, input_size


def test_shapes_match_module():
    model = build("cnn8")
    assert [tuple(m.weight.shape) for _, m in compressible_layers(model)] == arch_shapes("cnn8")
    assert [tuple(v.shape) for k, v in model.state_dict().items() if k.endswith("weight")] == arch_shapes("cnn8")
    assert engine_plan("cnn8") == ((1, 8, 8), [("relu", 2), ("relu", 2), ("logits", 1)])
    assert input_size("cnn8") == 64
    assert sum(p.numel() for p in model.parameters()) == 8 * 9 + 8 + 16 * 8 * 9 + 16 + 64 * 10 + 10


def test_forward_is_the_engine_plan():
    """conv, ReLU, 2x2 max-pool twice, flatten (C, H, W), fc: what the engine runs layer by layer."""
    torch.manual_seed(0)
    model = build("cnn8").eval()
    x = torch.rand(5, 1, 8, 8)
    f = torch.nn.functional
    h = f.max_pool2d(f.relu(f.conv2d(x, model.conv1.weight, model.conv1.bias, padding=1)), 2)
    assert h.shape == (5, 8, 4, 4)
    h = f.max_pool2d(f.relu(f.conv2d(h, model.conv2.weight, model.conv2.bias, padding=1)), 2)
    assert h.shape == (5, 16, 2, 2)
    want = h.reshape(5, 64) @ model.fc.weight.T + model.fc.bias
    with torch.no_grad():
        assert torch.allclose(model(x), want, atol=1e-6)


def test_unknown_arch_lists_cnn8():
    with pytest.raises(DeepcompError, match="cnn8"):
        arch_shapes("cnn9")


@pytest.fixture(scope="module")
def dcz(tmp_path_factory):
    from compressor.cli import main

    d = tmp_path_factory.mktemp("cnn8")
    assert main(["train", "--dataset", "digits", "--arch", "cnn8", "--epochs", "12", "--lr", "0.1",
                 "-o", str(d / "dense.pt")]) == 0
    # no --dataset, no --arch: both come from the checkpoint
    assert main(["compress", str(d / "dense.pt"), "-o", str(d / "model.dcz"), "--density", "0.6,0.4,0.5",
                 "--bits", "4,4,4", "--prune-steps", "1", "--prune-epochs", "2", "--final-epochs", "2",
                 "--finetune-epochs", "1"]) == 0
    return d / "model.dcz"


@pytest.mark.parametrize("pes", [1, 4])
def test_rom_and_golden_match_float(cli, dcz, pes):
    code, out, err = cli("eval", dcz, "--json")
    assert code == 0, err
    ev = json.loads(out)
    assert ev["arch"] == "cnn8" and ev["dataset"] == "digits" and ev["images"] == 360
    assert ev["error"] < 0.25  # a few epochs: well above chance, not converged

    rom = dcz.with_name(f"model{pes}.rom")
    code, _, err = cli("rom", dcz, "--pes", pes, "--calib-images", 500, "-o", rom)  # dataset from the arch
    assert code == 0, err
    code, out, err = cli("golden", rom, "--dataset", "digits", "--json", "--cycle-images", 5)
    assert code == 0, err
    res = json.loads(out)
    assert res["pes"] == pes and res["images"] == 360 and len(res["layers"]) == 3
    assert abs(res["error"] - ev["error"]) < 0.03, (res["error"], ev["error"])

    # the integer net predicts what the float net predicts on (nearly) every image
    from compressor.contract.container import load
    from compressor.contract.data import load_digits
    from compressor.models import to_module
    from compressor.train import to_tensor

    model = to_module(load(dcz))
    with torch.no_grad():
        pred = model(to_tensor(load_digits().test.images)).argmax(1).numpy()
    assert np.mean(pred == np.array(res["predictions"])) > 0.95
