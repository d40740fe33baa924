"""Any PyTorch model through compressor.api: storage by name, apply_to, the user's loop, limits at start."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from compressor import api
from compressor.contract.container import MAX_DIM, load, save
from compressor.contract.errors import DeepcompError
from tests.real_nets import SeqNet, SmallMobileNet, SmallResNet


def images(n: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g)


def image_loader(n: int = 64) -> DataLoader:
    return DataLoader(TensorDataset(*images(n)), batch_size=16, shuffle=True,
                      generator=torch.Generator().manual_seed(0))


def roundtrip(model: nn.Module, fresh: nn.Module, cm, path) -> nn.Module:
    save(cm, path)
    return api.load(path).apply_to(fresh)


@pytest.mark.parametrize("net", [SmallResNet, SmallMobileNet])
def test_conv_nets_round_trip_with_identical_outputs(tmp_path, net):
    torch.manual_seed(0)
    model = net()
    cm, report = api.compress(model, image_loader(), nn.functional.cross_entropy, density=0.4,
                              prune_steps=2, eval_loader=image_loader())
    back = roundtrip(model, net(), cm, tmp_path / "m.dcz")
    x, _ = images(32, seed=1)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), back(x))
    for key, value in model.state_dict().items():  # BatchNorm running statistics included
        assert torch.equal(value, back.state_dict()[key]), key
    kinds = {r.key: r.kind for r in load(tmp_path / "m.dcz").layers}
    assert all(k.endswith(".weight") for k in kinds) and "conv" in kinds.values()
    assert any(k.endswith("running_var") for k in cm.dense) and "finetuned" in report["stages"]
    for rec in cm.layers:  # pruned to the density, each weight one of the codebook's entries
        w = model.get_submodule(rec.name).weight.detach()
        assert abs(float((w != 0).float().mean()) - 0.4) < 0.05
        assert len(torch.unique(w)) <= 1 << rec.wbits


def test_depthwise_groups_and_geometry_are_stored(tmp_path):
    model = SmallMobileNet()
    cm = api.Compressor(model, density=0.5).finish()
    save(cm, tmp_path / "m.dcz")
    back = {r.name: r for r in load(tmp_path / "m.dcz").layers}
    assert back["features.3"].groups == 16 and back["features.3"].stride == (2, 2)
    odd = nn.Conv2d(4, 6, 3, stride=(1, 2), padding=(1, 2), dilation=(2, 1), groups=2)
    same = nn.Conv2d(4, 4, 4, padding="same", padding_mode="reflect")
    for conv in (odd, same):
        cm = api.Compressor(nn.Sequential(conv), density=0.5).finish()
        rec = roundtrip_record(cm, tmp_path / "c.dcz")
        assert (rec.stride, rec.padding, rec.dilation, rec.groups, rec.padding_mode) == (
            conv.stride, conv.padding if conv.padding == "same" else tuple(conv.padding), conv.dilation,
            conv.groups, conv.padding_mode)


def roundtrip_record(cm, path):
    save(cm, path)
    return load(path).layers[0]


def test_embedding_lstm_gru_layernorm_root_parameter(tmp_path):
    torch.manual_seed(0)
    tokens = torch.randint(0, 40, (48, 7))
    labels = torch.randint(0, 5, (48,))
    model = SeqNet()
    cm, _ = api.compress(model, DataLoader(TensorDataset(tokens, labels), batch_size=16),
                         nn.CrossEntropyLoss(), density={"emb": 0.5, "lstm": 0.3, "gru": 0.3, "head": 0.6},
                         prune_steps=1)
    kinds = {r.key: r.kind for r in cm.layers}
    assert kinds["emb.weight"] == "embedding" and kinds["gru.weight_hh_l0_reverse"] == "matrix"
    assert {"scale", "lstm.bias_ih_l0", "norm.weight"} <= set(cm.dense)
    back = roundtrip(model, SeqNet(), cm, tmp_path / "s.dcz")
    with torch.no_grad():
        assert torch.equal(model(tokens), back(tokens))


def test_keep_dense_and_dense_dtype(tmp_path):
    model = SmallResNet()
    cm = api.Compressor(model, density=0.3, keep_dense=["fc", "layer2"], dense_dtype="float16",
                        bias_dtype="float32").finish()
    assert "fc.weight" in cm.dense and "layer2.conv1.weight" in cm.dense
    assert cm.dense["fc.weight"].dtype == np.float16 and cm.dense["bn.running_mean"].dtype == np.float16
    assert cm.dense["bn.num_batches_tracked"].dtype == np.int64
    back = roundtrip(model, SmallResNet(), cm, tmp_path / "k.dcz")
    x, _ = images(8)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), back(x))


def test_users_own_steps_see_the_loaders_inputs_unchanged(tmp_path):
    x = torch.rand(40, 3) * 1000  # neither pixels nor normalised: must reach the model as they are
    y = x.sum(1, keepdim=True)
    seen: list[float] = []

    def step(model, batch):
        seen.append(float(batch[0].max()))
        return nn.functional.mse_loss(model(batch[0]), batch[1])

    def metric(model, batch):
        return {"mae": float((model(batch[0]) - batch[1]).abs().mean())}

    loader = DataLoader(TensorDataset(x, y), batch_size=10)
    model = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    cm, report = api.compress(model, loader, density=0.5, optimizer=opt, train_step=step,
                              eval_loader=loader, eval_step=metric, prune_steps=1)
    assert max(seen) > 900 and "mae" in report["stages"]["finetuned"]
    assert cm.fits_v1()  # Linear layers only, nothing else: the file is version 1, as before


def test_attach_keeps_masks_and_ties_under_momentum_and_decay():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-2)
    comp = api.Compressor(model, density=0.25, bits=3).attach(opt)
    x, y = torch.randn(32, 10), torch.randint(0, 3, (32,))

    def steps(n: int) -> None:
        for _ in range(n):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()

    steps(3)  # momentum builds up on every weight
    comp.prune()
    steps(5)
    w = model[0].weight.detach()
    assert int((w != 0).sum()) == 50 and torch.equal(w != 0, comp.masks["0.weight"])
    comp.quantize()
    before = torch.unique(model[0].weight.detach())
    steps(5)
    after = torch.unique(model[0].weight.detach())
    assert len(after) <= 8 and not torch.equal(before, after)  # the centroids trained, still 7 + zero
    assert torch.equal(model[0].weight.detach() != 0, comp.masks["0.weight"])


@pytest.mark.parametrize("make, match", [
    (lambda: nn.Linear(4, 1_100_000), "1..1048576 in a .dcz \\(keep it dense with keep_dense=\\[''\\], the root module\\)"),
    (lambda: nn.Sequential(nn.Conv2d(1, 2, 3, stride=(1, 70_000))), "above 65536"),
])
def test_limits_are_checked_before_training(make, match):
    with pytest.raises(DeepcompError, match=match):
        api.Compressor(make(), density=0.1)


def test_weight_budget_is_checked_before_training():
    with torch.device("meta"):  # 16384 x 16400 would be 1 GiB of float32: shapes only
        model = nn.Sequential(nn.Linear(16400, 16384))
    with pytest.raises(DeepcompError, match="raise the density or keep the largest layer dense"):
        api.Compressor(model, density=0.01)


def test_a_layer_too_wide_for_a_record_is_kept_dense(tmp_path):
    model = nn.Sequential(nn.Linear(1, MAX_DIM + 1), nn.Linear(MAX_DIM + 1, 1))
    cm = api.Compressor(model, density=0.5, keep_dense=["0", "1"]).finish()
    back = roundtrip(model, nn.Sequential(nn.Linear(1, MAX_DIM + 1), nn.Linear(MAX_DIM + 1, 1)),
                     cm, tmp_path / "w.dcz")
    assert torch.equal(back[1].weight, model[1].weight)


@pytest.mark.parametrize("call, match", [
    (lambda m, dl: api.compress(m, None, nn.functional.cross_entropy, density=0.5), "train_loader: expected"),
    (lambda m, dl: api.compress(m, dl, None, density=0.5), "loss_fn: a callable"),
    (lambda m, dl: api.compress(m, iter(dl), nn.functional.cross_entropy, density=0.5), "iterated only once"),
    (lambda m, dl: api.compress(m, [{"x": 1}], nn.functional.cross_entropy, density=0.5), "pass train_step"),
    (lambda m, dl: api.compress(m, [], nn.functional.cross_entropy, density=0.5), "yields no batches"),
    (lambda m, dl: api.Compressor(m, density=1.5), "density: 1.5 for layer stem.weight is not in"),
    (lambda m, dl: api.Compressor(m, density={"fcc": 0.5}), "density: 'fcc' is not a compressed layer"),
    (lambda m, dl: api.Compressor(m, density=0.5, bits=9), "bits: 9 for layer"),
    (lambda m, dl: api.Compressor(m, density=0.5, zbits={"fc": 4.5}), "zbits: 4.5 for layer fc.weight is not an integer"),
    (lambda m, dl: api.Compressor(m, density=0.5, keep_dense=["nope"]), "keep_dense: 'nope'"),
    (lambda m, dl: api.Compressor(m, density=0.5, dense_dtype="bfloat16"), "dense_dtype"),
    (lambda m, dl: api.Compressor("model", density=0.5), "expected a torch.nn.Module"),
    (lambda m, dl: api.compress(m, dl, nn.functional.cross_entropy, density=0.5, optimizer=3), "optimizer"),
    (lambda m, dl: api.compress(m, [(torch.zeros(2, 3), torch.zeros(2))], nn.functional.cross_entropy,
                                density=0.5), "the first batch does not run through the model and loss"),
    (lambda m, dl: api.compress(m, dl, nn.functional.cross_entropy, density=0.5,
                                eval_loader=[{"x": 1}]), "eval_loader: a batch is a dict"),
])
def test_wrong_arguments_are_one_clear_line(call, match):
    model = SmallResNet()
    with pytest.raises(DeepcompError, match=match) as e:
        call(model, image_loader(16))
    assert len(str(e.value).splitlines()) == 1


def test_apply_to_the_wrong_model_says_what_differs(tmp_path):
    cm = api.Compressor(SmallResNet(), density=0.5).finish()
    save(cm, tmp_path / "r.dcz")
    with pytest.raises(DeepcompError, match="the model has no module 'stem'"):
        api.load(tmp_path / "r.dcz").apply_to(SmallMobileNet())
    with pytest.raises(DeepcompError, match="shape"):
        api.load(tmp_path / "r.dcz").apply_to(SmallResNet(width=8))
    with pytest.raises(DeepcompError, match="the model has 1 tensors the file does not store"):
        bigger = SmallResNet()
        bigger.register_buffer("extra", torch.zeros(3))
        api.load(tmp_path / "r.dcz").apply_to(bigger)


def test_legacy_pipeline_refuses_loaders_and_float_images():
    from compressor.contract.data import Dataset, Split
    from compressor.pipeline import CompressConfig, compress

    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    with pytest.raises(DeepcompError, match="not a DataLoader; for a DataLoader"):
        compress(model, "custom", image_loader(16), CompressConfig())
    split = Split(np.random.rand(4, 1, 8, 8).astype(np.float32), np.zeros(4, dtype=np.int64))
    with pytest.raises(DeepcompError, match="images are float32"):
        compress(model, "custom", Dataset("floats", split, split), CompressConfig())


def test_embedded_program_runs_without_the_class(tmp_path, cli):
    from compressor.models import to_module
    from compressor.program import embed

    torch.manual_seed(0)
    model = SmallResNet()
    x, _ = images(8)
    comp = api.Compressor(model, density=0.5)
    cm = comp.finish(arch="small-resnet", program=embed(model, x[:2]))
    save(cm, tmp_path / "p.dcz")
    rebuilt = to_module(load(tmp_path / "p.dcz"))
    assert not isinstance(rebuilt, SmallResNet)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), rebuilt(x))
    code, out, err = cli("eval", tmp_path / "p.dcz", "--dataset", "digits", "--json")
    assert code == 0, err
    code, out, err = cli("stats", tmp_path / "p.dcz")
    assert code == 0 and "embedded program" in out
    bare = api.Compressor(SmallResNet(), density=0.5).finish(arch="small-resnet")
    save(bare, tmp_path / "bare.dcz")
    code, out, err = cli("eval", tmp_path / "bare.dcz", "--dataset", "digits")
    assert code == 2 and "embeds no program" in err and len(err.splitlines()) == 1


def test_fold_bn_keeps_outputs_and_stays_frozen_while_training(tmp_path):
    from compressor.fold import fold_batchnorm

    torch.manual_seed(0)
    model = SmallResNet()
    loader = image_loader()
    train_epochs_plain(model, loader)  # BatchNorm statistics that are not the defaults
    x, _ = images(16, seed=3)
    with torch.no_grad():
        before = model.eval()(x)
    pairs, hooks = fold_batchnorm(model)
    assert ("stem", "bn") in pairs and ("layer2.short.0", "layer2.short.1") in pairs and len(pairs) == 6
    with torch.no_grad():
        torch.testing.assert_close(model(x), before, rtol=1e-4, atol=1e-5)
        model.train()(x)  # batch statistics must not undo the fold
        torch.testing.assert_close(model.eval()(x), before, rtol=1e-4, atol=1e-5)
    for h in hooks:
        h.remove()
    fresh = SmallResNet()
    cm, report = api.compress(fresh, loader, nn.functional.cross_entropy, density=0.5, prune_steps=1,
                              fold_bn=True)
    assert len(report["plan"]["folded"]) == 6 and fresh.bn.weight.requires_grad
    back = roundtrip(fresh, SmallResNet(), cm, tmp_path / "f.dcz")
    with torch.no_grad():
        assert torch.equal(fresh.eval()(x), back(x))


def train_epochs_plain(model: nn.Module, loader: DataLoader) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    api.train_epochs(model, loader, lambda m, b: nn.functional.cross_entropy(m(b[0]), b[1]), opt, 2)


def test_rom_refuses_a_file_with_tensors_the_engine_would_drop(tmp_path, cli):
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 10))
    save(api.Compressor(model, density=0.5).finish(arch="mlp:64-16-10"), tmp_path / "bn.dcz")
    code, _, err = cli("rom", tmp_path / "bn.dcz", "--pes", "2", "-o", tmp_path / "x.rom", "--dataset", "digits")
    assert code == 2 and "the ROM holds Linear and Conv2d layers only" in err and not (tmp_path / "x.rom").exists()


class TiedLM(nn.Module):
    """Output layer sharing the embedding's weight, as language models do."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(30, 8)
        self.out = nn.Linear(8, 30, bias=False)
        self.out.weight = self.emb.weight

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.out(self.emb(tokens).mean(1))


