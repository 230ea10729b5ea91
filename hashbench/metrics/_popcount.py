"""Compiled CPU kernels: per-query histograms of Hamming distance by XOR + popcount on bit-packed codes.

:func:`hashbench.metrics.functional` reduces every metric to two per-query histograms over the distances
``0..K``: ``n[q, h]`` (database items at distance ``h``) and ``m[q, h]`` (relevant items at distance ``h``). On
the CPU the fastest exact way to build them is the classic one: pack each code into 64-bit words, take
``popcount(q XOR d)`` per pair and increment a small per-query histogram. Python cannot do that per pair, and
torch has no fused op for it, so the loops here are compiled with numba (``nogil=True``: the caller runs row
blocks on its own threads, so numba's threading layers are never involved).

Four queries share each pass over the database: the database word is loaded once and the four histograms are
independent, which keeps the CPU's store-to-load forwarding from serialising increments of the same bin.

Single-label data arrives with the database sorted by class and split into class blocks; each block's histogram
counts towards ``n`` for every query and towards ``m`` for the queries of that class, so relevance costs nothing
per pair. Multi-label relevance (at least one shared label) is one AND of packed label words per pair.

Everything here is an implementation detail: the results are integer counts and identical to the portable torch
path in ``functional.py`` (tests compare the two). numba is imported lazily, on the first histogram.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["available", "pack_bits", "kernels"]


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


def kernels() -> Any:
    """The compiled kernels module (numba compiles on first call, or loads its on-disk cache)."""
    from hashbench.metrics import _popcount_kernels

    return _popcount_kernels
