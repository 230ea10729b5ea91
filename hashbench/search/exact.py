"""Hashbench's own exact Hamming top-k, and the code layouts shared with faiss.

Codes travel in three layouts:

* *sign codes*: ``[n, K]`` in ``{-1, +1}`` (what :meth:`HashingMethod.encode` returns), ``{0, 1}`` or bool;
  ``0`` / ``False`` reads as ``-1`` (the evaluator's rule, :mod:`hashbench.metrics.functional`);
* *faiss bytes*: ``[n, ceil(K / 8)]`` ``uint8``, bit ``j`` of a code in byte ``j // 8`` at position ``j % 8``
  (least significant first: faiss' layout, ``np.packbits(..., bitorder="little")``); padding bits are 0;
* *words*: the same bytes as ``[n, ceil(K / 64)]`` ``uint64`` (the evaluator's
  :func:`hashbench.metrics._popcount.pack_bits`), what the compiled kernels read.

Padding bits are 0 on both sides of a comparison, so they never add to a distance.

Tie rule (every exact search in hashbench): the database is ranked by ascending Hamming distance, then by
ascending database row; the top k are the first k of that order (the evaluator's ``ties="index"`` order, and what
``faiss.IndexBinaryFlat`` returns).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

__all__ = ["exact_topk", "to_faiss_bytes", "to_words", "bytes_to_words", "hamming_topk_reference"]

#: Queries handed to one worker thread per kernel call (each call walks the whole database once), fewer when the
#: per-query candidate buffers (about 24 bytes x k) would exceed ``TASK_BUFFER_BYTES``.
QUERIES_PER_TASK = 64
TASK_BUFFER_BYTES = 64 << 20
#: Bytes of database codes per cache block of the kernel.
BLOCK_BYTES = 1 << 18


def _as_numpy(codes: Any) -> np.ndarray:
    try:
        import torch

        if isinstance(codes, torch.Tensor):
            return codes.detach().cpu().numpy()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return np.asarray(codes)


def to_faiss_bytes(codes: Any, n_bits: int | None = None) -> np.ndarray:
    """Sign codes ``[n, K]`` (tensor or array; {-1, +1}, {0, 1} or bool) as faiss bytes ``[n, ceil(K / 8)]``.

    Raises:
        ValueError: not a 2-D matrix of binary values, or not ``n_bits`` wide.
    """
    arr = _as_numpy(codes)
    if arr.ndim != 2:
        raise ValueError(f"codes must be a 2-D [n, bits] matrix, got shape {tuple(arr.shape)}")
    if n_bits is not None and arr.shape[1] != n_bits:
        raise ValueError(f"codes have {arr.shape[1]} bits but the index holds {n_bits}-bit codes")
    if arr.dtype != np.bool_:
        if not np.isin(arr, (-1, 0, 1)).all():
            raise ValueError("codes must hold binary values: {-1, +1}, {0, 1} or bool")
        arr = arr > 0
    return np.packbits(arr, axis=1, bitorder="little")


def bytes_to_words(packed: np.ndarray) -> np.ndarray:
    """Faiss bytes ``[n, B]`` as ``uint64`` words ``[n, ceil(B / 8)]`` (zero padding), C-contiguous."""
    packed = np.ascontiguousarray(packed, dtype=np.uint8)
    pad = -packed.shape[1] % 8
    if pad or packed.shape[1] == 0:
        packed = np.pad(packed, ((0, 0), (0, pad if packed.shape[1] else 8)))
    return np.ascontiguousarray(packed).view(np.uint64)


def to_words(codes: Any, n_bits: int | None = None) -> np.ndarray:
    """Sign codes as ``uint64`` words (the layout of :func:`hashbench.metrics._popcount.pack_bits`)."""
    return bytes_to_words(to_faiss_bytes(codes, n_bits))


def exact_topk(
    query_words: np.ndarray, db_words: np.ndarray, k: int, num_bits: int, threads: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Exact Hamming top-k with hashbench's tie rule (distance, then database row).

    Args:
        query_words: ``[Q, W]`` ``uint64`` packed queries (:func:`to_words`).
        db_words: ``[N, W]`` ``uint64`` packed database.
        k: neighbours per query (``k > N`` pads with row -1, distance -1).
        num_bits: code length ``K`` (distances lie in ``0..K``).
        threads: worker threads (default: ``torch.get_num_threads()``); each takes blocks of up to 64 queries.

    Returns:
        ``(distances int32 [Q, k], rows int64 [Q, k])``.
    """
    from hashbench.search import _kernels

    if k < 1:
        raise ValueError(f"k must be a positive integer, got {k}")
    q = np.ascontiguousarray(query_words, dtype=np.uint64)
    d = np.ascontiguousarray(db_words, dtype=np.uint64)
    if q.ndim != 2 or d.ndim != 2 or q.shape[1] != d.shape[1]:
        raise ValueError(f"query and database words must be [n, W] with the same W; got {q.shape} and {d.shape}")
    if not 0 < num_bits <= 64 * q.shape[1]:
        raise ValueError(f"num_bits={num_bits} does not fit {q.shape[1]} words")
    nq, words = q.shape
    out_d = np.empty((nq, k), np.int32)
    out_i = np.empty((nq, k), np.int64)
    if nq == 0:
        return out_d, out_i
    if d.shape[0] == 0:
        out_d.fill(-1)
        out_i.fill(-1)
        return out_d, out_i
    dflat = d.reshape(-1)
    block_rows = max(_kernels.CHUNK, BLOCK_BYTES // (8 * words))
    if threads is None:
        import torch

        threads = torch.get_num_threads()
    per_task = max(1, min(QUERIES_PER_TASK, TASK_BUFFER_BYTES // (12 * (2 * k + 256))))
    starts = list(range(0, nq, per_task))
    workers = max(1, min(int(threads), len(starts)))

    def run(r0: int) -> None:
        r1 = min(nq, r0 + per_task)
        _kernels.topk(q, dflat, words, num_bits, k, r0, r1, block_rows, out_d, out_i)

    if workers == 1:
        for s in starts:
            run(s)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for f in [pool.submit(run, s) for s in starts]:
                f.result()
    return out_d, out_i


def hamming_topk_reference(query_codes: Any, db_codes: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Slow reference: :func:`hashbench.metrics.functional.hamming_distance` and a stable sort (tests, checks)."""
    import torch

    from hashbench.metrics.functional import hamming_distance

    q, d = torch.as_tensor(_as_numpy(query_codes)), torch.as_tensor(_as_numpy(db_codes))
    dist = hamming_distance(q, d)
    order = torch.sort(dist, dim=1, stable=True).indices[:, :k]
    rows = order.numpy().astype(np.int64)
    dists = dist.gather(1, order).numpy().astype(np.int32)
    if rows.shape[1] < k:
        pad = k - rows.shape[1]
        rows = np.pad(rows, ((0, 0), (0, pad)), constant_values=-1)
        dists = np.pad(dists, ((0, 0), (0, pad)), constant_values=-1)
    return dists, rows
