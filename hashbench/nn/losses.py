"""Loss pieces shared by several methods."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["label_similarity", "log1p_exp", "sign_with_zero_positive"]


def label_similarity(labels_a: Tensor, labels_b: Tensor | None = None) -> Tensor:
    """S_ij = 1 if items i and j share at least one label, else 0 (multi-hot inputs), as float."""
    labels_b = labels_a if labels_b is None else labels_b
    return (labels_a.float() @ labels_b.float().T > 0).float()


def log1p_exp(x: Tensor) -> Tensor:
    """Numerically stable log(1 + e^x) (softplus): never overflows for large x."""
    return F.softplus(x)


def sign_with_zero_positive(x: Tensor) -> Tensor:
    """sign(x) in {-1, +1} with sign(0) = +1, the rule hashbench uses everywhere a code is binarised."""
    return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))
