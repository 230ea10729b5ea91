"""``torchmetrics.Metric`` wrapper around :func:`hashbench.metrics.functional.retrieval_report`.

The metric only *stores* codes and labels (compactly: codes as ``int8`` ``-1/+1``) and calls the functional
core in :meth:`HashingRetrieval.compute`. States are lists reduced with ``dist_reduce_fx="cat"``, so under
DDP every rank ends up with the concatenation of all ranks' queries and database items and computes the
same numbers a single process would.

Order under DDP: torchmetrics concatenates list states rank by rank, so the database order after syncing
depends on the world size and on how the sampler split the data (the ``DistributedSampler`` also pads by
repeating items unless the data divide evenly; use ``drop_last=False`` and an evaluation sampler that does
not pad, or accept the duplicates). With ``ties="expected"`` (the default) the result does not depend on the
database order at all. With ``ties="index"`` ties are broken by the position *after* concatenation, i.e.
(rank, then order within the rank) -- deterministic for a fixed world size and sampler, but not equal to
ranking by the original dataset index. Use ``ties="index"`` on a single process when per-item ranking
matters (e.g. showing retrieved lists).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat

from hashbench.metrics.functional import (
    DEFAULT_CHUNK_SIZE,
    _as_sign_codes,
    _check_chunk_size,
    _check_report_args,
    retrieval_report,
)

__all__ = ["HashingRetrieval"]

_ROLES = ("query", "database")


def _is_empty(state: list[Tensor] | Tensor) -> bool:
    # After a DDP sync torchmetrics replaces a list state by the concatenated tensor.
    return state.numel() == 0 if isinstance(state, Tensor) else len(state) == 0


class HashingRetrieval(Metric):
    """Retrieval metrics of binary hash codes (mAP@k, P@H<=r, P@N/R@N, PR curve by radius).

    Feed query and database items with :meth:`update` (``role="query"`` or ``role="database"``, any number of
    batches in any order); :meth:`compute` returns the dict of :func:`~hashbench.metrics.functional.retrieval_report`
    (keys such as ``"mAP@all"``, ``"mAP@5000"``, ``"P@H<=2"``, ``"P@H<=2/nonempty"``, ``"P@100"``).

    Args:
        ks: mAP cut-offs, ``None`` = whole database.
        radius: Hamming radius for ``P@H<=r`` (``None`` skips it).
        ns: list lengths for ``P@N`` / ``R@N``.
        ties: ``"expected"`` (default; independent of database order, hence of DDP layout) or ``"index"``.
        pr_curve: also return ``"pr_precision"`` / ``"pr_recall"`` curves indexed by radius.
        chunk_size: maximum query x database pairs per tile in ``compute``.
        **kwargs: passed to :class:`torchmetrics.Metric` (e.g. ``sync_on_compute``).

    Example (cross-modal retrieval: one metric per direction)::

        i2t, t2i = HashingRetrieval(ks=(50,)), HashingRetrieval(ks=(50,))
        i2t.update(img_codes_q, labels_q, role="query"); i2t.update(txt_codes_db, labels_db, role="database")
        t2i.update(txt_codes_q, labels_q, role="query"); t2i.update(img_codes_db, labels_db, role="database")
        mean_map = (i2t.compute()["mAP@50"] + t2i.compute()["mAP@50"]) / 2
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    query_codes: list[Tensor]
    query_labels: list[Tensor]
    db_codes: list[Tensor]
    db_labels: list[Tensor]

    def __init__(
        self,
        ks: Sequence[int | None] = (None,),
        radius: int | None = 2,
        ns: Sequence[int] = (),
        ties: str = "expected",
        pr_curve: bool = False,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        _check_report_args(tuple(ks), radius, tuple(ns), ties)
        _check_chunk_size(chunk_size)
        self.ks = tuple(ks)
        self.radius = radius
        self.ns = tuple(ns)
        self.ties = ties
        self.pr_curve = pr_curve
        self.chunk_size = chunk_size
        for name in ("query_codes", "query_labels", "db_codes", "db_labels"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, codes: Tensor, labels: Tensor, role: str = "query") -> None:
        """Store a batch of codes and labels.

        Args:
            codes: ``[B, K]`` binary codes (``{-1, +1}``, ``{0, 1}`` or bool; stored as int8 ``-1/+1``).
            labels: ``[B]`` class indices or ``[B, C]`` multi-hot (stored as ``uint8``); use one format per role.
            role: ``"query"`` or ``"database"``.

        Raises:
            ValueError: for an unknown role, non-binary codes, mismatched rows, or a change of bit length or
                label format between batches.
        """
        if role not in _ROLES:
            raise ValueError(f"role must be 'query' or 'database', got {role!r}.")
        packed = _as_sign_codes(codes.detach(), "codes")
        if not isinstance(labels, Tensor) or labels.dim() not in (1, 2):
            raise ValueError("labels must be a 1-D tensor of class indices or a 2-D multi-hot tensor.")
        if labels.shape[0] != packed.shape[0]:
            raise ValueError(f"labels have {labels.shape[0]} rows but codes have {packed.shape[0]}; they must match.")
        if labels.dim() == 1:
            if labels.is_floating_point() or labels.dtype == torch.bool:
                raise ValueError(f"1-D labels must be integer class indices, got dtype {labels.dtype}.")
            stored_labels = labels.detach().long()
        else:
            stored_labels = (labels.detach() != 0).to(torch.uint8)
        code_state, label_state = (
            (self.query_codes, self.query_labels) if role == "query" else (self.db_codes, self.db_labels)
        )
        if code_state:
            if code_state[0].shape[1] != packed.shape[1]:
                raise ValueError(
                    f"{role} codes changed bit length between batches ({code_state[0].shape[1]} -> {packed.shape[1]})."
                )
            if label_state[0].dim() != stored_labels.dim() or label_state[0].shape[1:] != stored_labels.shape[1:]:
                raise ValueError(f"{role} labels changed format between batches; use one label format per role.")
        code_state.append(packed)
        label_state.append(stored_labels)

    def compute(self) -> dict[str, Tensor]:
        """Compute the report over everything stored (all ranks after sync).

        Raises:
            ValueError: if no query or no database items were added.
        """
        if _is_empty(self.query_codes) or _is_empty(self.db_codes):
            raise ValueError(
                "HashingRetrieval needs both query and database items: call update(..., role='query') and "
                "update(..., role='database') before compute()."
            )
        return retrieval_report(
            dim_zero_cat(self.query_codes),
            dim_zero_cat(self.db_codes),
            dim_zero_cat(self.query_labels),
            dim_zero_cat(self.db_labels),
            ks=self.ks,
            radius=self.radius,
            ns=self.ns,
            ties=self.ties,
            pr_curve=self.pr_curve,
            chunk_size=self.chunk_size,
        )
