"""GreedyHash (unsupervised variant): Greedy Hash: Towards Fast Optimization for Accurate Hash Coding in CNN.

Shupeng Su, Chao Zhang, Kai Han, Yonghong Tian. "Greedy Hash: Towards Fast Optimization for Accurate Hash Coding in
CNN". NeurIPS 2018. https://papers.nips.cc/paper/7360-greedy-hash-towards-fast-optimization-for-accurate-hash-coding-in-cnn
— official code: https://github.com/ssppp/GreedyHash (``unsupervised_vgg.py`` is the unsupervised variant).

Idea: the hash layer outputs h and the codes are b = sign(h) in the forward pass; the backward pass copies the
gradient of b to h unchanged (straight-through, the "greedy" update of the discrete problem). Without labels the
codes are trained to preserve the cosine similarity structure of deep features: (cos(b_i, b_j) − cos(f_i, f_j))²,
plus α·mean(| |h| − 1 |³) that keeps h near the binary values so the greedy step stays accurate.

Deviations from the paper:
- The feature similarity cos(f_i, f_j) is the fused cosine of hashbench's pseudo-similarity machinery (the
  semantic-structure base class :class:`hashbench.methods._semantic.SemanticStructureHashing`, shared with
  SSDH / UDMSH): global + spatial features, centred and L2-normalised, C = (C_g + C_s)/2. The official code uses
  the frozen VGG-16 fc7 features of the network being trained; offline the ``auto`` source falls back to pixels.
- The hashing network (``compact_cnn`` offline) is trained end to end; the official code freezes VGG-16 and trains
  only the hash layer.
- All ordered in-batch pairs i ≠ j are used; the official code pairs the first half of a batch with the second.
- Optimiser: hashbench's shared profile; the official recipe (SGD lr 1e-4, momentum 0.9, wd 5e-4, batch 32,
  60 epochs) is recorded in ``paper_training``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from hashbench.methods._semantic import SemanticStructureHashing
from hashbench.methods.base import Paper
from hashbench.nn.losses import sign_with_zero_positive
from hashbench.registry import register_method

__all__ = ["greedyhash_unsup_loss", "GreedyHashUnsup"]


def greedyhash_unsup_loss(h: Tensor, feature_cos: Tensor, alpha: float = 0.1) -> dict[str, Tensor]:
    """GreedyHash's unsupervised loss on a batch.

    Args:
        h: hash-layer outputs [B, K] (no activation).
        feature_cos: cosine similarity of the batch's features [B, B].
        alpha: weight of the cubic penalty.

    Returns:
        ``similarity`` = mean over ordered pairs i ≠ j of (b_i·b_j/K − feature_cos_ij)² with b = sign(h) forward
        and identity gradient (straight-through), ``penalty`` = α·mean(| |h| − 1 |³), and their sum ``loss``.
    """
    bsz, k = h.shape
    b = h + (sign_with_zero_positive(h) - h).detach()  # sign forward, identity backward
    cos_b = b @ b.T / k  # cosine of ±1 vectors
    off = ~torch.eye(bsz, dtype=torch.bool, device=h.device)
    similarity = (cos_b - feature_cos)[off].pow(2).sum() / max(1, bsz * (bsz - 1))
    penalty = alpha * (h.abs() - 1).abs().pow(3).mean()
    return {"similarity": similarity, "penalty": penalty, "loss": similarity + penalty}


@register_method
class GreedyHashUnsup(SemanticStructureHashing):
    """GreedyHash, unsupervised variant (Su et al., NeurIPS 2018): sign with straight-through, cosine preservation.

    Under DDP with n processes and a global batch B, the feature-similarity targets are formed within each process's
    rows: the effective in-batch size of those terms is B/n (the one-process objective needs ``devices=1``).
    """

    paper = Paper(
        title="Greedy Hash: Towards Fast Optimization for Accurate Hash Coding in CNN",
        authors="Shupeng Su, Chao Zhang, Kai Han, Yonghong Tian",
        venue="NeurIPS",
        year=2018,
        url="https://papers.nips.cc/paper/7360-greedy-hash-towards-fast-optimization-for-accurate-hash-coding-in-cnn",
        code="https://github.com/ssppp/GreedyHash",
    )
    supervision = "unsupervised"
    ddp_batch = "per-process"  # under DDP: the feature-similarity targets are formed within each process's rows
    activation = "identity"  # codes are sign(h) of the raw hash layer
    loss_function = staticmethod(greedyhash_unsup_loss)
    paper_training = {
        "optimizer": "sgd",
        "lr": 1e-4,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "max_epochs": 60,
        "batch_size": 32,
    }  # official unsupervised_vgg.py

    def __init__(
        self,
        n_bits: int = 48,
        alpha: float = 0.1,  # weight of the cubic penalty (official code)
        feature_source: str = "auto",  # paper: frozen VGG-16 fc7 features
        num_pairs: int = 200_000,  # pairs sampled for the (unused here) threshold histogram
        center_features: bool = True,  # hashbench: centre features before the cosine
        simclr_epochs: int = 5,  # only for feature_source="simclr"
        feature_seed: int = 0,
        **kwargs: Any,
    ) -> None:
        # Fixed by the method; saved hyperparameters carry them back in when a checkpoint is loaded.
        kwargs.pop("multi_level", None)
        kwargs.pop("mid_weight", None)
        kwargs.pop("lam", None)
        super().__init__(
            n_bits=n_bits,
            feature_source=feature_source,
            multi_level=False,
            mid_weight=0.0,
            lam=0.0,
            num_pairs=num_pairs,
            center_features=center_features,
            simclr_epochs=simclr_epochs,
            feature_seed=feature_seed,
            **kwargs,
        )
        self.alpha = alpha

    def compute_loss(self, batch: Any) -> dict[str, Tensor]:
        c, _, _ = self.batch_targets(batch)
        return self.loss_function(self.hash_logits(batch.image), c, self.alpha)
