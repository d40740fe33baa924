"""compressor.api.compress(max_loss=...): the budget search on the user's loaders, a real-model layer mix."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from compressor import api
from compressor.contract.container import load, save
from compressor.contract.data import load_digits
from compressor.contract.errors import DeepcompError
from compressor.split import hold_out

MAX_LOSS = 3.0


class DigitNet(nn.Module):
    """Conv + BatchNorm + Linear: layers the built-in pipeline refuses (BatchNorm), the API keeps."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc1 = nn.Linear(8 * 16, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.max_pool2d(torch.relu(self.bn(self.conv(x))), 2)
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


def loaders() -> tuple[DataLoader, DataLoader]:
    train, val = hold_out(load_digits().train, 0.15, 0)
    def ds(s):
        return TensorDataset(torch.from_numpy(s.images.astype(np.float32) / 16), torch.from_numpy(s.labels))
    return (DataLoader(ds(train), batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0)),
            DataLoader(ds(val), batch_size=256))


def dense_model(train: DataLoader) -> DigitNet:
    torch.manual_seed(0)
    model = DigitNet()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    api.train_epochs(model, train, lambda m, b: nn.functional.cross_entropy(m(b[0]), b[1]), opt, 12)
    return model


def run(train: DataLoader, val: DataLoader, model: DigitNet) -> tuple:
    return api.compress(model, train, nn.functional.cross_entropy, max_loss=MAX_LOSS, eval_loader=val,
                        optimizer=lambda p: torch.optim.Adam(p, lr=1e-3), prune_epochs=1, finetune_epochs=1)


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    dense = dense_model(loaders()[0])
    state = {k: v.clone() for k, v in dense.state_dict().items()}
    train, val = loaders()  # fresh shuffling: what the reproducibility test starts from too
    cm, report = run(train, val, dense)
    path = tmp_path_factory.mktemp("budget_api") / "digits.dcz"
    save(cm, path)
    return {"train": train, "val": val, "state": state, "model": dense, "report": report, "path": path}


def test_search_meets_the_budget_on_the_validation_loader(searched):
    b = searched["report"]["budget"]
    assert b["within_budget"] and b["val_loss_pp"] <= MAX_LOSS + 1e-9
    assert searched["report"]["stages"]["finetuned"]["error"] == pytest.approx(b["final_val_error"])
    assert set(b["settings"]) == {"conv.weight", "fc1.weight", "fc2.weight"}
    assert b["settings"]["fc1.weight"]["density"] < 0.5  # the big layer was pruned
    for s in b["settings"].values():  # never more shared weights than non-zeros
        assert 2 ** s["bits"] - 1 <= max(s["nonzeros"], 1)
    assert any(st["accepted"] for st in b["steps"])
    assert set(b["sensitivity"]) == set(b["settings"])


def test_the_file_is_the_model_and_keeps_the_batchnorm(searched):
    cm = load(searched["path"])
    assert "bn.running_mean" in cm.dense
    fresh = api.load(searched["path"]).apply_to(DigitNet().eval())
    x = next(iter(searched["val"]))[0]
    model = searched["model"].eval()
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x))
    err = api.evaluate(fresh, searched["val"], None)["error"]
    assert err == pytest.approx(searched["report"]["budget"]["final_val_error"])


def test_the_search_is_reproducible(searched):
    model = DigitNet()
    model.load_state_dict(searched["state"])
    cm, report = run(*loaders(), model)
    again = searched["path"].with_name("again.dcz")
    save(cm, again)
    assert again.read_bytes() == searched["path"].read_bytes()
    assert report["budget"]["steps"] == searched["report"]["budget"]["steps"]


@pytest.mark.parametrize("kwargs, match", [
    ({"max_loss": 1.0, "density": 0.5}, "drop density"),
    ({"max_loss": 1.0, "bits": 4}, "drop bits"),
    ({"max_loss": 1.0, "eval_loader": None}, "needs eval_loader"),
    ({"max_loss": -1}, "percentage points"),
    ({"max_loss": True}, "percentage points"),
    ({"max_loss": 1.0, "prune_epochs": 0}, "retrains after every step"),
    ({}, "density: needed"),
])
def test_bad_budget_calls_are_one_line(kwargs, match):
    train, val = loaders()
    args = {"eval_loader": val, **kwargs}
    with pytest.raises(DeepcompError, match=match) as e:
        api.compress(DigitNet(), train, nn.functional.cross_entropy, **args)
    assert len(str(e.value).splitlines()) == 1
