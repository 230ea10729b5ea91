"""BiHalf: Deep Unsupervised Image Hashing by Maximizing Bit Entropy.

Yunqiang Li, Jan van Gemert. "Deep Unsupervised Image Hashing by Maximizing Bit Entropy". AAAI 2021.
https://arxiv.org/abs/2012.12334 — official code: https://github.com/liyunqianggyn/Deep-Unsupervised-Image-Hashing
(``ImageHashing/Cifar10_I.py`` is the CIFAR-10 image-hashing script).

Idea: a bit carries the most information when half of the images take +1 and half take −1. Instead of adding an
entropy term to the loss, the parameter-free *bi-half layer* enforces it: in the forward pass every bit (column) of
the batch's continuous outputs U is sorted and its top half set to +1, the bottom half to −1 — the optimal
transport of the batch's empirical distribution onto the half/half prior (Eq. 8). The backward pass is
∂L/∂U = ∂L/∂B + γ(U − B) (Eq. 9): a straight-through gradient plus a pull of U towards its transported codes, which
equals the gradient of the penalty (γ/2)·||U − B||² with B held fixed. Without labels the codes are trained, as in
GreedyHash's unsupervised setting, to reproduce the cosine similarities of image features:
(cos(b_i, b_j) − cos(f_i, f_j))² (Sec. 4.2).

Deviations from the paper:
- γ: the official code scales the pull by γ/(M·K) with γ = 6 (M = batch size, K = bits), which is the default here;
  a summary of the paper's text gives γ = 3/(N·K), selected by cross-validation (the paper's own text was not
  read here).
- The feature similarity cos(f_i, f_j) is the fused cosine of hashbench's pseudo-similarity machinery (the
  semantic-structure base class :class:`hashbench.methods._semantic.SemanticStructureHashing`, shared with SSDH /
  UDMSH / GreedyHashUnsup): global + spatial features, centred and L2-normalised, C = (C_g + C_s)/2, computed once
  at fit start. The official code takes the plain cosine of the frozen VGG-16 fc7 features (with the network's
  dropout active) of each batch; offline the ``auto`` source falls back to pixels.
- The hashing network (``compact_cnn`` offline) is trained end to end; the official code freezes VGG-16 and trains
  only the hash layer (a linear 4096 → K layer; hashbench's hash head adds BatchNorm by default).
- Pairs: ``pairs="halves"`` (default) pairs the first half of a batch with the second, as the official code does;
  ``pairs="all"`` uses every ordered pair i ≠ j, as hashbench's GreedyHashUnsup does.
- Optimiser: hashbench's shared profile; the official recipe (SGD lr 1e-4, momentum 0.9, weight decay 5e-4, batch
  32, 300 epochs, lr ×0.1 after 120) is recorded in ``paper_training``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from hashbench.methods._semantic import SemanticStructureHashing
from hashbench.methods.base import Paper
from hashbench.registry import register_method

__all__ = ["bi_half", "bihalf_loss", "BiHalf"]

_PAIRS = ("halves", "all")


def bi_half(u: Tensor) -> Tensor:
    """The bi-half codes of a batch (Eq. 8): per bit, the top ⌊M/2⌋ values of the column → +1, the rest → −1.

    Ties are broken by batch order (a stable sort), so the result is deterministic. No gradient.

    Args:
        u: continuous outputs [M, K].

    Returns:
        codes [M, K] in {−1, +1}; every column holds ⌊M/2⌋ entries +1.
    """
    u = u.detach()
    m = u.shape[0]
    order = torch.sort(u, dim=0, descending=True, stable=True).indices
    ranked = torch.full_like(u, -1.0)
    ranked[: m // 2] = 1.0
    return torch.empty_like(u).scatter_(0, order, ranked)


def bihalf_loss(h: Tensor, feature_cos: Tensor, gamma: float = 6.0, pairs: str = "halves") -> dict[str, Tensor]:
    """BiHalf's unsupervised loss on a batch: cosine preservation through the bi-half layer.

    Args:
        h: hash-layer outputs U [M, K] (no activation).
        feature_cos: cosine similarity of the batch's features [M, M].
        gamma: γ of Eq. (9), as the official code scales it: the pull on U is γ·(U − B)/(M·K).
        pairs: ``halves`` (pair i with i + ⌊M/2⌋, i < ⌊M/2⌋; official code) or ``all`` (every ordered i ≠ j).

    Returns:
        ``similarity`` = mean over the pairs of (cos(b_i, b_j) − feature_cos_ij)² with b = bi_half(h) in the
        forward pass and the identity gradient to h (straight-through), ``penalty`` = (γ/2)·Σ(h − B)²/(M·K) with B
        held fixed (its gradient is the γ(U − B) term of Eq. 9), and their sum ``loss``.
    """
    if pairs not in _PAIRS:
        raise ValueError(f"pairs must be one of {', '.join(_PAIRS)}; got {pairs!r}")
    m, k = h.shape
    if m < 2:
        raise ValueError(f"the bi-half layer needs a batch of at least 2 items, got {m}")
    codes = bi_half(h)
    b = h + (codes - h).detach()  # bi-half codes forward, identity gradient backward
    if pairs == "halves":
        half = m // 2
        cos_b = F.cosine_similarity(b[:half], b[half : 2 * half], dim=1)
        target = torch.diagonal(feature_cos[:half, half : 2 * half])
        similarity = (cos_b - target).pow(2).mean()
    else:
        # cos of ±1 vectors through the same normalisation, so the straight-through gradient matches "halves"
        bn = F.normalize(b, dim=1)
        off = ~torch.eye(m, dtype=torch.bool, device=h.device)
        similarity = (bn @ bn.T - feature_cos)[off].pow(2).mean()
    penalty = 0.5 * gamma * (h - codes).pow(2).sum() / (m * k)
    return {"similarity": similarity, "penalty": penalty, "loss": similarity + penalty}


@register_method
class BiHalf(SemanticStructureHashing):
    """Bi-half layer hashing (Li & van Gemert, AAAI 2021): half/half codes per bit, cosine preservation.

    Under DDP with n processes and a global batch B, the bi-half split of every bit and the feature-similarity pairs
    are formed within each process's rows: the effective in-batch size is B/n (the one-process objective needs
    ``devices=1``).
    """

    paper = Paper(
        title="Deep Unsupervised Image Hashing by Maximizing Bit Entropy",
        authors="Yunqiang Li, Jan van Gemert",
        venue="AAAI",
        year=2021,
        url="https://arxiv.org/abs/2012.12334",
        code="https://github.com/liyunqianggyn/Deep-Unsupervised-Image-Hashing",
    )
    supervision = "unsupervised"
    ddp_batch = "per-process"  # see the class docstring
    activation = "identity"  # codes are sign(U) at test time (Sec. 3.1)
    loss_function = staticmethod(bihalf_loss)
    # Official ImageHashing/Cifar10_I.py: SGD lr 1e-4, momentum 0.9, wd 5e-4, batch 32, 300 epochs, lr x0.1 at 120.
    paper_training = {
        "optimizer": "sgd",
        "lr": 1e-4,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "batch_size": 32,
        "max_epochs": 300,
        "scheduler": "step",
        "lr_step": 120,
        "lr_gamma": 0.1,
    }

    def __init__(
        self,
        n_bits: int = 48,
        gamma: float = 6.0,  # Eq. (9), official code's gamma = 6 (pull scaled by 1/(M*K))
        pairs: str = "halves",  # official code: first half of the batch against the second
        feature_source: str = "auto",  # paper: frozen VGG-16 fc7 features
        num_pairs: int = 200_000,  # pairs sampled for the (unused here) threshold histogram
        center_features: bool = True,  # hashbench: centre features before the cosine
        simclr_epochs: int = 5,  # only for feature_source="simclr"
        feature_seed: int = 0,
        **kwargs: Any,
    ) -> None:
        if pairs not in _PAIRS:
            raise ValueError(f"pairs must be one of {', '.join(_PAIRS)}; got {pairs!r}")
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
        self.gamma, self.pairs = gamma, pairs

    def compute_loss(self, batch: Any) -> dict[str, Tensor]:
        c, _, _ = self.batch_targets(batch)
        return self.loss_function(self.hash_logits(batch.image), c, self.gamma, self.pairs)
