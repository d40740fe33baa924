"""compress --max-loss: allocation, bits choice, the held-out split, and a tiny search on digits."""

import json

import numpy as np
import pytest

from compressor.allocate import Curve, allocate, estimated_bytes, layer_bytes
from compressor.bitwidths import _pick_bits
from compressor.contract.data import Split, load_digits
from compressor.split import hold_out


def test_hold_out_is_seeded_disjoint_and_complete():
    data = load_digits().train
    rest, val = hold_out(data, 0.1, 3)
    again, val2 = hold_out(data, 0.1, 3)
    assert len(val) == round(0.1 * len(data)) and len(rest) + len(val) == len(data)
    assert np.array_equal(val.images, val2.images) and np.array_equal(rest.labels, again.labels)
    other = hold_out(data, 0.1, 4)[1]
    assert not np.array_equal(val.images, other.images)
    joined = {x.tobytes() + bytes([y]) for x, y in zip(np.concatenate([rest.images, val.images]),
                                                       np.concatenate([rest.labels, val.labels]), strict=True)}
    assert joined == {x.tobytes() + bytes([y]) for x, y in zip(data.images, data.labels, strict=True)}


def test_hold_out_refuses_empty_sides():
    from compressor.contract.errors import DeepcompError

    tiny = Split(np.zeros((3, 1, 2, 2), np.uint8), np.zeros(3, np.int64))
    for f in (0.0, 0.01, 0.99, 1.0):
        with pytest.raises(DeepcompError, match="val-fraction"):
            hold_out(tiny, f, 0)


def test_allocation_prunes_the_big_flat_layer_hardest_and_meets_the_size():
    grid = np.array([2.0 ** (-k / 2) for k in range(15)])
    flat = Curve("big", 100_000, grid, 0.01 + 0.02 * (grid < 0.02))  # loses little until 2%
    steep = Curve("small", 1_000, grid, 0.01 + 0.3 * (1 - grid))  # every cut costs
    sizes = {"big": 100_000, "small": 1_000}
    dense = estimated_bytes(sizes, {"big": 1.0, "small": 1.0})
    for frac in (0.5, 0.2, 0.05):
        d = allocate([flat, steep], frac * dense)
        assert estimated_bytes(sizes, d) <= frac * dense * 1.0001
        assert d["big"] < d["small"]
    assert allocate([flat, steep], 0.05 * dense)["small"] > 0.5  # the big layer pays for the cut alone
    # a target below what the curves allow: their lowest densities
    low = allocate([flat, steep], 1.0)
    assert low == {"big": pytest.approx(grid[-1]), "small": pytest.approx(grid[-1])}


def test_layer_bytes_grow_with_density():
    d = np.geomspace(1, 1e-3, 50)
    b = layer_bytes(10_000, d)
    assert np.all(np.diff(b) < 0) and b[0] > 0


def test_pick_bits_takes_free_cuts_and_respects_the_slack():
    # (bits, loss alone, bytes): layer 0 loses nothing down to 3 bits, layer 1 loses at every cut
    a = [(1, 0.5, 10.0), (2, 0.1, 20.0), (3, 0.0, 30.0), (4, 0.0, 40.0)]
    b = [(1, 0.5, 10.0), (2, 0.02, 20.0), (3, 0.01, 30.0), (4, 0.0, 40.0)]
    assert _pick_bits([a, b], 0.0) == [3, 4]
    assert _pick_bits([a, b], 0.015) == [3, 3]
    assert _pick_bits([a, b], 0.03) == [3, 2]
    assert _pick_bits([a, b], 1.5) == [1, 1]


def test_one_more_bit_goes_where_it_buys_most_per_byte():
    from compressor.bitwidths import _one_more_bit

    big = [(1, 0.5, 100.0), (2, 0.02, 2000.0), (3, 0.01, 4000.0)]  # a bit more: -0.01 for 2000 bytes
    small = [(1, 0.5, 1.0), (2, 0.02, 20.0), (3, 0.0, 40.0)]  # -0.02 for 20 bytes
    assert _one_more_bit([big, small], [2, 2], [3, 3]) == [2, 3]
    assert _one_more_bit([big, small], [2, 3], [3, 3]) == [3, 3]


