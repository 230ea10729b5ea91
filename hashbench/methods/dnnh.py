"""DNNH: Simultaneous feature learning and hash coding with deep neural networks.

Hanjiang Lai, Yan Pan, Ye Liu, Shuicheng Yan. "Simultaneous Feature Learning and Hash Coding with Deep Neural
Networks". CVPR 2015, pp. 3270–3278. https://arxiv.org/abs/1504.03410 — no official repository; the first
author distributed Caffe files, which HYPJUDY/caffe-dnnh says it follows (https://github.com/HYPJUDY/caffe-dnnh).

DNNH learns from triplets (I, I⁺, I⁻), I being more similar to I⁺ than to I⁻. A shared stack of convolution layers
gives each image a feature vector; a divide-and-encode module splits it into q equal slices and maps each slice to
one bit by its own fully connected unit, a sigmoid and a piece-wise threshold function
g(s) = 0 for s < 0.5 − ε, s for 0.5 − ε ≤ s ≤ 0.5 + ε, 1 for s > 0.5 + ε, so that the q outputs F(I) ∈ [0, 1]^q
are near-binary and each bit sees only its own slice (less redundancy between bits). The triplet ranking hinge loss

    ℓ(I, I⁺, I⁻) = max(0, 1 − (‖F(I) − F(I⁻)‖² − ‖F(I) − F(I⁺)‖²))

asks the negative to be farther than the positive by a margin of 1 in squared Euclidean distance. A code bit is 1
where the output is at least 0.5.

How it maps onto hashbench: the divide-and-encode module (:class:`DivideAndEncode`) is the hash layer. It reads
the backbone's features through one fully connected layer with ReLU that widens them to q·``slice_width`` units,
standing in for the paper's last convolution layer, whose width is q times the slice width (50 units per bit in the
first author's files, 2,400 channels for 48 bits); slice k (units k·w … (k+1)·w − 1) feeds bit k's unit. The outputs
F = g(σ(z)) ∈ [0, 1]^K enter :func:`dnnh_loss`; the relaxed code is u = 2F − 1 ∈ [−1, 1] and the binary code
sign(u) (sign(0) = +1) is the paper's F ≥ 0.5 → 1 in ±1 form.

Deviations from the paper:
- Triplets: every valid in-batch triplet (anchor i, positive j ≠ i sharing a label with i, negative k sharing
  none; vectorised, over the global batch under DDP), the hinge averaged over them; the paper trains on triplets
  drawn from the training set. A batch without a valid triplet has a zero loss. Multi-label data (NUS-WIDE): a positive
  shares at least one label, a negative none (hashbench's relevance rule).
- ε of the piece-wise threshold (``epsilon``, 0.1) is hashbench's choice: the paper calls it a small positive
  number and its value was not readable here. The threshold's gradient is 0 outside the band, as the function's.
- The paper's network (a Network-in-Network-style stack trained from scratch) is replaced by hashbench's
  backbones plus the widening layer above; with ``hash_bn`` (the framework default) a BatchNorm1d sits between each
  bit's unit and its sigmoid.

Paper and code: the paper's text was not readable from this session. Its abstract and Figure 1 caption give the
three parts (shared convolution stack, divide-and-encode, triplet ranking loss); the hinge's form and the
piece-wise threshold g are written from the paper as recalled, not re-read, and were checked against the Caffe
files of HYPJUDY/caffe-dnnh (triplet ranking hinge loss with margin 1 on squared distances, averaged over the
batch's triplets; 50-unit slices, one inner-product unit and a sigmoid per bit; 0.5 threshold at test time). Those
files' solver (SGD, lr 0.001, momentum 0.9, weight decay 5·10⁻⁴, lr × 0.1 at 60,000 and 70,000 of 100,000
iterations, 100 triplets per batch) is the recipe of ``paper_training``, in hashbench's units: batch 100 images,
100 epochs, lr × 0.1 every 60 epochs (the second decay is not expressible with one step size), a reading that is
hashbench's, not the paper's.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from hashbench.methods.base import HashingMethod, Paper
from hashbench.nn.losses import label_similarity
from hashbench.registry import register_method

__all__ = ["DNNH", "DivideAndEncode", "dnnh_loss", "piecewise_threshold"]


def piecewise_threshold(s: Tensor, epsilon: float = 0.1) -> Tensor:
    """DNNH's g(s): 0 below 0.5 − ε, 1 above 0.5 + ε, s in between (gradient 1 inside the band, 0 outside)."""
    zeros, ones = torch.zeros_like(s), torch.ones_like(s)
    return torch.where(s < 0.5 - epsilon, zeros, torch.where(s > 0.5 + epsilon, ones, s))


