r"""Exact retrieval metrics for binary hash codes (pure tensor functions).

Every number hashbench publishes comes out of this module. The definitions are the canonical ones of
hashbench's evaluation specification and are restated here exactly as implemented.

Definitions
-----------
* Codes are ``{-1, +1}`` (float or int), ``{0, 1}`` or ``bool`` matrices ``[n, K]`` with any ``K``.
  ``0``/``False`` is read as ``-1``. The Hamming distance is ``h = (K - q.d) / 2``, an integer in ``0..K``.
* Labels are class indices (1-D integer tensor) or multi-hot matrices (2-D, non-zero = label present).
  An item is **relevant** to a query iff they share at least one label. If one side gives class indices
  and the other a multi-hot matrix, the indices are one-hot encoded with the width of the matrix
  (``num_classes`` is never guessed from the maximum index).
* The database is ranked by ascending Hamming distance. Ties (items at equal distance) are resolved by
  ``ties="expected"`` (default): the exact expectation of the metric over a uniformly random order within
  every group of equal distance (closed form, no sampling, independent of database order), or
  ``ties="index"``: ascending database index (a stable sort, the order faiss returns).
* ``AP@k = (1 / R_k) * sum_{r=1..R_k} r / pos_r`` over the first ``k`` ranked items, where ``R_k`` is the
  number of relevant items among them and ``pos_r`` the 1-based rank of the r-th one; ``AP@k = 0`` when
  ``R_k = 0``. ``k=None`` means the whole database; ``k > N`` behaves as ``N``. ``mAP@k`` is the mean over
  **all** queries (queries without any relevant item count as 0).
* ``P@H<=r``: per query, relevant / retrieved among items with ``h <= r``, 0 for an empty ball; mean over
  queries, reported with the fraction of queries whose ball is non-empty.
* Precision-recall by radius (pooled over all query-item pairs): ``precision(r) = #relevant pairs with
  h <= r / #pairs with h <= r`` (NaN where no pair has ``h <= r``), ``recall(r) = #relevant pairs with
  h <= r / #relevant pairs`` (NaN if there is no relevant pair at all), for ``r = 0..K``.
* ``P@N`` / ``R@N``: relevant items among the first ``min(N, database size)`` ranked items, divided by that
  number / by the query's number of relevant items (0 for a query without relevant items); mean over
  all queries.

How it is computed
------------------
One pass over the query x database pairs builds, per query, the histogram ``n[d]`` (items at distance
``d``) and ``m[d]`` (relevant items at distance ``d``) for ``d = 0..K``. With ``ties="expected"`` every
metric follows from these ``2 (K + 1)`` integers per query in closed form; only ``ties="index"`` needs the
actual ranked list (a stable sort / top-k per query).

On the CPU the pass packs the codes into 64-bit words and counts ``popcount(q XOR d)`` per pair into a small
per-query histogram, in loops compiled with numba (:mod:`hashbench.metrics._popcount`; four queries share each
pass over the database). The database is grouped by label set (by class for single-label data), so relevance is
decided once per (query, group) rather than per pair. Row blocks run on ``torch.get_num_threads()`` worker
threads (the kernels release the GIL).

The portable path (accelerators, or a CPU without numba; ``HISTOGRAM_BACKEND = "torch"`` forces it) multiplies
an integer "feature" matrix of the queries with one of the database (``int8`` matmul, exact integer arithmetic)
such that each product *is* the histogram bin index of that pair (``2h + row_offset`` for single-label data,
``W h + overlap + row_offset`` for multi-label data, where ``overlap`` is the number of shared labels and ``W``
exceeds its maximum), then runs one ``torch.bincount`` per tile of at most ``chunk_size`` pairs, so memory does
not grow with the number of queries. Both paths produce identical integer counts (tested).

Closed form of expected AP (``ties="expected"``)
------------------------------------------------
Fix a query. Let a distance group hold ``n`` items of which ``m`` are relevant, and let ``b`` items
(``a`` of them relevant) precede it. Under a uniformly random order inside the group, the item in group
slot ``j`` (rank ``b + j``) is relevant with probability ``m / n``, and given that, the expected number of
relevant items in the slots before it is ``(j - 1)(m - 1)/(n - 1)`` (the other ``m - 1`` relevant items are
spread uniformly over the other ``n - 1`` slots). Its term ``r / pos`` then has expectation
``(a + 1 + (j - 1)(m - 1)/(n - 1)) / (b + j)``, so the group contributes (summing ``j = 1..n``)::

    F(n, m, a, b) = (m / n) * [ (a + 1) * dH + alpha * G ],     alpha = (m - 1)/(n - 1)  (0 if n = 1)
    dH = sum_{j=1..n} 1/(b + j),   G = sum_{j=1..n} (j - 1)/(b + j) = n - (b + 1) dH

Group orders are independent, so the expected sum over fully ranked groups is the sum of their ``F``.

With a cut-off ``k`` the first ``c`` slots of the *boundary group* (the group that contains rank ``k``) are
taken, and the number ``X`` of relevant items among them is random: hypergeometric (population ``n``,
``m`` successes, ``c`` draws). ``AP@k`` divides by ``R_k = a + X``, which is random, so
``E[sum / R_k] != E[sum] / E[R_k]``; we condition on ``X = x``. Given ``X = x`` the ``c`` taken slots are a
uniformly random arrangement of ``x`` relevant items, i.e. a full group ``F(c, x, a, b)``, and the order
of the earlier groups is independent of ``X``. Hence, with ``E_before`` the sum of ``F`` over the groups
before the boundary::

    E[AP@k] = sum_x P(X = x) * (E_before + F(c, x, a, b)) / (a + x)      (terms with a + x = 0 are 0)

For ``k = None`` (or a cut-off at a group edge) ``c = n`` and ``X = m`` deterministically. The pmf is
evaluated from cumulative log ratios ``P(x+1)/P(x) = (m-x)(c-x) / ((x+1)(n-m-c+x+1))`` and normalised,
and ``dH`` uses ``log1p`` plus the asymptotic series of the digamma function (direct summation for the
first terms), so that the cancellation in ``G`` stays harmless even at a million items. The tests check
the result against the mean over *all* within-tie permutations.

Expected ``P@N`` is simpler: by linearity, ``E[#relevant in top N] = a + c * m / n`` at the boundary group.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor

from hashbench.metrics import _popcount

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "hamming_distance",
    "mean_average_precision",
    "precision_at_n",
    "precision_recall_by_radius",
    "precision_within_radius",
    "recall_at_n",
    "retrieval_report",
]

#: Default number of query x database pairs per tile (about 2 MiB of int32 products per tile).
DEFAULT_CHUNK_SIZE = 1 << 19

_TIES_MODES = ("expected", "index")
_INT8_MAX = 127
# The asymptotic digamma series is used for arguments >= this; below it the first terms are summed directly.
_DIGAMMA_SERIES_FROM = 32
# Upper bound on rows x (number of hypergeometric support points) handled at once in the expected-AP maths.
_HYPERGEOM_BLOCK = 1 << 20


# ----------------------------------------------------------------------------------------------------------
# Input validation and normalisation
# ----------------------------------------------------------------------------------------------------------
def _as_sign_codes(codes: Tensor, name: str) -> Tensor:
    """Validate binary codes and return them as an ``int8`` matrix of ``-1/+1``."""
    if not isinstance(codes, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of binary codes, got {type(codes).__name__}.")
    if codes.dim() != 2:
        raise ValueError(f"{name} must be a 2-D [num_items, num_bits] tensor, got shape {tuple(codes.shape)}.")
    if codes.shape[1] == 0:
        raise ValueError(f"{name} has zero bits (shape {tuple(codes.shape)}); codes need at least one bit.")
    if codes.dtype == torch.bool:
        return codes.to(torch.int8) * 2 - 1
    if codes.is_complex():
        raise ValueError(f"{name} must be real-valued binary codes, got dtype {codes.dtype}.")
    if codes.numel() == 0:
        return codes.to(torch.int8)
    if bool(((codes == 1) | (codes == -1)).all()):
        return codes.to(torch.int8)
    if bool(((codes == 1) | (codes == 0)).all()):
        return codes.to(torch.int8) * 2 - 1
    if bool(((codes == 1) | (codes == 0) | (codes == -1)).all()):
        raise ValueError(f"{name} mixes -1 and 0: use either {{-1, +1}} or {{0, 1}} codes, not both (0 is ambiguous).")
    bad = codes[(codes != 1) & (codes != 0) & (codes != -1)].flatten()[:3].tolist()
    raise ValueError(
        f"{name} must be binary: values in {{-1, +1}} or {{0, 1}} (or a bool tensor), found e.g. {bad}. "
        "Binarise continuous outputs first, e.g. with torch.sign (and map 0 to +1)."
    )


@dataclass
class _Labels:
    """Normalised labels: ``kind`` is ``"single"`` (1-D class indices) or ``"multi"`` (2-D multi-hot uint8)."""

    kind: str
    query: Tensor
    db: Tensor


def _check_label_tensor(labels: Tensor, name: str, n: int) -> None:
    if not isinstance(labels, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(labels).__name__}.")
    if labels.dim() not in (1, 2):
        raise ValueError(
            f"{name} must be 1-D class indices or a 2-D multi-hot matrix, got shape {tuple(labels.shape)}."
        )
    if labels.shape[0] != n:
        raise ValueError(f"{name} has {labels.shape[0]} rows but there are {n} codes; they must match.")
    if labels.dim() == 1:
        if labels.dtype == torch.bool or labels.is_floating_point() or labels.is_complex():
            raise ValueError(f"1-D {name} must hold integer class indices, got dtype {labels.dtype}.")
        if labels.numel() and int(labels.min()) < 0:
            raise ValueError(f"{name} holds negative class indices; class indices must be >= 0.")


def _one_hot(indices: Tensor, num_classes: int, name: str) -> Tensor:
    if indices.numel() and int(indices.max()) >= num_classes:
        raise ValueError(
            f"{name} holds class index {int(indices.max())} but the multi-hot labels on the other side have only "
            f"{num_classes} columns; give both sides in the same format or widen the multi-hot matrix."
        )
    out = torch.zeros(indices.shape[0], num_classes, dtype=torch.uint8, device=indices.device)
    out[torch.arange(indices.shape[0], device=indices.device), indices.long()] = 1
    return out


def _normalise_labels(query_labels: Tensor, db_labels: Tensor, nq: int, nd: int) -> _Labels:
    _check_label_tensor(query_labels, "query_labels", nq)
    _check_label_tensor(db_labels, "db_labels", nd)
    if query_labels.dim() == 1 and db_labels.dim() == 1:
        return _Labels("single", query_labels.long(), db_labels.long())
    if query_labels.dim() == 2 and db_labels.dim() == 2 and query_labels.shape[1] != db_labels.shape[1]:
        raise ValueError(
            f"Multi-hot label widths differ: query_labels has {query_labels.shape[1]} classes, db_labels "
            f"{db_labels.shape[1]}. Both must use the same class list."
        )
    width = query_labels.shape[1] if query_labels.dim() == 2 else db_labels.shape[1]
    q = _one_hot(query_labels, width, "query_labels") if query_labels.dim() == 1 else (query_labels != 0)
    d = _one_hot(db_labels, width, "db_labels") if db_labels.dim() == 1 else (db_labels != 0)
    return _Labels("multi", q.to(torch.uint8), d.to(torch.uint8))


def _prepare(
    query_codes: Tensor, db_codes: Tensor, query_labels: Tensor, db_labels: Tensor
) -> tuple[Tensor, Tensor, _Labels]:
    q = _as_sign_codes(query_codes, "query_codes")
    d = _as_sign_codes(db_codes, "db_codes")
    if q.shape[1] != d.shape[1]:
        raise ValueError(
            f"query_codes have {q.shape[1]} bits but db_codes have {d.shape[1]}; both sides need the same length."
        )
    if d.shape[0] == 0:
        raise ValueError("The database is empty (db_codes has 0 rows); there is nothing to retrieve.")
    if q.shape[0] == 0:
        raise ValueError("There are no queries (query_codes has 0 rows); the mean over queries is undefined.")
    if q.device != d.device:
        raise ValueError(f"query_codes are on {q.device} but db_codes on {d.device}; put both on one device.")
    labels = _normalise_labels(query_labels, db_labels, q.shape[0], d.shape[0])
    labels = _Labels(labels.kind, labels.query.to(q.device), labels.db.to(q.device))
    return q, d, labels


def _check_ties(ties: str) -> None:
    if ties not in _TIES_MODES:
        raise ValueError(f"Unknown ties mode {ties!r}; use 'expected' (default) or 'index'.")


def _check_k(k: int | None, what: str = "k") -> None:
    if k is None:
        return
    if isinstance(k, bool) or not isinstance(k, int):
        raise ValueError(f"{what} must be a positive int or None (whole database), got {k!r}.")
    if k <= 0:
        raise ValueError(f"{what} must be a positive int or None (whole database), got {k}.")


def _check_chunk_size(chunk_size: int) -> None:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size <= 0:
        raise ValueError(f"chunk_size must be a positive int (pairs per tile), got {chunk_size!r}.")


# ----------------------------------------------------------------------------------------------------------
# Distances
# ----------------------------------------------------------------------------------------------------------
def _inner_products(a: Tensor, b: Tensor) -> Tensor:
    """Exact integer inner products ``a @ b.T`` of two small-integer matrices (int32 or int64 result)."""
    if a.device.type == "cpu":
        if a.dtype == torch.int8 and b.dtype == torch.int8 and hasattr(torch, "_int_mm"):
            # Zero columns change nothing; _int_mm silently returns garbage for a single inner column.
            return torch._int_mm(_pad_columns(a), _pad_columns(b).T)
        a, b = a.long(), b.long()
        bound = float(a.abs().amax(1).max()) * float(b.abs().amax(1).max()) * a.shape[1] if a.numel() else 0.0
        if bound < 2**24:  # every partial sum is an integer below 2**24: float32 is exact
            return (a.float() @ b.float().T).to(torch.int32)
        return (a.double() @ b.double().T).to(torch.int64)
    # Accelerators: float64 products of small integers are exact and unaffected by TF32 settings.
    return (a.double() @ b.double().T).round().to(torch.int64)


def hamming_distance(query_codes: Tensor, db_codes: Tensor) -> Tensor:
    """Pairwise Hamming distances between two sets of binary codes.

    Args:
        query_codes: ``[Q, K]`` codes in ``{-1, +1}``, ``{0, 1}`` or bool.
        db_codes: ``[N, K]`` codes in the same bit length.

    Returns:
        ``LongTensor[Q, N]`` with exact integer distances in ``0..K``.

    Raises:
        ValueError: if the inputs are not binary 2-D codes of equal length.
    """
    q = _as_sign_codes(query_codes, "query_codes")
    d = _as_sign_codes(db_codes, "db_codes")
    if q.shape[1] != d.shape[1]:
        raise ValueError(
            f"query_codes have {q.shape[1]} bits but db_codes have {d.shape[1]}; both sides need the same length."
        )
    num_bits = q.shape[1]
    return (num_bits - _inner_products(q, d).long()) // 2


# ----------------------------------------------------------------------------------------------------------
# Histograms of (distance, relevant) per query: the one pass over all pairs
# ----------------------------------------------------------------------------------------------------------
def _const_columns(values: Tensor, width: int) -> tuple[Tensor, Tensor]:
    """Write non-negative per-row integers as ``sum_j A[:, j] * B[j]`` with ``|A|, |B| <= 127``.

    Returns ``(A [rows, width], B [width])`` with ``B = [1, 127, 127, ...]``: the constants can ride along in
    an ``int8`` matmul as extra columns (database side holds the constant ``B``).
    """
    rest = values.long()
    cols = [rest % _INT8_MAX]
    rest = rest // _INT8_MAX
    for _ in range(width - 1):
        take = rest.clamp(max=_INT8_MAX)
        cols.append(take)
        rest = rest - take
    if bool((rest > 0).any()):
        raise AssertionError("internal error: constant columns too narrow")
    a = torch.stack(cols, 1)
    b = torch.full((width,), _INT8_MAX, dtype=torch.long)
    b[0] = 1
    return a, b


def _const_width(max_value: int) -> int:
    return 1 + max(1, math.ceil((max_value // _INT8_MAX) / _INT8_MAX))


@dataclass
class _Plan:
    """Integer features such that ``query_features @ db_features.T`` are bincount indices."""

    db_features: Tensor  # [N, J]
    weight: int  # bins per distance step: bin = W * (K - s) + overlap
    bins_per_row: int


def _db_features(d: Tensor, extra: Tensor | None, const_width: int) -> Tensor:
    parts = [d]
    if extra is not None:
        parts.append(extra.to(d.dtype))
    _, b = _const_columns(torch.zeros(1, dtype=torch.long), const_width)
    parts.append(b.to(d.dtype).expand(d.shape[0], const_width))
    out = torch.cat(parts, 1)
    return _pad_columns(out).contiguous()


def _pad_columns(x: Tensor) -> Tensor:
    """Zero-pad to a multiple of 8 columns (the int8 matmul kernels are markedly faster then)."""
    extra = -x.shape[1] % 8
    return torch.nn.functional.pad(x, (0, extra)) if extra else x


def _query_features(q: Tensor, extra: Tensor | None, weight: int, bins_per_row: int, const_width: int) -> Tensor:
    rows, num_bits = q.shape
    consts = weight * num_bits + torch.arange(rows, device=q.device) * bins_per_row
    a, _ = _const_columns(consts.cpu(), const_width)
    parts = [q.long() * -weight]
    if extra is not None:
        parts.append(extra.long())
    parts.append(a.to(q.device))
    out = _pad_columns(torch.cat(parts, 1))
    return out.to(torch.int8) if int(out.abs().max()) <= _INT8_MAX else out


def _fold(bins: Tensor, rows: int, num_bits: int, weight: int, doubled: bool) -> tuple[Tensor, Tensor]:
    """Collapse bincount output into per-row (all, relevant) counts over distances ``0..K``.

    ``doubled``: bins are indexed by ``K - s = 2h`` (odd entries unused) rather than by ``h``.
    """
    if doubled:
        grid = bins.view(rows, 2 * num_bits + 1, weight)[:, ::2, :]
    else:
        grid = bins.view(rows, num_bits + 1, weight)
    return grid.sum(2), grid[:, :, 1:].sum(2)


def _parallel_rows(fn: Callable[[int, int], None], total: int, step: int, workers: int) -> None:
    """Run ``fn(start, stop)`` over row blocks on ``workers`` Python threads (torch releases the GIL)."""
    starts = list(range(0, total, step))
    workers = min(workers, len(starts))
    if workers <= 1:
        for s in starts:
            fn(s, min(total, s + step))
        return
    # Grad and inference modes are thread-local: carry the caller's into the workers (Lightning evaluates under
    # inference_mode, and the workers write into tensors created there).
    inference, grad = torch.is_inference_mode_enabled(), torch.is_grad_enabled()

    def call(start: int, stop: int) -> None:
        with torch.inference_mode(inference), torch.set_grad_enabled(grad):
            fn(start, stop)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(call, s, min(total, s + step)) for s in starts]
        for f in futures:
            f.result()


@contextmanager
def _single_intra_op_thread() -> Iterator[int]:
    """Use one intra-op thread inside; yields the previous thread count (= the number of workers to use).

    ``torch.bincount`` is single-threaded, so instead of parallelising inside each op we run independent row
    blocks on that many Python threads. The closed-form maths afterwards works on small ``[Q, K + 1]``
    tensors, where an OpenMP team only costs barrier waits (badly so on an oversubscribed machine).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield previous
    finally:
        torch.set_num_threads(previous)


