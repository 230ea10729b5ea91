"""The numba-compiled loops behind :mod:`hashbench.metrics._popcount` (imported only when first needed).

Kept in their own module so that ``import hashbench`` does not import numba, and defined at module level so that
numba's on-disk cache (``cache=True``) can reuse the machine code across processes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit
from numba.core import types
from numba.extending import intrinsic

__all__ = ["grouped"]


@intrinsic
def popcount(typingctx: Any, x: Any) -> Any:
    # LLVM's ctpop: one POPCNT instruction on any x86-64 CPU numba targets (and the equivalent elsewhere).
    sig = types.uint64(types.uint64)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.ctpop(args[0])

    return sig, codegen


@njit(nogil=True, cache=True)
def _distance(qw, i, dw, j):
    s = np.uint64(0)
    for w in range(qw.shape[1]):
        s += popcount(qw[i, w] ^ dw[j, w])
    return s


@njit(nogil=True, cache=True)
def _block_counts(qw, i0, m, dw, start, stop, h, rows):
    """h[rows[t], dist(q_{i0+t}, d_j)] += 1 for t < m and start <= j < stop."""
    if qw.shape[1] == 1 and m == 4:
        q0, q1, q2, q3 = qw[i0, 0], qw[i0 + 1, 0], qw[i0 + 2, 0], qw[i0 + 3, 0]
        a, b, c, d = rows[0], rows[1], rows[2], rows[3]
        for j in range(start, stop):
            x = dw[j, 0]
            h[a, popcount(q0 ^ x)] += 1
            h[b, popcount(q1 ^ x)] += 1
            h[c, popcount(q2 ^ x)] += 1
            h[d, popcount(q3 ^ x)] += 1
    elif m == 4:
        a, b, c, d = rows[0], rows[1], rows[2], rows[3]
        for j in range(start, stop):
            h[a, _distance(qw, i0, dw, j)] += 1
            h[b, _distance(qw, i0 + 1, dw, j)] += 1
            h[c, _distance(qw, i0 + 2, dw, j)] += 1
            h[d, _distance(qw, i0 + 3, dw, j)] += 1
    else:
        for j in range(start, stop):
            for t in range(m):
                h[rows[t], _distance(qw, i0 + t, dw, j)] += 1


@njit(nogil=True, cache=True)
def _tail_counts(qw, ql, i0, m, dw, dl, start, stop, h):
    """Rows with their own labels: h[2t + relevant, dist(q_{i0+t}, d_j)] += 1 (relevance decided per pair)."""
    lw = ql.shape[1]
    if qw.shape[1] == 1 and lw == 1 and m == 4:
        q0, q1, q2, q3 = qw[i0, 0], qw[i0 + 1, 0], qw[i0 + 2, 0], qw[i0 + 3, 0]
        l0, l1, l2, l3 = ql[i0, 0], ql[i0 + 1, 0], ql[i0 + 2, 0], ql[i0 + 3, 0]
        zero = np.uint64(0)
        for j in range(start, stop):
            x = dw[j, 0]
            y = dl[j, 0]
            h[0 + ((l0 & y) != zero), popcount(q0 ^ x)] += 1
            h[2 + ((l1 & y) != zero), popcount(q1 ^ x)] += 1
            h[4 + ((l2 & y) != zero), popcount(q2 ^ x)] += 1
            h[6 + ((l3 & y) != zero), popcount(q3 ^ x)] += 1
    else:
        for j in range(start, stop):
            for t in range(m):
                rel = 0
                for w in range(lw):
                    if ql[i0 + t, w] & dl[j, w]:
                        rel = 1
                        break
                h[2 * t + rel, _distance(qw, i0 + t, dw, j)] += 1


@njit(nogil=True, cache=True)
def grouped(qw, ql, dw, dl, group_starts, group_labels, r0, r1, n_all, n_rel):
    """Histograms ``n_all[i]``, ``n_rel[i]`` for queries ``r0 <= i < r1``.

    The database rows come sorted so that each group ``g`` (rows ``group_starts[g]`` to ``group_starts[g + 1]``)
    shares one label set, packed into the words ``group_labels[g]``; ``ql`` holds the queries' packed labels. A
    group is relevant to a query iff their words share a set bit, decided once per (query, group), so the loop
    over the group's rows only counts distances, into the query's "relevant" or "other" histogram. Rows after
    the last group (label sets too rare to be worth a group) decide relevance per pair from their words ``dl``.
    """
    k1 = n_all.shape[1]
    lw = ql.shape[1]
    tail = group_starts[group_starts.shape[0] - 1]
    h = np.zeros((8, k1), np.int64)  # rows 2t (other) and 2t + 1 (relevant) for the t-th query of a block
    rows = np.zeros(4, np.int64)
    for i0 in range(r0, r1, 4):
        m = min(4, r1 - i0)
        h[:, :] = 0
        for g in range(group_starts.shape[0] - 1):
            for t in range(m):
                rel = 0
                for w in range(lw):
                    if ql[i0 + t, w] & group_labels[g, w]:
                        rel = 1
                        break
                rows[t] = 2 * t + rel
            _block_counts(qw, i0, m, dw, group_starts[g], group_starts[g + 1], h, rows)
        _tail_counts(qw, ql, i0, m, dw, dl, tail, dw.shape[0], h)
        for t in range(m):
            for d in range(k1):
                n_all[i0 + t, d] += h[2 * t, d] + h[2 * t + 1, d]
                n_rel[i0 + t, d] += h[2 * t + 1, d]