@pytest.fixture(scope="module")
def dense(tmp_path_factory):
    from compressor.cli import main

    path = tmp_path_factory.mktemp("budget") / "dense.pt"
    assert main(["train", "--dataset", "digits", "--epochs", "15", "--val-fraction", "0.2", "-o", str(path)]) == 0
    return path


SEARCH = ["--max-loss", "2", "--prune-epochs", "1", "--final-epochs", "2", "--finetune-epochs", "1"]


@pytest.fixture(scope="module")
def searched(dense):
    from compressor.cli import main

    paths = [dense.with_name(f"model{i}.dcz") for i in (1, 2)]
    for p in paths:
        assert main(["compress", str(dense), "-o", str(p), *SEARCH]) == 0
    return paths


@pytest.mark.slow
def test_search_respects_the_budget_on_validation_and_is_reproducible(dense, searched):
    from compressor.checkpoint import load_dense
    from compressor.contract.container import load
    from compressor.models import to_module
    from compressor.train import error_rate

    first, second = searched
    assert first.read_bytes() == second.read_bytes()  # same seed, same file
    meta = json.loads(first.with_name(first.name + ".meta.json").read_text())
    b = meta["budget"]
    assert b["val_fraction"] == 0.2  # the dense checkpoint's own held-out split
    val = hold_out(load_digits().train, 0.2, 0)[1]
    model, *_ = load_dense(dense)
    e0, e1 = error_rate(model, val), error_rate(to_module(load(first)), val)
    assert b["dense_val_error"] == pytest.approx(e0) and b["final_val_error"] == pytest.approx(e1)
    assert e1 - e0 <= 0.02 + 1e-9 and b["within_budget"]
    settings = b["settings"]
    assert list(settings) == ["fcs.0", "fcs.1", "fcs.2"]
    cm = load(first)
    for rec in cm.layers:
        s = settings[rec.name]
        assert (s["bits"], s["zbits"]) == (rec.wbits, rec.zbits)
        assert (1 << rec.wbits) - 1 <= max(s["nonzeros"], 1)  # no more shared weights than non-zeros
    assert sum(s["nonzeros"] for s in settings.values()) < 0.8 * sum(int(np.prod(r.shape)) for r in cm.layers)
    for name, curve in b["sensitivity"].items():
        assert name in settings and curve["density"][0] == 1.0 and len(curve["density"]) == len(curve["val_error"])
        assert all(x > y for x, y in zip(curve["density"], curve["density"][1:], strict=False))
    assert any(step["accepted"] for step in b["steps"])


@pytest.mark.slow
def test_stats_and_plot_show_the_search(cli, searched, tmp_path):
    code, out, _ = cli("stats", searched[0])
    assert code == 0 and "accuracy budget: --max-loss 2 pp" in out and "within budget" in out
    code, out, _ = cli("stats", searched[0], "--json")
    assert code == 0 and set(json.loads(out)["budget"]["settings"]) == {"fcs.0", "fcs.1", "fcs.2"}
    code, out, _ = cli("plot", searched[0], "-o", tmp_path)
    assert code == 0 and (tmp_path / "sensitivity.png").stat().st_size > 1000


@pytest.mark.parametrize("args, message", [
    (["--max-loss", "-1"], "--max-loss: -1 is out of range"),
    (["--max-loss", "nan"], "not a finite number"),
    (["--max-loss", "abc"], "expected a number"),
    (["--max-loss", "1", "--density", "0.3"], "drop --density"),
    (["--max-loss", "1", "--zbits", "auto", "--bits", "4"], "drop --bits, --zbits"),
    (["--max-loss", "1", "--val-fraction", "1"], "--val-fraction 1.0: must be in (0, 1)"),
])
def test_bad_budget_options_are_one_line(cli, tmp_path, args, message):
    import torch

    from compressor.checkpoint import save_dense
    from compressor.models import build

    torch.manual_seed(0)
    dense = tmp_path / "d.pt"
    save_dense(build("mlp:64-100-50-10"), "mlp:64-100-50-10", "digits", dense, {})
    code, out, err = cli("compress", dense, "-o", tmp_path / "x.dcz", *args)
    lines = [ln for ln in err.splitlines() if not ln.startswith("deepcomp: warning")]
    assert code == 2 and len(lines) == 1 and message in lines[0], err
    assert not (tmp_path / "x.dcz").exists()
