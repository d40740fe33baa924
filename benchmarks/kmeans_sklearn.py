"""Our 1-D k-means against scikit-learn's ``KMeans``, side by side in one run.

    .venv/bin/python benchmarks/kmeans_sklearn.py [--sizes 1000000,10000000] [--quick]

Same data (float32, the dtype the compressor clusters), same initial
centroids (``init_centroids(..., "linear")`` passed to scikit-learn as its
``init=`` array), ``n_init=1``, ``algorithm="lloyd"``, scikit-learn's default
``tol`` and ``max_iter``. Data: the surviving weights of a layer pruned to
10% by magnitude, the dense weights drawn either like an untrained torch
layer (uniform, as in benchmarks/scale.py) or heavy tailed like a trained
one (Student t, 3 degrees of freedom). For each: squared error (float64,
from each method's own labels and centroids), seconds, codebook entries used,
scikit-learn's iterations. Writes benchmarks/results/kmeans_sklearn.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compressor.kmeans import init_centroids, kmeans_1d, sse  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
DENSITY = 0.1


def survivors(kind: str, n: int, seed: int) -> np.ndarray:
    """About ``n`` weights left after keeping the largest 10% of ``n / 0.1`` dense weights."""
    rng = np.random.default_rng(seed)
    m = int(n / DENSITY)
    dense = rng.uniform(-1, 1, m) if kind == "uniform" else rng.standard_t(3, m)
    w = (0.01 * dense).astype(np.float32)
    del dense
    thr = np.partition(np.abs(w), m - n)[m - n]
    return w[np.abs(w) >= thr]


def machine() -> dict:
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    import sklearn
    from threadpoolctl import threadpool_info

    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__, "sklearn": sklearn.__version__,
            "threadpools": [{k: p[k] for k in ("user_api", "internal_api", "num_threads")} for p in threadpool_info()],
            "load_average_at_start": os.getloadavg()}


def run_case(kind: str, n: int, k: int, seed: int) -> dict:
    from sklearn.cluster import KMeans

    x = survivors(kind, n, seed)
    init = init_centroids(x.astype(np.float64), k, "linear", np.random.default_rng(seed))
    t0 = time.perf_counter()
    c, labels = kmeans_1d(x, k, "linear", seed=seed)
    ours_s = time.perf_counter() - t0
    ours = sse(x, c, labels)
    used = int(np.unique(labels).size)
    del labels
    km = KMeans(k, init=init.astype(np.float32).reshape(-1, 1), n_init=1, algorithm="lloyd", random_state=seed)
    t0 = time.perf_counter()
    km.fit(x.reshape(-1, 1))
    sk_s = time.perf_counter() - t0
    theirs = sse(x, km.cluster_centers_[:, 0], km.labels_)
    row = {"data": f"pruned-{kind}", "n": int(x.size), "k": k,
           "ours": {"sse": ours, "seconds": round(ours_s, 3), "entries_used": used},
           "sklearn": {"sse": theirs, "seconds": round(sk_s, 3), "entries_used": int(np.unique(km.labels_).size),
                       "iterations": int(km.n_iter_)},
           "sse_ratio": ours / theirs, "time_ratio": ours_s / sk_s}
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000000,10000000", help="survivors per case, comma separated")
    ap.add_argument("--ks", default="31,255", help="clusters (5-bit fc, 8-bit conv codebooks)")
    ap.add_argument("--max-sklearn-work", type=float, default=1e9,
                    help="skip cases where n * k exceeds this (scikit-learn's Lloyd costs O(n k) per iteration)")
    ap.add_argument("--kinds", default="uniform,t3", help="dense weight distributions before pruning")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-o", "--output", type=Path, default=RESULTS / "kmeans_sklearn.json")
    args = ap.parse_args()
    info = machine()
    rows, skipped = [], []
    for n in map(int, args.sizes.split(",")):
        for k in map(int, args.ks.split(",")):
            for kind in args.kinds.split(","):
                if n * k > args.max_sklearn_work:
                    skipped.append({"data": f"pruned-{kind}", "n": n, "k": k})
                    continue
                rows.append(run_case(kind, n, k, args.seed))
    res = {"command": "python benchmarks/kmeans_sklearn.py " + " ".join(sys.argv[1:]),
           "setup": "same float32 data, same linear init passed as init=, n_init=1, algorithm='lloyd', "
                    "scikit-learn defaults otherwise (tol=1e-4, max_iter=300); SSE in float64 from each "
                    "method's labels and centroids; wall-clock seconds on a shared 2-core machine",
           "machine": info, "cases": rows, "skipped_too_slow_for_sklearn": skipped,
           "all_sse_no_worse": all(r["sse_ratio"] <= 1 + 1e-9 for r in rows),
           "all_time_no_worse": all(r["time_ratio"] <= 1 for r in rows)}
    args.output.write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
