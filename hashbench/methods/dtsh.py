"""DTSH: Deep Supervised Hashing with Triplet Labels.

Xiaofang Wang, Yi Shi, Kris M. Kitani. "Deep Supervised Hashing with Triplet Labels". ACCV 2016.
https://arxiv.org/abs/1612.03900 — official code: https://github.com/Minione/DTSH.

DTSH maximises the likelihood of triplet labels (anchor i, positive j, negative k): with Θ_ij = ½ u_iᵀu_j,
p(triplet | u) = σ(Θ_ij − Θ_ik − α), so the anchor must be closer to the positive than to the negative by a
margin α in inner product. A quantisation term λ‖b − u‖² ties the relaxed codes to their signs.

Deviations from the paper:
- Triplets are all valid in-batch triplets (S_ij = 1, j ≠ i, S_ik = 0), evaluated at once from the B×B Gram matrix
  (a B×B×B tensor); the likelihood is averaged over the valid triplets and the quantisation term over the B·K
  outputs (../shared/specs/methods.md), rather than summed.
- Relaxed codes u are the tanh outputs of the hash layer (hashbench's default activation); the paper relaxes the
  codes to the real-valued output of its last layer.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from hashbench.methods.base import HashingMethod, Paper
from hashbench.nn.losses import label_similarity, log1p_exp, sign_with_zero_positive
from hashbench.registry import register_method

__all__ = ["dtsh_loss", "DTSH"]


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
    # valid[i, j, k] = positive[i, j] and negative[i, k]
    valid = positive[:, :, None] & negative[:, None, :]
    n_valid = valid.sum()
    if n_valid > 0:
        # Only the valid entries are evaluated: gathering them first keeps the softplus and its backward to the
        # number of triplets rather than B³.
        i, j, k = valid.nonzero(as_tuple=True)
        triplet = log1p_exp(theta[i, k] - theta[i, j] + alpha).mean()
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
    # DeepHash-pytorch's recipe for its baselines (../shared/specs/methods.md); its backbone is an ImageNet
    # AlexNet (backbone="alexnet", pretrained=True), left out here so that the recipe also runs on 1-channel data.
    paper_training = {
        "optimizer": "rmsprop",
        "lr": 1e-5,
        "weight_decay": 1e-5,
        "batch_size": 64,
        "max_epochs": 150,
    }

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
