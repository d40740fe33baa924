"""`compress` over random settings: refused before any training, or a file `load` reads back.

The property behind "never a file we cannot read back": whatever widths,
densities and layer shapes a user asks for, either ``check_config`` refuses
them with one DeepcompError before the first epoch, or the saved ``.dcz``
decodes to exactly the records that were compressed.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from compressor.contract.container import load, save
from compressor.contract.data import load_dataset
from compressor.contract.errors import DeepcompError
from compressor.models import build
from compressor.pipeline import CompressConfig, compress
from compressor.prune import PruneConfig
from compressor.train import FitConfig

pytestmark = pytest.mark.slow

widths = st.lists(st.integers(-1, 17), min_size=1, max_size=4)
densities = st.lists(st.one_of(st.floats(-0.5, 2.0), st.just(float("nan")), st.just(1e-6)),
                     min_size=1, max_size=4)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(bits=st.one_of(st.none(), widths), zbits=st.one_of(st.none(), st.just("auto"), widths),
       density=densities, hidden=st.sampled_from([3, 16, 64]))
def test_refused_up_front_or_read_back_exactly(digits, tmp_path_factory, bits, zbits, density, hidden):
    import torch

    torch.manual_seed(0)
    arch = f"mlp:64-{hidden}-10"
    model = build(arch)
    trained = []
    cfg = CompressConfig(prune=PruneConfig(density=density, steps=1, epochs_per_step=0, final_epochs=0),
                         bits=bits, zbits=zbits, retrain=FitConfig(epochs=0),
                         finetune=FitConfig(epochs=0, optimizer="adam", weight_decay=0.0))
    import compressor.pipeline as pipeline

    real_prune = pipeline.prune_and_retrain

    def spy(*a, **k):  # training starts here: after it, refusing is too late
        trained.append(True)
        return real_prune(*a, **k)

    pipeline.prune_and_retrain = spy
    try:
        cm, _ = compress(model, arch, digits, cfg)
    except DeepcompError:
        assert not trained, "settings refused only after training had started"
        event("refused")
        return
    finally:
        pipeline.prune_and_retrain = real_prune
    path = tmp_path_factory.mktemp("opts") / "m.dcz"
    save(cm, path)
    back = load(path)
    event("written and read back")
    assert back.arch == arch and len(back.layers) == len(cm.layers)
    for a, b in zip(cm.layers, back.layers, strict=True):
        assert (a.wbits, a.zbits, a.shape) == (b.wbits, b.zbits, b.shape)
        np.testing.assert_array_equal(a.index, b.index)
        np.testing.assert_array_equal(a.codebook.astype(np.float16), b.codebook.astype(np.float16))
