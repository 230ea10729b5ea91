"""PCAH: PCA hashing (signs of the top principal components).

PCAH has no paper of its own; the hashing literature cites it, as a baseline, to Jun Wang, Sanjiv Kumar, Shih-Fu
Chang, "Semi-Supervised Hashing for Large-Scale Search", IEEE TPAMI 34(12):2393-2406, 2012,
https://doi.org/10.1109/TPAMI.2012.48 (the conference version, "Semi-Supervised Hashing for Scalable Image
Retrieval", CVPR 2010, uses it the same way; the ITQ paper calls it "PCA-Direct").

Each bit is the sign of one of the K leading principal components of the centred data:
b_k = sign(w_kᵀ(x − μ)), with w_k the k-th eigenvector of the training covariance. It is SSH (semi-supervised
hashing) with no labelled pairs, and ITQ with the rotation fixed at the identity: the bits capture the most
variance but are unbalanced in information (the first directions carry most of it) and no rotation reduces their
quantisation error.

Deviations from the paper:
- none (the eigenvectors' signs, which PCA leaves open, are fixed by making each direction's largest-magnitude
  entry positive).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from hashbench.methods._shallow import ShallowHashingMethod, pca
from hashbench.methods.base import Paper
from hashbench.registry import register_method

__all__ = ["pcah_loss", "PCAH"]


def pcah_loss(v: Tensor, total_variance: Tensor) -> dict[str, Tensor]:
    """PCA's objective for projections ``v`` [N, K] of centred data: the variance they leave out.

    PCA maximises the captured variance tr(WᵀCW) = mean_i ‖v_i‖² over orthonormal W; the term returned is the
    fraction of ``total_variance`` (tr C) left out, 1 − mean_i ‖v_i‖² / tr C, in [0, 1] for orthonormal W.
    """
    captured = v.pow(2).sum(1).mean()
    residual = 1 - captured / total_variance
    return {"residual_variance": residual, "loss": residual}


@register_method
class PCAH(ShallowHashingMethod):
    """PCA hashing: the signs of the K leading principal components of the centred features."""

    paper = Paper(
        title="Semi-Supervised Hashing for Large-Scale Search",
        authors="Jun Wang, Sanjiv Kumar, Shih-Fu Chang",
        venue="IEEE TPAMI",
        year=2012,
        url="https://doi.org/10.1109/TPAMI.2012.48",
    )

    def __init__(self, n_bits: int = 48, features: str = "pixels", seed: int = 0, **kwargs: Any) -> None:
        super().__init__(n_bits=n_bits, features=features, seed=seed, **kwargs)

    def fit_features(self, x: Tensor) -> None:
        if x.shape[1] < self.n_bits:
            raise ValueError(
                f"PCAH takes {self.n_bits} principal directions of {x.shape[1]}-dim features, which needs "
                "feature dim >= n_bits: use fewer bits or higher-dimensional features"
            )
        mean, directions, _ = pca(x, self.n_bits)
        xc = x.double() - mean
        self.fit_terms = {
            key: float(value) for key, value in pcah_loss(xc @ directions, xc.pow(2).sum(1).mean()).items()
        }
        self.feature_mean = mean.float()
        self.projection = directions.float()
