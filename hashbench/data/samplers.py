"""Class-aware batch sampling for unbalanced single-label data.

DFEH trains on SVHN with class-aware sampling, 20 images per class per iteration, because SVHN's classes are
unbalanced. :class:`ClassAwareBatchSampler` yields batches made of ``per_class`` items of every class.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler


class ClassAwareBatchSampler(Sampler[list[int]]):
    """Batches of ``per_class`` positions from every class (drawn with replacement only where a class is short).

    An epoch has ``ceil(len(class_ids) / (per_class * num_classes))`` batches, so it sees about as many images as
    a plain epoch. The draw is seeded by ``(seed, epoch)``; the epoch advances on every pass and Lightning's
    ``set_epoch`` sets it explicitly.

    Args:
        class_ids: class id of each training item (position ``i`` = training index ``i``).
        num_classes: number of classes.
        per_class: items of each class in every batch.
        seed: base seed.
    """

    def __init__(self, class_ids: np.ndarray, num_classes: int, per_class: int, seed: int = 0) -> None:
        super().__init__()
        if per_class <= 0:
            raise ValueError(f"per_class must be positive, got {per_class}")
        self.class_ids = np.asarray(class_ids)
        self.members = [np.flatnonzero(self.class_ids == c) for c in range(num_classes)]
        empty = [c for c, m in enumerate(self.members) if m.size == 0]
        if empty:
            raise ValueError(f"class-aware sampling needs every class in the training set; classes {empty} are empty")
        self.per_class = per_class
        self.seed = seed
        self.epoch = 0
        self.batch_size = per_class * num_classes

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch that seeds the next pass."""
        self.epoch = epoch

    def __len__(self) -> int:
        return max(1, -(-len(self.class_ids) // self.batch_size))

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.Generator(np.random.PCG64([self.seed, self.epoch]))
        self.epoch += 1
        num_batches = len(self)
        need = num_batches * self.per_class
        columns = []
        for members in self.members:
            # Cycle through shuffled copies of the class so every member is used before any repeats.
            reps = -(-need // members.size)
            columns.append(np.concatenate([rng.permutation(members) for _ in range(reps)])[:need])
        stacked = np.stack(columns, axis=1).reshape(num_batches, self.per_class * len(self.members))
        for row in stacked:
            yield rng.permutation(row).tolist()
