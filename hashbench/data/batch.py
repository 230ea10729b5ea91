"""Batch types: datasets return these per item, so the default collate yields batched named tuples."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor

__all__ = ["HashBatch", "CrossModalBatch"]


class HashBatch(NamedTuple):
    """An image batch: ``labels`` is always multi-hot float (one-hot for single-label data); ``index`` is the
    position in the split being iterated (0..num_train-1 for training, used by memory banks)."""

    image: Tensor
    labels: Tensor
    index: Tensor


class CrossModalBatch(NamedTuple):
    """An image-text batch: ``text`` is a bag-of-words float vector or token ids."""

    image: Tensor
    text: Tensor
    labels: Tensor
    index: Tensor
