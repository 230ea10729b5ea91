"""Compiled CPU kernels: per-query histograms of Hamming distance by XOR + popcount on bit-packed codes.

:func:`hashbench.metrics.functional` reduces every metric to two per-query histograms over the distances
``0..K``: ``n[q, h]`` (database items at distance ``h``) and ``m[q, h]`` (relevant items at distance ``h``). On
the CPU the fastest exact way to build them is the classic one: pack each code into 64-bit words, take
``popcount(q XOR d)`` per pair and increment a small per-query histogram. Python cannot do that per pair, and
torch has no fused op for it, so the loops here are compiled with numba (``nogil=True``: the caller runs row
blocks on its own threads, so numba's threading layers are never involved).

Four queries share each pass over the database: the database word is loaded once and the four histograms are
independent, which keeps the CPU's store-to-load forwarding from serialising increments of the same bin.

The database is reordered into groups of rows that share one label set (one group per class for single-label
data; every label set with at least ``MIN_GROUP_SIZE`` rows for multi-label data). Relevance (at least one shared
label: an AND of packed label words) is then decided once per (query, group), and the loop over a group's rows
only counts distances, into the query's "relevant" or "other" histogram. Rows of rare label sets come last and
decide relevance per pair.

Everything here is an implementation detail: the results are integer counts and identical to the portable torch
path in ``functional.py`` (tests compare the two). numba is imported lazily, on the first histogram.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

__all__ = ["available", "group_multi_label", "group_single_label", "kernels", "pack_bits"]


@functools.cache
def available() -> bool:
    """Whether numba can be imported (the kernels are compiled on first use)."""
    try:
        import numba  # noqa: F401
    except Exception:  # pragma: no cover - depends on the environment
        return False
    return True


def pack_bits(bits: Tensor) -> np.ndarray:
    """Pack a ``[n, b]`` boolean / {0, 1} matrix into ``uint64`` words ``[n, ceil(b / 64)]`` (padding bits 0).

    Both sides of a comparison are packed the same way, so the padding bits never count as a difference.
    """
    flags = bits.detach().to("cpu", torch.bool).numpy()
    packed = np.packbits(flags, axis=1, bitorder="little")  # [n, ceil(b / 8)] uint8
    pad = -packed.shape[1] % 8
    if pad or packed.shape[1] == 0:
        packed = np.pad(packed, ((0, 0), (0, pad if packed.shape[1] else 8)))
    return np.ascontiguousarray(packed).view(np.uint64)


#: Label sets shared by fewer database rows than this are not grouped: their relevance is decided per pair (a
#: group costs a little per block of queries; a pair in a group saves a little over a per-pair decision).
MIN_GROUP_SIZE = 8


class Grouping(NamedTuple):
    """A database ordering for :func:`_popcount_kernels.grouped` (see there)."""

    query_words: np.ndarray  # [Q, W] packed query labels
    order: np.ndarray  # database rows in kernel order
    row_words: np.ndarray  # [N, W] packed labels of the rows, in kernel order (used after the last group)
    group_starts: np.ndarray  # [G + 1]: group g is rows group_starts[g]:group_starts[g + 1]; ungrouped rows follow
    group_words: np.ndarray  # [G, W] packed label set of each group


def group_single_label(query: Tensor, db: Tensor) -> Grouping:
    """One group per class present in the database; group g's words have bit g set, a query's words the bit of its
    class's group (none when the database lacks its class), so "share a set bit" means "same class"."""
    db_np = db.detach().cpu().numpy()
    order = np.argsort(db_np, kind="stable")
    classes, firsts = np.unique(db_np[order], return_index=True)
    group_starts = np.append(firsts, len(db_np)).astype(np.int64)
    num_groups = len(classes)
    group_onehot = torch.eye(num_groups, dtype=torch.bool)
    q_np = query.detach().cpu().numpy()
    pos = np.minimum(np.searchsorted(classes, q_np), num_groups - 1)
    found = torch.from_numpy(classes[pos] == q_np)
    query_onehot = group_onehot[torch.from_numpy(pos)] & found[:, None]
    group_words = pack_bits(group_onehot)
    row_words = np.zeros((0, group_words.shape[1]), np.uint64)  # every row is in a group
    return Grouping(pack_bits(query_onehot), order, row_words, group_starts, group_words)


def group_multi_label(query: Tensor, db: Tensor, min_group_size: int = MIN_GROUP_SIZE) -> Grouping:
    """Groups of identical multi-hot label sets with at least ``min_group_size`` rows, then the remaining rows."""
    db_words = pack_bits(db != 0)
    if db_words.shape[1] == 1:
        order = np.argsort(db_words[:, 0], kind="stable")
    else:
        order = np.lexsort(db_words.T[::-1])  # identical rows end up adjacent
    ordered = db_words[order]
    starts = np.concatenate([[0], np.flatnonzero(np.any(ordered[1:] != ordered[:-1], axis=1)) + 1])
    sizes = np.diff(np.append(starts, len(ordered)))
    run_of_row = np.repeat(np.arange(len(starts)), sizes)
    big_row = (sizes >= min_group_size)[run_of_row]
    # Big groups first (stable: each stays contiguous), then the rows of rare label sets.
    regroup = np.argsort(~big_row, kind="stable")
    order, ordered = order[regroup], ordered[regroup]
    big_sizes = sizes[sizes >= min_group_size]
    group_starts = np.concatenate([[0], np.cumsum(big_sizes)]).astype(np.int64)
    group_words = np.ascontiguousarray(ordered[group_starts[:-1]])
    return Grouping(pack_bits(query != 0), order, np.ascontiguousarray(ordered), group_starts, group_words)


def kernels() -> Any:
    """The compiled kernels module (numba compiles on first call, or loads its on-disk cache)."""
    from hashbench.metrics import _popcount_kernels

    return _popcount_kernels