#: Which histogram implementation CPU tensors use: ``"auto"`` (the compiled popcount kernels when numba is
#: installed, else torch), ``"popcount"`` or ``"torch"``. Results are identical; tests exercise both.
HISTOGRAM_BACKEND = "auto"
_BACKENDS = ("auto", "popcount", "torch")
# Queries per task handed to a worker thread by the popcount path (a multiple of the kernels' block of 4).
_POPCOUNT_ROWS_PER_TASK = 64


def _use_popcount(device: torch.device) -> bool:
    if HISTOGRAM_BACKEND not in _BACKENDS:
        raise ValueError(f"HISTOGRAM_BACKEND must be one of {_BACKENDS}, got {HISTOGRAM_BACKEND!r}.")
    if device.type != "cpu" or HISTOGRAM_BACKEND == "torch":
        return False
    if HISTOGRAM_BACKEND == "popcount" and not _popcount.available():
        raise ImportError("HISTOGRAM_BACKEND='popcount' needs numba: pip install numba")
    return _popcount.available()


def _histograms(q: Tensor, d: Tensor, labels: _Labels, chunk_size: int, workers: int = 1) -> tuple[Tensor, Tensor]:
    """Per-query counts ``n[q, h]`` (all items) and ``m[q, h]`` (relevant items) at each distance ``h``."""
    if _use_popcount(q.device):
        return _popcount_histograms(q, d, labels, workers)
    return _matmul_histograms(q, d, labels, chunk_size, workers)


