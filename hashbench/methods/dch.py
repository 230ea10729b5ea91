"""DCH: Deep Cauchy Hashing for Hamming Space Retrieval.

Yue Cao, Mingsheng Long, Bin Liu, Jianmin Wang. "Deep Cauchy Hashing for Hamming Space Retrieval". CVPR 2018.
http://ise.thss.tsinghua.edu.cn/~mlong/doc/deep-cauchy-hashing-cvpr18.pdf — official code (TensorFlow, the
authors' group): https://github.com/thulab/DeepHash (``DeepHash/model/dch``).

DCH models the probability that two images are similar as a Cauchy function of the distance of their codes,
σ(d) = γ / (γ + d), which stays large only for small Hamming distances and so concentrates similar images within a
small Hamming ball. With h = tanh(z) the relaxed codes, the distance is the normalised Euclidean distance
d(h_i, h_j) = K/4 ‖h_i/‖h_i‖ − h_j/‖h_j‖‖² = K/2 (1 − cos(h_i, h_j)), equal to the Hamming distance on ±1 codes.
The loss is the weighted negative log-likelihood of the pairwise labels (the Cauchy cross-entropy)

    L = Σ_ij w_ij [ s_ij log(d_ij / γ) + log(1 + γ / d_ij) ],

with the pair-imbalance weights w_ij = |S| / |S_1| for similar (s_ij = 1) and |S| / |S_0| for dissimilar pairs
(S the pairs, S_1 / S_0 its similar / dissimilar parts), plus the Cauchy quantisation loss that the prior on codes
gives, Q = Σ_i log(1 + d(|h_i|, 1) / γ), whose distance to the all-ones vector vanishes exactly on ±1 codes. The
objective is L + λQ. Similarity for multi-label data: sharing at least one label (as in the paper's NUS-WIDE and
MS-COCO experiments).

For each pair the bracket equals log(1 + d/γ) when s_ij = 1 and log(1 + γ/d) when s_ij = 0 (the two
log-likelihood terms of the Cauchy probability); :func:`dch_loss` evaluates it in that form, which needs no
log(d) of a similar pair whose codes coincide.

Deviations from the paper:
- Pairs are the ordered pairs (i, j), i ≠ j, of a mini-batch, and both terms are means (L over those pairs, Q over
  the batch's images) where the paper sums; so λ weighs a per-image mean against a per-pair mean (as in
  DeepHash-pytorch's DCH). The weights |S|/|S_1| and |S|/|S_0| are computed per batch.
- d_ij = K/2 (1 − cos(h_i, h_j) + ε) with ε = 1e-6 (``eps``; the official code adds the same 1e-6) and norms
  clamped away from 0, so that a dissimilar pair with identical codes (saturated outputs) has a large finite loss.
- Relaxed codes are tanh outputs of hashbench's hash head, which puts a BatchNorm1d after the hash layer by default
  (``hash_bn``; a framework-wide choice); the paper's network is AlexNet with a tanh hash layer.

Paper and official code:
- The paper's PDF was not readable from this session; the equations above are the paper's as DeepHash-pytorch's
  DCH (swuxyj/DeepHash-pytorch, DCH.py, which cites them as the paper's formulas 2, 6, 7, 8 and 9) writes them.
- Distance: the paper uses the normalised Euclidean (cosine) distance; the current official code
  (``cauchy_cross_entropy(..., normed=False)``) uses the plain squared Euclidean distance ‖h_i − h_j‖² (+0.001).
  hashbench follows the paper.
- Weights: the official code weighs similar pairs by |S|/|S_1| (diagonal included in both counts) and dissimilar
  pairs by 1; the paper by |S|/|S_1| and |S|/|S_0|. hashbench follows the paper.
- Quantisation: the official code uses λ·mean((|h| − 1)²) with λ = 0 by default (``--q-lambda 0``); the paper the
  Cauchy quantisation loss Q above. hashbench follows the paper, with λ = 0.1 (DeepHash-pytorch's value).
- γ = 20 in both the official code (``--gamma 20``) and DeepHash-pytorch.
- Training recipe (``paper_training``) follows the official script (examples/dch/train_val_script.py).
- Measured on fashion-mnist (``hashbench run --profile quick``: compact CNN, Adam 1e-3, seed 0, 48 bits): mAP@all
  0.675 after 3 epochs, 0.746 after the profile's 10.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from hashbench.methods.base import HashingMethod, Paper
from hashbench.nn.losses import label_similarity
from hashbench.registry import register_method

__all__ = ["cauchy_distance", "dch_loss", "DCH"]


def cauchy_distance(h: Tensor, g: Tensor, eps: float = 1e-6) -> Tensor:
    """d(h_i, g_j) = K/2 (1 − cos(h_i, g_j) + ε) for rows of h [B, K] and g [M, K]: the Hamming distance on ±1 codes.

    Norms are clamped at 1e-12 so an all-zero row has cosine 0 instead of NaN.
    """
    k = h.shape[1]
    hn = h / h.norm(dim=1, keepdim=True).clamp_min(1e-12)
    gn = g / g.norm(dim=1, keepdim=True).clamp_min(1e-12)
    # Rounding can put a cosine a hair above 1; the clamp keeps d ≥ K/2·ε > 0 there.
    return 0.5 * k * ((1.0 - hn @ gn.T).clamp_min(0.0) + eps)


def dch_loss(h: Tensor, labels: Tensor, gamma: float = 20.0, lam: float = 0.1, eps: float = 1e-6) -> dict[str, Tensor]:
    """DCH loss of a mini-batch: weighted Cauchy cross-entropy over in-batch pairs + λ · Cauchy quantisation loss.

    With d_ij = :func:`cauchy_distance` (h_i, h_j) and s_ij = [labels share a label], over the ordered pairs i ≠ j:
    ℓ_ij = s_ij log(d_ij/γ) + log(1 + γ/d_ij) (computed as log1p(d_ij/γ) if s_ij = 1, log1p(γ/d_ij) if s_ij = 0),
    w_ij = |P|/|P_1| (similar) or |P|/|P_0| (dissimilar), L = Σ w_ij ℓ_ij / |P|; Q = mean_i log(1 + d(|h_i|, 1)/γ).
    A kind of pair absent from the batch contributes nothing.

    Args:
        h: relaxed codes [B, K] (tanh outputs).
        labels: multi-hot labels [B, C].
        gamma: γ, the scale of the Cauchy distribution.
        lam: λ, weight of the quantisation loss.
        eps: ε added to 1 − cos in the distance.

    Returns:
        ``cauchy`` (L), ``quantization`` (λQ) and their sum ``loss``.
    """
    b = h.shape[0]
    d = cauchy_distance(h, h, eps)
    s = label_similarity(labels).to(h.dtype)
    off_diag = ~torch.eye(b, dtype=torch.bool, device=h.device)
    similar = (s > 0) & off_diag
    dissimilar = (s == 0) & off_diag
    n_all = off_diag.sum().to(h.dtype)
    weights = torch.zeros_like(d)
    weights = torch.where(similar, n_all / similar.sum().clamp_min(1).to(h.dtype), weights)
    weights = torch.where(dissimilar, n_all / dissimilar.sum().clamp_min(1).to(h.dtype), weights)
    # The diagonal (d = K/2·ε) has weight 0; a placeholder distance there keeps 0·inf out of value and gradient.
    d = torch.where(off_diag, d, torch.ones_like(d))
    pair = torch.where(similar, torch.log1p(d / gamma), torch.log1p(gamma / d))
    cauchy = (weights * pair).sum() / n_all.clamp_min(1)
    ones = torch.ones(1, h.shape[1], dtype=h.dtype, device=h.device)
    quantization = lam * torch.log1p(cauchy_distance(h.abs(), ones, eps).squeeze(1) / gamma).mean()
    return {"cauchy": cauchy, "quantization": quantization, "loss": cauchy + quantization}


@register_method
class DCH(HashingMethod):
    """Deep Cauchy Hashing: Cauchy cross-entropy + Cauchy quantisation on tanh codes (Cao et al., CVPR 2018)."""

    paper = Paper(
        title="Deep Cauchy Hashing for Hamming Space Retrieval",
        authors="Yue Cao, Mingsheng Long, Bin Liu, Jianmin Wang",
        venue="CVPR",
        year=2018,
        url="http://ise.thss.tsinghua.edu.cn/~mlong/doc/deep-cauchy-hashing-cvpr18.pdf",
        code="https://github.com/thulab/DeepHash",
    )
    supervision = "pairwise"
    ddp_batch = "global"  # in-batch terms over every process\'s rows (base.HashingMethod.global_batch)
    loss_function = staticmethod(dch_loss)
    # The official script (examples/dch/train_val_script.py, DeepHash/model/dch/dch.py): momentum SGD, lr 0.005 for
    # the hash layer and 10x less for the pretrained AlexNet layers, x0.1 every 10,000 steps (not reached), batch
    # 128, 2,000 steps (about 51 epochs of the 5,000 CIFAR-10 training images), no weight decay.
    paper_training = {
        "optimizer": "sgd",
        "lr": 0.005,
        "backbone_lr": 0.0005,
        "momentum": 0.9,
        "weight_decay": 0.0,
        "batch_size": 128,
        "max_epochs": 51,
    }

    def __init__(
        self,
        n_bits: int = 48,
        gamma: float = 20.0,  # γ of the Cauchy distribution, Eq. (4); value: official code and DeepHash-pytorch
        lam: float = 0.1,  # λ, weight of the Cauchy quantisation loss, Eq. (7); value: DeepHash-pytorch
        **kwargs: Any,
    ) -> None:
        if gamma <= 0:
            raise ValueError(f"DCH needs gamma > 0, got {gamma}")
        super().__init__(n_bits=n_bits, **kwargs)
        self.gamma, self.lam = gamma, lam

    def compute_loss(self, batch: Any) -> dict[str, Tensor]:
        u, labels = self.global_batch(self(batch.image), batch.labels)
        return self.loss_function(u, labels, self.gamma, self.lam)
