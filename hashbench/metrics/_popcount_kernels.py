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

__all__ = ["single_label", "multi_label"]


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
def _block_counts(qw, i0, m, dw, start, stop, h):
    """h[t, dist(q_{i0+t}, d_j)] += 1 for t < m and start <= j < stop."""
    if qw.shape[1] == 1 and m == 4:
        q0, q1, q2, q3 = qw[i0, 0], qw[i0 + 1, 0], qw[i0 + 2, 0], qw[i0 + 3, 0]
        for j in range(start, stop):
            x = dw[j, 0]
            h[0, popcount(q0 ^ x)] += 1
            h[1, popcount(q1 ^ x)] += 1
            h[2, popcount(q2 ^ x)] += 1
            h[3, popcount(q3 ^ x)] += 1
    elif m == 4:
        for j in range(start, stop):
            h[0, _distance(qw, i0, dw, j)] += 1
            h[1, _distance(qw, i0 + 1, dw, j)] += 1
            h[2, _distance(qw, i0 + 2, dw, j)] += 1
            h[3, _distance(qw, i0 + 3, dw, j)] += 1
    else:
        for j in range(start, stop):
            for t in range(m):
                h[t, _distance(qw, i0 + t, dw, j)] += 1


@njit(nogil=True, cache=True)
def single_label(qw, q_block, dw, block_starts, r0, r1, n_all, n_rel):
    """Histograms for queries ``r0..r1`` against a class-sorted database.

    ``block_starts`` holds the start of each class block plus the database size; ``q_block[i]`` is the block
    of query i's class (-1 when the database has no item of that class).
    """
    k1 = n_all.shape[1]
    h = np.zeros((4, k1), np.int64)
    for i0 in range(r0, r1, 4):
        m = min(4, r1 - i0)
        for b in range(block_starts.shape[0] - 1):
            h[:, :] = 0
            _block_counts(qw, i0, m, dw, block_starts[b], block_starts[b + 1], h)
            for t in range(m):
                i = i0 + t
                for d in range(k1):
                    n_all[i, d] += h[t, d]
                if q_block[i] == b:
                    for d in range(k1):
                        n_rel[i, d] += h[t, d]


@njit(nogil=True, cache=True)
def multi_label(qw, ql, dw, dl, r0, r1, n_all, n_rel):
    """Histograms for queries ``r0..r1``; relevant = the packed label words share a set bit."""
    k1 = n_all.shape[1]
    lw = ql.shape[1]
    h = np.zeros((4, 2 * k1), np.int64)
    for i0 in range(r0, r1, 4):
        m = min(4, r1 - i0)
        h[:, :] = 0
        if qw.shape[1] == 1 and lw == 1 and m == 4:
            q0, q1, q2, q3 = qw[i0, 0], qw[i0 + 1, 0], qw[i0 + 2, 0], qw[i0 + 3, 0]
            l0, l1, l2, l3 = ql[i0, 0], ql[i0 + 1, 0], ql[i0 + 2, 0], ql[i0 + 3, 0]
            zero = np.uint64(0)
            for j in range(dw.shape[0]):
                x = dw[j, 0]
                y = dl[j, 0]
                h[0, 2 * popcount(q0 ^ x) + ((l0 & y) != zero)] += 1
                h[1, 2 * popcount(q1 ^ x) + ((l1 & y) != zero)] += 1
                h[2, 2 * popcount(q2 ^ x) + ((l2 & y) != zero)] += 1
                h[3, 2 * popcount(q3 ^ x) + ((l3 & y) != zero)] += 1
        else:
            for j in range(dw.shape[0]):
                for t in range(m):
                    i = i0 + t
                    rel = 0
                    for w in range(lw):
                        if ql[i, w] & dl[j, w]:
                            rel = 1
                            break
                    h[t, 2 * _distance(qw, i, dw, j) + rel] += 1
        for t in range(m):
            i = i0 + t
            for d in range(k1):
                n_all[i, d] += h[t, 2 * d] + h[t, 2 * d + 1]
                n_rel[i, d] += h[t, 2 * d + 1]
