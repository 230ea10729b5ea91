"""Hashbench's own exact multi-index hashing (MIH) k-NN search -- not a faiss index.

Multi-index hashing (Norouzi, Punjani & Fleet, "Fast Search in Hamming Space with Multi-Index Hashing", CVPR
2012) cuts each ``b``-bit code into ``m`` disjoint substrings and keeps one hash table per substring. If two codes
differ in at most ``m (r + 1) - 1`` bits, then (pigeonhole) some substring differs in at most ``r`` bits; so a
search that probes every key within radius ``r`` of the query's substrings has seen every row that close.

Layout: substring ``t`` holds code bits ``starts[t] .. starts[t] + lens[t] - 1``; when ``m`` does not divide ``b``
the first ``b mod m`` substrings get ``ceil(b / m)`` bits and the rest ``floor(b / m)``. Each table is CSR-like:
the rows sorted by their substring key (stable: ascending row inside a bucket), their codes in the same order,
and the bucket offsets -- a dense directory of ``2^l + 1`` offsets when ``2^l <= max(2^16, 8 N)``, else the sorted
distinct keys (binary search) with their offsets.

Search (per query, :mod:`hashbench.search._mih_kernels`): radius ``r = 0, 1, 2, ...``; at each radius the tables
in turn are probed with every key at distance exactly ``r`` from the query's substring; new candidates get their
full distance by popcount and enter a top-k that keeps ties. After table ``t`` at radius ``r`` every row within
``m r + t`` bits has been a candidate (the pigeonhole bound with per-table radii ``r_i``: every row within
``sum_i (r_i + 1) - 1`` bits; the substrings' lengths do not enter it), so the search stops once ``k`` candidates
are kept and the k-th distance ``d_k`` is ``<= m r + t``: every row at distance ``<= d_k`` has been seen, and
sorting the kept candidates by (distance, row) is exact, ties at ``d_k`` included (hashbench's tie rule). A
query whose next radius, or the radii still needed to certify its current k-th distance, would cost more than a
linear scan (estimated from the number of probes and the expected bucket sizes, :data:`PROBE_COST` /
:data:`CANDIDATE_COST`) is finished by :func:`hashbench.search.exact.exact_topk` instead, as is every query when
``k >= N``. The answers are exact in every case: the same distances and rows as exhaustive search. Queries are
searched in blocks of :data:`QUERIES_PER_TASK` by ``threads`` worker threads (the kernel releases the GIL).

The default ``m`` (:func:`default_nhash`) gives substrings of about ``log2 N`` bits, the paper's choice, but of
at most 16 bits (small directories stay in cache: measured faster here).
"""

from __future__ import annotations

import math
import queue
import threading
from typing import Any

import numpy as np

from hashbench.search.exact import bytes_to_words, exact_topk

__all__ = ["DEFAULT_SUBSTRING_BITS", "MAX_SUBSTRING_BITS", "MIHIndex", "default_nhash", "substring_layout"]

#: Longest substring a table may hash.
MAX_SUBSTRING_BITS = 32
#: Longest substring of the default layout: a table's dense directory then has at most 2^16 + 1 offsets (256 KB),
#: which stays in cache. At 100k codes on the development machine, 22-bit substrings (16 MB directories) searched
#: 2-5x slower than 13- or 16-bit ones, for clustered and uniform codes alike.
DEFAULT_SUBSTRING_BITS = 16
#: Cost model of the scan fallback, in units of one 64-bit word of one database row in hashbench's linear scan
#: (0.15-0.5 ns on the development machine, k = 1..100: vectorised and cache-blocked over queries): one bucket
#: lookup (a random access to the directory and to the bucket's first code, 30-50 ns measured) and one candidate
#: (its contiguous code, popcount, compare, 5-15 ns). A query stops probing when what it has spent plus the expected
#: cost of its next radius would exceed ``SCAN_BUDGET x N x W`` (the cost of a scan of ``W``-word codes), or when the
#: radii that would certify its current k-th distance are expected to cost more than that. Rough, machine-dependent
#: figures, measured on a loaded 2-core machine: too high a cost scans queries MIH would have answered faster, too
#: low a one wastes at most one scan's worth of probing.
PROBE_COST = 160.0
CANDIDATE_COST = 32.0
SCAN_BUDGET = 1.0
#: Queries per kernel call (a worker thread takes calls from a shared queue).
QUERIES_PER_TASK = 16
_STAMP_LIMIT = 2**31 - 2**20


