"""ITQ: Iterative Quantization.

Yunchao Gong, Svetlana Lazebnik. "Iterative Quantization: A Procrustean Approach to Learning Binary Codes".
CVPR 2011. https://doi.org/10.1109/CVPR.2011.5995432 — journal version: Yunchao Gong, Svetlana Lazebnik, Albert
Gordo, Florent Perronnin, "Iterative Quantization: A Procrustean Approach to Learning Binary Codes for Large-Scale
Image Retrieval", IEEE TPAMI 35(12), 2013, https://doi.org/10.1109/TPAMI.2012.193.

ITQ projects the centred data onto its top-K principal directions, V = (X − μ)W, and then looks for the rotation
R that makes the binary codes B = sign(VR) closest to the rotated data: min_{B, R} ‖B − VR‖²_F with R orthogonal.
It alternates the two closed-form steps — B = sign(VR), and the orthogonal Procrustes solution R = ÛŴᵀ from the
SVD VᵀB = ÛΣŴᵀ — starting from a random orthogonal R; each step can only lower the quantisation loss.

Deviations from the paper:
- none (50 iterations and a random orthogonal initial rotation, as in the paper; the initial rotation is seeded).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from hashbench.methods._shallow import ShallowHashingMethod, pca
from hashbench.methods.base import Paper
from hashbench.nn.losses import sign_with_zero_positive
from hashbench.registry import register_method

__all__ = ["itq_rotation", "ITQ"]


def itq_rotation(v: Tensor, n_iter: int = 50, generator: torch.Generator | None = None) -> tuple[Tensor, list[float]]:
    """Learn the ITQ rotation of PCA-projected data.

    Args:
        v: centred, PCA-projected data [N, K].
        n_iter: number of (B-step, R-step) iterations.
        generator: seeds the random orthogonal initial rotation.

    Returns:
        The rotation R [K, K] (float64, orthogonal) and the quantisation loss ‖sign(VR) − VR‖²_F / N before the
        first and after every iteration (``n_iter + 1`` values, non-increasing).
    """
    v = v.double()
    k = v.shape[1]
    r, _ = torch.linalg.qr(torch.randn(k, k, generator=generator, dtype=torch.float64).to(v.device))

    def loss(rot: Tensor) -> float:
        vr = v @ rot
        return float((sign_with_zero_positive(vr) - vr).pow(2).sum() / v.shape[0])

    history = [loss(r)]
    for _ in range(n_iter):
        b = sign_with_zero_positive(v @ r)
        # Orthogonal Procrustes: argmax_R tr(Rᵀ VᵀB) over orthogonal R is ÛŴᵀ with VᵀB = ÛΣŴᵀ.
        u_hat, _, w_hat_t = torch.linalg.svd(v.T @ b)
        r = u_hat @ w_hat_t
        history.append(loss(r))
    return r, history


@register_method
class ITQ(ShallowHashingMethod):
    """Iterative Quantization: PCA to K dimensions, then a learned orthogonal rotation (Gong & Lazebnik)."""

    paper = Paper(
        title="Iterative Quantization: A Procrustean Approach to Learning Binary Codes",
        authors="Yunchao Gong, Svetlana Lazebnik",
        venue="CVPR",
        year=2011,
        url="https://doi.org/10.1109/CVPR.2011.5995432",
    )

    def __init__(
        self,
        n_bits: int = 48,
        features: str = "pixels",
        seed: int = 0,
        n_iter: int = 50,  # alternating iterations (the paper uses 50)
        **kwargs: Any,
    ) -> None:
        super().__init__(n_bits=n_bits, features=features, seed=seed, **kwargs)
        if n_iter < 0:
            raise ValueError(f"n_iter must be >= 0, got {n_iter}")
        self.n_iter = n_iter
        self.quantization_history: list[float] = []

    def fit_features(self, x: Tensor) -> None:
        if x.shape[1] < self.n_bits:
            raise ValueError(
                f"ITQ projects {x.shape[1]}-dim features onto {self.n_bits} principal directions, which needs "
                f"feature dim >= n_bits: use fewer bits or higher-dimensional features"
            )
        mean, directions, _ = pca(x, self.n_bits)
        rotation, self.quantization_history = itq_rotation(
            (x.double() - mean) @ directions, self.n_iter, self._generator()
        )
        self.feature_mean = mean.float()
        self.projection = (directions @ rotation).float()
