"""DTSH: Deep Supervised Hashing with Triplet Labels.

Xiaofang Wang, Yi Shi, Kris M. Kitani. "Deep Supervised Hashing with Triplet Labels". ACCV 2016.
https://arxiv.org/abs/1612.03900 — official code: https://github.com/Minione/DTSH.

DTSH maximises the likelihood of triplet labels (anchor i, positive j, negative k): with Θ_ij = ½ u_iᵀu_j,
p(triplet | u) = σ(Θ_ij − Θ_ik − α), so the anchor must be closer to the positive than to the negative by a
margin α in inner product. A quantisation term λ‖b − u‖² ties the relaxed codes to their signs.

Deviations from the paper:
- Triplets are all valid in-batch triplets (S_ij = 1, j ≠ i, S_ik = 0), evaluated at once from the B×B Gram matrix
  (vectorised over anchors, positives and negatives); the likelihood is averaged over the valid triplets and the
  quantisation term over the B·K outputs (hashbench's reconstruction), rather than summed.
- Relaxed codes u are the tanh outputs of the hash layer (hashbench's default activation); the paper relaxes the
  codes to the real-valued output of its last layer.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from hashbench.methods.base import DEEPHASH_PYTORCH_TRAINING, HashingMethod, Paper
from hashbench.nn.losses import difference_softplus_sum, label_similarity, sign_with_zero_positive
from hashbench.registry import register_method

__all__ = ["dtsh_loss", "DTSH"]


# Sentinel for padding slots of the compact triplet tensor: a triplet with x <= -PAD contributes exactly 0 to the
# value and the gradient in float32 and float64 (real |Θ| <= K/2 for tanh codes, far below PAD).
_PAD = 1e4


def _compact_rows(values: Tensor, mask: Tensor, fill: float) -> Tensor:
    """Per row, the entries of ``values`` where ``mask`` holds, moved to the front; the rest of the row is ``fill``.

    The result has as many columns as the largest row count of ``mask``.
    """
    counts = mask.sum(1)
    n = int(counts.max())
    # Each selected entry goes to its rank within the row; unselected ones to a spare column n, dropped after.
    slot = torch.where(mask, mask.cumsum(1) - 1, n)
    cols = torch.arange(mask.shape[1], device=values.device).expand_as(mask)
    index = torch.zeros(mask.shape[0], n + 1, dtype=torch.long, device=values.device).scatter_(1, slot, cols)[:, :n]
    real = torch.arange(n, device=values.device)[None, :] < counts[:, None]
    return torch.where(real, values.gather(1, index), fill)


def dtsh_loss(u: Tensor, labels: Tensor, alpha: float = 5.0, lam: float = 1.0) -> dict[str, Tensor]:
    """DTSH loss over all valid in-batch triplets plus the quantisation term.

    For each anchor i, positive j (S_ij = 1, j ≠ i) and negative k (S_ik = 0):
    −log σ(Θ_ij − Θ_ik − α) = log(1 + e^(Θ_ik − Θ_ij + α)), with Θ = ½ u uᵀ. A batch without a valid triplet has a
    zero triplet term.

    Args:
        u: relaxed codes [B, K].
        labels: multi-hot labels [B, C].
        alpha: α, the margin inside the triplet sigmoid.
        lam: λ, weight of the quantisation term mean((u − sign(u))²).

    Returns:
        ``triplet``, ``quantization`` and their sum ``loss``.
    """
    b = u.shape[0]
    theta = 0.5 * u @ u.T
    negative = ~label_similarity(labels).bool()
    positive = (~negative).fill_diagonal_(False)
    pos_count, neg_count = positive.sum(1), negative.sum(1)
    count = int((pos_count * neg_count).sum())  # valid triplets
    if count > 0:
        # Per anchor, its positives' Θ are gathered into a row padded to the largest count, so the triplet tensor is
        # [B, max #pos, #neg columns] instead of B³ (about 7x smaller for 10 balanced classes). Padding slots hold
        # sentinels that put every triplet they enter at x <= -PAD, where its value and gradient are exactly 0, so
        # no [B, P, N] weight tensor is needed. Negatives are compacted the same way only when that saves a
        # quarter of the columns (with few classes nearly every column is a negative anyway).
        theta_pos = _compact_rows(theta, positive, _PAD)
        if int(neg_count.max()) <= 0.75 * b:
            theta_neg = _compact_rows(theta + alpha, negative, -_PAD)
        else:
            theta_neg = torch.where(negative, theta + alpha, -_PAD)
        triplet = difference_softplus_sum(theta_neg, theta_pos) / count
    else:
        triplet = theta.sum() * 0.0
    quantization = lam * (u - sign_with_zero_positive(u.detach())).pow(2).mean()
    return {"triplet": triplet, "quantization": quantization, "loss": triplet + quantization}


@register_method
class DTSH(HashingMethod):
    """Deep supervised hashing with triplet label likelihood (Wang, Shi & Kitani, ACCV 2016)."""

    paper = Paper(
        title="Deep Supervised Hashing with Triplet Labels",
        authors="Xiaofang Wang, Yi Shi, Kris M. Kitani",
        venue="ACCV",
        year=2016,
        url="https://arxiv.org/abs/1612.03900",
        code="https://github.com/Minione/DTSH",
    )
    supervision = "triplet"
    ddp_batch = "global"  # in-batch terms over every process\'s rows (base.HashingMethod.global_batch)
    loss_function = staticmethod(dtsh_loss)
    paper_training = dict(DEEPHASH_PYTORCH_TRAINING)

    def __init__(
        self,
        n_bits: int = 48,
        alpha: float = 5.0,  # α, margin of the triplet likelihood σ(Θ_ij − Θ_ik − α)
        lam: float = 1.0,  # λ, weight of the quantisation term
        **kwargs: Any,
    ) -> None:
        super().__init__(n_bits=n_bits, **kwargs)
        self.alpha = alpha
        self.lam = lam

    def compute_loss(self, batch: Any) -> dict[str, Tensor]:
        u, labels = self.global_batch(self(batch.image), batch.labels)
        return self.loss_function(u, labels, self.alpha, self.lam)
