"""Speed and memory of hashbench's retrieval evaluator, against a naive per-query argsort evaluator.

Usage::

    python benchmarks/eval_speed.py [--quick] [--repeats 3] [--workloads cifar nuswide scale]

Workloads (64-bit codes):

* ``cifar``:   1,000 queries x 54,000 database items, 10 classes (single-label), mAP@all.
* ``nuswide``: 2,100 x 193,734, 21-class multi-label, mAP@5000.
* ``scale``:   10,000 x 1,000,000, 100 classes (single-label), mAP@1000 + P@H<=2 + PR curve.

Code generator ("structured codes", so the distance distribution looks like that of trained hash codes rather
than of uniform random bits): every class has a random centre in {-1, +1}^64; an item takes the centre of one
of its labels (the first label for multi-label items) and flips each bit independently with probability
``--flip`` (default 0.2). Multi-label items get a uniform primary label plus every other label with probability
0.06 (about 2.2 labels per item, as in NUS-WIDE's 21 most frequent concepts). Seeds are fixed.

Each workload runs in a fresh subprocess. Time: median (and min/max) over ``--repeats`` calls of
``retrieval_report`` (default ``ties="expected"``) after one warm-up call. Peak extra memory: the process
resets its peak-RSS counter (``echo 5 > /proc/self/clear_refs``) after building the data, then reads
``VmHWM - VmRSS`` (``/proc/self/status``) around the timed calls; this sees torch allocations, which
``tracemalloc`` does not.

The naive reference is what DeepHash-pytorch's ``CalcTopMap`` does: for each query, Hamming distances by a
numpy matmul, ``np.argsort`` over the whole database, then AP over the top k. It is timed on a subset of
queries (``--naive-queries``) and extrapolated linearly to all queries. On the same subset the per-query
``ties="index"`` APs of hashbench are compared with the naive evaluator using a *stable* argsort (same tie
rule), and the maximum absolute difference is printed.

The machine is shared during development, so ``os.getloadavg()`` is printed beside each figure.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hashbench.metrics import retrieval_report  # noqa: E402

BITS = 64
WORKLOADS = {
    # name: (queries, database, classes, multi_label, report kwargs, naive k, target seconds)
    "cifar": (1_000, 54_000, 10, False, {"ks": (None,), "radius": None}, None, 0.15),
    "nuswide": (2_100, 193_734, 21, True, {"ks": (5000,), "radius": None}, 5000, 1.0),
    "scale": (10_000, 1_000_000, 100, False, {"ks": (1000,), "radius": 2, "pr_curve": True}, 1000, 10.0),
}
QUICK_DIVISOR = {"cifar": 1, "nuswide": 4, "scale": 20}


def _status_kib(field: str) -> int:
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"{field}:\s+(\d+)", text).group(1))


def make_data(nq: int, nd: int, classes: int, multi: bool, flip: float, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Structured codes: class centres plus independent bit flips (see module docstring)."""
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randint(0, 2, (classes, BITS), generator=gen, dtype=torch.int8) * 2 - 1

    def side(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        primary = torch.randint(0, classes, (n,), generator=gen)
        codes = centres[primary]
        flips = torch.rand(n, BITS, generator=gen) < flip
        codes = torch.where(flips, -codes, codes)
        if not multi:
            return codes, primary
        labels = torch.rand(n, classes, generator=gen) < 0.06
        labels[torch.arange(n), primary] = True
        return codes, labels.to(torch.uint8)

    q, ql = side(nq)
    d, dl = side(nd)
    return q, d, ql, dl


def naive_ap(q: np.ndarray, d: np.ndarray, ql: np.ndarray, dl: np.ndarray, k: int | None, kind: str) -> np.ndarray:
    """DeepHash-pytorch-style evaluator: per query a full argsort of the database (whole list when k is None)."""
    num_d = d.shape[0]
    top = num_d if k is None else min(k, num_d)
    aps = np.zeros(q.shape[0])
    for i in range(q.shape[0]):
        if ql.ndim == 1:
            gnd = (dl == ql[i]).astype(np.float64)
        else:
            gnd = (dl @ ql[i] > 0).astype(np.float64)
        hamm = 0.5 * (BITS - d @ q[i])
        ind = np.argsort(hamm, kind=kind)
        tgnd = gnd[ind][:top]
        tsum = tgnd.sum()
        if tsum == 0:
            continue
        count = np.linspace(1, tsum, int(tsum))
        tindex = np.asarray(np.where(tgnd == 1)[0]) + 1.0
        aps[i] = np.mean(count / tindex)
    return aps


def run_workload(name: str, quick: bool, repeats: int, flip: float, naive_queries: int) -> dict:
    nq, nd, classes, multi, kwargs, naive_k, target = WORKLOADS[name]
    if quick:
        nq, nd = nq // QUICK_DIVISOR[name], nd // QUICK_DIVISOR[name]
    q, d, ql, dl = make_data(nq, nd, classes, multi, flip)
    retrieval_report(q[:64], d[:4096], ql[:64], dl[:4096], **kwargs)  # warm-up (thread pool, kernels)

    Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS counter
    rss_before = _status_kib("VmRSS")
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = retrieval_report(q, d, ql, dl, **kwargs)
        times.append(time.perf_counter() - start)
    peak_extra_mib = (_status_kib("VmHWM") - rss_before) / 1024
    load_after = os.getloadavg()

    # Naive reference on a subset of queries, extrapolated; cross-check of ties="index" on that subset.
    sub = min(naive_queries, nq)
    qn, dn = q[:sub].double().numpy(), d.double().numpy()
    qln, dln = ql[:sub].numpy(), dl.numpy().astype(np.float64) if multi else dl.numpy()
    if multi:
        qln = qln.astype(np.float64)
    start = time.perf_counter()
    naive_ap(qn, dn, qln, dln, naive_k, "quicksort")
    naive_subset_s = time.perf_counter() - start
    naive_stable = naive_ap(qn, dn, qln, dln, naive_k, "stable")
    ours = np.array(
        [
            float(
                retrieval_report(q[i : i + 1], d, ql[i : i + 1], dl, ks=(naive_k,), radius=None, ties="index")[
                    "mAP@all" if naive_k is None else f"mAP@{naive_k}"
                ]
            )
            for i in range(sub)
        ]
    )
    naive_full_s = naive_subset_s * nq / sub
    median = statistics.median(times)
    metrics = {k: round(float(v), 4) for k, v in result.items() if v.dim() == 0}
    return {
        "workload": name,
        "shape": f"{nq}x{nd}",
        "median_s": median,
        "min_s": min(times),
        "max_s": max(times),
        "peak_extra_mib": peak_extra_mib,
        "naive_subset": sub,
        "naive_est_s": naive_full_s,
        "speedup": naive_full_s / median,
        "max_abs_diff_index": float(np.abs(ours - naive_stable).max()),
        "target_s": target if not quick else None,
        "metrics": metrics,
        "load_after": [round(x, 2) for x in load_after],
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (nuswide / 4, scale / 20)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per workload (median reported)")
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    parser.add_argument("--flip", type=float, default=0.2, help="bit-flip probability of the code generator")
    parser.add_argument("--naive-queries", type=int, default=None, help="queries for the naive reference")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        naive_q = args.naive_queries or {"cifar": 100, "nuswide": 40, "scale": 4}[args.child]
        print(json.dumps(run_workload(args.child, args.quick, args.repeats, args.flip, naive_q)))
        return

    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, cpus {os.cpu_count()}")
    header = (
        f"{'workload':9} {'Q x N':>17} {'median s':>9} {'min-max s':>13} {'peak MiB':>9} {'target s':>8} "
        f"{'naive s (est)':>13} {'speed-up':>9} {'max|dAP| idx':>13}  loadavg(1,5,15)  metrics"
    )
    print(header)
    print("-" * len(header))
    for name in args.workloads:
        cmd = [sys.executable, __file__, "--child", name, "--repeats", str(args.repeats), "--flip", str(args.flip)]
        if args.quick:
            cmd.append("--quick")
        if args.naive_queries:
            cmd += ["--naive-queries", str(args.naive_queries)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            print(f"{name:9} FAILED\n{proc.stderr[-2000:]}")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        target = "-" if r["target_s"] is None else f"{r['target_s']:.2f}"
        print(
            f"{r['workload']:9} {r['shape']:>17} {r['median_s']:9.3f} {r['min_s']:6.3f}-{r['max_s']:<6.3f} "
            f"{r['peak_extra_mib']:9.0f} {target:>8} {r['naive_est_s']:13.1f} {r['speedup']:8.0f}x "
            f"{r['max_abs_diff_index']:13.1e}  {r['load_after']}  {r['metrics']}",
            flush=True,
        )
    print(
        "naive = per-query np.argsort over the database (DeepHash-pytorch CalcTopMap style), timed on a subset of "
        "queries and extrapolated; max|dAP| idx = max over that subset of |AP(hashbench, ties='index') - "
        "AP(naive, stable argsort)|."
    )


if __name__ == "__main__":
    main()