def test_tied_weights_are_stored_once_and_a_root_layer_round_trips(tmp_path):
    torch.manual_seed(0)
    model = TiedLM()
    cm = api.Compressor(model, density=0.5).finish()
    assert [r.key for r in cm.layers] == ["emb.weight"] and not cm.dense
    back = roundtrip(model, TiedLM(), cm, tmp_path / "t.dcz")
    assert back.out.weight is back.emb.weight and torch.equal(back.emb.weight, model.emb.weight)
    root = nn.Linear(5, 3)
    cm = api.Compressor(root, density=0.5, bias_dtype="float32").finish()
    assert [r.key for r in cm.layers] == ["weight"]
    back = roundtrip(root, nn.Linear(5, 3), cm, tmp_path / "root.dcz")
    assert torch.equal(back.weight, root.weight) and torch.equal(back.bias, root.bias)


def test_legacy_pipeline_refuses_lost_buffers_and_the_weight_budget_at_start():
    from compressor.contract.data import load_dataset
    from compressor.models import compressible_layers
    from compressor.pipeline import CompressConfig, compress
    from compressor.prune import PruneConfig

    with pytest.raises(DeepcompError, match="layer 1: unsupported weight-bearing layer BatchNorm2d"):
        compressible_layers(nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2, affine=False)))
    with torch.device("meta"):
        model = nn.Sequential(nn.Flatten(), nn.Linear(16400, 16384))
    with pytest.raises(DeepcompError, match="would make a file of at least .* raise --density"):
        compress(model, "custom", load_dataset("digits"), CompressConfig(prune=PruneConfig(density=[0.01])))
