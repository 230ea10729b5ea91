"""Batch containers yielded by every hashbench datamodule.

Datasets return one of these per item, so torch's ``default_collate`` turns a list of them into the same
namedtuple holding batched tensors. In-memory datasets build whole batches at once (see
:mod:`hashbench.data.datasets`) and return the batched namedtuple directly.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from torch import Tensor


class HashBatch(NamedTuple):
    """One image batch (or one item).

    Attributes:
        image: float image tensor, ``(B, C, H, W)`` (``(C, H, W)`` for one item).
        labels: multi-hot float label vector, ``(B, num_classes)``; one-hot for single-label data.
        index: position of each item in the split being iterated (``0..len(split)-1``); for the training
            loader that is ``0..num_train-1`` and memory banks are indexed with it.
    """

    image: Tensor
    labels: Tensor
    index: Tensor


class CrossModalBatch(NamedTuple):
    """One image-text batch (or one item).

    Attributes:
        image: float image tensor, ``(B, C, H, W)``.
        text: float bag-of-words / tag vector ``(B, D)`` (DCMH ``.mat`` format), LongTensor token ids
            ``(B, L)`` when a tokenizer is set, or a list of raw caption strings otherwise (CLIP format).
        labels: multi-hot float label vector, ``(B, num_classes)``.
        index: position of each item in the split being iterated.
    """

    image: Tensor
    text: Any
    labels: Tensor
    index: Tensor
