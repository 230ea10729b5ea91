"""The numba-compiled exact top-k behind :func:`hashbench.search.exact_topk` (imported only when first needed).

One call handles a block of queries against the whole database, bit-packed into ``uint64`` words exactly like the
evaluator's histogram pass (:func:`hashbench.metrics._popcount.pack_bits`), with the same ``popcount`` intrinsic.
The database is walked in blocks that stay in the L2 cache; every query of the block scans each database block
before the next is loaded, so the codes come from memory once per block of queries, not once per query.

Per query and database chunk (``CHUNK`` rows) the distances are computed in a branch-free loop that LLVM
vectorises (``vpopcntq`` where the CPU has it); only a chunk whose minimum is below the query's current
threshold is looked at row by row. The threshold is the distance of the query's current k-th item, kept with a
histogram of the distances accepted so far: ``thr`` is the smallest ``h`` with ``k`` accepted items at distance
``<= h``, and ``below`` counts those at distance ``< thr`` (always ``< k``). A row is accepted iff its distance
is ``< thr``: rows are scanned in ascending order, so a later row at distance ``thr`` would lose the tie anyway.
Accepted rows go to a candidate buffer; when it fills, it is compacted to the current top k (all rows below
``thr``, then the first ``k - below`` at ``thr``). At the end a counting sort over the histogram writes the k
winners ordered by (distance, row) -- a stable sort, because the buffer is in row order.

A query whose threshold drops to 0 (k items at distance 0) is complete and skips the rest of the database.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from hashbench.metrics._popcount_kernels import popcount

__all__ = ["CHUNK", "topk"]

#: Database rows per vectorised distance chunk.
CHUNK = 512


@njit(nogil=True, cache=True)
def _distances(qw, qi, dflat, words, c0, m, dist):
    """dist[j] = Hamming distance of query qi and database row c0 + j, for j < m (``dflat`` is row-major).

    Returns the minimum. The loops index slices from 0 so that LLVM sees contiguous loads and vectorises them.
    """
    seg = dflat[words * c0 : words * (c0 + m)]
    if words == 1:
        q = qw[qi, 0]
        for j in range(m):
            dist[j] = popcount(q ^ seg[j])
    elif words == 2:
        q0, q1 = qw[qi, 0], qw[qi, 1]
        for j in range(m):
            dist[j] = popcount(q0 ^ seg[2 * j]) + popcount(q1 ^ seg[2 * j + 1])
    else:
        for j in range(m):
            s = np.uint64(0)
            for w in range(words):
                s += popcount(qw[qi, w] ^ seg[words * j + w])
            dist[j] = s
    mn = dist[0]
    for j in range(1, m):
        mn = min(mn, dist[j])
    return mn


@njit(nogil=True, cache=True)
def _compact(bd, bi, nbuf, hist, thr, below, k, nb):
    """Keep the current top k of a candidate buffer (order preserved); fix the histogram above ``thr``."""
    keep_eq = k - below
    m = 0
    eq = 0
    for t in range(nbuf):
        d = bd[t]
        if d < thr or (d == thr and eq < keep_eq):
            if d == thr:
                eq += 1
            bd[m] = d
            bi[m] = bi[t]
            m += 1
    for h in range(thr + 1, nb + 2):
        hist[h] = 0
    if thr <= nb:
        hist[thr] = eq
    return m


@njit(nogil=True, cache=True)
def topk(qw, dflat, words, num_bits, k, r0, r1, block_rows, out_d, out_i):
    """Exact top-``k`` of queries ``r0 <= i < r1``: ``out_d[i]`` distances, ``out_i[i]`` rows, by (distance, row).

    ``qw``: ``[Q, words]`` packed queries; ``dflat``: the ``[N, words]`` packed database, flattened. Rows beyond
    the database size (``k > N``) get row -1 and distance -1.
    """
    n = dflat.shape[0] // words
    nq = r1 - r0
    nb = num_bits
    cap = 2 * k + 256
    bd = np.empty((nq, cap), np.int32)
    bi = np.empty((nq, cap), np.int64)
    hist = np.zeros((nq, nb + 2), np.int64)
    thr = np.full(nq, nb + 1, np.int64)
    below = np.zeros(nq, np.int64)
    nbuf = np.zeros(nq, np.int64)
    dist = np.empty(CHUNK, np.int32)
    for b0 in range(0, n, block_rows):
        b1 = min(n, b0 + block_rows)
        for t in range(nq):
            qi = r0 + t
            if thr[t] == 0:
                continue  # k rows at distance 0: nothing can enter any more
            for c0 in range(b0, b1, CHUNK):
                m = min(CHUNK, b1 - c0)
                if _distances(qw, qi, dflat, words, c0, m, dist) >= thr[t]:
                    continue
                th = thr[t]
                for j in range(m):
                    d = dist[j]
                    if d < th:
                        if nbuf[t] == cap:
                            nbuf[t] = _compact(bd[t], bi[t], nbuf[t], hist[t], th, below[t], k, nb)
                        p = nbuf[t]
                        bd[t, p] = d
                        bi[t, p] = c0 + j
                        nbuf[t] = p + 1
                        hist[t, d] += 1
                        below[t] += 1
                        while below[t] >= k:
                            th -= 1
                            below[t] -= hist[t, th]
                thr[t] = th
                if th == 0:
                    break
    offsets = np.empty(nb + 2, np.int64)
    for t in range(nq):
        qi = r0 + t
        th = thr[t]
        cnt = _compact(bd[t], bi[t], nbuf[t], hist[t], th, below[t], k, nb)
        s = 0
        for h in range(nb + 2):
            offsets[h] = s
            s += hist[t, h]
        for p in range(cnt):
            d = bd[t, p]
            slot = offsets[d]
            offsets[d] = slot + 1
            out_d[qi, slot] = d
            out_i[qi, slot] = bi[t, p]
        for slot in range(cnt, k):
            out_d[qi, slot] = -1
            out_i[qi, slot] = -1
