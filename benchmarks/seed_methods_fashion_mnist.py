"""Seed methods (DMNSH, DFEH, DHIH) next to the baselines on the Fashion-MNIST protocol.

Every cell goes through :func:`hashbench.bench.run.run_cell` with the shared ``quick`` profile (compact CNN, Adam
1e-3, batch 128, 10 epochs, checkpoint = best validation mAP on the split carved from training, then test on
query vs. database). Prints a markdown table of mAP@all (and P@H<=2) and writes it to
benchmarks/results/seed_methods_fashion_mnist.md.

Cells are cached one JSON line each in ``--cache`` (default logs/seed_methods_cells.jsonl), so the script can be
stopped and resumed, or run per method / per code length::

    PYTHONPATH=$PWD OMP_NUM_THREADS=2 python benchmarks/seed_methods_fashion_mnist.py --methods DHIH --bits 16 32
    PYTHONPATH=$PWD python benchmarks/seed_methods_fashion_mnist.py --table-only   # re-print from the cache

Methods that are not registered (e.g. DSH, LSH, ITQ before their branches are merged) are skipped and listed.
When neither LSH nor ITQ is registered, ``--pixel-baselines`` (on by default) adds script-local LSH (random
projections) and ITQ (PCA + iterative quantization, Gong & Lazebnik, CVPR 2011) on the raw pixels of the same
training split, evaluated with the same metric, as the shallow reference.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_METHODS = ["LSH", "ITQ", "DHIH", "DMNSH", "DFEH", "DPSH", "DSH"]
SEEDS = ("DMNSH", "DFEH", "DHIH")


def _registered(name: str) -> bool:
    from hashbench.registry import get_method

    try:
        get_method(name)
    except KeyError:
        return False
    return True


def _pixels(loader: Any) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    for batch in loader:
        xs.append(batch[0].flatten(1).float())
        ys.append(batch[1].float())
    return torch.cat(xs), torch.cat(ys)


def _evaluate(query_codes: torch.Tensor, db_codes: torch.Tensor, ql: torch.Tensor, dl: torch.Tensor) -> dict:
    from hashbench.metrics import HashingRetrieval

    metric = HashingRetrieval(ks=(None,), radius=2)
    metric.update(query_codes, ql, role="query")
    metric.update(db_codes, dl, role="database")
    return {k: float(v) for k, v in metric.compute().items() if isinstance(v, torch.Tensor) and v.numel() == 1}


def pixel_baseline(name: str, n_bits: int, seed: int) -> dict[str, Any]:
    """LSH or ITQ on raw pixels of the protocol's training split (script-local shallow reference)."""
    from hashbench.data import create_datamodule

    t0 = time.perf_counter()
    dm = create_datamodule("fashion-mnist", batch_size=512, seed=seed)
    dm.prepare_data()
    dm.setup("fit")
    train, _ = _pixels(dm.train_eval_dataloader())
    (q, ql), (d, dl) = (_pixels(loader) for loader in dm.test_dataloader())
    mean = train.mean(0, keepdim=True)
    g = torch.Generator().manual_seed(seed)
    if name == "LSH":
        proj = torch.randn(train.shape[1], n_bits, generator=g)
    else:
        # ITQ: top-K PCA directions, then 50 alternations of B = sign(VR) and the orthogonal Procrustes rotation.
        xc = (train - mean).double()
        _, _, vh = torch.linalg.svd(xc, full_matrices=False)
        pca = vh[:n_bits].T
        v = xc @ pca
        rot, _ = torch.linalg.qr(torch.randn(n_bits, n_bits, generator=g, dtype=torch.float64))
        for _ in range(50):
            b = torch.where(v @ rot >= 0, 1.0, -1.0).double()
            u, _, wt = torch.linalg.svd(v.T @ b)
            rot = u @ wt
        proj = (pca @ rot).float()

    def codes(x: torch.Tensor) -> torch.Tensor:
        return torch.where((x - mean) @ proj >= 0, 1, -1).to(torch.int8)

    metrics = _evaluate(codes(q), codes(d), ql, dl)
    return {"metrics": metrics, "best_epoch": None, "train_time_s": time.perf_counter() - t0}


