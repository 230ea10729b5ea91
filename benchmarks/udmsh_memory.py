"""Peak memory of UDMSH's pseudo-similarity machinery for N = 50,000 training images (synthetic features).

Each configuration runs in a fresh subprocess that imports torch, records its resident set size, then builds the
pseudo-similarity exactly as ``UDMSH.on_fit_start`` does after feature extraction (centre + L2-normalise the
[N, D] features, store them, fit the half-Gaussian thresholds on a 200,000-pair sample) and computes the targets
of a few 128-image training batches from the stored features. The peak RSS (``ru_maxrss``) above the post-import
baseline is compared with the N×N float32 matrix (10.0 GB for N = 50,000) that a dense pseudo-similarity needs.

Run: ``PYTHONPATH=$PWD python benchmarks/udmsh_memory.py`` (writes benchmarks/results/udmsh_memory.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

CONFIGS = [
    # name, global dim, spatial dim, storage dtype
    ("pixels (Fashion-MNIST 28x28: 784 + 98)", 784, 98, "float32"),
    ("VGG-16-like (fc7 4096 + avg/max conv5 1024)", 4096, 1024, "float32"),
    ("VGG-16-like, float16 storage", 4096, 1024, "float16"),
]

CHILD = r"""
import json, resource, sys, time
import torch
from hashbench.nn.pseudo_similarity import PseudoSimilarity
n, dg, ds, dtype, steps = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
torch.set_num_threads(1)
base_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
g = torch.Generator().manual_seed(0)
# Synthetic ReLU-like features with 10 latent clusters so the distance histogram has structure.
centres_g, centres_s = torch.randn(10, dg, generator=g), torch.randn(10, ds, generator=g)
cls = torch.randint(0, 10, (n,), generator=g)
raw_g = torch.empty(n, dg)
raw_s = torch.empty(n, ds)
for a in range(0, n, 8192):
    c = cls[a:a + 8192]
    raw_g[a:a + 8192] = (centres_g[c] + 2 * torch.randn(len(c), dg, generator=g)).relu()
    raw_s[a:a + 8192] = (centres_s[c] + 2 * torch.randn(len(c), ds, generator=g)).relu()
after_feats_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
ps = PseudoSimilarity(num_pairs=200_000, dtype=getattr(torch, dtype))
thr = ps.set_features(raw_g, raw_s)
del raw_g, raw_s
build_s = time.perf_counter() - t0
t0 = time.perf_counter()
for _ in range(steps):
    idx = torch.randperm(n, generator=g)[:128]
    c, t, w = ps.targets(idx, multi_level=True, mid_weight=0.5)
step_ms = (time.perf_counter() - t0) / steps * 1e3
peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
stored = sum(b.numel() * b.element_size() for b in (ps.global_feats, ps.spatial_feats))
print(json.dumps({"base_mb": base_kb / 1024, "raw_features_mb": (after_feats_kb - base_kb) / 1024,
    "peak_mb": peak_kb / 1024, "stored_mb": stored / 2**20, "build_s": build_s, "target_ms": step_ms,
    "lower": thr.lower, "upper": thr.upper, "mode": thr.mode, "batch_shape": list(t.shape)}))
"""


def measure(n: int, dg: int, ds: int, dtype: str, steps: int = 10) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(n), str(dg), str(ds), dtype, str(steps)],
        capture_output=True,
        text=True,
        check=True,
        timeout=900,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    n = 50_000
    dense_gb = n * n * 4 / 1e9
    rows = []
    for name, dg, ds, dtype in CONFIGS:
        r = measure(n, dg, ds, dtype)
        above = r["peak_mb"] - r["base_mb"]
        rows.append(
            f"| {name} | {dtype} | {r['stored_mb']:.0f} | {r['raw_features_mb']:.0f} | {above:.0f} | "
            f"{above / 1024 / (dense_gb / 1.073741824):.3f} | {r['build_s']:.1f} | {r['target_ms']:.1f} |"
        )
        print(name, json.dumps(r))
    header = (
        f"N = {n:,} training images; the dense N×N float32 pseudo-similarity would take {dense_gb:.1f} GB "
        f"({n * n * 4 / 2**30:.2f} GiB).\n\n"
        "| features | storage | stored features (MiB) | raw features incl. (MiB) | peak RSS above import "
        "(MiB) | fraction of N×N | build: centre+normalise+thresholds (s) | targets per 128-batch (ms) |\n"
        "|---|---|---|---|---|---|---|---|"
    )
    table = "\n".join([header, *rows])
    print(table)
    doc = (
        "# UDMSH pseudo-similarity: memory for N = 50,000\n\n"
        "Measured by `benchmarks/udmsh_memory.py` (fresh subprocess per row, `ru_maxrss`, synthetic features, "
        "1 thread, on a shared 2-core CPU). The peak includes the raw synthetic feature matrices the "
        "subprocess generates before building (the column 'raw features'), i.e. what feature extraction would "
        "hold; the machinery keeps only the stored [N, D] features, the thresholds, and B×B targets per batch.\n\n"
        f"{table}\n"
    )
    Path(__file__).parent.joinpath("results", "udmsh_memory.md").write_text(doc)


if __name__ == "__main__":
    main()
