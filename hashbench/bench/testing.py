"""Test fixtures of the table runner (not registered; use them by import path in a spec or ``run_cell``).

:class:`PointwiseTestHash` exists for the DDP equivalence test: its loss is a per-sample mean (cross-entropy of a
linear classifier on the relaxed codes plus a quantization penalty), so DDP's gradient averaging over equal
shards reproduces the single-process gradient of the same global batch. Pairwise methods whose loss couples the
samples of a batch (in-batch pairs, or DPSH's memory bank, through which the batch's own rows carry gradient) do
not have this property: under DDP the cross-process pairs lose their gradient path.
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from hashbench.methods.base import HashingMethod, Paper

__all__ = ["PointwiseTestHash"]


class PointwiseTestHash(HashingMethod):
    """Classifier-on-codes hashing with a per-sample loss (a fixture, not a published method)."""

    paper = Paper(title="hashbench test fixture", authors="hashbench", venue="none", year=2025)
    supervision = "pointwise"

    def __init__(self, n_bits: int = 16, quantization: float = 0.1, **kwargs: Any) -> None:
        super().__init__(n_bits=n_bits, **kwargs)
        self.quantization = quantization

    def on_data_configured(self) -> None:
        self.classifier = nn.Linear(self.n_bits, self.hparams.num_classes)

    def compute_loss(self, batch: Any) -> dict[str, Tensor]:
        u = self(batch.image)
        ce = F.cross_entropy(self.classifier(u), batch.labels.argmax(1))
        quant = self.quantization * (u.abs() - 1).pow(2).mean()
        return {"ce": ce, "quantization": quant, "loss": ce + quant}
