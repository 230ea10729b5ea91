"""HashNet: Deep Learning to Hash by Continuation.

Zhangjie Cao, Mingsheng Long, Jianmin Wang, Philip S. Yu. "HashNet: Deep Learning to Hash by Continuation".
ICCV 2017. https://openaccess.thecvf.com/content_ICCV_2017/papers/Cao_HashNet_Deep_Learning_ICCV_2017_paper.pdf
— official code (Caffe and PyTorch): https://github.com/thuml/HashNet.

HashNet trains the network with tanh(βz) as the activation and raises β along a continuation schedule, so that the
activation converges to sign(z) and the relaxed codes become binary by the end of training. The loss is a weighted
maximum likelihood over pairs: pairwise logistic loss on the "adaptive" inner product Θ_ij = α·h_iᵀh_j,
h = tanh(βz), where every pair is weighted by the inverse frequency of its kind (similar / dissimilar) to counter
the imbalance of similar pairs in a batch.

Deviations from the paper:
- Pairs are all ordered pairs (i, j), i ≠ j, of a mini-batch (the official PyTorch code pairs the two halves of a
  batch; the paper's data-imbalance weights are computed per batch in both).
- The paper's continuous-similarity factor c_ij of the weights (for multi-label data) is set to 1: only the
  class-balance weights |S|/|S₁| and |S|/|S₀| are used (as hashbench specifies it).
- Constants follow hashbench's reconstruction (α = 0.1, β = sqrt(⌊epoch / 20⌋ + 1)), as in DeepHash-pytorch; the
  official code uses α = 10/K and grows β with the iteration count. The shared ``quick`` schedule (10 epochs) never
  leaves β = 1.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from hashbench.methods.base import DEEPHASH_PYTORCH_TRAINING, HashingMethod, Paper
from hashbench.nn.losses import label_similarity, log1p_exp
from hashbench.registry import register_method

__all__ = ["hashnet_loss", "hashnet_beta", "HashNet"]


def hashnet_beta(epoch: int, step: int = 20) -> float:
    """Continuation schedule β = sqrt(⌊epoch / step⌋ + 1)."""
    return math.sqrt(epoch // step + 1)


def hashnet_loss(z: Tensor, labels: Tensor, alpha: float = 0.1, beta: float = 1.0) -> dict[str, Tensor]:
    """Class-balance weighted pairwise logistic loss on α·tanh(βz)ᵀtanh(βz).

    With Θ_ij = α h_iᵀh_j, h = tanh(βz), ℓ_ij = log(1 + e^Θ_ij) − S_ij Θ_ij and weights w_ij = |P|/|P₁| for
    similar and |P|/|P₀| for dissimilar pairs (P: ordered in-batch pairs i ≠ j; P₁, P₀ its similar and dissimilar
    parts), the loss is Σ_{(i,j)∈P} w_ij ℓ_ij / |P|. A kind of pair absent from the batch contributes nothing.

    Args:
        z: pre-activation hash outputs [B, K].
        labels: multi-hot labels [B, C].
        alpha: α, the scale of the inner product inside the sigmoid.
        beta: β, the continuation parameter of the activation tanh(βz).

    Returns:
        ``likelihood`` (the weighted pairwise loss, also the total ``loss``).
    """
    b = z.shape[0]
    h = torch.tanh(beta * z)
    theta = alpha * h @ h.T
    s = label_similarity(labels)
    off_diag = ~torch.eye(b, dtype=torch.bool, device=z.device)
    similar = (s > 0) & off_diag
    dissimilar = (s == 0) & off_diag
    n_all = off_diag.sum()
    n_sim, n_dis = similar.sum(), dissimilar.sum()
    weights = torch.zeros_like(theta)
    weights = torch.where(similar, n_all / n_sim.clamp_min(1), weights)
    weights = torch.where(dissimilar, n_all / n_dis.clamp_min(1), weights)
    pair = log1p_exp(theta) - s * theta
    likelihood = (weights * pair).sum() / n_all.clamp_min(1)
    return {"likelihood": likelihood, "loss": likelihood}


@register_method
class HashNet(HashingMethod):
    """HashNet: weighted pairwise likelihood with a tanh(βz) continuation (Cao et al., ICCV 2017).

    ``forward`` returns tanh(z): sign(tanh(βz)) = sign(z) for every β > 0, so the codes do not depend on β.
    """

    paper = Paper(
        title="HashNet: Deep Learning to Hash by Continuation",
        authors="Zhangjie Cao, Mingsheng Long, Jianmin Wang, Philip S. Yu",
        venue="ICCV",
        year=2017,
        url="https://openaccess.thecvf.com/content_ICCV_2017/papers/Cao_HashNet_Deep_Learning_ICCV_2017_paper.pdf",
        code="https://github.com/thuml/HashNet",
    )
    supervision = "pairwise"
    ddp_batch = "global"  # in-batch terms over every process\'s rows (base.HashingMethod.global_batch)
    loss_function = staticmethod(hashnet_loss)
    paper_training = dict(DEEPHASH_PYTORCH_TRAINING)

    def __init__(
        self,
        n_bits: int = 48,
        alpha: float = 0.1,  # α: scale of the adaptive inner product in the pairwise sigmoid
        beta_step: int = 20,  # epochs per continuation stage: β = sqrt(⌊epoch / beta_step⌋ + 1)
        **kwargs: Any,
    ) -> None:
        super().__init__(n_bits=n_bits, **kwargs)
        if beta_step < 1:
            raise ValueError(f"beta_step must be a positive number of epochs, got {beta_step}")
        self.alpha = alpha
        self.beta_step = beta_step

    def compute_loss(self, batch: Any) -> dict[str, Tensor]:
        beta = hashnet_beta(self.current_epoch, self.beta_step)
        z, labels = self.global_batch(self.hash_logits(batch.image), batch.labels)
        terms = self.loss_function(z, labels, self.alpha, beta)
        terms["beta"] = torch.tensor(beta)
        return terms