def default_nhash(n_bits: int, num_items: int) -> int:
    """``m = round(b / log2 N)`` substrings (``log2 N`` at least 8), at least ``ceil(b / 16)``, at most ``b``.

    Substrings of about ``log2 N`` bits are the paper's choice; hashbench caps them at
    :data:`DEFAULT_SUBSTRING_BITS` (16) bits so that the tables' directories stay in cache (1M 64-bit codes: 4
    substrings of 16 bits, where the paper's rule gives 3 of 21-22). Pass ``nhash`` to choose otherwise.
    """
    log_n = max(8.0, math.log2(max(2, num_items)))
    return int(min(n_bits, max(1, round(n_bits / log_n), math.ceil(n_bits / DEFAULT_SUBSTRING_BITS))))


def substring_layout(n_bits: int, nhash: int) -> tuple[np.ndarray, np.ndarray]:
    """``(starts, lens)`` of the ``nhash`` substrings of ``n_bits``-bit codes (the first ``b mod m`` one bit longer).

    Raises:
        ValueError: ``nhash`` outside ``1 .. n_bits``, or substrings longer than :data:`MAX_SUBSTRING_BITS`.
    """
    if not 1 <= nhash <= n_bits:
        raise ValueError(f"mih index: nhash must lie in 1..{n_bits} for {n_bits}-bit codes, got {nhash}")
    base, extra = divmod(n_bits, nhash)
    lens = np.array([base + (t < extra) for t in range(nhash)], np.int64)
    if lens.max() > MAX_SUBSTRING_BITS:
        raise ValueError(
            f"mih index: {nhash} substrings of {n_bits}-bit codes are {int(lens.max())} bits long; at most "
            f"{MAX_SUBSTRING_BITS} (nhash >= {math.ceil(n_bits / MAX_SUBSTRING_BITS)})"
        )
    starts = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64)
    return starts, lens


def _keys(words: np.ndarray, start: int, length: int) -> np.ndarray:
    """Substring keys (bits ``start .. start + length - 1``) of packed codes ``[N, W]`` as int64."""
    w, o = divmod(int(start), 64)
    v = words[:, w] >> np.uint64(o)
    if o + length > 64:
        v = v | (words[:, w + 1] << np.uint64(64 - o))
    return (v & np.uint64((1 << int(length)) - 1)).astype(np.int64)


