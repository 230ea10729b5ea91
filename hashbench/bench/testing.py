"""Test fixtures of the table runner (not registered; use them by import path in a spec or ``run_cell``).

:class:`PointwiseTestHash` exists for the DDP equivalence test. Its loss is a per-sample mean (cross-entropy of a
linear classifier on the relaxed codes plus a quantization penalty) and its network has no batch coupling and no
randomness (BatchNorm replaced by per-sample GroupNorm, dropout removed), so DDP's gradient averaging over equal
shards of a global batch reproduces the single-process gradient of that batch. Methods without these properties
are not bitwise reproducible across process counts:

- a loss over in-batch pairs, or DPSH's memory bank through which the batch's own rows carry gradient, loses the
  gradient path of cross-process pairs;
- BatchNorm normalises with per-process batch statistics (SyncBatchNorm needs a GPU);
- dropout masks come from per-process random streams.
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from hashbench.methods.base import HashingMethod, Paper

__all__ = ["DivergingTestHash", "PointwiseTestHash", "kill_once_executor", "per_sample_network"]


def per_sample_network(module: nn.Module) -> nn.Module:
    """Replace BatchNorm by GroupNorm(1, C) and dropout by identity, in place (returns ``module``)."""
    for name, child in module.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(module, name, nn.GroupNorm(1, child.num_features))
        elif isinstance(child, nn.modules.dropout._DropoutNd):
            setattr(module, name, nn.Identity())
        else:
            per_sample_network(child)
    return module


class PointwiseTestHash(HashingMethod):
    """Classifier-on-codes hashing with a per-sample loss and network (a fixture, not a published method)."""

    paper = Paper(title="hashbench test fixture", authors="hashbench", venue="none", year=2025)
    supervision = "pointwise"

    def __init__(self, n_bits: int = 16, quantization: float = 0.1, **kwargs: Any) -> None:
        kwargs.setdefault("hash_bn", False)  # the framework's hash-layer BatchNorm couples the batch
        super().__init__(n_bits=n_bits, **kwargs)
        self.quantization = quantization

    def on_data_configured(self) -> None:
        # The network may have been rebuilt for the data's channels just before this hook.
        per_sample_network(self.backbone)
        per_sample_network(self.hash_layer)
        self.classifier = nn.Linear(self.n_bits, self.hparams.num_classes)

    def compute_loss(self, batch: Any) -> dict[str, Tensor]:
        u = self(batch.image)
        ce = F.cross_entropy(self.classifier(u), batch.labels.argmax(1))
        quant = self.quantization * (u.abs() - 1).pow(2).mean()
        return {"ce": ce, "quantization": quant, "loss": ce + quant}


class DivergingTestHash(PointwiseTestHash):
    """:class:`PointwiseTestHash` whose quantization term turns NaN at training step ``diverge_at`` (a fixture for
    the non-finite-loss stop)."""

    def __init__(self, n_bits: int = 16, diverge_at: int = 2, **kwargs: Any) -> None:
        super().__init__(n_bits=n_bits, **kwargs)
        self.diverge_at = diverge_at

    def compute_loss(self, batch: Any) -> dict[str, Tensor]:
        terms = super().compute_loss(batch)
        if self.global_step >= self.diverge_at:
            terms["quantization"] = terms["quantization"] * float("nan")
            terms["loss"] = terms["ce"] + terms["quantization"]
        return terms


def kill_once_executor(cell: Any, options: Any, results_root: Any) -> dict[str, Any]:
    """Cell executor for the launcher tests: the first run of the cell whose key is in the file named by
    ``$HASHBENCH_TEST_KILL_ONCE`` SIGKILLs its own process mid-cell (as a node dying would end it: no cleanup, the
    cell's lock left behind); every other run is :func:`hashbench.bench.runner.execute_cell`."""
    import os
    import signal
    from pathlib import Path

    from hashbench.bench.runner import execute_cell

    marker = os.environ.get("HASHBENCH_TEST_KILL_ONCE")
    if marker and Path(marker).is_file() and Path(marker).read_text().strip() == cell.key:
        Path(marker).unlink()
        os.kill(os.getpid(), signal.SIGKILL)
    return execute_cell(cell, options, results_root)