class DivideAndEncode(nn.Module):
    """Divide-and-encode: widen the features to K·w units, split them into K slices, one linear unit per slice.

    Returns the K pre-sigmoid outputs z [B, K]; bit k reads only slice k.

    Args:
        in_dim: feature size of the backbone.
        n_bits: K, the code length (number of slices).
        slice_width: w, units per slice.
        batch_norm: BatchNorm1d(K) on the outputs (hashbench's ``hash_bn``).
    """

    def __init__(self, in_dim: int, n_bits: int, slice_width: int = 50, batch_norm: bool = False) -> None:
        super().__init__()
        self.n_bits, self.slice_width = n_bits, slice_width
        self.widen = nn.Sequential(nn.Linear(in_dim, n_bits * slice_width), nn.ReLU(inplace=True))
        # One fully connected unit per slice: row k of weight holds slice k's w weights.
        self.weight = nn.Parameter(torch.empty(n_bits, slice_width))
        self.bias = nn.Parameter(torch.zeros(n_bits))
        nn.init.uniform_(self.weight, -(slice_width**-0.5), slice_width**-0.5)  # nn.Linear(w, 1)'s bound
        self.norm = nn.BatchNorm1d(n_bits) if batch_norm else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        slices = self.widen(x).view(x.shape[0], self.n_bits, self.slice_width)
        return self.norm((slices * self.weight).sum(-1) + self.bias)


def dnnh_loss(f: Tensor, labels: Tensor, margin: float = 1.0) -> dict[str, Tensor]:
    """DNNH's triplet ranking hinge loss over all valid in-batch triplets.

    For anchor i, positive j (j ≠ i, sharing a label with i) and negative k (sharing none):
    max(0, margin − (‖f_i − f_k‖² − ‖f_i − f_j‖²)), averaged over the valid triplets (0 when there are none).

    Args:
        f: the divide-and-encode outputs [B, K] in [0, 1].
        labels: multi-hot labels [B, C].
        margin: the hinge's margin (1 in the paper).

    Returns:
        ``triplet`` and the total ``loss`` (the same value).
    """
    distance = (f[:, None, :] - f[None, :, :]).pow(2).sum(-1)  # ‖f_i − f_j‖² [B, B]
    similar = label_similarity(labels).bool()
    positive = similar & ~torch.eye(f.shape[0], dtype=torch.bool, device=f.device)
    negative = ~similar
    valid = positive[:, :, None] & negative[:, None, :]  # [anchor, positive, negative]
    count = int(valid.sum())
    if count == 0:
        triplet = distance.sum() * 0.0
    else:
        hinge = torch.relu(margin - (distance[:, None, :] - distance[:, :, None]))
        triplet = torch.where(valid, hinge, torch.zeros_like(hinge)).sum() / count
    return {"triplet": triplet, "loss": triplet}


@register_method
class DNNH(HashingMethod):
    """Triplet ranking hinge loss on divide-and-encode outputs (Lai, Pan, Liu & Yan, CVPR 2015)."""

    paper = Paper(
        title="Simultaneous Feature Learning and Hash Coding with Deep Neural Networks",
        authors="Hanjiang Lai, Yan Pan, Ye Liu, Shuicheng Yan",
        venue="CVPR",
        year=2015,
        url="https://arxiv.org/abs/1504.03410",
    )
    supervision = "triplet"
    ddp_batch = "global"  # in-batch triplets over every process's rows (base.HashingMethod.global_batch)
    loss_function = staticmethod(dnnh_loss)
    # The Caffe solver of HYPJUDY/caffe-dnnh (after the first author's files), in hashbench's units (docstring).
    paper_training = {
        "optimizer": "sgd",
        "lr": 1e-3,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "scheduler": "step",
        "lr_step": 60,
        "lr_gamma": 0.1,
        "batch_size": 100,
        "max_epochs": 100,
    }

    def __init__(
        self,
        n_bits: int = 48,
        margin: float = 1.0,  # margin of the triplet ranking hinge loss (paper's loss)
        epsilon: float = 0.1,  # ε of the piece-wise threshold g (hashbench's choice; "small" in the paper)
        slice_width: int = 50,  # units per bit in divide-and-encode (first author's files: 50)
        **kwargs: Any,
    ) -> None:
        if not 0.0 <= epsilon <= 0.5:
            raise ValueError(f"DNNH needs 0 <= epsilon <= 0.5, got {epsilon}")
        if slice_width < 1:
            raise ValueError(f"DNNH needs slice_width >= 1, got {slice_width}")
        super().__init__(n_bits=n_bits, **kwargs)
        self.margin, self.epsilon = margin, epsilon

    def _build_network(self, in_channels: int, image_size: int) -> None:
        # The base rebuilds the backbone when the data's channels differ; the module is rebuilt with it.
        super()._build_network(in_channels, image_size)
        hp = self.hparams
        self.hash_layer = DivideAndEncode(self.backbone.feature_dim, self.n_bits, hp.slice_width, hp.hash_bn)

    def encoder_outputs(self, z: Tensor) -> Tensor:
        """F = g(σ(z)) ∈ [0, 1]^K, the divide-and-encode outputs the loss reads."""
        return piecewise_threshold(torch.sigmoid(z), self.hparams.epsilon)

    def activate(self, z: Tensor) -> Tensor:
        # u = 2F − 1: sign(u) is the paper's F >= 0.5 rule
        return 2.0 * self.encoder_outputs(z) - 1.0

    def compute_loss(self, batch: Any) -> dict[str, Tensor]:
        f, labels = self.global_batch(self.encoder_outputs(self.hash_logits(batch.image)), batch.labels)
        return self.loss_function(f, labels, self.margin)
