"""CSQ: Central Similarity Quantization for Efficient Image and Video Retrieval.

Li Yuan, Tao Wang, Xiaopeng Zhang, Francis E. H. Tay, Zequn Jie, Wei Liu, Jiashi Feng. "Central Similarity
Quantization for Efficient Image and Video Retrieval". CVPR 2020.
https://openaccess.thecvf.com/content_CVPR_2020/papers/Yuan_Central_Similarity_Quantization_for_Efficient_Image_and_Video_Retrieval_CVPR_2020_paper.pdf
— official code: https://github.com/yuanli2333/Hadamard-Matrix-for-hashing.

Every class gets a fixed binary "hash centre"; the codes of an image are pulled towards the centre of its class
(for multi-label images, the centre of its label set) with a bitwise binary cross-entropy, plus a quantisation
term. Centres are rows of a Hadamard matrix and its negation, which are mutually at Hamming distance K/2 (or K);
when no Hadamard matrix fits, centres are sampled bit by bit from Bernoulli(0.5) and resampled until they are far
enough apart.

Centre construction (:func:`csq_hash_centers`):
- K a power of two and C ≤ 2K: the first C rows of [H_K; −H_K] (``scipy.linalg.hadamard``).
- otherwise (e.g. K = 12, 24, 48, or more classes than 2K): Bernoulli(0.5) centres from a generator seeded with
  ``center_seed``, resampled (up to ``max_tries`` draws) until the minimum pairwise Hamming distance is ≥ K/4 and
  the mean ≥ K/2 (the thresholds of the official code's fallback, as we read it); if no draw passes, the draw
  with the largest minimum distance is kept.
- multi-label: the centre of a label set is the sign of the sum of its labels' centres, with zero sums broken by a
  fixed random ±1 vector drawn from the same seed.

Deviations from the paper:
- none in the loss. The multi-label tie-break vector is drawn once (seeded) and kept, so a label set always maps
  to the same centre.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from hashbench.methods.base import DEEPHASH_PYTORCH_TRAINING, HashingMethod, Paper
from hashbench.registry import register_method

__all__ = ["csq_hash_centers", "csq_targets", "csq_loss", "CSQ"]


def _pairwise_hamming(centers: np.ndarray) -> np.ndarray:
    k = centers.shape[1]
    return (k - centers @ centers.T) / 2


def csq_hash_centers(num_classes: int, n_bits: int, seed: int = 0, max_tries: int = 1000) -> Tensor:
    """Hash centres [C, K] in {−1, +1} (Hadamard rows when possible, else seeded Bernoulli draws).

    Args:
        num_classes: number of classes C.
        n_bits: code length K.
        seed: seed of the Bernoulli fallback.
        max_tries: number of Bernoulli draws tried before keeping the best one.
    """
    if num_classes < 1 or n_bits < 1:
        raise ValueError(f"need num_classes >= 1 and n_bits >= 1, got {num_classes} and {n_bits}")
    power_of_two = n_bits & (n_bits - 1) == 0
    if power_of_two and num_classes <= 2 * n_bits:
        from scipy.linalg import hadamard

        h = hadamard(n_bits)
        return torch.from_numpy(np.concatenate([h, -h])[:num_classes].astype(np.float32))
    rng = np.random.default_rng(seed)
    best, best_min = None, -1.0
    for _ in range(max_tries):
        centers = np.where(rng.random((num_classes, n_bits)) < 0.5, -1.0, 1.0)
        if num_classes == 1:
            return torch.from_numpy(centers.astype(np.float32))
        dist = _pairwise_hamming(centers)[np.triu_indices(num_classes, 1)]
        if dist.min() >= n_bits / 4 and dist.mean() >= n_bits / 2:
            return torch.from_numpy(centers.astype(np.float32))
        if dist.min() > best_min:
            best, best_min = centers, float(dist.min())
    return torch.from_numpy(best.astype(np.float32))


def csq_targets(labels: Tensor, centers: Tensor, tie_break: Tensor) -> Tensor:
    """Centre of each image's label set: sign(Σ_{c ∈ labels} centre_c), zeros replaced by ``tie_break``.

    Args:
        labels: multi-hot labels [B, C].
        centers: hash centres [C, K].
        tie_break: ±1 vector [K] used where the sum is zero.
    """
    total = labels.to(centers.dtype) @ centers
    return torch.where(total > 0, 1.0, torch.where(total < 0, -1.0, tie_break.expand_as(total)))


def csq_loss(z: Tensor, targets: Tensor, lam: float = 1e-4) -> dict[str, Tensor]:
    """CSQ loss: bitwise BCE between (u + 1)/2 and (c + 1)/2 with u = tanh(z), plus λ·mean((|u| − 1)²).

    (tanh(z) + 1)/2 = σ(2z), so the BCE is evaluated from the logits 2z, which is exact and never takes log(0).

    Args:
        z: pre-activation hash outputs [B, K].
        targets: the hash centre of each image [B, K] in {−1, +1}.
        lam: λ, weight of the quantisation term.

    Returns:
        ``central`` (the BCE), ``quantization`` and their sum ``loss``.
    """
    central = F.binary_cross_entropy_with_logits(2.0 * z, (targets + 1.0) / 2.0)
    quantization = lam * (torch.tanh(z).abs() - 1.0).pow(2).mean()
    return {"central": central, "quantization": quantization, "loss": central + quantization}


@register_method
class CSQ(HashingMethod):
    """Central Similarity Quantization with Hadamard / Bernoulli hash centres (Yuan et al., CVPR 2020)."""

    paper = Paper(
        title="Central Similarity Quantization for Efficient Image and Video Retrieval",
        authors="Li Yuan, Tao Wang, Xiaopeng Zhang, Francis E. H. Tay, Zequn Jie, Wei Liu, Jiashi Feng",
        venue="CVPR",
        year=2020,
        url=(
            "https://openaccess.thecvf.com/content_CVPR_2020/papers/"
            "Yuan_Central_Similarity_Quantization_for_Efficient_Image_and_Video_Retrieval_CVPR_2020_paper.pdf"
        ),
        code="https://github.com/yuanli2333/Hadamard-Matrix-for-hashing",
    )
    supervision = "pointwise"
    ddp_batch = "per-sample"  # under DDP: each image is pulled to its own hash centre
    loss_function = staticmethod(csq_loss)
    paper_training = dict(DEEPHASH_PYTORCH_TRAINING)

    def __init__(
        self,
        n_bits: int = 48,
        lam: float = 1e-4,  # λ, weight of the quantisation loss (hashbench's reconstruction)
        center_seed: int = 0,  # seed of the Bernoulli centres and of the multi-label tie-break vector
        **kwargs: Any,
    ) -> None:
        super().__init__(n_bits=n_bits, **kwargs)
        self.lam = lam
        self.center_seed = center_seed

    def on_data_configured(self) -> None:
        # hparams, not self.center_seed: with num_classes/num_train given (a checkpoint being loaded) the base
        # __init__ calls this hook before CSQ.__init__ has set its own attributes
        seed = self.hparams.center_seed
        centers = csq_hash_centers(self.hparams.num_classes, self.n_bits, seed)
        g = torch.Generator().manual_seed(seed)
        tie_break = torch.where(torch.rand(self.n_bits, generator=g) < 0.5, -1.0, 1.0)
        self.register_buffer("hash_centers", centers.to(self.device))
        self.register_buffer("tie_break", tie_break.to(self.device))

    def compute_loss(self, batch: Any) -> dict[str, Tensor]:
        targets = csq_targets(batch.labels, self.hash_centers, self.tie_break)
        return self.loss_function(self.hash_logits(batch.image), targets, self.lam)
