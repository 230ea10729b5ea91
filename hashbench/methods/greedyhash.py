"""GreedyHash: Towards Fast Optimization for Accurate Hash Coding in CNN.

Shupeng Su, Chao Zhang, Kai Han, Yonghong Tian. "Greedy Hash: Towards Fast Optimization for Accurate Hash Coding
in CNN". NeurIPS 2018. https://papers.nips.cc/paper/7360-greedy-hash-towards-fast-optimization-for-accurate-hash-coding-in-cnn
— official code: https://github.com/ssppp/GreedyHash.

GreedyHash keeps the sign function in the forward pass and trains through it with a straight-through gradient
(the gradient of sign(z) is taken as the identity), which the paper derives from a greedy, iterative solution of
the discrete problem. The codes b = sign(z) feed a bias-free linear classifier trained with cross-entropy; a cubic
penalty α·mean(| |z| − 1 |³) keeps z near ±1 so the straight-through approximation stays accurate.

Deviations from the paper:
- Multi-label data (which the paper does not treat) use a binary cross-entropy with logits per label instead of
  the softmax cross-entropy.
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from hashbench.methods.base import DEEPHASH_PYTORCH_TRAINING, HashingMethod, Paper
from hashbench.nn.losses import sign_with_zero_positive
from hashbench.registry import register_method

__all__ = ["sign_straight_through", "greedyhash_loss", "GreedyHash"]


def sign_straight_through(z: Tensor) -> Tensor:
    """sign(z) (sign(0) = +1) in the forward pass, identity gradient in the backward pass."""
    return z + (sign_with_zero_positive(z) - z).detach()


def greedyhash_loss(
    z: Tensor, labels: Tensor, classifier_weight: Tensor, alpha: float = 0.1, multi_label: bool = False
) -> dict[str, Tensor]:
    """GreedyHash loss: classification of sign(z) by a bias-free linear layer + α·mean(| |z| − 1 |³).

    Args:
        z: raw hash outputs [B, K].
        labels: multi-hot labels [B, C] (one-hot for single-label data).
        classifier_weight: weight [C, K] of the bias-free classifier on the codes.
        alpha: weight of the cubic penalty.
        multi_label: binary cross-entropy per label instead of softmax cross-entropy.

    Returns:
        ``classification``, ``penalty`` and their sum ``loss``.
    """
    logits = sign_straight_through(z) @ classifier_weight.T
    if multi_label:
        classification = F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
    else:
        classification = F.cross_entropy(logits, labels.argmax(dim=1))
    penalty = alpha * (z.abs() - 1.0).abs().pow(3).mean()
    return {"classification": classification, "penalty": penalty, "loss": classification + penalty}


@register_method
class GreedyHash(HashingMethod):
    """GreedyHash: sign in the forward pass, straight-through gradient, classifier on codes (Su et al., 2018)."""

    paper = Paper(
        title="Greedy Hash: Towards Fast Optimization for Accurate Hash Coding in CNN",
        authors="Shupeng Su, Chao Zhang, Kai Han, Yonghong Tian",
        venue="NeurIPS",
        year=2018,
        url="https://papers.nips.cc/paper/7360-greedy-hash-towards-fast-optimization-for-accurate-hash-coding-in-cnn",
        code="https://github.com/ssppp/GreedyHash",
    )
    supervision = "pointwise"
    ddp_batch = "per-sample"  # under DDP: classification of each code
    loss_function = staticmethod(greedyhash_loss)
    # The codes are sign(z) of the raw hash-layer output; there is no tanh relaxation.
    activation = "identity"
    paper_training = dict(DEEPHASH_PYTORCH_TRAINING)

    def __init__(
        self,
        n_bits: int = 48,
        alpha: float = 0.1,  # α, weight of the cubic penalty | |z| − 1 |³ (hashbench's reconstruction)
        **kwargs: Any,
    ) -> None:
        super().__init__(n_bits=n_bits, **kwargs)
        self.alpha = alpha

    def on_data_configured(self) -> None:
        self.classifier = nn.Linear(self.n_bits, self.hparams.num_classes, bias=False).to(self.device)

    def compute_loss(self, batch: Any) -> dict[str, Tensor]:
        z = self.hash_logits(batch.image)
        return self.loss_function(z, batch.labels, self.classifier.weight, self.alpha, self.multi_label)
