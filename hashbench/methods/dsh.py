"""DSH: Deep Supervised Hashing for Fast Image Retrieval.

Haomiao Liu, Ruiping Wang, Shiguang Shan, Xilin Chen. "Deep Supervised Hashing for Fast Image Retrieval".
CVPR 2016. https://openaccess.thecvf.com/content_cvpr_2016/papers/Liu_Deep_Supervised_Hashing_CVPR_2016_paper.pdf
— official code (Caffe): https://github.com/lhmRyan/deep-supervised-hashing-DSH.

A contrastive loss on the raw (un-activated) network outputs pulls the codes of similar pairs together and pushes
dissimilar pairs apart up to a margin m = 2K on the squared Euclidean distance; an L1 regulariser
α·‖ |u| − 1 ‖₁ drives every output towards ±1 so that thresholding at zero loses little. The paper's network is a
small from-scratch CNN (backbone ``dsh_cnn`` here, recorded in ``paper_training``); the shared benchmark schedule
uses the base default backbone so that all methods share one network.

Deviations from the paper:
- Pairs are all pairs of a mini-batch (the paper generates pairs online within a batch as well, so this is the
  same); normalisation follows hashbench's reconstruction: the pair sum over i < j is divided by B(B − 1) and the
  regulariser by B (batch size B), which keeps the loss scale independent of the batch size.
- The paper trains with batch 200 / SGD; the shared ``quick`` profile (Adam, batch 128) is used for the
  benchmark tables; the paper recipe is in ``DSH.paper_training``.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from hashbench.methods.base import HashingMethod, Paper
from hashbench.nn.losses import contrastive_pair_loss
from hashbench.registry import register_method

__all__ = ["dsh_loss", "DSH"]


def dsh_loss(u: Tensor, labels: Tensor, margin: float, alpha: float = 0.01) -> dict[str, Tensor]:
    """DSH contrastive loss over all in-batch pairs plus the L1 binary regulariser.

    L = Σ_{i<j} [S_ij ‖u_i − u_j‖² + (1 − S_ij) max(m − ‖u_i − u_j‖², 0)] / (B(B − 1)) + α Σ_i ‖ |u_i| − 1 ‖₁ / B.

    Args:
        u: raw network outputs [B, K] (no activation).
        labels: multi-hot labels [B, C].
        margin: m, the margin on the squared distance of dissimilar pairs (the paper uses 2K).
        alpha: α, weight of the regulariser (the paper's relaxed objective).

    Returns:
        ``contrastive``, ``regularizer`` and their sum ``loss``.
    """
    b = u.shape[0]
    contrastive = contrastive_pair_loss(u, labels, margin)
    regularizer = alpha * (u.abs() - 1.0).abs().sum() / b
    return {"contrastive": contrastive, "regularizer": regularizer, "loss": contrastive + regularizer}


@register_method
class DSH(HashingMethod):
    """Deep Supervised Hashing: contrastive loss with a margin on raw outputs (Liu et al., CVPR 2016)."""

    paper = Paper(
        title="Deep Supervised Hashing for Fast Image Retrieval",
        authors="Haomiao Liu, Ruiping Wang, Shiguang Shan, Xilin Chen",
        venue="CVPR",
        year=2016,
        url="https://openaccess.thecvf.com/content_cvpr_2016/papers/Liu_Deep_Supervised_Hashing_CVPR_2016_paper.pdf",
        code="https://github.com/lhmRyan/deep-supervised-hashing-DSH",
    )
    supervision = "pairwise"
    ddp_batch = "global"  # in-batch terms over every process\'s rows (base.HashingMethod.global_batch)
    loss_function = staticmethod(dsh_loss)
    # The paper relaxes codes to the raw output of the last fully connected layer (no tanh).
    activation = "identity"
    paper_training = {
        "backbone": "dsh_cnn",
        "optimizer": "sgd",
        "lr": 1e-3,
        "momentum": 0.9,
        "weight_decay": 0.004,
        "batch_size": 200,
    }  # the paper's from-scratch network and solver settings (hashbench's reconstruction)

    def __init__(
        self,
        n_bits: int = 48,
        margin: float | None = None,  # m of the pair loss; None = 2K, the paper's setting
        alpha: float = 0.01,  # α of the relaxed objective (regulariser weight), the paper's value
        **kwargs: Any,
    ) -> None:
        super().__init__(n_bits=n_bits, **kwargs)
        self.margin = 2.0 * n_bits if margin is None else float(margin)
        self.alpha = alpha

    def compute_loss(self, batch: Any) -> dict[str, Tensor]:
        u, labels = self.global_batch(self(batch.image), batch.labels)
        return self.loss_function(u, labels, self.margin, self.alpha)
