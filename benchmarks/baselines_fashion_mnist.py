"""Every baseline on the Fashion-MNIST protocol at 48 bits with the shared ``quick`` profile, through ``run_cell``.

Deep baselines (DPSH, DSH, HashNet, DHN, CSQ, GreedyHash, DTSH) train the compact CNN with the shared schedule;
shallow baselines (LSH, ITQ, SH) are fitted in closed form on the flattened, centred pixels of the same training
split. The checkpoint is selected on the validation split carved from training; the reported figures are on the
test queries against the database. Prints a markdown table and writes it to
``benchmarks/results/baselines_fashion_mnist.md`` (rewritten after every method, so a partial run keeps its rows).

Run: ``PYTHONPATH=. python benchmarks/baselines_fashion_mnist.py [--methods DSH ITQ] [--bits 48] [--seed 0]``
(about 1-2 min per deep method on two CPU cores).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from hashbench.bench.run import PROFILES, run_cell
from hashbench.registry import get_method

BASELINES = ["DPSH", "DSH", "HashNet", "DHN", "CSQ", "GreedyHash", "DTSH", "LSH", "ITQ", "SH"]
OUT = Path(__file__).parent / "results" / "baselines_fashion_mnist.md"


def _header(bits: int, seed: int, profile: str) -> str:
    prof = PROFILES[profile]
    schedule = ", ".join(f"{k}={v}" for k, v in prof.items())
    return (
        f"# Baselines on fashion-mnist, {bits} bits, seed {seed}\n\n"
        "Protocol fashion-mnist: 70k pooled images, 100 queries/class (1,000), 500 training images/class of which "
        "10% per class (500) are held out as validation queries (validation database = the other 4,500), "
        "database = the other 64,000 images; mAP over the whole database (mAP@all), P@H<=2.\n"
        f"Deep methods: backbone compact_cnn (from scratch), profile `{profile}` ({schedule}), head lr = backbone "
        "lr, weight decay 1e-5, no scheduler; the checkpoint of the epoch with the best validation mAP is tested. "
        "Shallow methods: closed-form fit on the flattened, centred training pixels (one pass; `quick` profile "
        "otherwise identical).\n"
        f"Machine: {platform.machine()} CPU, torch {torch.__version__}, {torch.get_num_threads()} threads; wall "
        "time = fit + test, measured on a shared machine (pessimistic).\n"
    )


def _table(rows: list[dict]) -> str:
    lines = [
        "| method | kind | mAP@all | P@H<=2 | best epoch | train (s) | wall (s) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        best = "-" if r["best_epoch"] is None else str(r["best_epoch"])
        lines.append(
            f"| {r['method']} | {r['kind']} | {r['map']:.4f} | {r['p_h2']:.4f} | {best} | "
            f"{r['train_s']:.0f} | {r['wall_s']:.0f} |"
        )
    return "\n".join(lines)


def _verdict(rows: list[dict]) -> str:
    shallow = {r["method"]: r["map"] for r in rows if r["kind"] == "shallow" and r["method"] in ("LSH", "ITQ")}
    deep = [r for r in rows if r["kind"] != "shallow"]
    if not shallow or not deep:
        return ""
    best_shallow = max(shallow.values())
    worst = min(deep, key=lambda r: r["map"])
    return (
        f"\nWorst deep baseline: {worst['method']} mAP {worst['map']:.4f}; best of LSH/ITQ on pixels: "
        f"{best_shallow:.4f} (margin {worst['map'] - best_shallow:+.4f}).\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", nargs="*", default=BASELINES)
    parser.add_argument("--bits", type=int, default=48)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument(
        "--resume", action="store_true", help="keep the rows already in <out>.json and run only the missing methods"
    )
    args = parser.parse_args()
    header = _header(args.bits, args.seed, args.profile)
    print(header, flush=True)
    rows_file = args.out.with_suffix(".json")
    rows: list[dict] = []
    if args.resume and rows_file.exists():
        rows = json.loads(rows_file.read_text())
    done = {r["method"] for r in rows}
    for name in args.methods:
        if name in done:
            continue
        t0 = time.perf_counter()
        res = run_cell(name, protocol="fashion-mnist", n_bits=args.bits, seed=args.seed, profile=args.profile)
        rows.append(
            {
                "method": name,
                "kind": get_method(name).supervision,
                "map": res.metrics["mAP@all"],
                "p_h2": res.metrics["P@H<=2"],
                "best_epoch": res.best_epoch,
                "train_s": res.train_time_s,
                "wall_s": res.wall_time_s,
            }
        )
        print(
            f"{name}: mAP@all {res.metrics['mAP@all']:.4f}, P@H<=2 {res.metrics['P@H<=2']:.4f}, "
            f"best epoch {res.best_epoch}, {time.perf_counter() - t0:.0f} s",
            flush=True,
        )
        order = [*BASELINES, *args.methods]
        rows.sort(key=lambda r: order.index(r["method"]) if r["method"] in order else len(order))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        rows_file.write_text(json.dumps(rows, indent=1))
        args.out.write_text(header + "\n" + _table(rows) + "\n" + _verdict(rows))
    print("\n" + _table(rows) + "\n" + _verdict(rows))


if __name__ == "__main__":
    main()
