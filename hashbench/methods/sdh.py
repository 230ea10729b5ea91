"""SDH: Supervised Discrete Hashing.

Fumin Shen, Chunhua Shen, Wei Liu, Heng Tao Shen. "Supervised Discrete Hashing". CVPR 2015, pp. 37-45.
https://doi.org/10.1109/CVPR.2015.7298598 — official MATLAB code: https://github.com/bd622/DiscretHashing.

SDH learns binary codes B of the training set that a linear classifier W can map to the labels, and a hash
function F(x) = Pᵀφ(x) (φ: RBF kernel values at m anchors, plus a constant) that reproduces them:

    min_{B, W, P}  ‖Y − BW‖²_F + λ‖W‖²_F + ν‖B − φ(X)P‖²_F,   B ∈ {−1, +1}^{N×K},

keeping B discrete instead of relaxing it. It alternates three exact steps from a random B: the G-step (ridge
regression W = (BᵀB + λI)⁻¹BᵀY), the F-step (P = (φᵀφ + λ_F I)⁻¹φᵀB) and the B-step, solved by discrete cyclic
coordinate descent (DCC): with Q = YWᵀ + νφ(X)P, each bit column in turn is set to
b_k = sgn(q_k − B_{≠k} W_{≠k} w_kᵀ) given the others, sweeping the bits until B stops changing. Codes of new
points: sgn(φ(x)P).

Settings follow the paper and the official demo: m = 1,000 anchors, λ = 1, ν = 1e-5, λ_F = 1e-2 (the F-step's
ridge, in the code), 5 outer iterations, up to 10 DCC sweeps per B-step (each starting from B = 0, as in the
code), the random initial B = sgn(N(0, 1)).

Deviations from the paper:
- Kernel width: the official demo fixes σ = 0.4 for its L2-normalised GIST features, which does not transfer to
  pixels or backbone features; by default (``sigma=None``) hashbench uses the data-driven rule left in that demo,
  σ = the mean over training points of the distance to the nearest anchor, where hashbench skips zero distances
  (an anchor is a training point, and its distance to itself would pull σ towards 0 — with fewer training points
  than anchors every point is an anchor and σ would be 0). ``sigma`` sets it explicitly.
- The anchors and the initial B are drawn by ``seed`` (the demo uses MATLAB's global random state); with fewer
  than m training points every point is an anchor.
- sign(0) = +1 (MATLAB's ``sign`` maps 0 to 0, which the demo's DCC, starting from B = 0, can leave in B).
- Stopping: besides the 5 outer iterations, the fit stops early, as the code does, when ‖B − φP‖_F < 1e-5‖B‖_F
  or ‖P − P_old‖_F < 1e-5‖P_old‖_F.
- Multi-label data: Y is the multi-hot label matrix (the regression target), nothing else changes.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from hashbench.methods._shallow import KernelShallowHashingMethod, seeded_subset, squared_distances
from hashbench.methods.base import Paper
from hashbench.nn.losses import sign_with_zero_positive
from hashbench.registry import register_method

__all__ = ["sdh_loss", "sdh_dcc", "SDH"]


def sdh_loss(
    codes: Tensor, labels: Tensor, classifier: Tensor, hashed: Tensor, lam: float = 1.0, nu: float = 1e-5
) -> dict[str, Tensor]:
    """SDH's objective ‖Y − BW‖²_F + λ‖W‖²_F + ν‖B − F(X)‖²_F (sums over the training set).

    Args:
        codes: B [N, K] in {−1, +1}.
        labels: Y [N, C] (multi-hot).
        classifier: W [K, C].
        hashed: F(X) = φ(X)P [N, K], the hash function's real outputs.
        lam: λ. nu: ν.
    """
    classification = (labels - codes @ classifier).pow(2).sum()
    regularization = lam * classifier.pow(2).sum()
    fitting = nu * (codes - hashed).pow(2).sum()
    return {
        "classification": classification,
        "regularization": regularization,
        "fitting": fitting,
        "loss": classification + regularization + fitting,
    }


def sdh_dcc(q: Tensor, classifier: Tensor, n_sweeps: int = 10, tol: float = 1e-6) -> tuple[Tensor, int]:
    """The B-step by discrete cyclic coordinate descent: min_B ‖BW‖²_F − 2 tr(BᵀQ) over B ∈ {±1}^{N×K}.

    That is ‖Y − BW‖²_F + ν‖B − F‖²_F up to constants, with Q = YWᵀ + νF. Starting from B = 0 (as the official
    code does), every sweep sets each column in turn to its exact minimiser given the others,
    b_k = sgn(q_k − B_{≠k} W_{≠k} w_kᵀ); sweeps stop once ‖B − B_prev‖_F < tol · ‖B_prev‖_F.

    Returns:
        B [N, K] and the number of sweeps run.
    """
    b = torch.zeros_like(q)
    bw = torch.zeros(q.shape[0], classifier.shape[1], dtype=q.dtype, device=q.device)  # B W, kept current
    sweeps = 0
    for sweeps in range(1, n_sweeps + 1):  # noqa: B007 (the count is returned)
        previous = b.clone()
        for k in range(q.shape[1]):
            w_k = classifier[k]
            # B_{≠k} W_{≠k} w_kᵀ = (BW − b_k w_k) w_kᵀ
            others = (bw - b[:, k : k + 1] * w_k) @ w_k
            column = sign_with_zero_positive(q[:, k] - others)
            bw += (column - b[:, k])[:, None] * w_k
            b[:, k] = column
        if torch.linalg.norm(b - previous) < tol * torch.linalg.norm(previous):
            break
    return b, sweeps


def _ridge(a: Tensor, target: Tensor, lam: float) -> Tensor:
    """(AᵀA + λI)⁻¹AᵀT."""
    gram = a.T @ a + lam * torch.eye(a.shape[1], dtype=a.dtype, device=a.device)
    return torch.linalg.solve(gram, a.T @ target)


@register_method
class SDH(KernelShallowHashingMethod):
    """Supervised discrete hashing: codes that a linear classifier maps to the labels, learned by DCC."""

    paper = Paper(
        title="Supervised Discrete Hashing",
        authors="Fumin Shen, Chunhua Shen, Wei Liu, Heng Tao Shen",
        venue="CVPR",
        year=2015,
        url="https://doi.org/10.1109/CVPR.2015.7298598",
        code="https://github.com/bd622/DiscretHashing",
    )
    uses_labels = True

    def __init__(
        self,
        n_bits: int = 48,
        features: str = "pixels",
        seed: int = 0,
        n_anchors: int = 1000,  # m, Sec. 4 (and the official demo)
        lam: float = 1.0,  # λ, the classifier's ridge weight (Sec. 4)
        nu: float = 1e-5,  # ν, the weight of the hash-function fit (Sec. 4)
        f_lam: float = 1e-2,  # λ_F, the ridge of the F-step (official code)
        max_iter: int = 5,  # outer iterations (official demo)
        dcc_sweeps: int = 10,  # DCC sweeps per B-step (official code)
        sigma: float | None = None,  # RBF width; None: mean distance to the nearest anchor (see Deviations)
        tol: float = 1e-5,  # early stop of the outer loop (official code)
        **kwargs: Any,
    ) -> None:
        super().__init__(n_bits=n_bits, features=features, seed=seed, **kwargs)
        if n_anchors < 1 or max_iter < 0 or dcc_sweeps < 1:
            raise ValueError(
                f"need n_anchors >= 1, max_iter >= 0, dcc_sweeps >= 1; got {n_anchors}, {max_iter}, {dcc_sweeps}"
            )
        if sigma is not None and sigma <= 0:
            raise ValueError(f"sigma must be positive (or None for the data-driven width), got {sigma}")
        self.n_anchors = n_anchors
        self.lam = lam
        self.nu = nu
        self.f_lam = f_lam
        self.max_iter = max_iter
        self.dcc_sweeps = dcc_sweeps
        self.sigma = sigma
        self.tol = tol
        self.objective_history: list[float] = []

    def fit_features(self, x: Tensor, labels: Tensor) -> None:
        g = self._generator()
        anchors = x[seeded_subset(x.shape[0], self.n_anchors, g)]
        d2 = squared_distances(x, anchors).double()
        if self.sigma is not None:
            sigma = self.sigma
        else:
            # the mean distance to the nearest anchor; an anchor's distance to itself (0) does not count
            nearest = d2.masked_fill(d2 <= 0, float("inf")).min(1).values
            sigma = float(nearest[torch.isfinite(nearest)].sqrt().mean()) if torch.isfinite(nearest).any() else 1.0
        sigma2 = max(sigma * sigma, 1e-12)
        phi = torch.exp(-d2 / (2 * sigma2))
        phi = torch.cat([phi, torch.ones(phi.shape[0], 1, dtype=phi.dtype, device=phi.device)], 1)  # φ(x) and 1
        y = labels.double()
        b = sign_with_zero_positive(torch.randn(x.shape[0], self.n_bits, generator=g, dtype=torch.float64)).to(y.device)
        # φ is fixed, so the F-step's normal matrix is factored once.
        chol = torch.linalg.cholesky(
            phi.T @ phi + self.f_lam * torch.eye(phi.shape[1], dtype=phi.dtype, device=phi.device)
        )
        w = _ridge(b, y, self.lam)  # G-step
        p = torch.cholesky_solve(phi.T @ b, chol)  # F-step
        self.objective_history = [float(sdh_loss(b, y, w, phi @ p, self.lam, self.nu)["loss"])]
        for _ in range(self.max_iter):
            b, _ = sdh_dcc(y @ w.T + self.nu * (phi @ p), w, self.dcc_sweeps)  # B-step
            w = _ridge(b, y, self.lam)  # G-step
            p_old, p = p, torch.cholesky_solve(phi.T @ b, chol)  # F-step
            self.objective_history.append(float(sdh_loss(b, y, w, phi @ p, self.lam, self.nu)["loss"]))
            if torch.linalg.norm(b - phi @ p) < self.tol * torch.linalg.norm(b):
                break
            if torch.linalg.norm(p - p_old) < self.tol * torch.linalg.norm(p_old):
                break
        self.fit_terms = {
            key: float(v) / x.shape[0] for key, v in sdh_loss(b, y, w, phi @ p, self.lam, self.nu).items()
        }
        self.set_kernel_transform(anchors, sigma2, p[:-1], p[-1])