def run_one(method: str, n_bits: int, seed: int, profile: str) -> dict[str, Any]:
    from hashbench.bench.run import run_cell

    res = run_cell(method, protocol="fashion-mnist", n_bits=n_bits, profile=profile, seed=seed)
    return {"metrics": res.metrics, "best_epoch": res.best_epoch, "train_time_s": res.train_time_s}


def load_cache(path: Path) -> dict[tuple[str, int, int, str], dict[str, Any]]:
    cells = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                cells[(row["method"], row["n_bits"], row["seed"], row["profile"])] = row
    return cells


def table(cells: dict, methods: list[str], bits: list[int], seed: int, profile: str) -> str:
    head = "| method | " + " | ".join(f"{b} bits" for b in bits) + " | P@H<=2 (48 bits) | train s/cell |"
    lines = [head, "|" + "---|" * (len(bits) + 3)]
    for m in methods:
        rows = [cells.get((m, b, seed, profile)) for b in bits]
        if not any(rows):
            continue
        maps = [f"{r['metrics']['mAP@all']:.4f}" if r else "—" for r in rows]
        r48 = cells.get((m, 48, seed, profile))
        p2 = f"{r48['metrics'].get('P@H<=2', float('nan')):.4f}" if r48 else "—"
        times = [r["train_time_s"] for r in rows if r]
        label = m + (" (pixels, script-local)" if rows[0] and rows[0].get("local") else "")
        lines.append(f"| {label} | " + " | ".join(maps) + f" | {p2} | {sum(times) / len(times):.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--methods", nargs="+", default=DEFAULT_METHODS)
    p.add_argument("--bits", nargs="+", type=int, default=[16, 32, 48, 64])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--profile", default="quick")
    p.add_argument("--cache", type=Path, default=ROOT / "logs" / "seed_methods_cells.jsonl")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "seed_methods_fashion_mnist.md")
    p.add_argument("--no-pixel-baselines", dest="pixel_baselines", action="store_false")
    p.add_argument("--table-only", action="store_true", help="print/write the table from the cache, run nothing")
    args = p.parse_args(argv)

    args.cache.parent.mkdir(parents=True, exist_ok=True)
    cells = load_cache(args.cache)
    skipped, shown = [], []
    for method in args.methods:
        local = not _registered(method) and method in ("LSH", "ITQ") and args.pixel_baselines
        (shown if _registered(method) or local else skipped).append(method)
    # Code lengths outer, so an interrupted run still has every method at the first lengths.
    for n_bits in args.bits:
        for method in shown:
            local = not _registered(method)
            key = (method, n_bits, args.seed, args.profile)
            if key in cells or args.table_only:
                continue
            t0 = time.perf_counter()
            row = (
                pixel_baseline(method, n_bits, args.seed) if local else run_one(method, n_bits, args.seed, args.profile)
            )
            row.update(method=method, n_bits=n_bits, seed=args.seed, profile=args.profile, local=local)
            cells[key] = row
            with args.cache.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(
                f"{method:6s} {n_bits:3d} bits  mAP@all {row['metrics']['mAP@all']:.4f}  "
                f"best epoch {row['best_epoch']}  {time.perf_counter() - t0:.0f} s",
                flush=True,
            )

    md = table(cells, shown, sorted(args.bits), args.seed, args.profile)
    notes = [
        f"Fashion-MNIST protocol (5,000 train incl. the validation carve-out / 1,000 query / 64,000 database), "
        f"compact CNN, profile `{args.profile}` (Adam 1e-3, batch 128, 10 epochs, checkpoint = best validation mAP), "
        f"seed {args.seed}; mAP@all over the whole database; train s/cell = mean fit time per cell.",
    ]
    if skipped:
        notes.append(f"Not registered in this checkout, so not run: {', '.join(skipped)}.")
    if any(c.get("local") for c in cells.values()):
        notes.append(
            "LSH/ITQ rows marked 'pixels, script-local' are this script's own shallow references on raw pixels "
            "(not registered hashbench methods)."
        )
    text = "# Seed methods on Fashion-MNIST (mAP@all)\n\n" + md + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"written to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
