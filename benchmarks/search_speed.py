"""What retrieval with hash codes costs: faiss binary indexes against hashbench's own exact top-k and MIH.

Usage::

    python benchmarks/search_speed.py [--n 1000000] [--bits 64 128] [--queries 1000] [--repeats 3] [--k 1 100 1000]
        [--searches flat exact mih multihash ...] [--mih-nhash M]

Code sets (seeded; queries are fresh draws from the same generator, not database items):

* ``clustered`` (``--n`` items): "structured like trained codes". ``n / --cluster-size`` random centres in
  ``{0, 1}^K``; an item takes a uniformly drawn centre and flips each bit with its own probability, drawn
  uniformly from ``[0, --flip-max]`` (default 0.15). Codes sit around their centres at a few bits, so nearest
  neighbours are at small distances and exact ties are common, as for a trained model's codes of one class.
* ``uniform`` (``--n`` items): independent uniform bits, the usual (and hardest) test set of index papers.
* ``nuswide`` (193,734 items, the NUS-WIDE-21 database): the clustered generator at that size.

Searches (each on the same packed queries):

* ``faiss flat``: ``IndexBinaryFlat`` (exhaustive popcount scan, exact).
* ``hashbench exact``: :func:`hashbench.search.exact_topk`, hashbench's own exact top-k (vectorised XOR +
  popcount over cache blocks of the database with a per-query distance histogram; same tie rule as flat:
  distance, then row).
* ``faiss hash``: ``IndexBinaryHash`` on the first ``b = round(log2 N)`` bits, ``nflip`` flips.
* ``faiss multihash``: ``IndexBinaryMultiHash`` (multi-index hashing) with ``m = round(K / log2 N)`` tables of
  ``K // m`` bits, ``nflip`` flips per table (``--nflip``, default 1).
* ``multihash exact``: the same index searched with ``exact=True`` (hashbench re-searches a query with more
  flips until the pigeonhole bound certifies its k-th distance; recall 1.0 by construction).
* ``faiss hnsw``: ``IndexBinaryHNSW`` with ``M = 16``, ``efSearch = max(64, k)``.
* ``hashbench mih``: hashbench's own exact multi-index hashing (:class:`hashbench.search.MIHIndex`, not faiss):
  ``m = round(K / log2 N)`` substrings of at most 16 bits (``--mih-nhash`` to choose), probed at growing radius
  until the pigeonhole bound certifies the k-th distance; queries whose next radii would cost more than a scan are
  scanned. Exact (recall 1.0, the same rows as flat under the tie rule; ``same_rows`` in the JSON output checks
  it); ``scanned`` is the share of queries that fell back to the scan.

Columns: median over ``--repeats`` of the wall time of one ``search`` call with all queries (after one warm-up
call on a few queries), as ms/query and queries/s; ``vs flat`` = faiss flat's time / this time (> 1: faster than
flat); ``recall@k`` against the exact top-k, counted on distances (the multiset of the k returned distances
against the exact one, so equally distant rows count as the same answer); build time (one build, ``--build-
repeats`` for more); index bytes per item (the serialised faiss index; for ``mih`` its codes and tables in
memory); ``scanned`` (``mih``). faiss' OpenMP threads and hashbench's kernel threads are both set to
``--threads`` (default: all CPUs). The machine is shared during development, so the load average is printed with
the table. ``--searches`` picks the rows (e.g. without ``hnsw``, the slowest to build); ``flat`` always runs.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import os
import statistics
import sys
import timeit
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hashbench.search import CodeIndex  # noqa: E402
from hashbench.search.exact import bytes_to_words, exact_topk  # noqa: E402

NUSWIDE_DATABASE = 193_734
SETS = ("clustered", "uniform", "nuswide")
SEARCHES = ("flat", "exact", "mih", "hash", "multihash", "multihash-exact", "hnsw")
LABELS = {
    "mih": "hashbench mih",
    "flat": "faiss flat",
    "exact": "hashbench exact",
    "hash": "faiss hash",
    "multihash": "faiss multihash",
    "multihash-exact": "multihash exact",
    "hnsw": "faiss hnsw",
}


def make_codes(kind: str, n: int, bits: int, seed: int, cluster_size: int, flip_max: float) -> np.ndarray:
    """Packed faiss bytes ``[n, bits / 8]`` of one code set (see the module docstring)."""
    rng = np.random.default_rng(seed)
    if kind == "uniform":
        return rng.integers(0, 256, (n, bits // 8), dtype=np.uint8)
    # Same centres for database and queries (seeded apart from the items).
    centres_rng = np.random.default_rng(10_000 + bits)
    num_centres = max(1, round(n / cluster_size))
    centres = centres_rng.integers(0, 2, (num_centres, bits), dtype=np.uint8).astype(bool)
    out = np.empty((n, bits // 8), np.uint8)
    step = 1 << 16
    for s in range(0, n, step):
        m = min(step, n - s)
        which = rng.integers(0, num_centres, m)
        p = rng.uniform(0.0, flip_max, m)[:, None]
        out[s : s + m] = np.packbits(centres[which] ^ (rng.random((m, bits)) < p), axis=1, bitorder="little")
    return out


def recall_at_k(found: np.ndarray, exact: np.ndarray) -> float:
    """Mean over queries of |found distances ∩ exact distances| / k (multisets; -1 = not found)."""
    k = exact.shape[1]
    total = 0.0
    for a, b in zip(found, exact, strict=True):
        total += sum((collections.Counter(a[a >= 0].tolist()) & collections.Counter(b.tolist())).values()) / k
    return total / len(exact)


def timed(fn: Any, repeats: int) -> float:
    """Median wall time of ``repeats`` calls of ``fn``."""
    return statistics.median(timeit.repeat(fn, number=1, repeat=repeats))


def run_set(name: str, n: int, bits: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    kind = "uniform" if name == "uniform" else "clustered"
    db = make_codes(kind, n, bits, 1, args.cluster_size, args.flip_max)
    q = make_codes(kind, args.queries, bits, 2, args.cluster_size, args.flip_max)
    dw, qw = bytes_to_words(db), bytes_to_words(q)
    rows: list[dict[str, Any]] = []
    indexes: dict[str, tuple[CodeIndex, float]] = {}
    for search in args.searches:
        itype = {"exact": "flat", "multihash-exact": "multihash"}.get(search, search)
        if itype in indexes:
            continue
        params = {"nflip": args.nflip} if itype == "multihash" else {}
        if itype == "mih" and args.mih_nhash:
            params = {"nhash": args.mih_nhash}
        builds = []
        for _ in range(args.build_repeats):
            index = CodeIndex.from_packed(db, bits, itype, params=params)
            builds.append(index.meta["build_seconds"])
        indexes[itype] = (index, statistics.median(builds))
    exact = {k: exact_topk(qw, dw, k, bits, args.threads) for k in args.k}
    flat_time: dict[int, float] = {}
    for search in args.searches:
        itype = {"exact": "flat", "multihash-exact": "multihash"}.get(search, search)
        index, build_s = indexes[itype]
        kwargs: dict[str, Any] = {"backend": "hashbench", "threads": args.threads} if search == "exact" else {}
        if search == "mih":
            kwargs["threads"] = args.threads
        if search == "multihash-exact":
            kwargs["exact"] = True
        for k in args.k:
            index.search_packed(q[:8], k, **kwargs)  # warm-up: kernels, faiss' first call
            result: list[Any] = []

            def call(index: CodeIndex = index, k: int = k, kwargs: dict = kwargs, result: list = result) -> None:
                result.append(index.search_packed(q, k, **kwargs))

            seconds = timed(call, args.repeats)
            scanned = math.nan
            if search == "mih":  # the share of queries the scan fallback answered (one more, untimed call)
                stats: dict[str, int] = {}
                index.index.search(qw, k, args.threads, stats=stats)
                scanned = stats["scanned"] / max(1, stats["queries"])
            if search == "flat":
                flat_time[k] = seconds
            rows.append(
                {
                    "codes": name,
                    "n": n,
                    "bits": bits,
                    "search": LABELS[search],
                    "params": index.params,
                    "k": k,
                    "ms_per_query": seconds * 1e3 / len(q),
                    "qps": len(q) / seconds,
                    "vs_flat": flat_time.get(k, math.nan) / seconds,
                    "recall": recall_at_k(result[-1].distances, exact[k][0]),
                    # exact searches: the same rows as the exact top-k, ties broken by row
                    "same_rows": bool(np.array_equal(result[-1].rows, exact[k][1])),
                    "build_s": build_s,
                    "bytes_per_item": index.nbytes() / n,
                    "scanned": scanned,
                }
            )
            r = rows[-1]
            print(
                f"  {name} {n} {bits} bits {r['search']:16} k={k:<5} {r['ms_per_query']:8.4f} ms/query "
                f"recall {r['recall']:.4f} same rows {r['same_rows']}"
                + ("" if math.isnan(scanned) else f" scanned {scanned:.2f}"),
                file=sys.stderr,
                flush=True,
            )
    return rows


def _params_text(params: dict[str, int]) -> str:
    if "b" in params and "nhash" in params:
        return f"{params['nhash']}x{params['b']} bits, nflip {params['nflip']}"
    if "nflip" in params:
        return f"b {params['b']}, nflip {params['nflip']}"
    if "M" in params:
        return f"M {params['M']}, ef max(64, k)"
    if "nhash" in params:
        return f"{params['nhash']} substrings"
    return ""


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| codes | N | bits | search | parameters | k | ms/query | queries/s | vs flat | recall@k | build s "
        "| bytes/item | scanned |",
        "|---|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['codes']} | {r['n']:,} | {r['bits']} | {r['search']} | {_params_text(r['params'])} | {r['k']} "
            f"| {r['ms_per_query']:.4f} | {r['qps']:,.0f} | {r['vs_flat']:.2f}x | {r['recall']:.4f} "
            f"| {r['build_s']:.2f} | {r['bytes_per_item']:.1f} | "
            + ("" if math.isnan(r["scanned"]) else f"{r['scanned']:.2f}")
            + " |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="database size of the clustered/uniform sets")
    parser.add_argument("--bits", type=int, nargs="+", default=[64, 128], help="code lengths (multiples of 8)")
    parser.add_argument("--queries", type=int, default=1000, help="queries per search call")
    parser.add_argument("--repeats", type=int, default=3, help="timed search calls per cell (median reported)")
    parser.add_argument("--k", type=int, nargs="+", default=[1, 100, 1000], help="neighbours per query")
    parser.add_argument("--sets", nargs="+", default=["clustered", "uniform", "nuswide"], choices=SETS)
    parser.add_argument("--searches", nargs="+", default=list(SEARCHES), choices=SEARCHES)
    parser.add_argument("--nflip", type=int, default=1, help="flips per table of the faiss multihash rows")
    parser.add_argument(
        "--mih-nhash",
        type=int,
        help="substrings of the hashbench mih rows (default: round(K / log2 N), at most 16 bits each)",
    )
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="faiss and hashbench threads")
    parser.add_argument("--build-repeats", type=int, default=1, help="builds per index (median reported)")
    parser.add_argument("--cluster-size", type=int, default=1000, help="clustered sets: items per centre")
    parser.add_argument("--flip-max", type=float, default=0.15, help="clustered sets: largest per-item flip rate")
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    args = parser.parse_args()
    for bits in args.bits:
        if bits % 8:
            parser.error(f"--bits must be multiples of 8, got {bits}")
    if "flat" not in args.searches:
        args.searches = ["flat", *args.searches]  # the reference every row is compared with
    import faiss
    import torch

    faiss.omp_set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    sizes = {"clustered": args.n, "uniform": args.n, "nuswide": NUSWIDE_DATABASE}
    rows: list[dict[str, Any]] = []
    load_before = os.getloadavg()
    for kind in args.sets:
        for bits in args.bits:
            rows += run_set(kind, sizes[kind], bits, args)
    print(
        f"faiss {faiss.__version__}, threads {args.threads}, cpus {os.cpu_count()}, queries {args.queries}, "
        f"repeats {args.repeats}, loadavg before {[round(x, 2) for x in load_before]} after "
        f"{[round(x, 2) for x in os.getloadavg()]}"
    )
    print()
    print(markdown(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
