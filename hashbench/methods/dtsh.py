"""DTSH: Deep Supervised Hashing with Triplet Labels.

Xiaofang Wang, Yi Shi, Kris M. Kitani. "Deep Supervised Hashing with Triplet Labels". ACCV 2016.
https://arxiv.org/abs/1612.03900 — official code: https://github.com/Minione/DTSH.

DTSH maximises the likelihood of triplet labels (anchor i, positive j, negative k): with Θ_ij = ½ u_iᵀu_j,
p(triplet | u) = σ(Θ_ij − Θ_ik − α), so the anchor must be closer to the positive than to the negative by a
margin α in inner product. A quantisation term λ‖b − u‖² ties the relaxed codes to their signs.

Deviations from the paper:
- Triplets are all valid in-batch triplets (S_ij = 1, j ≠ i, S_ik = 0), evaluated at once from the B×B Gram matrix
  (vectorised over anchors, positives and negatives); the likelihood is averaged over the valid triplets and the
  quantisation term over the B·K outputs (../shared/specs/methods.md), rather than summed.
- Relaxed codes u are the tanh outputs of the hash layer (hashbench's default activation); the paper relaxes the
  codes to the real-valued output of its last layer.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from hashbench.methods.base import DEEPHASH_PYTORCH_TRAINING, HashingMethod, Paper
from hashbench.nn.losses import label_similarity, log1p_exp, sign_with_zero_positive
from hashbench.registry import register_method

__all__ = ["dtsh_loss", "DTSH"]


# Sentinel for padding slots of the compact triplet tensor: e^-PAD underflows to 0 in float32 and float64.
_PAD = 1e4


def _compact_rows(values: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Per row, the entries of ``values`` where ``mask`` holds, moved to the front and padded to the largest count.

    Returns the gathered values [B, n] and which of them are real (not padding) [B, n].
    """
    counts = mask.sum(1)
    n = int(counts.max())
    rows, cols = mask.nonzero(as_tuple=True)
    slot = mask.cumsum(1)[rows, cols] - 1  # rank of each selected entry within its row
    index = torch.zeros(mask.shape[0], n, dtype=torch.long, device=values.device)
    index[rows, slot] = cols
    real = torch.arange(n, device=values.device)[None, :] < counts[:, None]
    return values.gather(1, index), real


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
    s = label_similarity(labels).bool()
    positive = s & ~torch.eye(b, dtype=torch.bool, device=u.device)
    negative = ~s
    if bool(positive.any(1).logical_and(negative.any(1)).any()):
        # Per anchor, gather its positives' and negatives' Θ into rows padded to the largest count, so the triplet
        # tensor is [B, max #pos, max #neg] instead of B³ (about 10x smaller for 10 balanced classes).
        theta_pos, pos_ok = _compact_rows(theta, positive)
        theta_neg, neg_ok = _compact_rows(theta, negative)
        # Padding slots get sentinels that put every triplet they enter at x <= -PAD, where log(1 + e^x) and its
        # gradient σ(x) are exactly 0 in floating point: no [B, P, N] weight tensor is needed.
        theta_pos = torch.where(pos_ok, theta_pos, _PAD)
        theta_neg = torch.where(neg_ok, theta_neg + alpha, -_PAD)
        count = (pos_ok.sum(1) * neg_ok.sum(1)).sum()
        triplet = log1p_exp(theta_neg[:, None, :] - theta_pos[:, :, None]).sum() / count
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
        return dtsh_loss(self(batch.image), batch.labels, self.alpha, self.lam)
