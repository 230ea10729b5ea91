"""SH: Spectral Hashing.

Yair Weiss, Antonio Torralba, Rob Fergus. "Spectral Hashing". NIPS 2008 (Advances in Neural Information Processing
Systems 21), pp. 1753-1760.
https://proceedings.neurips.cc/paper_files/paper/2008/hash/d58072be2820e8682c0a27c0518e805e-Abstract.html

Spectral Hashing relaxes "similar points get codes at small Hamming distance, bits balanced and uncorrelated" to
thresholding eigenfunctions of the weighted Laplace-Beltrami operator. Assuming the data are uniformly distributed
along their principal directions, these eigenfunctions are analytic: along a principal direction with range
[a, b], Φ_k(x) = sin(π/2 + kπ/(b − a)·(x − a)) with eigenvalue growing in (k/(b − a))². The K bits are the signs of
the K eigenfunctions with the smallest eigenvalues over all directions and frequencies k ≥ 1.

Deviations from the paper:
- Only single-direction eigenfunctions are considered (no products of eigenfunctions of several directions), as in
  the authors' reference implementation; the number of principal directions is min(K, D).
- The range [a, b] of each direction is the min/max of the training projections.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from hashbench.methods._shallow import ShallowHashingMethod, pca
from hashbench.methods.base import Paper
from hashbench.registry import register_method

__all__ = ["spectral_modes", "SH"]


def spectral_modes(ranges: Tensor, n_bits: int) -> tuple[Tensor, Tensor]:
    """The ``n_bits`` single-direction eigenfunctions with the smallest eigenvalues.

    The eigenvalue of mode k ≥ 1 along a direction of range r grows with its frequency ω = kπ/r, so the modes are
    the ``n_bits`` smallest ω over all (direction, k) (ties: lower direction index, then lower k).

    Args:
        ranges: b − a of every principal direction [P] (positive).
        n_bits: number of modes K.

    Returns:
        The direction index [K] (long) and the frequency ω [K] of each chosen mode.
    """
    k = torch.arange(1, n_bits + 1, dtype=torch.float64, device=ranges.device)
    omega = k[None, :] * math.pi / ranges.double()[:, None]  # [P, K]: at most K modes per direction are needed
    flat = omega.flatten()
    # A stable sort on ω keeps (direction, k) order among ties.
    order = torch.sort(flat, stable=True).indices[:n_bits]
    return order // n_bits, flat[order]


@register_method
class SH(ShallowHashingMethod):
    """Spectral Hashing: thresholded analytic Laplacian eigenfunctions along principal directions."""

    paper = Paper(
        title="Spectral Hashing",
        authors="Yair Weiss, Antonio Torralba, Rob Fergus",
        venue="NIPS",
        year=2008,
        url="https://proceedings.neurips.cc/paper_files/paper/2008/hash/d58072be2820e8682c0a27c0518e805e-Abstract.html",
    )
    fitted_buffers = ("feature_mean", "projection", "omega", "offset")

    def __init__(self, n_bits: int = 48, features: str = "pixels", seed: int = 0, **kwargs: Any) -> None:
        super().__init__(n_bits=n_bits, features=features, seed=seed, **kwargs)
        self.register_buffer("omega", torch.zeros(0))
        self.register_buffer("offset", torch.zeros(0))

    def transform(self, v: Tensor) -> Tensor:
        if self.omega.numel() == 0:  # unfitted: plain random projections (see the base class)
            return v
        # sin(π/2 + ω(x − a)) = cos(ω(x − a))
        return torch.cos(self.omega * (v - self.offset))

    def fit_features(self, x: Tensor) -> None:
        n_pca = min(self.n_bits, x.shape[1])
        mean, directions, _ = pca(x, n_pca)
        v = (x.double() - mean) @ directions
        low, high = v.min(0).values, v.max(0).values
        dims, omega = spectral_modes((high - low).clamp_min(1e-12), self.n_bits)
        self.feature_mean = mean.float()
        self.projection = directions[:, dims].float()
        self.omega = omega.float()
        self.offset = low[dims].float()
