"""LSH: random-hyperplane locality-sensitive hashing (sign random projections).

Moses S. Charikar. "Similarity Estimation Techniques from Rounding Algorithms". STOC 2002, pp. 380-388.
https://doi.org/10.1145/509907.509965. The hashing baseline tables (e.g. the DFEH paper's) cite LSH after Gionis,
Indyk, Motwani, "Similarity Search in High Dimensions via Hashing", VLDB 1999; the binary-code form used for
Hamming ranking is Charikar's random-hyperplane scheme implemented here.

Each bit is the side of a random hyperplane through the (centred) data: b_k = sign(wₖᵀ(x − μ)) with wₖ drawn from
a standard Gaussian. The probability that two vectors get different bits equals their angle / π, so the Hamming
distance estimates the angle between them. Nothing is learned except the mean μ.

Deviations from the paper:
- The features are centred by the training mean first (``center=True``), the usual practice for LSH baselines on
  non-negative features such as pixels; ``center=False`` gives hyperplanes through the origin as in the paper.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from hashbench.methods._shallow import ShallowHashingMethod
from hashbench.methods.base import Paper
from hashbench.registry import register_method

__all__ = ["LSH"]


@register_method
class LSH(ShallowHashingMethod):
    """Sign random projections: K seeded Gaussian hyperplanes through the training mean."""

    paper = Paper(
        title="Similarity Estimation Techniques from Rounding Algorithms",
        authors="Moses S. Charikar",
        venue="STOC",
        year=2002,
        url="https://doi.org/10.1145/509907.509965",
    )

    def __init__(
        self,
        n_bits: int = 48,
        features: str = "pixels",
        seed: int = 0,
        center: bool = True,  # subtract the training mean before projecting (see Deviations)
        **kwargs: Any,
    ) -> None:
        super().__init__(n_bits=n_bits, features=features, seed=seed, **kwargs)
        self.center = center

    def fit_features(self, x: Tensor) -> None:
        mean = x.double().mean(0) if self.center else torch.zeros(x.shape[1], dtype=torch.float64)
        self.feature_mean = mean.float().to(x.device)
        self.projection = self.random_projection(x.shape[1]).to(x.device)
