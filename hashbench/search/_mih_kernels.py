"""The numba-compiled search of :class:`hashbench.search.mih.MIHIndex` (imported only when first needed).

One call searches a block of queries. Per query, the substring radius ``r`` grows from 0; at each ``r`` the tables
are probed one after the other with every key at Hamming distance exactly ``r`` from the query's substring
(Gosper's hack enumerates the ``r``-bit masks of an ``l``-bit substring). A bucket's rows are stored next to their
codes in the table's key order (``tab_codes``), so a candidate's full distance is computed from contiguous memory;
only a candidate at distance ``<= thr`` touches the per-row stamp array (``stamps[row] == stamp``: already kept),
the only random access. ``thr`` and the candidate buffer are kept as in :mod:`hashbench.search._kernels`: ``thr``
is the smallest ``h`` with ``k`` kept candidates at distance ``<= h`` (``num_bits`` while fewer than ``k`` are
kept), ``cnt`` counts the kept candidates at distance ``<= thr``, and a candidate is kept iff its distance is
``<= thr`` (ties are kept: candidates come in no particular row order).

Stop rule: after table ``t`` has been probed up to radius ``r`` (tables ``< t`` at ``r`` too, tables ``> t`` at
``r - 1``), a row that was never a candidate differs from the query in more than ``r`` bits of each substring
``<= t`` and in more than ``r - 1`` bits of each other one, i.e. in at least ``sum_i (r_i + 1) = m r + t + 1``
bits. So every row at distance ``<= bound = m r + t`` has been a candidate, whatever the substrings' lengths, and a
query is complete once it has ``k`` candidates and ``thr <= bound``: then every row at distance ``<= thr`` -- the
ties at the k-th distance included -- is in the buffer, and sorting it by (distance, row) gives the exact answer.
A table probed at ``r`` equal to its length has had every row as a candidate: complete too.

Fallback: costs are in units of one row of a linear scan; ``level_cum[r]`` is the expected cost of radii
``0..r`` (probes plus the expected bucket sizes). Before radius ``r > 0`` a query stops, flagged in ``scan`` for
the caller to scan, when what it has spent plus the cost of radius ``r`` would exceed ``budget`` (the cost of a
scan: so no query costs more than two scans), or when the radii still needed to certify its current k-th
distance ``thr`` (up to ``thr // m``) are expected to cost more than ``budget``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from hashbench.metrics._popcount_kernels import popcount

__all__ = ["BATCH", "search_block"]

#: Buckets looked up before they are walked.
BATCH = 32


@njit(nogil=True, cache=True)
def _substring(qw, qi, start, length):
    """Bits ``start .. start + length - 1`` (``length <= 32``) of packed code ``qi``, as an int64."""
    w = start >> 6
    o = start & 63
    v = qw[qi, w] >> np.uint64(o)
    if o + length > 64:
        v |= qw[qi, w + 1] << np.uint64(64 - o)
    return np.int64(v & np.uint64((1 << length) - 1))


@njit(nogil=True, cache=True)
def _bucket(key, t, dense, offsets, dir_base, keys, key_base):
    """``(start, stop)`` of bucket ``key`` of table ``t`` in its key-ordered rows (empty when absent)."""
    if dense[t]:
        p = dir_base[t] + key
        return np.int64(offsets[p]), np.int64(offsets[p + 1])
    lo = key_base[t]
    end = key_base[t + 1]
    hi = end
    while lo < hi:
        mid = (lo + hi) >> 1
        if keys[mid] < key:
            lo = mid + 1
        else:
            hi = mid
    if lo < end and keys[lo] == key:
        p = dir_base[t] + (lo - key_base[t])
        return np.int64(offsets[p]), np.int64(offsets[p + 1])
    return np.int64(0), np.int64(0)


@njit(nogil=True, cache=True)
def _keep_within(bd, bi, nbuf, thr):
    """Keep the first ``nbuf`` candidates at distance ``<= thr`` (order preserved); returns how many."""
    j = 0
    for s in range(nbuf):
        if bd[s] <= thr:
            bd[j] = bd[s]
            bi[j] = bi[s]
            j += 1
    return j


@njit(nogil=True, cache=True)
def search_block(
    qw,
    r0,
    r1,
    tab_codes,
    tab_rows,
    dense,
    offsets,
    dir_base,
    keys,
    key_base,
    starts,
    lens,
    num_bits,
    k,
    level_cum,
    probe_cost,
    cand_cost,
    budget,
    stamps,
    stamp0,
    out_d,
    out_i,
    scan,
    work,
):
    """Exact top-``k`` of queries ``r0 <= qi < r1`` by (distance, row) into ``out_d[qi]`` / ``out_i[qi]``.

    ``tab_codes[t]`` / ``tab_rows[t]``: the database codes / rows in table ``t``'s key order; a bucket is
    ``offsets[dir_base[t] + key]`` (dense tables) or found by binary search in ``keys[key_base[t]:key_base[t+1]]``.
    ``stamps``: ``int32 [N]``, ``< stamp0`` everywhere; query ``qi`` uses stamp ``stamp0 + 1 + qi - r0``.
    Queries that would cost more than ``budget`` get ``scan[qi] = True`` and no output. Rows beyond the number
    found (k > N) are -1 with distance -1. ``work[qi]`` receives (buckets probed, candidates looked at). Returns
    the last stamp used.
    """
    n = tab_rows.shape[1]
    m = lens.shape[0]
    words = qw.shape[1]
    nb = num_bits
    minlen = lens.min()
    cap = 2 * k + 256
    bd = np.empty(cap, np.int32)
    bi = np.empty(cap, np.int64)
    hist = np.zeros(nb + 1, np.int64)
    qsub = np.empty(m, np.int64)
    bstart = np.empty(BATCH, np.int64)
    bstop = np.empty(BATCH, np.int64)
    sink = np.uint64(0)
    stamp = stamp0
    for qi in range(r0, r1):
        stamp += 1
        for t in range(m):
            qsub[t] = _substring(qw, qi, starts[t], lens[t])
        hist[:] = 0
        thr = nb
        cnt = 0
        nbuf = 0
        probes = 0
        cands = 0
        done = False
        for r in range(minlen + 1):
            if r > 0:
                # The radius that would certify the current k-th distance thr: m r' + t >= thr for some t < m.
                need = max(r, min(minlen, thr // m)) if cnt >= k else r
                spent = probes * probe_cost + cands * cand_cost
                if spent + level_cum[r] - level_cum[r - 1] > budget or level_cum[need] - level_cum[r - 1] > budget:
                    break
            for t in range(m):
                length = lens[t]
                mask = (np.int64(1) << r) - 1
                limit = np.int64(1) << length
                while mask < limit:
                    # Look up a batch of buckets first (independent loads, overlapped by the CPU) and touch the
                    # first code of each, then walk them.
                    nc = 0
                    while mask < limit and nc < BATCH:
                        start, stop = _bucket(qsub[t] ^ mask, t, dense, offsets, dir_base, keys, key_base)
                        probes += 1
                        if stop > start:
                            bstart[nc] = start
                            bstop[nc] = stop
                            sink ^= tab_codes[t, start, 0]
                            nc += 1
                        if r == 0:
                            mask = limit
                        else:
                            # Gosper's hack: the next larger mask with r bits set (the division by the lowest set
                            # bit as a shift by its position, popcount(low - 1))
                            low = mask & -mask
                            ripple = mask + low
                            shift = np.int64(popcount(np.uint64(low - 1))) + 2
                            mask = ((ripple ^ mask) >> shift) | ripple
                    for c in range(nc):
                        cands += bstop[c] - bstart[c]
                        for p in range(bstart[c], bstop[c]):
                            d = 0
                            for w in range(words):
                                d += popcount(qw[qi, w] ^ tab_codes[t, p, w])
                            if d > thr:
                                continue
                            row = tab_rows[t, p]
                            if stamps[row] == stamp:
                                continue
                            stamps[row] = stamp
                            if nbuf == cap:  # drop what fell above thr; grow when still half full
                                nbuf = _keep_within(bd, bi, nbuf, thr)
                                if 2 * nbuf > cap:
                                    cap *= 2
                                    nd = np.empty(cap, np.int32)
                                    ni = np.empty(cap, np.int64)
                                    nd[:nbuf] = bd[:nbuf]
                                    ni[:nbuf] = bi[:nbuf]
                                    bd = nd
                                    bi = ni
                            bd[nbuf] = d
                            bi[nbuf] = row
                            nbuf += 1
                            hist[d] += 1
                            cnt += 1
                            while cnt - hist[thr] >= k:
                                cnt -= hist[thr]
                                thr -= 1
                if r == length or (cnt >= k and thr <= m * r + t):
                    done = True  # every row seen, or every row at distance <= thr
                    break
            if done:
                break
        work[qi, 0] = probes
        work[qi, 1] = cands
        if not done:
            scan[qi] = True
            continue
        j = _keep_within(bd, bi, nbuf, thr)
        order = np.argsort(bd[:j].astype(np.int64) * (n + 1) + bi[:j])
        got = min(j, k)
        for s in range(got):
            out_d[qi, s] = bd[order[s]]
            out_i[qi, s] = bi[order[s]]
        for s in range(got, k):
            out_d[qi, s] = -1
            out_i[qi, s] = -1
    return stamp, sink