class MIHIndex:
    """Exact multi-index hashing over packed codes (see the module docstring).

    Args:
        packed: faiss bytes ``[N, ceil(n_bits / 8)]`` (:func:`hashbench.search.exact.to_faiss_bytes`).
        n_bits: code length ``b``.
        nhash: number of substrings / tables ``m`` (default :func:`default_nhash`).
        dense: force dense (``True``) or sorted-key (``False``) bucket directories on every table (tests);
            default: per table, dense when ``2^l <= max(2^16, 8 N)``.

    Attributes ``ntotal``, ``code_size`` (bytes per code) and ``d`` (bits, a multiple of 8) follow faiss' names.
    """

    def __init__(self, packed: np.ndarray, n_bits: int, nhash: int | None = None, dense: bool | None = None) -> None:
        packed = np.ascontiguousarray(packed, dtype=np.uint8)
        width = math.ceil(n_bits / 8)
        if packed.ndim != 2 or packed.shape[1] != width:
            raise ValueError(f"packed codes must be [n, {width}] uint8 for {n_bits} bits, got {packed.shape}")
        n = len(packed)
        if n >= 2**31:
            raise ValueError(f"mih index: at most 2^31 - 1 items, got {n}")
        self.n_bits = int(n_bits)
        self.nhash = int(default_nhash(n_bits, n) if nhash is None else nhash)
        self.starts, self.lens = substring_layout(self.n_bits, self.nhash)
        self.packed = _clear_padding(packed, self.n_bits)
        self.words = bytes_to_words(self.packed)
        self.ntotal = n
        self.code_size = width
        self.d = 8 * width
        m, w = self.nhash, self.words.shape[1]
        self.tab_codes = np.empty((m, n, w), np.uint64)
        self.tab_rows = np.empty((m, n), np.int32)
        self.dense = np.zeros(m, np.bool_)
        offsets, dir_base, keys, key_base = [], [0], [], [0]
        for t in range(m):
            length = int(self.lens[t])
            key = _keys(self.words, int(self.starts[t]), length)
            order = np.argsort(key, kind="stable")
            self.tab_rows[t] = order
            self.tab_codes[t] = self.words[order]
            is_dense = (1 << length) <= max(1 << 16, 8 * n) if dense is None else bool(dense)
            self.dense[t] = is_dense
            if is_dense:
                counts = np.bincount(key, minlength=1 << length)
                keys.append(np.zeros(0, np.int64))
            else:
                uniq, counts = np.unique(key[order], return_counts=True)
                keys.append(uniq.astype(np.int64))
            offsets.append(np.concatenate([[0], np.cumsum(counts)]).astype(np.uint32))
            dir_base.append(dir_base[-1] + len(offsets[-1]))
            key_base.append(key_base[-1] + len(keys[-1]))
        self.offsets = np.concatenate(offsets) if offsets else np.zeros(1, np.uint32)
        self.dir_base = np.asarray(dir_base[:-1] or [0], np.int64)
        self.keys = np.concatenate(keys) if keys else np.zeros(0, np.int64)
        self.key_base = np.asarray(key_base, np.int64)
        # Expected cost of probing radii 0..r of every table: C(l, r) probes at radius r, each with N / 2^l
        # candidates on average.
        level = [
            sum(
                math.comb(int(length), r) * (PROBE_COST + CANDIDATE_COST * n / 2.0 ** int(length))
                for length in self.lens
            )
            for r in range(int(self.lens.min()) + 1)
        ]
        self.level_cum = np.cumsum(level).astype(np.float64)

    def nbytes(self) -> int:
        """Bytes in memory: the codes, and per table its rows, its codes in key order and its directory."""
        parts = (self.words, self.tab_codes, self.tab_rows, self.offsets, self.keys)
        return int(sum(a.nbytes for a in parts))

    def search(
        self, query_words: np.ndarray, k: int, threads: int | None = None, stats: dict[str, int] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k of packed queries ``[Q, W]`` (``uint64`` words) by (distance, row).

        Args:
            query_words: the queries as :func:`hashbench.search.exact.to_words` gives them.
            k: neighbours per query (``k > N`` pads with row -1, distance -1).
            threads: worker threads (default ``torch.get_num_threads()``), each taking blocks of 16 queries.
            stats: when given, receives ``{"queries": Q, "scanned": queries finished by a linear scan}``.

        Returns:
            ``(distances int32 [Q, k], rows int64 [Q, k])``.
        """
        if k < 1:
            raise ValueError(f"k must be a positive integer, got {k}")
        q = np.ascontiguousarray(query_words, dtype=np.uint64)
        if q.ndim != 2 or q.shape[1] != self.words.shape[1]:
            raise ValueError(f"query words must be [Q, {self.words.shape[1]}], got {q.shape}")
        if self.n_bits % 64:  # padding bits lie in no substring: they must not count in a distance
            q = q.copy()
            q[:, -1] &= np.uint64((1 << (self.n_bits % 64)) - 1)
        nq, n = len(q), self.ntotal
        if n == 0 or k >= n:  # nothing to prune: every row is an answer
            if stats is not None:
                stats.update(queries=nq, scanned=nq if n else 0, probes=0, candidates=0)
            return exact_topk(q, self.words, k, self.n_bits, threads) if n else _missing(nq, k)
        out_d = np.empty((nq, k), np.int32)
        out_i = np.empty((nq, k), np.int64)
        scan = np.zeros(nq, np.bool_)
        counts = np.zeros((nq, 2), np.int64)
        if nq:
            self._probe(q, k, threads, out_d, out_i, scan, counts)
        rest = np.flatnonzero(scan)
        if len(rest):
            out_d[rest], out_i[rest] = exact_topk(q[rest], self.words, k, self.n_bits, threads)
        if stats is not None:
            stats.update(
                queries=nq, scanned=len(rest), probes=int(counts[:, 0].sum()), candidates=int(counts[:, 1].sum())
            )
        return out_d, out_i

    def _probe(self, q: np.ndarray, k: int, threads: int | None, out_d, out_i, scan, counts) -> None:
        from hashbench.search import _mih_kernels

        if threads is None:
            import torch

            threads = torch.get_num_threads()
        tasks: queue.SimpleQueue[int] = queue.SimpleQueue()
        starts = range(0, len(q), QUERIES_PER_TASK)
        for s in starts:
            tasks.put(s)
        budget = SCAN_BUDGET * self.ntotal * self.words.shape[1]

        def work() -> None:
            stamps = np.zeros(self.ntotal, np.int32)
            stamp = 0
            while True:
                try:
                    r0 = tasks.get_nowait()
                except queue.Empty:
                    return
                r1 = min(len(q), r0 + QUERIES_PER_TASK)
                if stamp + (r1 - r0) > _STAMP_LIMIT:
                    stamps[:] = 0
                    stamp = 0
                stamp, _ = _mih_kernels.search_block(
                    q, r0, r1, self.tab_codes, self.tab_rows, self.dense, self.offsets, self.dir_base, self.keys,
                    self.key_base, self.starts, self.lens, self.n_bits, k, self.level_cum, PROBE_COST,
                    CANDIDATE_COST, budget, stamps, stamp, out_d, out_i, scan, counts,
                )  # fmt: skip

        workers = max(1, min(int(threads), len(starts)))
        if workers == 1:
            work()
            return
        errors: list[BaseException] = []

        def guarded() -> None:
            try:
                work()
            except BaseException as err:  # noqa: BLE001 - re-raised below
                errors.append(err)

        pool = [threading.Thread(target=guarded) for _ in range(workers)]
        for th in pool:
            th.start()
        for th in pool:
            th.join()
        if errors:
            raise errors[0]

    # ------------------------------------------------------------------ files
    def write(self, fh: Any) -> None:
        """Write the codes and the layout as an npz archive to an open binary file (tables are rebuilt on read)."""
        np.savez(
            fh,
            format=np.array("hashbench-mih"),
            format_version=np.array(1),
            n_bits=np.array(self.n_bits),
            nhash=np.array(self.nhash),
            codes=self.packed,
        )

    @classmethod
    def read(cls, path: Any) -> MIHIndex:
        """Read what :meth:`write` wrote and rebuild the tables.

        Raises:
            ValueError: not such an archive, or one whose fields do not fit together.
        """
        import zipfile

        try:
            with np.load(path, allow_pickle=False) as z:
                fmt, version = str(z["format"]), int(z["format_version"])
                n_bits, nhash, codes = int(z["n_bits"]), int(z["nhash"]), np.asarray(z["codes"])
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ValueError(f"not a hashbench mih index file ({first})") from None
        if fmt != "hashbench-mih" or version != 1:
            raise ValueError(f"not a hashbench mih index file (format {fmt!r}, version {version})")
        if codes.dtype != np.uint8 or codes.ndim != 2 or codes.shape[1] != math.ceil(n_bits / 8):
            raise ValueError(f"mih index file: codes of shape {codes.shape} ({codes.dtype}) do not hold {n_bits} bits")
        return cls(codes, n_bits, nhash)


def _clear_padding(packed: np.ndarray, n_bits: int) -> np.ndarray:
    """``packed`` with the bits past ``n_bits`` set to 0 (codes from :func:`to_faiss_bytes` have them 0 already)."""
    if n_bits % 8 == 0 or not len(packed):
        return packed
    out = packed.copy()
    out[:, -1] &= np.uint8((1 << (n_bits % 8)) - 1)
    return out


def _missing(nq: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    return np.full((nq, k), -1, np.int32), np.full((nq, k), -1, np.int64)
