"""A validation split held out from the training data (numpy only: ``deepcomp train`` and the budget search share it).

Why a function of its own: the budget search (``compressor.budget``) measures
its accuracy loss on images the retraining never sees, and the test set must
stay untouched until the final report. ``deepcomp train --val-fraction`` holds
out the *same* images (same fraction and seed), so the dense model has not
seen them either and the measured loss is an honest estimate.
"""

from __future__ import annotations

import numpy as np

from .contract.data import Split
from .contract.errors import DeepcompError


def hold_out(train: Split, fraction: float, seed: int) -> tuple[Split, Split]:
    """``(rest, validation)``: a seeded random ``fraction`` of ``train`` as validation.

    The permutation depends only on ``len(train)`` and ``seed``, so the split is
    reproducible from the options alone.
    """
    if not 0 < fraction < 1:
        raise DeepcompError(f"--val-fraction {fraction}: must be in (0, 1)")
    n = len(train)
    k = int(round(fraction * n))
    if k < 1 or k >= n:
        raise DeepcompError(f"--val-fraction {fraction}: {k} of {n} training images would be held out "
                            "(need at least one on each side)")
    perm = np.random.default_rng(seed).permutation(n)
    rest, val = np.sort(perm[k:]), np.sort(perm[:k])
    return (Split(train.images[rest], train.labels[rest]), Split(train.images[val], train.labels[val]))
