"""Datasets: MNIST-format IDX files from a directory, or scikit-learn's digits offline.

Images come back as ``uint8`` arrays ``(n, 1, H, W)``: the hardware's input
activations are exactly these bytes, and models see ``x / 255``.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DeepcompError

IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
DATASETS = ("mnist", "digits")


@dataclass
class Split:
    images: np.ndarray  # uint8 (n, 1, H, W)
    labels: np.ndarray  # int64 (n,)

    def __len__(self) -> int:
        return int(self.labels.size)


@dataclass
class Dataset:
    name: str
    train: Split
    test: Split

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.train.images.shape[1:])  # type: ignore[return-value]


def _open_idx(directory: Path, stem: str) -> tuple[Path, bytes]:
    for name in (stem + ".gz", stem, stem.replace("-idx", ".idx")):
        path = directory / name
        if path.is_file():
            try:
                raw = path.read_bytes()
                return path, (gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw)
            except (OSError, EOFError, gzip.BadGzipFile) as e:
                raise DeepcompError(f"{path}: cannot read IDX file ({e})") from None
    raise DeepcompError(f"{directory / (stem + '.gz')}: missing MNIST file (need {stem}[.gz])")


def read_idx(path: Path, raw: bytes, ndim: int) -> np.ndarray:
    """Parse an IDX buffer of unsigned bytes with ``ndim`` dimensions, checking its header."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DeepcompError(f"{path}: not an IDX file (bad magic)")
    if raw[2] != 0x08:
        raise DeepcompError(f"{path}: IDX element type {raw[2]:#x} unsupported (need uint8)")
    if raw[3] != ndim:
        raise DeepcompError(f"{path}: IDX file has {raw[3]} dimensions, expected {ndim}")
    head = 4 + 4 * ndim
    if len(raw) < head:
        raise DeepcompError(f"{path}: truncated IDX header")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    need = int(np.prod(dims))
    if len(raw) - head != need:
        raise DeepcompError(f"{path}: IDX payload is {len(raw) - head} bytes, header says {need}")
    return np.frombuffer(raw, dtype=np.uint8, offset=head).reshape(dims)


def load_idx_split(directory: Path, split: str) -> Split:
    img_stem, lab_stem = IDX_FILES[split]
    ip, iraw = _open_idx(directory, img_stem)
    lp, lraw = _open_idx(directory, lab_stem)
    images = read_idx(ip, iraw, 3)
    labels = read_idx(lp, lraw, 1).astype(np.int64)
    if images.shape[0] != labels.shape[0]:
        raise DeepcompError(f"{lp}: {labels.size} labels for {images.shape[0]} images")
    if images.shape[1:] != (28, 28):
        raise DeepcompError(f"{ip}: images are {images.shape[1:]}, expected 28x28")
    if labels.size and labels.max() > 9:
        raise DeepcompError(f"{lp}: label {labels.max()} outside 0..9")
    return Split(images[:, None].copy(), labels)


def load_mnist(directory: str | Path) -> Dataset:
    d = Path(directory)
    if not d.is_dir():
        raise DeepcompError(f"{d}: MNIST directory not found")
    return Dataset("mnist", load_idx_split(d, "train"), load_idx_split(d, "test"))


def load_digits(seed: int = 0) -> Dataset:
    """scikit-learn's bundled 8x8 digits (values 0..16 scaled to 0..255), fixed 80/20 split."""
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    images = np.clip(np.rint(bunch.images * (255 / 16)), 0, 255).astype(np.uint8)[:, None]
    labels = bunch.target.astype(np.int64)
    perm = np.random.default_rng(seed).permutation(labels.size)
    cut = int(0.8 * labels.size)
    tr, te = perm[:cut], perm[cut:]
    return Dataset("digits", Split(images[tr], labels[tr]), Split(images[te], labels[te]))


def load_dataset(name: str, data_dir: str | Path | None = None) -> Dataset:
    """``mnist`` needs ``data_dir``; ``digits`` is offline. Any MNIST-format IDX set works."""
    if name == "digits":
        return load_digits()
    if name == "mnist":
        if data_dir is None:
            raise DeepcompError("mnist: no --data-dir given (the offline default is --dataset digits)")
        return load_mnist(data_dir)
    raise DeepcompError(f"{name}: unknown dataset (choose from {', '.join(DATASETS)})")
