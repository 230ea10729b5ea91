"""Exact retrieval metrics for hash codes: functional core and a torchmetrics wrapper.

See :mod:`hashbench.metrics.functional` for the definitions (as implemented) and the derivation of the
closed forms used for ``ties="expected"``.
"""

from hashbench.metrics.functional import (
    DEFAULT_CHUNK_SIZE,
    hamming_distance,
    mean_average_precision,
    precision_at_n,
    precision_recall_by_radius,
    precision_within_radius,
    recall_at_n,
    retrieval_report,
)
from hashbench.metrics.retrieval import HashingRetrieval

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "HashingRetrieval",
    "hamming_distance",
    "mean_average_precision",
    "precision_at_n",
    "precision_recall_by_radius",
    "precision_within_radius",
    "recall_at_n",
    "retrieval_report",
]
