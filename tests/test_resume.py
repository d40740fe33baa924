"""A killed ``deepcomp compress`` resumes from its last checkpoint and writes the same file (issue #15).

Checkpoints are written at every stage boundary (each retraining and
fine-tuning epoch, each prune step, quantization); ``--resume`` must then
compute exactly what the uninterrupted run computes: the same ``.dcz`` bytes.
Stopping right after the k-th checkpoint, for every k, covers every kind of
boundary; a real SIGKILL in a subprocess covers dying at an arbitrary instant.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from compressor import resume
from compressor.cli import main
from tests.conftest import torch_threads

ROOT = Path(__file__).resolve().parents[1]
# step 1: one checkpoint inside its retraining, one at its end; step 2; quantized; one inside fine-tuning
OPTS = ["--density", "0.3,0.3,0.6", "--prune-steps", "2", "--prune-epochs", "2", "--final-epochs", "1",
        "--finetune-epochs", "2", "--augment", "1"]
STAGES = ["prune", "prune", "prune", "quantized", "finetune"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    with torch_threads(1):  # results do not depend on it; the time does
        yield


class Stop(Exception):
    """Stands for the process dying right after a checkpoint was renamed into place."""


@pytest.fixture(scope="module")
def dense(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("resume") / "dense.pt"
    assert main(["train", "--dataset", "digits", "--epochs", "3", "-o", str(path)]) == 0
    return path


@pytest.fixture(scope="module")
def reference(dense) -> bytes:
    out = dense.with_name("ref.dcz")
    assert main(["compress", str(dense), "-o", str(out), *OPTS]) == 0
    assert not out.with_name("ref.dcz.state").exists()  # removed once the run completed
    return out.read_bytes()


def stop_after(monkeypatch, k: int) -> list[str]:
    """Make the k-th checkpoint the run's last; returns the stages saved."""
    real, saved = resume.Checkpoints.save, []

    def save(self, state):
        real(self, state)
        saved.append(state["stage"])
        if len(saved) == k:
            raise Stop(state["stage"])
    monkeypatch.setattr(resume.Checkpoints, "save", save)
    return saved


def test_resume_after_every_checkpoint_gives_the_same_file(dense, reference, tmp_path, monkeypatch):
    out = tmp_path / "m.dcz"
    for k in range(1, len(STAGES) + 1):
        with monkeypatch.context() as m:
            saved = stop_after(m, k)
            with pytest.raises(Stop):
                main(["compress", str(dense), "-o", str(out), *OPTS])
        assert saved == STAGES[:k] and not out.exists()
        assert main(["compress", str(dense), "-o", str(out), "--resume", *OPTS]) == 0
        assert out.read_bytes() == reference, f"resumed after checkpoint {k} ({STAGES[k - 1]})"
        assert not (tmp_path / "m.dcz.state").exists()
        out.unlink()
    with monkeypatch.context() as m:  # and there are no more boundaries than these
        saved = stop_after(m, len(STAGES) + 1)
        assert main(["compress", str(dense), "-o", str(out), *OPTS]) == 0
    assert saved == STAGES


@pytest.mark.slow
def test_sigkilled_run_resumes(dense, reference, tmp_path):
    out, state = tmp_path / "k.dcz", tmp_path / "st"
    cmd = [sys.executable, "-m", "compressor.cli", "compress", str(dense), "-o", str(out),
           "--state-dir", str(state), *OPTS]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # as this process (one_thread)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (state / "checkpoint.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(30) == -signal.SIGKILL
    assert (state / "checkpoint.pt").exists() and not out.exists(), "killed before its first checkpoint"
    assert main(["compress", str(dense), "-o", str(out), "--state-dir", str(state), "--resume", *OPTS]) == 0
    assert out.read_bytes() == reference
    assert not state.exists()


def test_resume_with_other_options_is_one_line(dense, tmp_path, monkeypatch, capsys):
    out = tmp_path / "o.dcz"
    quick = ["--density", "0.3", "--prune-steps", "2", "--prune-epochs", "0", "--final-epochs", "0",
             "--finetune-epochs", "0"]
    with monkeypatch.context() as m:
        stop_after(m, 1)
        with pytest.raises(Stop):
            main(["compress", str(dense), "-o", str(out), *quick])
    capsys.readouterr()
    assert main(["compress", str(dense), "-o", str(out), "--resume", *quick, "--seed", "7"]) == 2
    err = capsys.readouterr().err
    assert err == (f"deepcomp: {tmp_path / 'o.dcz.state' / 'checkpoint.pt'}: made with --seed 0, this run "
                   "has 7; resume with the same options, or start over without --resume\n")
    (tmp_path / "o.dcz.state" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    assert main(["compress", str(dense), "-o", str(out), "--resume", *quick]) == 2
    err = capsys.readouterr().err
    assert err.startswith("deepcomp: ") and "not a readable checkpoint" in err and err.count("\n") == 1


def test_resume_without_a_checkpoint_starts_over(dense, tmp_path, capsys):
    quick = ["--density", "0.3", "--prune-steps", "1", "--prune-epochs", "0", "--final-epochs", "0",
             "--finetune-epochs", "0"]
    a, b = tmp_path / "a.dcz", tmp_path / "b.dcz"
    assert main(["compress", str(dense), "-o", str(a), *quick]) == 0
    assert main(["compress", str(dense), "-o", str(b), "--resume", *quick]) == 0
    assert "no checkpoint in" in capsys.readouterr().err
    assert a.read_bytes() == b.read_bytes()


def api_run(state_dir: Path | None, resume_: bool = False) -> bytes:
    """api.compress over a shuffled DataLoader with its own generator (saved with each checkpoint)."""
    from torch import nn

    from compressor import api
    from compressor.contract.container import encode
    from compressor.contract.data import load_dataset

    data = load_dataset("digits")
    x = torch.from_numpy(data.train.images[:512]).float().div(255).flatten(1)
    y = torch.from_numpy(data.train.labels[:512]).long()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=64, shuffle=True,
                                         generator=torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 24), nn.Dropout(0.1), nn.ReLU(), nn.Linear(24, 10))  # dropout: global RNG
    cm, _ = api.compress(model, loader, nn.functional.cross_entropy, density=0.4, bits=4, prune_steps=2,
                         prune_epochs=2, finetune_epochs=2, state_dir=state_dir, resume=resume_,
                         optimizer=lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9))
    return encode(cm)


API_STAGES = ["prune"] * 4 + ["quantized", "finetune", "finetune"]


def test_api_resume_after_every_checkpoint(tmp_path, monkeypatch):
    reference = api_run(None)
    for k in range(1, len(API_STAGES) + 1):
        state = tmp_path / f"s{k}"
        with monkeypatch.context() as m:
            saved = stop_after(m, k)
            with pytest.raises(Stop):
                api_run(state)
        assert saved == API_STAGES[:k]
        assert api_run(state, resume_=True) == reference, f"resumed after checkpoint {k} ({API_STAGES[k - 1]})"
    assert api_run(state, resume_=True) == reference  # from the last checkpoint, which stays


def test_resume_with_max_loss_is_refused(dense, tmp_path, capsys):
    code = main(["compress", str(dense), "-o", str(tmp_path / "b.dcz"), "--max-loss", "1", "--resume"])
    assert code == 2
    assert capsys.readouterr().err == ("deepcomp: --resume: the --max-loss search writes no checkpoints "
                                       "to resume from\n")