def _popcount_histograms(q: Tensor, d: Tensor, labels: _Labels, workers: int) -> tuple[Tensor, Tensor]:
    """CPU path: XOR + popcount of bit-packed codes in compiled loops (see :mod:`._popcount`)."""
    num_q, num_bits = q.shape
    n_all = torch.zeros(num_q, num_bits + 1, dtype=torch.long)
    n_rel = torch.zeros(num_q, num_bits + 1, dtype=torch.long)
    a, b = n_all.numpy(), n_rel.numpy()  # the kernels write through these views
    kern = _popcount.kernels()
    qw = _popcount.pack_bits(q > 0)
    if labels.kind == "single":
        grouping = _popcount.group_single_label(labels.query, labels.db)
    else:
        grouping = _popcount.group_multi_label(labels.query, labels.db)
    dw = _popcount.pack_bits(d > 0)[grouping.order]
    args = (grouping.query_words, dw, grouping.row_words, grouping.group_starts, grouping.group_words)

    def run(r0: int, r1: int) -> None:
        kern.grouped(qw, *args, r0, r1, a, b)

    _parallel_rows(run, num_q, _POPCOUNT_ROWS_PER_TASK, workers)
    return n_all, n_rel


def _matmul_histograms(
    q: Tensor, d: Tensor, labels: _Labels, chunk_size: int, workers: int = 1
) -> tuple[Tensor, Tensor]:
    """Portable path (any device): integer matmul whose products are bin indices, then ``torch.bincount``."""
    num_q, num_bits = q.shape
    num_d = d.shape[0]
    device = q.device
    n_all = torch.zeros(num_q, num_bits + 1, dtype=torch.long, device=device)
    n_rel = torch.zeros(num_q, num_bits + 1, dtype=torch.long, device=device)
    rows_per_tile = max(1, min(num_q, 256, chunk_size))
    cols_per_tile = max(1, chunk_size // rows_per_tile)

    if labels.kind == "single":
        # Sort the database by class: each class block is relevant to exactly the queries of that class, so
        # a tile inside a block needs no per-pair relevance at all.
        order = torch.argsort(labels.db, stable=True)
        classes, counts = torch.unique_consecutive(labels.db[order], return_counts=True)
        ends = counts.cumsum(0).tolist()
        blocks = list(zip(classes.tolist(), [0] + ends[:-1], ends, strict=True))
        weight, extra_q, extra_d = 1, None, None
        d_sorted = d[order]
    else:
        overlap_max = min(int(labels.query.sum(1).max()), int(labels.db.sum(1).max()))
        weight = overlap_max + 1 + (overlap_max + 1) % 2  # even, so W (K - s) / 2 = W h is an integer matmul
        extra_q, extra_d = labels.query, labels.db
        blocks = [(None, 0, num_d)]
        d_sorted = d
    step = weight if labels.kind == "single" else weight // 2  # bin = step * (K - s) + overlap + row offset
    bins_per_row = weight * (2 * num_bits + 1) if labels.kind == "single" else weight * (num_bits + 1)
    const_width = _const_width(step * num_bits + rows_per_tile * bins_per_row)
    db_feat = _db_features(d_sorted, extra_d, const_width)
    lock = threading.Lock()

    def run(r0: int, r1: int) -> None:
        rows = r1 - r0
        q_feat = _query_features(q[r0:r1], None if extra_q is None else extra_q[r0:r1], step, bins_per_row, const_width)
        d_feat = db_feat
        acc_all = torch.zeros(rows, num_bits + 1, dtype=torch.long, device=device)
        acc_rel = torch.zeros(rows, num_bits + 1, dtype=torch.long, device=device)
        for cls, start, stop in blocks:
            block = torch.zeros(rows * bins_per_row, dtype=torch.long, device=device)
            for c0 in range(start, stop, cols_per_tile):
                # Database-major product ([cols, rows]): about twice as fast as the transpose for these shapes
                # with the CPU int8 kernels, and bincount does not care about the layout.
                idx = _inner_products(d_feat[c0 : min(stop, c0 + cols_per_tile)], q_feat)
                block += torch.bincount(idx.reshape(-1), minlength=rows * bins_per_row)
            all_counts, rel_counts = _fold(block, rows, num_bits, weight, labels.kind == "single")
            acc_all += all_counts
            if cls is None:
                acc_rel += rel_counts
            else:
                match = labels.query[r0:r1] == cls
                acc_rel[match] += all_counts[match]
        with lock:
            n_all[r0:r1] = acc_all
            n_rel[r0:r1] = acc_rel

    _parallel_rows(run, num_q, rows_per_tile, workers if device.type == "cpu" else 1)
    return n_all, n_rel


# ----------------------------------------------------------------------------------------------------------
# Closed forms for ties="expected"
# ----------------------------------------------------------------------------------------------------------
_SMALL_HARMONIC = torch.tensor(
    [math.fsum(1.0 / j for j in range(1, i + 1)) for i in range(_DIGAMMA_SERIES_FROM)], dtype=torch.float64
)  # H_0 .. H_31, each correctly rounded


def _harmonic_span(y: Tensor, n: Tensor) -> Tensor:
    """``sum_{j=0..n-1} 1 / (y + j)`` (float64, near full relative precision) for integers ``y >= 1``, ``n >= 0``.

    Terms with argument below 32 come from a table of correctly rounded harmonic numbers; the rest is
    ``psi(x2) - psi(x1)`` from the asymptotic series, written without cancellation (``log1p`` and differences
    of small powers), so the result keeps its relative precision even for ``y`` around a million.
    """
    y = y.long()
    n = n.long()
    table = _SMALL_HARMONIC.to(y.device)
    small_end = torch.minimum(y + n, torch.full_like(y, _DIGAMMA_SERIES_FROM)).clamp(min=1)  # exclusive
    small_start = y.clamp(max=_DIGAMMA_SERIES_FROM)
    direct = table[small_end - 1] - table[(small_start - 1).clamp(max=_DIGAMMA_SERIES_FROM - 1)]
    direct = torch.where(small_end > small_start, direct, torch.zeros_like(direct))
    x1 = torch.maximum(y, torch.full_like(y, _DIGAMMA_SERIES_FROM)).double()
    n2 = (y + n - x1.long()).clamp(min=0).double()
    x2 = x1 + n2
    # psi(x) = ln x - 1/(2x) - 1/(12x^2) + 1/(120x^4) - 1/(252x^6) + 1/(240x^8) - 1/(132x^10) + ...
    # (truncation error below 1e-17 relative for x >= 32).
    series = torch.log1p(n2 / x1) + n2 / (2.0 * x1 * x2)
    r1, r2 = x1.reciprocal().square(), x2.reciprocal().square()
    p1, p2 = r1, r2
    for coef in (1 / 12, -1 / 120, 1 / 252, -1 / 240, 1 / 132):
        series = series + coef * (p1 - p2)
        p1, p2 = p1 * r1, p2 * r2
    return direct + torch.where(n2 > 0, series, torch.zeros_like(series))


def _group_sum(n: Tensor, m: Tensor, a: Tensor, b: Tensor, dh: Tensor, g: Tensor) -> Tensor:
    """Expected ``sum r/pos`` over the relevant items of a fully ranked, randomly ordered tie group.

    ``F(n, m, a, b) = (m / n) * ((a + 1) * dH + alpha * G)`` with ``alpha = (m - 1)/(n - 1)`` (see module doc).
    ``dh`` and ``g`` must be ``dH`` and ``G`` for ``(b, n)``. All arguments broadcast.
    """
    n = n.double()
    m = m.double()
    safe_n = n.clamp(min=1.0)
    alpha = torch.where(n > 1, (m - 1.0) / (n - 1.0).clamp(min=1.0), torch.zeros_like(n))
    value = (m / safe_n) * ((a.double() + 1.0) * dh + alpha * g)
    return torch.where(m > 0, value, torch.zeros_like(value))


@dataclass
class _Boundary:
    """Per query: the tie group containing rank ``k`` and what precedes it."""

    group: Tensor  # index of the boundary distance
    n: Tensor  # items in the boundary group
    m: Tensor  # relevant items in the boundary group
    a: Tensor  # relevant items before it
    b: Tensor  # items before it
    c: Tensor  # items of the group inside the cut-off (1..n)
    keff: Tensor  # min(k, N)


def _boundary(n_all: Tensor, n_rel: Tensor, k: int | None) -> _Boundary:
    total = n_all.sum(1)
    keff = total if k is None else total.clamp(max=k)
    cum = n_all.cumsum(1)
    group = (cum < keff.unsqueeze(1)).sum(1)
    pick = group.unsqueeze(1)
    n = n_all.gather(1, pick).squeeze(1)
    b = (cum.gather(1, pick).squeeze(1)) - n
    m = n_rel.gather(1, pick).squeeze(1)
    a = n_rel.cumsum(1).gather(1, pick).squeeze(1) - m
    return _Boundary(group, n, m, a, b, keff - b, keff)


def _expected_ap(n_all: Tensor, n_rel: Tensor, k: int | None) -> Tensor:
    """Exact expected AP@k per query over uniformly random within-tie orders (float64 ``[Q]``)."""
    num_q, num_groups = n_all.shape
    bd = _boundary(n_all, n_rel, k)
    before = n_all.cumsum(1) - n_all
    rel_before = n_rel.cumsum(1) - n_rel
    dh = _harmonic_span(before + 1, n_all)
    g = n_all.double() - (before.double() + 1.0) * dh
    full = _group_sum(n_all, n_rel, rel_before, before, dh, g)
    taken = torch.arange(num_groups, device=n_all.device).unsqueeze(0) < bd.group.unsqueeze(1)
    e_before = torch.where(taken, full, torch.zeros_like(full)).sum(1)

    # Boundary group: hypergeometric number x of relevant items among its first c slots.
    lo = (bd.c - (bd.n - bd.m)).clamp(min=0)
    hi = torch.minimum(bd.c, bd.m)
    # Only the numerically relevant part of the support: Hoeffding's bound for sampling without replacement
    # gives P(|X - E X| >= t) <= 2 exp(-2 t^2 / s), s = min(c, n - c); t = 6 sqrt(s) + 2 leaves < 1e-31 of the
    # mass outside, far below float64 resolution (each term is at most 1).
    mean = bd.c.double() * bd.m.double() / bd.n.double().clamp(min=1.0)
    half = 6.0 * torch.minimum(bd.c, bd.n - bd.c).double().sqrt() + 2.0
    lo = torch.maximum(lo, (mean - half).floor().long())
    hi = torch.minimum(hi, (mean + half).ceil().long())
    dh_c = _harmonic_span(bd.b + 1, bd.c)
    g_c = bd.c.double() - (bd.b.double() + 1.0) * dh_c
    ap = torch.empty(num_q, dtype=torch.float64, device=n_all.device)
    support = hi - lo + 1
    # Process queries in blocks of similar support size (largest first) so the padded [rows, width] work
    # stays below _HYPERGEOM_BLOCK entries.
    order = torch.argsort(support)
    sizes = support[order].tolist()
    stop = num_q
    while stop > 0:
        rows = max(1, _HYPERGEOM_BLOCK // sizes[stop - 1])
        start = max(0, stop - rows)
        sel = order[start:stop]
        width = int(support[sel].max())
        x = lo[sel].unsqueeze(1) + torch.arange(width, device=n_all.device).unsqueeze(0)
        valid = x <= hi[sel].unsqueeze(1)
        nn, mm, cc = bd.n[sel].unsqueeze(1), bd.m[sel].unsqueeze(1), bd.c[sel].unsqueeze(1)
        t = x[:, :-1].double()
        num = (mm - t) * (cc - t)
        den = (t + 1.0) * (nn - mm - cc + t + 1.0)
        ok = valid[:, 1:]
        log_ratio = torch.where(ok, torch.log(num.clamp(min=1.0)) - torch.log(den.clamp(min=1.0)), 0.0)
        log_p = torch.cat([torch.zeros_like(x[:, :1], dtype=torch.float64), log_ratio.cumsum(1)], 1)
        log_p = torch.where(valid, log_p, -math.inf)
        p = torch.softmax(log_p, 1)
        aa = bd.a[sel].unsqueeze(1)
        s = _group_sum(cc, x, aa, bd.b[sel].unsqueeze(1), dh_c[sel].unsqueeze(1), g_c[sel].unsqueeze(1))
        denom = (aa + x).double()
        value = torch.where(denom > 0, (e_before[sel].unsqueeze(1) + s) / denom.clamp(min=1.0), 0.0)
        ap[sel] = (p * torch.where(valid, value, 0.0)).sum(1)
        stop = start
    # AP lies in [0, 1] exactly; the closed form can round an ulp or two outside (e.g. an all-relevant query gives
    # 1 + 2.2e-16). Clamping changes no value that is already in range.
    return ap.clamp_(0.0, 1.0)


def _expected_hits_at(n_all: Tensor, n_rel: Tensor, cutoff: int) -> tuple[Tensor, Tensor]:
    """Expected number of relevant items among the first ``min(cutoff, N)`` and that number of items."""
    bd = _boundary(n_all, n_rel, cutoff)
    hits = bd.a.double() + bd.c.double() * bd.m.double() / bd.n.double().clamp(min=1.0)
    return hits, bd.keff.double()


# ----------------------------------------------------------------------------------------------------------
# ties="index": explicit ranked lists (stable sort by distance, then database index)
# ----------------------------------------------------------------------------------------------------------
def _relevance_rows(labels: _Labels, r0: int, r1: int) -> Tensor:
    if labels.kind == "single":
        return labels.query[r0:r1].unsqueeze(1) == labels.db.unsqueeze(0)
    return _inner_products(labels.query[r0:r1].to(torch.int8), labels.db.to(torch.int8)) > 0


def _ranked_relevance(q: Tensor, d: Tensor, labels: _Labels, depth: int | None, chunk_size: int) -> Iterator[Tensor]:
    """Yield, per block of queries, relevance flags of the first ``depth`` items ranked with index ties."""
    num_q, num_bits = q.shape
    num_d = d.shape[0]
    depth = num_d if depth is None else min(depth, num_d)
    step = max(1, chunk_size // num_d)
    index = torch.arange(num_d, device=q.device)
    for r0 in range(0, num_q, step):
        r1 = min(num_q, r0 + step)
        dist = (num_bits - _inner_products(q[r0:r1], d).long()) // 2
        rel = _relevance_rows(labels, r0, r1)
        if depth == num_d:
            order = torch.sort(dist, dim=1, stable=True).indices
        else:
            key = dist * num_d + index  # unique keys: distance first, then database index
            order = torch.topk(key, depth, dim=1, largest=False, sorted=True).indices
        yield rel.gather(1, order)


def _ap_from_ranked(rel_sorted: Tensor, k: int | None) -> Tensor:
    top = rel_sorted if k is None else rel_sorted[:, :k]
    hits = top.double()
    ranks = torch.arange(1, top.shape[1] + 1, dtype=torch.float64, device=top.device)
    cum = hits.cumsum(1)
    total = cum[:, -1]
    summed = (hits * cum / ranks).sum(1)
    return torch.where(total > 0, summed / total.clamp(min=1.0), torch.zeros_like(summed))


# ----------------------------------------------------------------------------------------------------------
# The report: every metric from one pass
# ----------------------------------------------------------------------------------------------------------
def _key_for_k(k: int | None) -> str:
    return "mAP@all" if k is None else f"mAP@{k}"


def _report(
    q: Tensor,
    d: Tensor,
    labels: _Labels,
    ks: Sequence[int | None],
    radius: int | None,
    ns: Sequence[int],
    ties: str,
    pr_curve: bool,
    chunk_size: int,
    recall: bool = True,
) -> dict[str, Tensor]:
    out: dict[str, Tensor] = {}
    with _single_intra_op_thread() as workers:
        n_all, n_rel = _histograms(q, d, labels, chunk_size, workers)
        total_rel = n_rel.sum(1).double()
        if ties == "expected":
            for k in ks:
                out[_key_for_k(k)] = _expected_ap(n_all, n_rel, k).mean()
            for n in ns:
                hits, size = _expected_hits_at(n_all, n_rel, n)
                out[f"P@{n}"] = (hits / size).mean()
                if recall:
                    out[f"R@{n}"] = torch.where(total_rel > 0, hits / total_rel.clamp(min=1.0), 0.0).mean()
        if radius is not None:
            ball_all = n_all[:, : radius + 1].sum(1).double()
            ball_rel = n_rel[:, : radius + 1].sum(1).double()
            prec = torch.where(ball_all > 0, ball_rel / ball_all.clamp(min=1.0), 0.0)
            out[f"P@H<={radius}"] = prec.mean()
            out[f"P@H<={radius}/nonempty"] = (ball_all > 0).double().mean()
        if pr_curve:
            out["pr_precision"], out["pr_recall"] = _pr_from_hist(n_all, n_rel)
    if ties == "index" and (ks or ns):
        depth_needed = [k for k in ks] + list(ns)
        depth = None if any(k is None for k in depth_needed) else max(depth_needed, default=1)
        ap_sums = {k: torch.zeros((), dtype=torch.float64, device=q.device) for k in ks}
        hit_rows: dict[int, list[Tensor]] = {n: [] for n in ns}
        for rel_sorted in _ranked_relevance(q, d, labels, depth, chunk_size):
            for k in ks:
                ap_sums[k] += _ap_from_ranked(rel_sorted, k).sum()
            for n in ns:
                hit_rows[n].append(rel_sorted[:, :n].sum(1).double())
        for k in ks:
            out[_key_for_k(k)] = ap_sums[k] / q.shape[0]
        for n in ns:
            hits = torch.cat(hit_rows[n])
            out[f"P@{n}"] = (hits / min(n, d.shape[0])).mean()
            if recall:
                out[f"R@{n}"] = torch.where(total_rel > 0, hits / total_rel.clamp(min=1.0), 0.0).mean()
    return _ordered(out, ks, radius, ns, pr_curve, recall)


def _ordered(
    out: dict[str, Tensor],
    ks: Sequence[int | None],
    radius: int | None,
    ns: Sequence[int],
    pr_curve: bool,
    recall: bool,
) -> dict[str, Tensor]:
    """Return the report with keys in a fixed order: mAP@k..., P@H<=r, P@H<=r/nonempty, P@N, R@N..., curves."""
    keys = [_key_for_k(k) for k in ks]
    if radius is not None:
        keys += [f"P@H<={radius}", f"P@H<={radius}/nonempty"]
    for n in ns:
        keys += [f"P@{n}", f"R@{n}"] if recall else [f"P@{n}"]
    if pr_curve:
        keys += ["pr_precision", "pr_recall"]
    return {key: out[key] for key in keys}


def _pr_from_hist(n_all: Tensor, n_rel: Tensor) -> tuple[Tensor, Tensor]:
    pooled_all = n_all.sum(0).cumsum(0).double()
    pooled_rel = n_rel.sum(0).cumsum(0).double()
    nan = torch.full_like(pooled_all, math.nan)
    precision = torch.where(pooled_all > 0, pooled_rel / pooled_all.clamp(min=1.0), nan)
    total = pooled_rel[-1]
    recall = pooled_rel / total if total > 0 else nan
    return precision, recall


def _check_report_args(ks: Sequence[int | None], radius: int | None, ns: Sequence[int], ties: str) -> None:
    _check_ties(ties)
    for k in ks:
        _check_k(k)
    for n in ns:
        if n is None:
            raise ValueError("ns must hold positive ints (list lengths N for P@N); None is not allowed.")
        _check_k(n, "N in ns")
    if radius is not None and (isinstance(radius, bool) or not isinstance(radius, int) or radius < 0):
        raise ValueError(f"radius must be a non-negative int (Hamming radius), got {radius!r}.")


def retrieval_report(
    query_codes: Tensor,
    db_codes: Tensor,
    query_labels: Tensor,
    db_labels: Tensor,
    ks: Sequence[int | None] = (None,),
    radius: int | None = 2,
    ns: Sequence[int] = (),
    ties: str = "expected",
    pr_curve: bool = False,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> dict[str, Tensor]:
    """Compute every retrieval metric from one pass over the query x database distances.

    Args:
        query_codes: ``[Q, K]`` binary codes of the queries (``{-1, +1}``, ``{0, 1}`` or bool).
        db_codes: ``[N, K]`` binary codes of the database (retrieval set).
        query_labels: ``[Q]`` class indices or ``[Q, C]`` multi-hot labels.
        db_labels: ``[N]`` class indices or ``[N, C]`` multi-hot labels.
        ks: mAP cut-offs; ``None`` means the whole database (key ``"mAP@all"``), an int ``k`` gives ``"mAP@k"``.
        radius: Hamming radius for ``"P@H<=r"`` and ``"P@H<=r/nonempty"``; ``None`` skips it.
        ns: list lengths for ``"P@N"`` and ``"R@N"``.
        ties: ``"expected"`` (exact mean over random within-tie orders) or ``"index"`` (stable by index).
        pr_curve: also return ``"pr_precision"`` and ``"pr_recall"`` (float64 ``[K + 1]``, indexed by radius).
        chunk_size: maximum number of query x database pairs per tile; bounds memory independently of ``Q``.

    Returns:
        Dict of float64 tensors (scalars, curves ``[K + 1]``).

    Raises:
        ValueError: on malformed codes or labels, an empty database or query set, ``k <= 0`` or an unknown
            ``ties`` mode.

    Example (cross-modal: report both directions and their mean)::

        i2t = retrieval_report(img_codes_q, txt_codes_db, labels_q, labels_db, ks=(5000,))
        t2i = retrieval_report(txt_codes_q, img_codes_db, labels_q, labels_db, ks=(5000,))
        mean = (i2t["mAP@5000"] + t2i["mAP@5000"]) / 2
    """
    _check_report_args(ks, radius, ns, ties)
    _check_chunk_size(chunk_size)
    q, d, labels = _prepare(query_codes, db_codes, query_labels, db_labels)
    return _report(q, d, labels, tuple(ks), radius, tuple(ns), ties, pr_curve, chunk_size)


def mean_average_precision(
    query_codes: Tensor,
    db_codes: Tensor,
    query_labels: Tensor,
    db_labels: Tensor,
    k: int | None = None,
    ties: str = "expected",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> Tensor:
    """mAP@k over all queries (see module docstring for the exact definition).

    Args:
        query_codes: ``[Q, K]`` binary query codes.
        db_codes: ``[N, K]`` binary database codes.
        query_labels: ``[Q]`` class indices or ``[Q, C]`` multi-hot.
        db_labels: ``[N]`` class indices or ``[N, C]`` multi-hot.
        k: cut-off; ``None`` = whole database, ``k > N`` behaves as ``N``.
        ties: ``"expected"`` (default) or ``"index"``.
        chunk_size: maximum query x database pairs per tile.

    Returns:
        Scalar float64 tensor.
    """
    _check_k(k)
    return retrieval_report(
        query_codes, db_codes, query_labels, db_labels, ks=(k,), radius=None, ties=ties, chunk_size=chunk_size
    )[_key_for_k(k)]


def precision_within_radius(
    query_codes: Tensor,
    db_codes: Tensor,
    query_labels: Tensor,
    db_labels: Tensor,
    radius: int = 2,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> tuple[Tensor, Tensor]:
    """Mean precision within Hamming radius ``radius`` (0 for an empty ball).

    Returns:
        ``(precision, fraction_of_queries_with_nonempty_ball)``, both scalar float64 tensors.
    """
    if radius is None:
        raise ValueError("radius must be a non-negative int, got None.")
    rep = retrieval_report(query_codes, db_codes, query_labels, db_labels, ks=(), radius=radius, chunk_size=chunk_size)
    return rep[f"P@H<={radius}"], rep[f"P@H<={radius}/nonempty"]


def precision_recall_by_radius(
    query_codes: Tensor,
    db_codes: Tensor,
    query_labels: Tensor,
    db_labels: Tensor,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> tuple[Tensor, Tensor]:
    """Pooled precision and recall of the Hamming ball of radius ``r`` for ``r = 0..K``.

    Returns:
        ``(precision[K + 1], recall[K + 1])`` float64; precision is NaN at radii where no pair falls inside
        the ball (undefined: plot or tabulate only the finite entries), recall is all-NaN if no pair is relevant.
    """
    rep = retrieval_report(
        query_codes, db_codes, query_labels, db_labels, ks=(), radius=None, pr_curve=True, chunk_size=chunk_size
    )
    return rep["pr_precision"], rep["pr_recall"]


def precision_at_n(
    query_codes: Tensor,
    db_codes: Tensor,
    query_labels: Tensor,
    db_labels: Tensor,
    ns: Sequence[int],
    ties: str = "expected",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> Tensor:
    """Mean precision over the first ``min(N, database size)`` ranked items, for each ``N`` in ``ns``.

    Returns:
        float64 tensor ``[len(ns)]``.
    """
    rep = retrieval_report(
        query_codes,
        db_codes,
        query_labels,
        db_labels,
        ks=(),
        radius=None,
        ns=tuple(ns),
        ties=ties,
        chunk_size=chunk_size,
    )
    return torch.stack([rep[f"P@{n}"] for n in ns]) if len(ns) else torch.zeros(0, dtype=torch.float64)


def recall_at_n(
    query_codes: Tensor,
    db_codes: Tensor,
    query_labels: Tensor,
    db_labels: Tensor,
    ns: Sequence[int],
    ties: str = "expected",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> Tensor:
    """Mean recall (relevant retrieved / all relevant; 0 for queries without relevant items) at each ``N``.

    Returns:
        float64 tensor ``[len(ns)]``.
    """
    rep = retrieval_report(
        query_codes,
        db_codes,
        query_labels,
        db_labels,
        ks=(),
        radius=None,
        ns=tuple(ns),
        ties=ties,
        chunk_size=chunk_size,
    )
    return torch.stack([rep[f"R@{n}"] for n in ns]) if len(ns) else torch.zeros(0, dtype=torch.float64)
